"""TLS and mTLS against the real binary: server-only TLS, client
certificates (required, optional, refused), the checks made at start
(`moonwire serve` and `moonwire check`), TLS versions and ALPN, certificate
rotation under traffic (and a broken replacement), ctx.auth as a handler
sees it, and gRPC's interop cases over TLS.

The certificates are made for each run by the openssl CLI in a temp dir: a
CA, a server certificate for localhost and 127.0.0.1, a client certificate
with a SPIFFE ID, an unrelated second CA with a client certificate of its
own, an expired server certificate, and a second CA with a server
certificate to rotate to."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import grpc

import mwtest
import test_interop
from mwtest import Protos, Server, run_cli

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
TIMEOUT = 10

PROTO = """
syntax = "proto3";
package tlstest;

message WhoRequest { bool pem = 1; }
message Who {
  bool tls = 1;
  string transport = 2;
  string security_level = 3;
  string common_name = 4;
  string subject = 5;
  string spiffe_id = 6;
  repeated string sans = 7;
  repeated string dns = 8;
  repeated string uri = 9;
  repeated string ip = 10;
  repeated string email = 11;
  bool session_reused = 12;
  string pem = 13;
  bool pem_before = 14;  // auth.pem was in the table before it was read
  bool pem_after = 15;   // and is after: read once, kept
}
service T { rpc WhoAmI(WhoRequest) returns (Who); }
"""

LUA = """
local mw = require "moonwire"
local T = mw.service "tlstest.T"

function T.WhoAmI(req, ctx)
  local a = ctx.auth
  if a == nil then return {tls = false} end
  local r = {tls = true, transport = a.transport, security_level = a.security_level,
             common_name = a.common_name, subject = a.subject, spiffe_id = a.spiffe_id,
             sans = a.sans, dns = a.dns, uri = a.uri, ip = a.ip, email = a.email,
             session_reused = a.session_reused}
  if req.pem then
    r.pem_before = rawget(a, "pem") ~= nil
    r.pem = a.pem
    r.pem_after = rawget(a, "pem") ~= nil
  end
  return r
