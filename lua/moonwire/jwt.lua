--- moonwire.jwt: verification of JSON Web Tokens (RFC 7519) signed with
-- JWS compact serialization, over the C primitives of moonwire.core
-- (tls/mw_jws.h: base64url, keys, signatures through OpenSSL).
--
--   local keys = jwt.keys{jwks = "/etc/moonwire/jwks.json"}
--   local claims, reason, why = jwt.verify(token, keys, {issuer = "...", audience = "..."})
--
-- The key decides the algorithm: an RSA key verifies only RS256, an EC
-- P-256 key only ES256, a secret only HS256. A token naming another alg
-- (none, or HS256 against an RSA key: algorithm confusion) is refused
-- before any signature is computed. Failures return nil, a reason
-- (ErrorInfo style, UPPER_SNAKE) and a sentence that never holds key
-- material.
local core = require "moonwire.core"

local type, ipairs, tostring, os_time = type, ipairs, tostring, os.time
local json_decode, b64 = core.json_decode, core.b64url_decode

local M = {}

--- Longest token accepted (bytes), before any decoding.
M.MAX_TOKEN = 8192
--- Default clock skew allowed on exp and nbf, in seconds.
M.DEFAULT_LEEWAY = 30

local function load_file(path, out)
  local entries, err = core.jws_keys_file(path)
  if not entries then error(err, 0) end
  for _, e in ipairs(entries) do out[#out + 1] = e end
end

--- A key set from options (raises on a bad option or key):
--   secret = "..."        a shared secret given inline (HS256)
--   secret_env = "NAME"   the secret from an environment variable
--   public_key = "path"   a PEM public key or certificate (RS256 or ES256)
--   jwks = "path"         a JWKS file (kty RSA, EC P-256 or oct; kid selects)
-- Any combination; at least one. Returns an array of {kid =, key =}.
function M.keys(opts)
  local keys = {}
  local secret = opts.secret
  if opts.secret_env ~= nil then
    if type(opts.secret_env) ~= "string" then error("secret_env must name an environment variable", 0) end
    secret = os.getenv(opts.secret_env)
    if secret == nil or secret == "" then
      error(("environment variable %s (secret_env) is not set"):format(opts.secret_env), 0)
    end
  end
  if secret ~= nil then
    if type(secret) ~= "string" then error("secret must be a string", 0) end
    -- A public key's text used as an HMAC secret is exactly what algorithm
    -- confusion forges tokens with: refuse it here too.
    if secret:find("-----BEGIN", 1, true) then
      error("secret holds a PEM key: give it as public_key (an HMAC secret must not be a public key)", 0)
    end
    local k, err = core.jws_key{secret = secret}
    if not k then error("secret: " .. err, 0) end
    keys[#keys + 1] = {key = k}
  end
  if opts.public_key ~= nil then load_file(tostring(opts.public_key), keys) end
  if opts.jwks ~= nil then load_file(tostring(opts.jwks), keys) end
  if #keys == 0 then error("no key: give secret, secret_env, public_key or jwks", 0) end
  return keys
end

local function split(token)
  local h, p, s = token:match "^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]*)$"
  return h, p, s
end

local function contains(list, v)
  if type(list) ~= "table" then return list == v end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

--- Verifies token against keys (from M.keys) and the claim rules:
--   issuer: a string or an array of accepted issuers (iss must be one)
--   audience: a string or array; the token's aud (string or array) must
--     hold one of them
--   leeway: seconds of clock skew allowed on exp and nbf (default 30)
--   require_exp: whether a token without exp is refused (default true)
--   now: the time to check against (default os.time())
-- Returns the claims table, or nil, reason, message.
function M.verify(token, keys, rules)
  rules = rules or {}
  if type(token) ~= "string" or token == "" then return nil, "TOKEN_MISSING", "no token" end
  if #token > M.MAX_TOKEN then return nil, "TOKEN_MALFORMED", "token longer than 8192 bytes" end
  local h64, p64, s64 = split(token)
  if not h64 then return nil, "TOKEN_MALFORMED", "not a JWS compact token (header.payload.signature)" end
  local hjson, pjson, sig = b64(h64), b64(p64), b64(s64)
  if not hjson or not pjson or not sig then return nil, "TOKEN_MALFORMED", "malformed base64url" end
  local header = json_decode(hjson, {max_depth = 4})
  if type(header) ~= "table" or type(header.alg) ~= "string" then
    return nil, "TOKEN_MALFORMED", "header is not a JSON object with alg"
  end
  local alg = header.alg
  if alg:lower() == "none" then return nil, "TOKEN_ALG_REFUSED", "unsigned tokens (alg none) are refused" end
  -- No extension is understood, so a critical one must fail (RFC 7515 4.1.11).
  if header.crit ~= nil then return nil, "TOKEN_MALFORMED", "the header has crit extensions" end

  -- Candidate keys: the kid's when the token names one, else every key.
  local kid, candidates = header.kid, keys
  if kid ~= nil then
    if type(kid) ~= "string" then return nil, "TOKEN_MALFORMED", "kid is not a string" end
    candidates = {}
    for _, e in ipairs(keys) do
      if e.kid == kid then candidates[#candidates + 1] = e end
    end
    -- A key set without kids (a single PEM key or secret) ignores the kid.
    if #candidates == 0 then
      local any_kid = false
      for _, e in ipairs(keys) do if e.kid then any_kid = true end end
      if any_kid then return nil, "TOKEN_KEY_UNKNOWN", "no key with the token's kid" end
      candidates = keys
    end
  end
  local input, matched = h64 .. "." .. p64, false
  for _, e in ipairs(candidates) do
    local r = e.key:verify(alg, input, sig)
    if r == "valid" then
      matched = true
      break
    elseif r == "bad_signature" then
      matched = nil -- a key of the right kind said no
    end
  end
  if matched == false then
    return nil, "TOKEN_ALG_REFUSED", ("alg %s is not the one the key takes"):format(
      alg:match "^[%w%-]+$" and alg or "?")
  elseif matched == nil then
    return nil, "TOKEN_SIGNATURE_INVALID", "the signature does not verify"
  end

  local claims = json_decode(pjson, {max_depth = 16})
  if type(claims) ~= "table" then return nil, "TOKEN_MALFORMED", "claims are not a JSON object" end
  local now = rules.now or os_time()
  local leeway = rules.leeway or M.DEFAULT_LEEWAY
  local exp, nbf = claims.exp, claims.nbf
  if exp ~= nil and type(exp) ~= "number" then return nil, "TOKEN_MALFORMED", "exp is not a number" end
  if nbf ~= nil and type(nbf) ~= "number" then return nil, "TOKEN_MALFORMED", "nbf is not a number" end
  if exp == nil and rules.require_exp ~= false then return nil, "TOKEN_EXPIRED", "the token has no exp" end
  if exp and now >= exp + leeway then return nil, "TOKEN_EXPIRED", "the token has expired" end
  if nbf and now + leeway < nbf then return nil, "TOKEN_NOT_YET_VALID", "the token is not valid yet (nbf)" end
  if rules.issuer ~= nil and not contains(rules.issuer, claims.iss) then
    return nil, "TOKEN_ISSUER_MISMATCH", "the token's issuer is not accepted"
  end
  if rules.audience ~= nil then
    local aud, ok = claims.aud, false
    local wanted = type(rules.audience) == "table" and rules.audience or {rules.audience}
    for _, w in ipairs(wanted) do
      if type(aud) == "string" and aud == w or type(aud) == "table" and contains(aud, w) then
        ok = true
        break
      end
    end
    if not ok then return nil, "TOKEN_AUDIENCE_MISMATCH", "the token is not meant for this audience" end
  end
  return claims
end

--- The token's scopes as a set: the "scope" claim (space-separated, RFC
-- 8693) and the "scp" claim (an array or a string).
function M.scopes(claims)
  local set = {}
  local function add(s)
    if type(s) == "string" then for w in s:gmatch "%S+" do set[w] = true end end
  end
  add(claims.scope)
  if type(claims.scp) == "table" then for _, s in ipairs(claims.scp) do add(s) end else add(claims.scp) end
  return set
end

return M
