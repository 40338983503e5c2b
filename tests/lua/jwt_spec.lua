-- Specs for moonwire.jwt and moonwire.interceptors.auth over the real
-- OpenSSL primitives: tokens made by tests/data/jwt/make.py (PyJWT).
local core = require "moonwire.core"
local jwt = require "moonwire.jwt"
local auth = require "moonwire.interceptors.auth"

local D = "tests/data/jwt/"
local f = assert(io.open(D .. "tokens.json")); local T = assert(core.json_decode(f:read "a")); f:close()
local rules = {issuer = "https://issuer.test", audience = "orders"}

describe("moonwire.jwt", function()
  local rsa = jwt.keys {public_key = D .. "rsa.pub.pem"}
  local ec = jwt.keys {public_key = D .. "ec.pub.pem"}
  local hs = jwt.keys {secret = T.secret}
  local jwks = jwt.keys {jwks = D .. "jwks.json"}

  local function reason(tok, keys, r) local c, why = jwt.verify(tok, keys, r or rules); return c and "OK" or why end

  it("accepts valid RS256, ES256 and HS256 tokens and returns their claims", function()
    assert.equal("alice", jwt.verify(T.rs_valid, rsa, rules).sub)
    assert.equal("OK", reason(T.es_valid, ec)); assert.equal("OK", reason(T.hs_valid, hs))
    assert.equal("OK", reason(T.rs_aud_array, rsa))
  end)

  it("lets the key decide the algorithm", function()
    assert.equal("TOKEN_ALG_REFUSED", reason(T.none, rsa))
    assert.equal("TOKEN_ALG_REFUSED", reason(T.confused, rsa))
    assert.equal("TOKEN_ALG_REFUSED", reason(T.es_valid, rsa))
    assert.equal("TOKEN_ALG_REFUSED", reason(T.rs_valid, hs))
    assert.equal("TOKEN_SIGNATURE_INVALID", reason(T.rs_other_key, rsa))
  end)

  it("checks exp, nbf, iss and aud with leeway", function()
    assert.equal("TOKEN_EXPIRED", reason(T.rs_expired, rsa))
    assert.equal("TOKEN_NOT_YET_VALID", reason(T.rs_not_yet, rsa))
    assert.equal("OK", reason(T.rs_not_yet, rsa, {now = 4102444800 - 40, leeway = 31}))
    assert.equal("TOKEN_NOT_YET_VALID", reason(T.rs_not_yet, rsa, {now = 4102444800 - 50, leeway = 30}))
    assert.equal("TOKEN_EXPIRED", reason(T.rs_valid, rsa, {now = 4102444800 + 30}))
    assert.equal("OK", reason(T.rs_valid, rsa, {now = 4102444800 + 29}))
    assert.equal("TOKEN_AUDIENCE_MISMATCH", reason(T.rs_wrong_aud, rsa))
    assert.equal("TOKEN_ISSUER_MISMATCH", reason(T.rs_wrong_iss, rsa))
    assert.equal("TOKEN_EXPIRED", reason(T.rs_no_exp, rsa))
    assert.equal("OK", reason(T.rs_no_exp, rsa, {require_exp = false}))
  end)

  it("selects JWKS keys by kid", function()
    assert.equal(3, #jwks)
    assert.equal("OK", reason(T.jwks_r2, jwks)); assert.equal("OK", reason(T.jwks_e1, jwks))
    assert.equal("OK", reason(T.jwks_s1, jwks))
    assert.equal("TOKEN_KEY_UNKNOWN", reason(T.jwks_unknown_kid, jwks))
  end)

  it("refuses garbage", function()
    for _, g in ipairs {"", "abc", "a.b.c", "a.b", "eyJ.eyJ.", ("x"):rep(9000), T.rs_valid .. "x", T.rs_valid:gsub("%.", "=", 1)} do
      local c, why = jwt.verify(g, rsa, rules)
      assert.is_nil(c, g)
      assert.truthy(why == "TOKEN_MALFORMED" or why == "TOKEN_MISSING" or why == "TOKEN_SIGNATURE_INVALID", why)
    end
  end)

  it("refuses bad keys without showing them", function()
    local ok, err = pcall(jwt.keys, {secret = io.open(D .. "rsa.pub.pem"):read "a"})
    assert.is_false(ok); assert.truthy(err:find "PEM key")
    ok, err = pcall(jwt.keys, {public_key = D .. "tokens.json"})
    assert.is_false(ok); assert.falsy(err:find(T.secret, 1, true))
    ok, err = pcall(jwt.keys, {secret_env = "MW_NO_SUCH_VARIABLE_X"})
    assert.is_false(ok); assert.truthy(err:find "not set")
    assert.is_nil((core.jws_key {kty = "EC", crv = "P-256", x = ("A"):rep(43), y = ("A"):rep(43)}))
    assert.is_nil((core.jws_key {kty = "RSA", n = "AQAB", e = "AQAB"}))
    assert.equal("jws key (HS256)", tostring(core.jws_key {secret = "s"}))
  end)
end)

-- A ctx as the runtime gives it, enough for the interceptor.
local function ctx(md, method, a)
  return {metadata = md or {}, method = method or "/shop.Orders/Place", values = {}, auth = a}
end
local function run(i, c)
  local reached
  local ok, err = pcall(i.call, {}, c, function() reached = true; return {done = true} end)
  if ok then return "OK", reached end
  return (core.codes and err.code) or err, tostring(err.message)
end

describe("moonwire.interceptors.auth", function()
  local i = auth.new({public_key = D .. "rsa.pub.pem", issuer = "https://issuer.test", audience = "orders",
                      rules = {["/shop.Orders/Ping"] = {allow_unauthenticated = true},
                               ["/shop.Orders/Cancel"] = {claims = {role = "admin"}},
                               ["shop.Admin"] = {scopes = {"orders.admin"}}}}, {level = "global"})

  it("puts the claims and the identity in ctx.values", function()
    local c = ctx {authorization = "Bearer " .. T.rs_valid}
    assert.equal("OK", run(i, c))
    assert.equal("alice", c.values.claims.sub)
    assert.same({kind = "jwt", subject = "alice", issuer = "https://issuer.test"}, c.values.identity)
  end)

  it("fails UNAUTHENTICATED with the reason first", function()
    local code, msg = run(i, ctx {authorization = "Bearer " .. T.rs_expired})
    assert.equal(16, code); assert.truthy(msg:find "^TOKEN_EXPIRED: ")
    code, msg = run(i, ctx {})
    assert.equal(16, code); assert.truthy(msg:find "^TOKEN_MISSING")
    code, msg = run(i, ctx {authorization = "Basic dXNlcjpwYXNz"})
    assert.equal(16, code); assert.truthy(msg:find "^TOKEN_MALFORMED")
    code, msg = run(i, ctx {authorization = "Bearer " .. T.confused})
    assert.equal(16, code); assert.truthy(msg:find "^TOKEN_ALG_REFUSED")
  end)

  it("applies per-method rules", function()
    assert.equal("OK", run(i, ctx({}, "/shop.Orders/Ping")))
    assert.equal(16, (run(i, ctx({authorization = "Bearer garbage"}, "/shop.Orders/Ping"))))
    local code, msg = run(i, ctx({authorization = "Bearer " .. T.rs_valid}, "/shop.Orders/Cancel"))
    assert.equal(7, code); assert.truthy(msg:find "^RULE_NOT_MET: claim 'role'")
    assert.equal("OK", run(i, ctx({authorization = "Bearer " .. T.rs_admin}, "/shop.Orders/Cancel")))
    code, msg = run(i, ctx({authorization = "Bearer " .. T.rs_valid}, "/shop.Admin/Purge"))
    assert.equal(7, code); assert.truthy(msg:find "scope 'orders.admin'")
  end)

  it("admits mTLS identities on its allow lists", function()
    local m = auth.new({mtls = {spiffe_id = {"spiffe://shop.test/ns/*"}, common_name = "ops"}}, {})
    local c = ctx({}, nil, {common_name = "web", spiffe_id = "spiffe://shop.test/ns/web", sans = {"x"}, dns = {}})
    assert.equal("OK", run(m, c)); assert.equal("spiffe://shop.test/ns/web", c.values.identity.subject)
    assert.equal("OK", run(m, ctx({}, nil, {common_name = "ops", sans = {}, dns = {}})))
    assert.equal(7, (run(m, ctx({}, nil, {common_name = "eve", sans = {}, dns = {}}))))
    assert.equal(16, (run(m, ctx({}, nil, {transport = "ssl", sans = {}, dns = {}}))))
    assert.equal(16, (run(m, ctx({}))))
  end)

  it("refuses bad options at load", function()
    assert.has_error(function() auth.new({}, {}) end)
    assert.has_error(function() auth.new({secret = "x", bogus = 1}, {}) end)
    assert.has_error(function() auth.new({secret = "x", rules = {["/a/b"] = {scope = "x"}}}, {}) end)
  end)
end)
