--- moonwire.interceptors.auth: who may call, from a bearer JWT or the
-- client's TLS certificate, with rules per service and method.
--
--   interceptors:
--     - auth:
--         jwks: /etc/moonwire/jwks.json      # or public_key, secret, secret_env
--         issuer: https://issuer.example
--         audience: orders
--         rules:
--           /grpc.health.v1.Health/Check: {allow_unauthenticated: true}
--           /shop.Orders/Cancel: {scopes: [orders.admin]}
--
-- A call with the metadata `authorization: Bearer <token>` is checked as a
-- JWT (moonwire.jwt: the key decides the algorithm; exp and nbf with
-- leeway; iss and aud). Without a token, and with `mtls:` configured, the
-- client certificate's identity (ctx.auth) must be on one of its allow
-- lists. A failure of either is UNAUTHENTICATED with an ErrorInfo (domain
-- "moonwire.auth", reason such as TOKEN_EXPIRED, repeated at the start of
-- the message); an authenticated caller a rule does not admit gets
-- PERMISSION_DENIED. The handler finds the claims in ctx.values.claims and
-- the caller in ctx.values.identity ({kind = "jwt" | "mtls", subject =,
-- ...}).
local mw = require "moonwire"
local core = require "moonwire.core"
local jwt = require "moonwire.jwt"

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error

local M = {}

local DOMAIN = "moonwire.auth"

local function refuse(code, reason, why)
  mw.fail(code, reason .. ": " .. why, {mw.details.ErrorInfo({reason = reason, domain = DOMAIN})})
end

local function list(v, what)
  if v == nil then return nil end
  if type(v) == "string" then return {v} end
  if type(v) ~= "table" then error(what .. " must be a string or a list of strings", 0) end
  for _, s in ipairs(v) do
    if type(s) ~= "string" then error(what .. " must be a string or a list of strings", 0) end
  end
  return v
end

