#!/usr/bin/python3
"""Makes the keys and tokens of tests/lua/jwt_spec.lua and auth_spec.lua
(checked in; rerun to regenerate): PEM public keys, a JWKS, and tokens.json
naming each case. Valid tokens expire in 2100, expired ones in 2000."""
import base64, json, os
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

here = os.path.dirname(os.path.abspath(__file__))
def b64(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()
def pub_pem(k):
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
open(os.path.join(here, "rsa.pub.pem"), "wb").write(pub_pem(rsa_key))
open(os.path.join(here, "ec.pub.pem"), "wb").write(pub_pem(ec_key))
rn = rsa2.public_key().public_numbers()
en = ec_key.public_key().public_numbers()
jwks = {"keys": [
    {"kty": "RSA", "kid": "r2", "use": "sig", "alg": "RS256", "n": b64(rn.n), "e": b64(rn.e)},
    {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(en.x, 32), "y": b64(en.y, 32)},
    {"kty": "oct", "kid": "s1", "k": base64.urlsafe_b64encode(b"jwks-secret-0123456789").rstrip(b"=").decode()},
]}
json.dump(jwks, open(os.path.join(here, "jwks.json"), "w"), indent=1)

LATER, PAST = 4102444800, 946684800  # 2100-01-01, 2000-01-01
base = {"sub": "alice", "iss": "https://issuer.test", "aud": "orders", "exp": LATER,
        "scope": "orders.read orders.write"}
def tok(claims, key, alg, **headers):
    return jwt.encode(claims, key, algorithm=alg, headers=headers or None)
def none_token(claims):
    h = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    p = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return h + "." + p + "."
def confused(claims, pem):
    # HS256 signed with the RSA public key's PEM text as the secret: what
    # algorithm confusion forges. PyJWT refuses to do it, so by hand.
    import hmac, hashlib
    h = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    p = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = hmac.new(pem, (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()

secret = "hs-secret-for-tests-0123456789"
tokens = {
    "secret": secret,
    "rs_valid": tok(base, rsa_key, "RS256"),
    "rs_expired": tok(dict(base, exp=PAST), rsa_key, "RS256"),
    "rs_not_yet": tok(dict(base, nbf=LATER - 10), rsa_key, "RS256"),
    "rs_wrong_aud": tok(dict(base, aud="billing"), rsa_key, "RS256"),
    "rs_aud_array": tok(dict(base, aud=["billing", "orders"]), rsa_key, "RS256"),
    "rs_wrong_iss": tok(dict(base, iss="https://evil.test"), rsa_key, "RS256"),
    "rs_other_key": tok(base, rsa2, "RS256"),
    "rs_no_exp": tok({k: v for k, v in base.items() if k != "exp"}, rsa_key, "RS256"),
    "rs_admin": tok(dict(base, role="admin"), rsa_key, "RS256"),
    "none": none_token(base),
    "confused": confused(base, pub_pem(rsa_key)),
    "es_valid": tok(base, ec_key, "ES256"),
    "hs_valid": tok(base, secret, "HS256"),
    "jwks_r2": tok(base, rsa2, "RS256", kid="r2"),
    "jwks_e1": tok(base, ec_key, "ES256", kid="e1"),
    "jwks_s1": tok(base, b"jwks-secret-0123456789", "HS256", kid="s1"),
    "jwks_unknown_kid": tok(base, rsa2, "RS256", kid="nope"),
}
json.dump(tokens, open(os.path.join(here, "tokens.json"), "w"), indent=1)