end
"""

CA_CONF = """
[ca]
default_ca = ca
[ca]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = policy
unique_subject = no
email_in_dn = no
[policy]
commonName = supplied
"""


class PKI:
    """CAs and the certificates they issue, made with the openssl CLI."""

    def __init__(self, dir):
        self.dir = dir

    def path(self, name):
        return os.path.join(self.dir, name)

    def run(self, *args):
        r = subprocess.run([OPENSSL] + list(args), capture_output=True, text=True,
                           timeout=30, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed:\n%s" % (args[0], r.stderr))

    def ca(self, name, cn):
        """name.pem and name.key: a self-signed CA."""
        self.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "365",
                 "-subj", "/CN=" + cn,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        d = self.path(name + ".db")
        os.makedirs(d)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(CA_CONF.replace("{dir}", d))

    def issue(self, name, ca, cn, sans, eku, dates=("-days", "30")):
        """name.pem and name.key, signed by ca; dates: openssl ca's options
        (-days N, or -startdate and -enddate)."""
        self.run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
        with open(self.path(name + ".ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=%s\n"
                    "subjectAltName=%s\n" % (eku, ",".join(sans)))
        self.run("ca", "-batch", "-notext", "-config", self.path(ca + ".db/ca.cnf"),
                 "-cert", ca + ".pem", "-keyfile", ca + ".key", "-in", name + ".csr",
                 "-out", name + ".pem", "-extfile", name + ".ext", *dates)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def bundle(self, name, *parts):
        with open(self.path(name), "wb") as f:
            for p in parts:
                f.write(self.read(p))


def setUpModule():
    global pki, tmp, protos, svc
    tmp = tempfile.mkdtemp(prefix="mw-e2e-tls-")
    pki = PKI(tmp)
    pki.ca("ca", "Moonwire Test CA")
    pki.issue("server", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth")
    pki.issue("client", "ca", "client-1",
              ["URI:spiffe://moonwire.test/client-1", "DNS:client-1.moonwire.test",
               "email:client-1@moonwire.test"], "clientAuth")
    pki.ca("other", "Unrelated CA")
    pki.issue("stranger", "other", "stranger", ["DNS:stranger.test"], "clientAuth")
    pki.issue("expired", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth",
              ("-startdate", "20200101000000Z", "-enddate", "20200201000000Z"))
    pki.ca("ca2", "Moonwire Test CA 2")
    pki.issue("server2", "ca2", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth")
    pki.bundle("both-cas.pem", "ca.pem", "ca2.pem")
    svc = mwtest.ServiceDir({"tls.proto": PROTO, "tls.lua": LUA})
    protos = Protos(svc.path)


def tearDownModule():
    svc.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def tls_args(cert="server", key=None, client_ca=None):
    a = ["--tls-cert", pki.path(cert + ".pem"), "--tls-key", pki.path((key or cert) + ".key")]
    if client_ca:
        a += ["--tls-client-ca", pki.path(client_ca + ".pem")]
    return a


def creds(roots="ca.pem", client=None):
    return grpc.ssl_channel_credentials(
        root_certificates=pki.read(roots),
        private_key=pki.read(client + ".key") if client else None,
        certificate_chain=pki.read(client + ".pem") if client else None)


# Each channel its own connection (and so its own handshake): Python's
# channels otherwise share subchannels process-wide.
FRESH = [("grpc.use_local_subchannel_pool", 1)]


def who(server, credentials, pem=False, options=()):
    with grpc.secure_channel(server.target(), credentials, options=FRESH + list(options)) as ch:
        return protos.unary(ch, "/tlstest.T/WhoAmI")(
            protos.msg("tlstest.WhoRequest")(pem=pem), timeout=TIMEOUT)


def presented_cert(port, host="127.0.0.1", alpn=("h2",)):
    """The DER certificate the server presents to a new TLS connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    with socket.create_connection((host, port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def der(name):
    return ssl.PEM_cert_to_DER_cert(pki.read(name).decode())


def s_client(port, *args):
    r = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-CAfile", pki.path("ca.pem")] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    # the output holds whatever the server sent: HTTP/2 frames, not text
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


class ServerTLS(mwtest.TestCase):
    """Server-only TLS, and a plaintext server for comparison."""

    def test_server_tls(self):
        with Server(svc, args=tls_args()) as s:
            r = who(s, creds())
            self.assertTrue(r.tls)
            self.assertEqual(r.transport, "ssl")
            self.assertEqual(r.security_level, "TSI_PRIVACY_AND_INTEGRITY")
            self.assertFalse(r.session_reused)
            # no client certificate: no identity
            self.assertEqual((r.common_name, r.subject, r.spiffe_id), ("", "", ""))
            self.assertEqual((list(r.sans), list(r.dns), list(r.uri)), ([], [], []))
            r = who(s, creds(), pem=True)
            self.assertEqual(r.pem, "")
            # a plaintext client gets nowhere
            with grpc.insecure_channel(s.target(), options=FRESH) as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    protos.unary(ch, "/tlstest.T/WhoAmI")(protos.msg("tlstest.WhoRequest")(),
                                                          timeout=TIMEOUT)
                self.assertStatus(cm, grpc.StatusCode.UNAVAILABLE)
            # a client trusting another CA refuses the server
            with self.assertRaises(grpc.RpcError) as cm:
                who(s, creds("other.pem"))
            self.assertStatus(cm, grpc.StatusCode.UNAVAILABLE)
            self.assertIn("tls: certificate %s: CN=localhost, expires " % pki.path("server.pem"),
                          s.logs())

    def test_plaintext_has_no_auth(self):
        with Server(svc) as s:
            r = protos.unary(s.channel(), "/tlstest.T/WhoAmI")(
                protos.msg("tlstest.WhoRequest")(pem=True), timeout=TIMEOUT)
            self.assertFalse(r.tls)

    def test_tls_versions_and_alpn(self):
        with Server(svc, args=tls_args()) as s:
            # TLS 1.1 is refused by the server (the client allows it here)
            rc, out = s_client(s.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
            self.assertNotEqual(rc, 0, out)
            self.assertTrue(s.wait_log("unsupported protocol"), s.logs())
            for version in ("-tls1_2", "-tls1_3"):
                rc, out = s_client(s.port, version, "-alpn", "h2")
                self.assertEqual(rc, 0, out)
                self.assertIn("ALPN protocol: h2", out)
                self.assertIn("Verify return code: 0 (ok)", out)
            # a client that does not speak h2 is dropped after the handshake,
            # before any HTTP/2 byte; one that does gets the server's SETTINGS
            for alpn, expect_data in ((("h2",), True), (("http/1.1",), False), ((), False)):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.load_verify_locations(pki.path("ca.pem"))
                if alpn:
                    ctx.set_alpn_protocols(list(alpn))
                with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                    with ctx.wrap_socket(sock, server_hostname="localhost") as t:
                        try:
                            data = t.recv(64)
                        except (ssl.SSLError, ConnectionError):
                            data = b""
                self.assertEqual(bool(data), expect_data, alpn)
            self.assertTrue(who(s, creds()).tls)  # still serving


def mtls_config():
    """A config requiring client certificates of the test CA."""
    return ("tls:\n  cert: %s\n  key: %s\n  client_ca: %s\n  require_client_cert: true\n"
            % (pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem")))


class MutualTLS(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.required = Server(svc, config=mtls_config()).start()
        cls.optional = Server(svc, args=tls_args(client_ca="ca")).start()

    @classmethod
    def tearDownClass(cls):
        cls.required.close()
        cls.optional.close()

    def test_identity_in_ctx_auth(self):
        r = who(self.required, creds(client="client"), pem=True)
        self.assertTrue(r.tls)
        self.assertEqual(r.common_name, "client-1")
        self.assertEqual(r.subject, "CN=client-1")
        self.assertEqual(r.spiffe_id, "spiffe://moonwire.test/client-1")
        self.assertEqual(list(r.uri), ["spiffe://moonwire.test/client-1"])
        self.assertEqual(list(r.dns), ["client-1.moonwire.test"])
        self.assertEqual(list(r.email), ["client-1@moonwire.test"])
        self.assertEqual(list(r.ip), [])
        self.assertEqual(sorted(r.sans), sorted(["spiffe://moonwire.test/client-1",
                                                 "client-1.moonwire.test",
                                                 "client-1@moonwire.test"]))
        # the certificate only when asked for, then kept in the table
        self.assertFalse(r.pem_before)
        self.assertTrue(r.pem_after)
        self.assertEqual(ssl.PEM_cert_to_DER_cert(r.pem), der("client.pem"))
        r = who(self.required, creds(client="client"))
        self.assertEqual((r.common_name, r.pem), ("client-1", ""))

    def test_refusals(self):
        for name, c in (("no client certificate", creds()),
                        ("a client certificate of another CA", creds(client="stranger")),
                        ("a client that trusts another CA", creds("other.pem", "client"))):
            with self.subTest(name):
                with self.assertRaises(grpc.RpcError) as cm:
                    who(self.required, c)
                self.assertStatus(cm, grpc.StatusCode.UNAVAILABLE)
        self.assertTrue(self.required.alive())
        self.assertEqual(who(self.required, creds(client="client")).common_name, "client-1")

    def test_optional_client_certificate(self):
        r = who(self.optional, creds())
        self.assertTrue(r.tls)
        self.assertEqual(r.common_name, "")
        self.assertEqual(who(self.optional, creds(client="client")).common_name, "client-1")
        # presented, it must verify
        with self.assertRaises(grpc.RpcError) as cm:
            who(self.optional, creds(client="stranger"))
        self.assertStatus(cm, grpc.StatusCode.UNAVAILABLE)


class StartChecks(mwtest.TestCase):
    """What `moonwire check` and `moonwire serve` find in the TLS files."""

    def both(self, args, expected):
        for cmd in ("check", "serve"):
            with self.subTest(cmd):
                extra = ["--listen", "127.0.0.1:0"] if cmd == "serve" else []
                r = run_cli(cmd, *(extra + list(args) + [svc.path]), timeout=20)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(expected, r.stderr)
                self.assertNotIn("listening on", r.stdout)

    def test_expired_certificate(self):
        self.both(tls_args("expired", "expired"),
                  "%s: the certificate (CN=localhost) has expired: not after "
                  "2020-02-01 00:00:00 UTC" % pki.path("expired.pem"))

    def test_key_of_another_certificate(self):
        self.both(tls_args("server", "client"),
                  "%s: the private key does not match the certificate in %s (CN=localhost)"
                  % (pki.path("client.key"), pki.path("server.pem")))

    def test_missing_and_garbage_files(self):
        self.both(["--tls-cert", pki.path("nope.pem"), "--tls-key", pki.path("server.key")],
                  "%s: cannot read the certificate file: No such file or directory"
                  % pki.path("nope.pem"))
        self.both(["--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.csr")],
                  "%s: no private key in the key file" % pki.path("server.csr"))

    def test_client_ca_must_vouch_for_the_server(self):
        self.both(tls_args(client_ca="other"),
                  "%s: the certificate does not verify against %s plus the system's trust "
                  "store: unable to get local issuer certificate" % (
                      pki.path("server.pem"), pki.path("other.pem")))

    def test_flags_need_each_other(self):
        r = run_cli("check", "--tls-cert", pki.path("server.pem"), svc.path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--tls-cert needs --tls-key (or tls.key in the config)", r.stderr)

    def test_config_section(self):
        # paths relative to the config file's directory
        d = tempfile.mkdtemp(prefix="mw-e2e-tls-cfg-", dir=tmp)
        cfg = os.path.join(d, "moonwire.yaml")
        with open(cfg, "w") as f:
            f.write("tls:\n  cert: ../server.pem\n  key: ../server.key\n"
                    "  client_ca: ../ca.pem\n  require_client_cert: true\n")
        r = run_cli("check", "-c", cfg, svc.path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("tls: %s (CN=localhost, expires " % pki.path("server.pem"), r.stdout)
        self.assertIn("; client certificates required", r.stdout)
        # a flag replaces its key: here with the expired certificate
        r = run_cli("check", "-c", cfg, "--tls-cert", pki.path("expired.pem"),
                    "--tls-key", pki.path("expired.key"), svc.path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("expired.pem: the certificate (CN=localhost) has expired", r.stderr)
        with open(cfg, "w") as f:
            f.write("tls:\n  cert: server.pem\n  require_client_cert: true\n")
        r = run_cli("check", "-c", cfg, svc.path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(cfg + ":2:3: tls.cert needs tls.key", r.stderr)


class Rotation(mwtest.TestCase):
    """The certificate files replaced while clients keep connecting, the way
    a Kubernetes secret volume does it: tls.crt and tls.key are links into
    ..data, itself a link to a directory, swapped by a rename."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mw-e2e-tls-live-", dir=tmp)
        self.version("v1", "server.pem", "server.key")
        os.symlink("v1", os.path.join(self.dir, "..data"))
        for f in ("tls.crt", "tls.key"):
            os.symlink(os.path.join("..data", f), os.path.join(self.dir, f))

    def version(self, name, cert, key):
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        shutil.copy(pki.path(cert), os.path.join(d, "tls.crt"))
        if key.endswith(".key"):
            shutil.copy(pki.path(key), os.path.join(d, "tls.key"))
        else:
            with open(os.path.join(d, "tls.key"), "w") as f:
                f.write(key)

    def swap(self, name):
        tmp_link = os.path.join(self.dir, "..data_tmp")
        os.symlink(name, tmp_link)
        os.rename(tmp_link, os.path.join(self.dir, "..data"))
        return time.monotonic()

    def wait_for_cert(self, port, want, limit=5.0 * mwtest.SLOW, host="127.0.0.1"):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if presented_cert(port, host) == want:
                return time.monotonic()
            time.sleep(0.01)
        return None

    def test_rotation_under_traffic(self):
        args = ["--tls-cert", os.path.join(self.dir, "tls.crt"),
                "--tls-key", os.path.join(self.dir, "tls.key")]
        # two listeners: each must hear of the new certificate
        config = "listen: [127.0.0.1:0, 127.0.0.2:0]\n"
        with Server(svc, args=args, config=config, listen=None) as s:
            deadline = time.monotonic() + 5
            while s.stdout().count("listening on ") < 2 and time.monotonic() < deadline:
                time.sleep(0.01)  # the second line may still be on its way
            listeners = [l[len("listening on "):].rsplit(":", 1)
                         for l in s.stdout().splitlines() if l.startswith("listening on ")]
            self.assertEqual([h for h, _ in listeners], ["127.0.0.1", "127.0.0.2"], s.stdout())
            second = (int(listeners[1][1]), "127.0.0.2")
            stop = threading.Event()
            stats = {"ok": 0, "failed": 0, "errors": []}
            trusting_both = creds("both-cas.pem")

            def traffic():
                while not stop.is_set():
                    try:
                        self.assertTrue(who(s, trusting_both).tls)
                        stats["ok"] += 1
                    except Exception as e:  # counted; the test fails on any
                        stats["failed"] += 1
                        stats["errors"].append(repr(e)[:300])

            t = threading.Thread(target=traffic, daemon=True)
            t.start()
            try:
                deadline = time.monotonic() + 10 * mwtest.SLOW
                while stats["ok"] < 20 and not stats["failed"] and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertGreaterEqual(stats["ok"], 20, "\n".join(stats["errors"][:5]))
                self.assertEqual(presented_cert(s.port), der("server.pem"))
                self.version("v2", "server2.pem", "server2.key")
                before = stats["ok"]
                swapped = self.swap("v2")
                seen = self.wait_for_cert(s.port, der("server2.pem"))
                self.assertIsNotNone(seen, "the new certificate never showed\n" + s.logs())
                took = seen - swapped
                self.assertIsNotNone(self.wait_for_cert(second[0], der("server2.pem"), 1.5,
                                                        second[1]),
                                     "the second listener kept the old certificate")
                self.assertTrue(s.wait_log("tls: certificate reloaded from %s: CN=localhost"
                                           % os.path.join(self.dir, "tls.crt")), s.logs())
                time.sleep(0.3)
                during = stats["ok"] - before
                # a client trusting only the new CA now gets in
                self.assertTrue(who(s, creds("ca2.pem")).tls)

                # a broken replacement: garbage for a key; the certificate in
                # use stays, and the problem is logged once
                self.version("v3", "server.pem", "garbage, not a key\n")
                self.swap("v3")
                problem = ("tls: the replaced files cannot be used; still serving CN=localhost")
                self.assertTrue(s.wait_log(problem), s.logs())
                time.sleep(1.3)  # past the next look at the files
                self.assertEqual(presented_cert(s.port), der("server2.pem"))
                self.assertEqual(presented_cert(*second), der("server2.pem"))
                self.assertEqual(s.logs().count(problem), 1, s.logs())
                self.assertIn("%s: no private key in the key file"
                              % os.path.join(self.dir, "tls.key"), s.logs())
            finally:
                stop.set()
                t.join(30)
            self.assertEqual(stats["failed"], 0, "\n".join(stats["errors"][:5]))
            print("\n  rotation: new certificate at handshakes %.0f ms after the swap (the "
                  "files are looked at once a second); "
                  "%d calls on fresh connections meanwhile and after (%d in all), "
                  "%d failed" % (took * 1000, during, stats["ok"], stats["failed"]))


class BufCurlTLS(mwtest.TestCase):
    """buf curl through reflection over TLS and mTLS, as a user runs it."""

    def curl(self, server, *args, client=True):
        cmd = [mwtest.tool("buf"), "curl", "--protocol", "grpc", "--cacert", pki.path("ca.pem")]
        if client:
            cmd += ["--cert", pki.path("client.pem"), "--key", pki.path("client.key")]
        cmd += list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def test_list_and_call_helloworld(self):
        hello = mwtest.example("helloworld")
        for config, client in ((None, False), (mtls_config(), True)):
            args = tls_args() if config is None else ()
            with Server(hello, config=config, args=args) as s:
                base = "https://localhost:%d" % s.port
                r = self.curl(s, "--list-services", base, client=client)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("helloworld.Greeter", r.stdout.split())
                r = self.curl(s, "-d", '{"name": "tls"}', base + "/helloworld.Greeter/SayHello",
                              client=client)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout), {"message": "Hello tls"})
                if client:
                    r = self.curl(s, "--list-services", base, client=False)
                    self.assertNotEqual(r.returncode, 0, "mTLS let a client without a certificate in")


class InteropTLS(test_interop.Interop):
    """gRPC's interop cases (test_interop.py) over TLS with a client
    certificate."""

    @classmethod
    def serve(cls):
        # the example's own config, with the tls section added
        with open(os.path.join(test_interop.INTEROP, "moonwire.yaml")) as f:
            config = f.read() + mtls_config()
        server = Server(test_interop.INTEROP, config=config).start()
        ch = grpc.secure_channel(server.target(), creds(client="client"))
        server._channels.append(ch)
        return server, ch


if __name__ == "__main__":
    mwtest.main()