-- "spiffe://example.org/ns/*" matches by prefix; anything else exactly.
local function match_one(patterns, value)
  if not patterns or type(value) ~= "string" then return false end
  for _, p in ipairs(patterns) do
    if p == value then return true end
    if p:sub(-1) == "*" and value:sub(1, #p - 1) == p:sub(1, -2) then return true end
  end
  return false
end

local RULE_KEYS = {allow_unauthenticated = true, claims = true, scopes = true}

local function check_rule(r, where)
  if type(r) ~= "table" then error(where .. ": a rule must be a map", 0) end
  for k in pairs(r) do
    if not RULE_KEYS[k] then
      error(("%s: unknown rule option '%s' (allow_unauthenticated, claims, scopes)"):format(where, tostring(k)), 0)
    end
  end
  if r.claims ~= nil and type(r.claims) ~= "table" then error(where .. ": claims must be a map", 0) end
  return {allow_unauthenticated = r.allow_unauthenticated == true, claims = r.claims,
          scopes = list(r.scopes, where .. ": scopes")}
end

local OPTIONS = {
  header = true, scheme = true, secret = true, secret_env = true, public_key = true,
  jwks = true, issuer = true, audience = true, leeway = true, require_exp = true,
  mtls = true, rules = true, allow_unauthenticated = true, claims = true, scopes = true,
}

-- Does the caller meet the rule's claims and scopes?
local function admitted(rule, claims)
  if rule.claims then
    if not claims then return false, "the rule needs claims, which only a token carries" end
    for name, want in pairs(rule.claims) do
      local have = claims[name]
      local ok = false
      local wants = type(want) == "table" and want or {want}
      for _, w in ipairs(wants) do
        if have == w or type(have) == "table" and (function()
          for _, h in ipairs(have) do if h == w then return true end end
        end)() then
          ok = true
          break
        end
      end
      if not ok then return false, ("claim '%s' does not have a value the method requires"):format(tostring(name)) end
    end
  end
  if rule.scopes then
    if not claims then return false, "the rule needs scopes, which only a token carries" end
    local have = jwt.scopes(claims)
    for _, s in ipairs(rule.scopes) do
      if not have[s] then return false, ("scope '%s' is required"):format(s) end
    end
  end
  return true
end

function M.new(opts, env)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("unknown option '%s'"):format(tostring(k)), 0) end
  end
  local header = (opts.header or "authorization"):lower()
  local scheme = (opts.scheme or "Bearer"):lower()

  local keys
  if opts.secret ~= nil or opts.secret_env ~= nil or opts.public_key ~= nil or opts.jwks ~= nil then
    keys = jwt.keys(opts)
  end
  local leeway = opts.leeway ~= nil and mw.duration(opts.leeway) or jwt.DEFAULT_LEEWAY
  local jrules = {
    issuer = list(opts.issuer, "issuer"), audience = list(opts.audience, "audience"),
    leeway = leeway, require_exp = opts.require_exp,
  }

  local mtls
  if opts.mtls ~= nil and opts.mtls ~= false then
    local m = opts.mtls == true and {} or opts.mtls
    if type(m) ~= "table" then error("mtls must be true or a map of allow lists", 0) end
    for k in pairs(m) do
      if k ~= "spiffe_id" and k ~= "common_name" and k ~= "dns" then
        error(("mtls: unknown option '%s' (spiffe_id, common_name, dns)"):format(tostring(k)), 0)
      end
    end
    mtls = {spiffe_id = list(m.spiffe_id, "mtls.spiffe_id"), common_name = list(m.common_name, "mtls.common_name"),
            dns = list(m.dns, "mtls.dns")}
    mtls.any = not (mtls.spiffe_id or mtls.common_name or mtls.dns)
  end
  if not keys and not mtls then
    error("give a key (secret, secret_env, public_key, jwks) or mtls", 0)
  end

  local default_rule = check_rule({allow_unauthenticated = opts.allow_unauthenticated,
                                   claims = opts.claims, scopes = opts.scopes}, "auth")
  local rules = {}
  if opts.rules ~= nil then
    if type(opts.rules) ~= "table" then error("rules must be a map of method or service to rule", 0) end
    for where, r in pairs(opts.rules) do
      if type(where) ~= "string" then error("rules: keys are /pkg.Service/Method or pkg.Service", 0) end
      -- A rule for a name the schema lacks would never apply: a typo must
      -- not leave a method under the default rule unnoticed.
      local svc, method = where:match "^/([^/]+)/([^/]+)$"
      if not svc and where:sub(1, 1) == "/" then
        error(("rules.%s: expected /pkg.Service/Method or pkg.Service"):format(where), 0)
      end
      local problem = core.service_problem(svc or where)
      if problem then error(("rules.%s: %s"):format(where, problem), 0) end
      local names, index = core.methods(svc or where)
      if method and index and not index[method] then
        error(("rules.%s: %s has no method '%s' (methods: %s)")
              :format(where, svc, method, table.concat(names, ", ")), 0)
      end
      rules[where] = check_rule(r, "rules." .. where)
    end
  end
  -- The rule of a method: its own, else its service's, else the default.
  -- Methods are finite (bound at load), so the answer is kept per method.
  local by_method = {}
  local function rule_for(ctx)
    local m = ctx.method
    local r = by_method[m]
    if r then return r end
    r = rules[m] or rules[m:match "^/([^/]+)/"] or default_rule
    by_method[m] = r
    return r
  end

  local function identify_tls(ctx)
    local a = ctx.auth
    if not a or not (a.common_name or a.spiffe_id or (a.sans and #a.sans > 0)) then
      refuse(mw.UNAUTHENTICATED, "CREDENTIALS_MISSING",
             "no bearer token in '" .. header .. "' and no client certificate")
    end
    local ok = mtls.any or match_one(mtls.spiffe_id, a.spiffe_id) or match_one(mtls.common_name, a.common_name)
    if not ok and mtls.dns then
      for _, d in ipairs(a.dns or {}) do
        if match_one(mtls.dns, d) then ok = true break end
      end
    end
    if not ok then
      refuse(mw.PERMISSION_DENIED, "IDENTITY_NOT_ALLOWED", "the client certificate's identity is not allowed")
    end
    return {kind = "mtls", subject = a.spiffe_id or a.common_name, spiffe_id = a.spiffe_id,
            common_name = a.common_name, dns = a.dns}
  end

  return {
    name = "auth",
    call = function(req, ctx, next)
      local rule = rule_for(ctx)
      local value = ctx.metadata[header]
      if value == nil and rule.allow_unauthenticated then return next(req, ctx) end
      local claims, identity
      if value ~= nil and keys then
        local s, token = value:match "^(%S+)%s+(%S+)%s*$"
        if not s or s:lower() ~= scheme then
          refuse(mw.UNAUTHENTICATED, "TOKEN_MALFORMED", ("'%s' is not '%s <token>'"):format(header, opts.scheme or "Bearer"))
        end
        local reason, why
        claims, reason, why = jwt.verify(token, keys, jrules)
        if not claims then refuse(mw.UNAUTHENTICATED, reason, why) end
        identity = {kind = "jwt", subject = claims.sub, issuer = claims.iss}
      elseif mtls then
        identity = identify_tls(ctx)
      else
        refuse(mw.UNAUTHENTICATED, "TOKEN_MISSING", "no bearer token in '" .. header .. "'")
      end
      local ok, why = admitted(rule, claims)
      if not ok then refuse(mw.PERMISSION_DENIED, "RULE_NOT_MET", why) end
      local values = ctx.values
      values.claims = claims
      values.identity = identity
      return next(req, ctx)
    end,
  }
end

return M
