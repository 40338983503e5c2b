"""The built-in interceptors auth, rate_limit and validate, end to end: JWTs
made here with PyJWT and python3-cryptography (RS256, ES256, HS256, a JWKS
with kids, and the attacks: alg none, HS256 signed with the RSA public key,
expired, not yet valid, wrong audience and issuer, garbage), an mTLS
identity rule over real client certificates, a rate limit shared by two
workers that fails with RetryInfo, and validation failing with BadRequest.
Status details are decoded from grpc-status-details-bin with the
google.rpc protos of proto/google/rpc."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import mwtest
from mwtest import Protos, Server
from test_tls import PKI

PROTO = """
syntax = "proto3";
package authtest;

message Req { string text = 1; }
message Resp { string text = 1; }
message Item { string name = 1; int32 qty = 2; }

service Api {
  rpc Whoami(Req) returns (Resp);
  rpc Ping(Req) returns (Resp);
  rpc Admin(Req) returns (Resp);
}
service Ec { rpc Whoami(Req) returns (Resp); }
service Jwks { rpc Whoami(Req) returns (Resp); }
service Limit { rpc Hit(Req) returns (Resp); rpc ByPeer(Req) returns (Resp); }
service Valid {
  rpc Put(Item) returns (Resp);
  rpc PutLua(Item) returns (Resp);
  rpc Upload(stream Item) returns (Resp);
}
"""

RULES = """
local M = {}
function M.item(msg, ctx)
  local v = {}
  if msg.name == "" then v[#v + 1] = {field = "name", description = "must not be empty"} end
  if msg.qty <= 0 then v[#v + 1] = {field = "qty", description = "must be positive"} end
  return #v == 0, v
end
return M
"""

LUA = """
local mw = require "moonwire"

-- This worker's tag, different in each worker's state.
local worker = string.format("%x", math.random(1 << 40))
-- Every call tells which worker served it, in a trailer, whatever its end.
mw.intercept(function(req, ctx, next)
  ctx:set_trailer("x-worker", worker)
  return next(req, ctx)
end)

mw.intercept("/authtest.Valid/PutLua", mw.interceptors.validate{fn = function(msg)
  if msg.qty > 10 then return false, {{field = "qty", description = "at most 10"}} end
  return true
end})

local function whoami(req, ctx)
  local id, c = ctx.values.identity, ctx.values.claims
  return {text = (id and id.kind or "-") .. ":" .. tostring(id and id.subject) .. ":" ..
                 tostring(c and c.aud and (type(c.aud) == "table" and table.concat(c.aud, ",") or c.aud))}
end
local Api = mw.service "authtest.Api"
Api.Whoami, Api.Ping, Api.Admin = whoami, whoami, whoami
mw.service("authtest.Ec").Whoami = whoami
mw.service("authtest.Jwks").Whoami = whoami
local Limit = mw.service "authtest.Limit"
function Limit.Hit() return {text = worker} end
Limit.ByPeer = Limit.Hit
local Valid = mw.service "authtest.Valid"
function Valid.Put(req) return {text = "stored " .. req.name} end
Valid.PutLua = Valid.Put
function Valid.Upload(stream)
  local n = 0
  for _ in stream:iter() do n = n + 1 end
  return {text = "got " .. n}
end
"""

ISS, AUD = "https://issuer.moonwire.test", "orders"
SECRET = "jwks-oct-secret-0123456789"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64int(n, size=None):
    return b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def pub_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**over):
    now = int(time.time())
    c = {"sub": "alice", "iss": ISS, "aud": AUD, "iat": now, "exp": now + 600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def unsigned(c, header):
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(c).encode())


def setUpModule():
    global tmp, rsa_key, ec_key, jwks_rsa, jwks_ec, pki, svc, protos, rpc
    tmp = tempfile.mkdtemp(prefix="mw-e2e-auth-")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_ec = ec.generate_private_key(ec.SECP256R1())
    with open(os.path.join(tmp, "rsa.pem"), "wb") as f:
        f.write(pub_pem(rsa_key))
    with open(os.path.join(tmp, "ec.pem"), "wb") as f:
        f.write(pub_pem(ec_key))
    rn, en = jwks_rsa.public_key().public_numbers(), jwks_ec.public_key().public_numbers()
    with open(os.path.join(tmp, "jwks.json"), "w") as f:
        json.dump({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": b64int(rn.n), "e": b64int(rn.e)},
            {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64int(en.x, 32), "y": b64int(en.y, 32)},
            {"kty": "oct", "kid": "oct-1", "k": b64(SECRET.encode())},
        ]}, f)
    pki = PKI(tmp)
    pki.ca("ca", "Auth Test CA")
    pki.issue("server", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth")
    pki.issue("web", "ca", "web", ["URI:spiffe://moonwire.test/ns/shop/web"], "clientAuth")
    pki.issue("batch", "ca", "batch", ["URI:spiffe://moonwire.test/ns/jobs/batch"], "clientAuth")
    pki.issue("ops", "ca", "ops", ["DNS:ops.moonwire.test"], "clientAuth")
    svc = mwtest.ServiceDir({"auth.proto": PROTO, "svc.lua": LUA, "rules.lua": RULES})
    protos = Protos(svc.path)
    proj = os.path.join(mwtest.SOURCE_DIR, "proto")
    rpc = Protos(proj, files=[os.path.join(proj, "google/rpc/status.proto"),
                              os.path.join(proj, "google/rpc/error_details.proto")])


def tearDownModule():
    svc.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def status_details(err):
    """The google.rpc.Status of a failed call, with its details decoded:
    (status, [detail messages]), or (None, []) without the trailer."""
    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = rpc.msg("google.rpc.Status").FromString(v)
            return st, [rpc.msg(d.type_url.rsplit("/", 1)[1]).FromString(d.value) for d in st.details]
    return None, []


def trailer(err_or_call, key):
    for k, v in err_or_call.trailing_metadata() or ():
        if k == key:
            return v
    return None


class Jwt(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = """
workers: 2
methods:
  authtest.Api:
    interceptors:
      - auth:
          public_key: {tmp}/rsa.pem
          issuer: {iss}
          audience: [{aud}, other-audience]
          leeway: 30s
          rules:
            /authtest.Api/Ping: {{allow_unauthenticated: true}}
            /authtest.Api/Admin: {{claims: {{role: admin}}, scopes: [orders.admin]}}
  authtest.Ec:
    interceptors: [{{auth: {{public_key: {tmp}/ec.pem}}}}]
  authtest.Jwks:
    interceptors: [{{auth: {{jwks: {tmp}/jwks.json, audience: {aud}}}}}]
  authtest.Limit:
    interceptors: [{{rate_limit: {{rate: 0.001, burst: 4, key: "metadata:x-api-key"}}}}]
  /authtest.Limit/ByPeer:
    interceptors: [{{rate_limit: {{rate: 0.001, burst: 2, key: peer}}}}]
  /authtest.Valid/Put:
    interceptors: [{{validate: {{rule: rules.item}}}}]
  /authtest.Valid/Upload:
    interceptors: [{{validate: {{rule: rules.item}}}}]
""".format(tmp=tmp, iss=ISS, aud=AUD)
        cls.server = Server(svc, config=config).start()
        cls.channel = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def call(self, path, token=None, header=None, md=(), channel=None):
        metadata = list(md)
        if header is not None:
            metadata.append(("authorization", header))
        elif token is not None:
            metadata.append(("authorization", "Bearer " + token))
        return protos.unary(channel or self.channel, path).with_call(
            protos.msg("authtest.Req")(text="x"), metadata=metadata, timeout=10)[0].text

    def refused(self, path, code, reason, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(path, **kw)
        err = cm.exception
        self.assertEqual(err.code(), code, err.details())
        self.assertTrue(err.details().startswith(reason + ": "), err.details())
        st, details = status_details(err)
        self.assertIsNotNone(st, "no grpc-status-details-bin")
        self.assertEqual(st.message, err.details())
        info = [d for d in details if d.DESCRIPTOR.full_name == "google.rpc.ErrorInfo"]
        self.assertEqual([(i.reason, i.domain) for i in info], [(reason, "moonwire.auth")])
        return err

    # -- tokens -----------------------------------------------------------

    def test_valid_rs256(self):
        tok = jwt.encode(claims(), rsa_key, algorithm="RS256")
        self.assertEqual(self.call("/authtest.Api/Whoami", tok), "jwt:alice:orders")
        tok = jwt.encode(claims(aud=["billing", "other-audience"]), rsa_key, algorithm="RS256")
        self.assertEqual(self.call("/authtest.Api/Whoami", tok), "jwt:alice:billing,other-audience")

    def test_expired_and_not_yet_valid(self):
        now = int(time.time())
        U = grpc.StatusCode.UNAUTHENTICATED
        self.refused("/authtest.Api/Whoami", U, "TOKEN_EXPIRED",
                     token=jwt.encode(claims(exp=now - 120), rsa_key, algorithm="RS256"))
        self.refused("/authtest.Api/Whoami", U, "TOKEN_NOT_YET_VALID",
                     token=jwt.encode(claims(nbf=now + 600), rsa_key, algorithm="RS256"))
        # Within the 30s leeway, both pass.
        tok = jwt.encode(claims(exp=now - 5, nbf=now + 5), rsa_key, algorithm="RS256")
        self.assertEqual(self.call("/authtest.Api/Whoami", tok), "jwt:alice:orders")

    def test_wrong_audience_and_issuer(self):
        U = grpc.StatusCode.UNAUTHENTICATED
        self.refused("/authtest.Api/Whoami", U, "TOKEN_AUDIENCE_MISMATCH",
                     token=jwt.encode(claims(aud="billing"), rsa_key, algorithm="RS256"))
        self.refused("/authtest.Api/Whoami", U, "TOKEN_AUDIENCE_MISMATCH",
                     token=jwt.encode(claims(aud=None), rsa_key, algorithm="RS256"))
        self.refused("/authtest.Api/Whoami", U, "TOKEN_ISSUER_MISMATCH",
                     token=jwt.encode(claims(iss="https://evil.test"), rsa_key, algorithm="RS256"))

    def test_alg_none_and_algorithm_confusion(self):
        U = grpc.StatusCode.UNAUTHENTICATED
        none = unsigned(claims(), {"alg": "none", "typ": "JWT"}) + "."
        self.refused("/authtest.Api/Whoami", U, "TOKEN_ALG_REFUSED", token=none)
        # HS256 with the server's RSA public key (its PEM text) as the HMAC
        # secret: what a verifier that lets the token pick the algorithm
        # would accept.
        signing = unsigned(claims(), {"alg": "HS256", "typ": "JWT"})
        sig = hmac.new(pub_pem(rsa_key), signing.encode(), hashlib.sha256).digest()
        err = self.refused("/authtest.Api/Whoami", U, "TOKEN_ALG_REFUSED", token=signing + "." + b64(sig))
        self.assertNotIn("BEGIN", err.details())
        # A token of another RSA key, and one whose payload was changed.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.refused("/authtest.Api/Whoami", U, "TOKEN_SIGNATURE_INVALID",
                     token=jwt.encode(claims(), other, algorithm="RS256"))
        h, p, s = jwt.encode(claims(), rsa_key, algorithm="RS256").split(".")
        forged = b64(json.dumps(claims(sub="mallory")).encode())
        self.refused("/authtest.Api/Whoami", U, "TOKEN_SIGNATURE_INVALID", token=".".join([h, forged, s]))

    def test_garbage_and_missing(self):
        U = grpc.StatusCode.UNAUTHENTICATED
        for g in ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "x" * 9000]:
            self.refused("/authtest.Api/Whoami", U, "TOKEN_MALFORMED", token=g)
        self.refused("/authtest.Api/Whoami", U, "TOKEN_MALFORMED", header="Basic YWxpY2U6cHc=")
        self.refused("/authtest.Api/Whoami", U, "TOKEN_MISSING")

    def test_per_method_rules(self):
        self.assertEqual(self.call("/authtest.Api/Ping"), "-:nil:nil")
        P = grpc.StatusCode.PERMISSION_DENIED
        tok = jwt.encode(claims(), rsa_key, algorithm="RS256")
        self.refused("/authtest.Api/Admin", P, "RULE_NOT_MET", token=tok)
        tok = jwt.encode(claims(role="admin", scope="orders.read"), rsa_key, algorithm="RS256")
        self.refused("/authtest.Api/Admin", P, "RULE_NOT_MET", token=tok)
        tok = jwt.encode(claims(role="admin", scope="orders.read orders.admin"), rsa_key, algorithm="RS256")
        self.assertEqual(self.call("/authtest.Api/Admin", tok), "jwt:alice:orders")

    def test_es256(self):
        tok = jwt.encode(claims(sub="bob"), ec_key, algorithm="ES256")
        self.assertEqual(self.call("/authtest.Ec/Whoami", tok), "jwt:bob:orders")
        # The EC key takes ES256 only: RS256 from the RSA key is refused.
        self.refused("/authtest.Ec/Whoami", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_ALG_REFUSED",
                     token=jwt.encode(claims(), rsa_key, algorithm="RS256"))

    def test_jwks_with_kid(self):
        for key, alg, kid in [(jwks_rsa, "RS256", "rsa-1"), (jwks_ec, "ES256", "ec-1"),
                              (SECRET, "HS256", "oct-1")]:
            tok = jwt.encode(claims(sub=kid), key, algorithm=alg, headers={"kid": kid})
            self.assertEqual(self.call("/authtest.Jwks/Whoami", tok), "jwt:%s:orders" % kid)
        U = grpc.StatusCode.UNAUTHENTICATED
        self.refused("/authtest.Jwks/Whoami", U, "TOKEN_KEY_UNKNOWN",
                     token=jwt.encode(claims(), jwks_rsa, algorithm="RS256", headers={"kid": "rsa-9"}))
        # The kid names the EC key, the token is RS256: refused.
        self.refused("/authtest.Jwks/Whoami", U, "TOKEN_ALG_REFUSED",
                     token=jwt.encode(claims(), jwks_rsa, algorithm="RS256", headers={"kid": "ec-1"}))

    # -- rate limit ---------------------------------------------------------

    def test_rate_limit_shared_by_workers_with_retry_info(self):
        """burst 4 for one API key across both workers: exactly 4 calls pass
        even when each worker alone has served more than 4."""
        Req = protos.msg("authtest.Req")
        served, ok, refused = {}, 0, []
        for _ in range(80):
            with grpc.insecure_channel(self.server.target(),
                                       options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                try:
                    _, call = protos.unary(ch, "/authtest.Limit/Hit").with_call(
                        Req(), metadata=[("x-api-key", "key-shared")], timeout=10)
                    ok += 1
                    w = trailer(call, "x-worker")
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
                    refused.append(e)
                    w = trailer(e, "x-worker")
            served[w] = served.get(w, 0) + 1
            if len(served) == 2 and min(served.values()) > 4:
                break
        self.assertEqual(len(served), 2, served)
        self.assertGreater(min(served.values()), 4, served)
        self.assertEqual(ok, 4, served)
        err = refused[0]
        self.assertTrue(err.details().startswith("rate limit exceeded: retry in "), err.details())
        # Another key has its own bucket.
        self.assertTrue(self.call("/authtest.Limit/Hit", md=[("x-api-key", "key-other")]))
        st, details = status_details(err)
        self.assertIsNotNone(st, "no grpc-status-details-bin")
        self.assertEqual(st.code, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        retry = [d for d in details if d.DESCRIPTOR.full_name == "google.rpc.RetryInfo"]
        self.assertEqual(len(retry), 1, details)
        delay = retry[0].retry_delay.seconds + retry[0].retry_delay.nanos / 1e9
        # One token at 0.001/s: about 1000 s away.
        self.assertGreater(delay, 900)
        self.assertLessEqual(delay, 1000)

    def test_rate_limit_by_peer(self):
        Req = protos.msg("authtest.Req")
        codes = []
        for _ in range(3):
            try:
                protos.unary(self.channel, "/authtest.Limit/ByPeer")(Req(), timeout=10)
                codes.append("OK")
            except grpc.RpcError as e:
                codes.append(e.code().name)
        self.assertEqual(codes, ["OK", "OK", "RESOURCE_EXHAUSTED"])

    # -- validate -----------------------------------------------------------

    def bad_request(self, err):
        self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT, err.details())
        st, details = status_details(err)
        self.assertIsNotNone(st, "no grpc-status-details-bin")
        br = [d for d in details if d.DESCRIPTOR.full_name == "google.rpc.BadRequest"]
        self.assertEqual(len(br), 1, details)
        return [(v.field, v.description) for v in br[0].field_violations]

    def test_validate_from_config_with_bad_request(self):
        Item = protos.msg("authtest.Item")
        put = protos.unary(self.channel, "/authtest.Valid/Put")
        self.assertEqual(put(Item(name="pen", qty=2), timeout=10).text, "stored pen")
        with self.assertRaises(grpc.RpcError) as cm:
            put(Item(name="", qty=0), timeout=10)
        self.assertEqual(cm.exception.details(),
                         "invalid request: name: must not be empty; qty: must be positive")
        v = self.bad_request(cm.exception)
        self.assertEqual(v, [("name", "must not be empty"), ("qty", "must be positive")])

    def test_validate_from_lua_and_on_streams(self):
        Item = protos.msg("authtest.Item")
        with self.assertRaises(grpc.RpcError) as cm:
            protos.unary(self.channel, "/authtest.Valid/PutLua")(Item(name="a", qty=11), timeout=10)
        v = self.bad_request(cm.exception)
        self.assertEqual(v, [("qty", "at most 10")])
        up = protos.client_stream(self.channel, "/authtest.Valid/Upload")
        self.assertEqual(up(iter([Item(name="a", qty=1)] * 3), timeout=10).text, "got 3")
        with self.assertRaises(grpc.RpcError) as cm:
            up(iter([Item(name="a", qty=1), Item(name="b", qty=-1)]), timeout=10)
        v = self.bad_request(cm.exception)
        self.assertEqual(v, [("qty", "must be positive")])


class RuleNames(mwtest.TestCase):
    def test_rule_for_a_missing_method_fails_the_load(self):
        """A rule naming a method or service the protos lack is refused at
        load, with the entry's place: a typo never leaves a method open."""
        svc = self.service_dir({"authtest.proto": PROTO, "rules.lua": RULES,
                                "authtest.lua": LUA})
        for where, expect in (("/authtest.Api/Pnig", "authtest.Api has no method 'Pnig'"),
                              ("authtest.Nope", "no service 'authtest.Nope'")):
            with self.subTest(where=where):
                svc.write("moonwire.yaml", mwtest.dedent("""
                    interceptors:
                      - auth:
                          secret: s3cret-s3cret-s3cret-s3cret-s3cret
                          rules:
                            %s: {allow_unauthenticated: true}
                    """ % where))
                r = mwtest.run_cli("check", svc.path)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn("moonwire.yaml:2:", r.stderr)
                self.assertIn("rules.%s: %s" % (where, expect), r.stderr)


class MutualTlsIdentity(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = """
tls:
  cert: {d}/server.pem
  key: {d}/server.key
  client_ca: {d}/ca.pem
interceptors:
  - auth:
      mtls:
        spiffe_id: ["spiffe://moonwire.test/ns/shop/*"]
        dns: [ops.moonwire.test]
""".format(d=tmp)
        cls.server = Server(svc, config=config).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def whoami(self, client):
        creds = grpc.ssl_channel_credentials(
            root_certificates=pki.read("ca.pem"),
            private_key=pki.read(client + ".key") if client else None,
            certificate_chain=pki.read(client + ".pem") if client else None)
        with grpc.secure_channel(self.server.target(), creds,
                                 options=[("grpc.use_local_subchannel_pool", 1),
                                          ("grpc.ssl_target_name_override", "localhost")]) as ch:
            return protos.unary(ch, "/authtest.Api/Whoami")(protos.msg("authtest.Req")(), timeout=10).text

    def test_allowed_identities(self):
        self.assertEqual(self.whoami("web"), "mtls:spiffe://moonwire.test/ns/shop/web:nil")
        self.assertEqual(self.whoami("ops"), "mtls:ops:nil")

    def test_refused_identities(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.whoami("batch")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertTrue(cm.exception.details().startswith("IDENTITY_NOT_ALLOWED: "))
        with self.assertRaises(grpc.RpcError) as cm:
            self.whoami(None)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertTrue(cm.exception.details().startswith("CREDENTIALS_MISSING: "))


if __name__ == "__main__":
    mwtest.main()
