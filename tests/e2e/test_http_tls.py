"""Client certificates and certificate rotation on the HTTP listener
(http.tls): curl with and without a client certificate when one is required,
the certificate's identity in ctx.auth of a REST call (the names gRPC calls
see), and the files replaced while the server runs: new handshakes get the
new certificate, a connection opened before goes on."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import mwtest
from mwtest import Server
from test_tls import PKI

PROTO = """
syntax = "proto3";
package whotest;
import "google/api/annotations.proto";
message Empty {}
message Who { string protocol = 1; string cn = 2; string spiffe = 3; string subject = 4;
              repeated string dns = 5; bool reused = 6; string transport = 7; bool pem = 8; }
service W {
  rpc Me(Empty) returns (Who) { option (google.api.http) = {get: "/v1/me"}; }
}
"""

LUA = """
local mw = require "moonwire"
local W = mw.service "whotest.W"
function W.Me(req, ctx)
  local a = ctx.auth
  if not a then return {protocol = ctx.protocol, transport = "none"} end
  return {protocol = ctx.protocol, cn = a.common_name, spiffe = a.spiffe_id, subject = a.subject,
          dns = a.dns, reused = a.session_reused, transport = a.transport,
          pem = a.pem ~= nil and a.pem:find("BEGIN CERTIFICATE", 1, true) ~= nil}
end
"""


def setUpModule():
    global pki, tmp, svc
    tmp = tempfile.mkdtemp(prefix="mw-e2e-http-tls-")
    pki = PKI(tmp)
    pki.ca("ca", "Moonwire Test CA")
    pki.issue("server", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth")
    pki.issue("client", "ca", "client-1",
              ["URI:spiffe://moonwire.test/client-1", "DNS:client-1.moonwire.test"], "clientAuth")
    pki.ca("other", "Unrelated CA")
    pki.issue("stranger", "other", "stranger", ["DNS:stranger.test"], "clientAuth")
    pki.ca("ca2", "Moonwire Test CA 2")
    pki.issue("server2", "ca2", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth")
    pki.bundle("both-cas.pem", "ca.pem", "ca2.pem")
    svc = mwtest.ServiceDir({"who.proto": PROTO, "who.lua": LUA})


def tearDownModule():
    svc.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def http_addr(server):
    deadline = time.monotonic() + 10
    while "http listening on " not in server.stdout() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.stdout().split("http listening on ")[1].split()[0]


def curl(port, *args, cacert="ca.pem", path="/v1/me"):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", pki.path(cacert),
                        "--resolve", "localhost:%d:127.0.0.1" % port] + list(args) +
                       ["https://localhost:%d%s" % (port, path)],
                       capture_output=True, text=True, timeout=20)
    return r.returncode, r.stdout, r.stderr


def config(cert, key, client_ca, require):
    return ("http:\n  listen: 127.0.0.1:0\n  tls:\n    cert: %s\n    key: %s\n"
            "    client_ca: %s\n    require_client_cert: %s\n" %
            (cert, key, client_ca, "true" if require else "false"))


def presented_cert(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def der(name):
    return ssl.PEM_cert_to_DER_cert(pki.read(name).decode())


class HttpClientCerts(unittest.TestCase):
    def test_required_client_certificate(self):
        cfg = config(pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"), True)
        with Server(svc.path, config=cfg) as s:
            port = int(http_addr(s).rsplit(":", 1)[1])
            rc, out, err = curl(port, "--cert", pki.path("client.pem"),
                                "--key", pki.path("client.key"))
            self.assertEqual(rc, 0, err)
            got = json.loads(out)
            self.assertEqual(got["protocol"], "rest")
            self.assertEqual(got["transport"], "ssl")
            self.assertEqual(got["cn"], "client-1")
            self.assertEqual(got["spiffe"], "spiffe://moonwire.test/client-1")
            self.assertEqual(got["subject"], "CN=client-1")
            self.assertEqual(got["dns"], ["client-1.moonwire.test"])
            self.assertTrue(got["pem"])
            # a Connect call of the same listener sees the same identity
            rc, out, err = curl(port, "--cert", pki.path("client.pem"),
                                "--key", pki.path("client.key"), "-H",
                                "content-type: application/json", "-d", "{}",
                                path="/whotest.W/Me")
            self.assertEqual(rc, 0, err)
            got = json.loads(out)
            self.assertEqual((got["protocol"], got["cn"]), ("connect", "client-1"))
            # no certificate, or one of another CA: no handshake
            rc, _, err = curl(port)
            self.assertNotEqual(rc, 0)
            rc, _, err = curl(port, "--cert", pki.path("stranger.pem"),
                              "--key", pki.path("stranger.key"))
            self.assertNotEqual(rc, 0)

    def test_optional_client_certificate(self):
        cfg = config(pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"), False)
        with Server(svc.path, config=cfg) as s:
            port = int(http_addr(s).rsplit(":", 1)[1])
            rc, out, err = curl(port)
            self.assertEqual(rc, 0, err)
            got = json.loads(out)
            self.assertEqual(got.get("transport"), "ssl")
            self.assertNotIn("cn", got)
            rc, out, err = curl(port, "--cert", pki.path("client.pem"),
                                "--key", pki.path("client.key"))
            self.assertEqual(json.loads(out)["cn"], "client-1")
            # a certificate the CAs do not vouch for is still refused
            rc, _, _ = curl(port, "--cert", pki.path("stranger.pem"),
                            "--key", pki.path("stranger.key"))
            self.assertNotEqual(rc, 0)

    def test_plaintext_has_no_auth(self):
        with Server(svc.path, config="http: {listen: 127.0.0.1:0}\n") as s:
            addr = http_addr(s)
            r = subprocess.run(["curl", "-sS", "http://%s/v1/me" % addr], capture_output=True,
                               text=True, timeout=20)
            self.assertEqual(json.loads(r.stdout), {"protocol": "rest", "transport": "none"})
            # the internal header cannot be sent from outside to claim a certificate
            fake = "0" * 64 + ";rest;ipv4:6.6.6.6:1;t;" + "QUJD"
            r = subprocess.run(["curl", "-sS", "-H", "mw-loopback: " + fake,
                                "http://%s/v1/me" % addr], capture_output=True, text=True,
                               timeout=20)
            self.assertEqual(json.loads(r.stdout), {"protocol": "rest", "transport": "none"})


class HttpRotation(unittest.TestCase):
    def test_replaced_files_serve_new_handshakes(self):
        d = tempfile.mkdtemp(prefix="live-", dir=tmp)
        for v, cert in (("v1", "server"), ("v2", "server2")):
            os.makedirs(os.path.join(d, v))
            shutil.copy(pki.path(cert + ".pem"), os.path.join(d, v, "tls.crt"))
            shutil.copy(pki.path(cert + ".key"), os.path.join(d, v, "tls.key"))
        os.symlink("v1", os.path.join(d, "..data"))
        for f in ("tls.crt", "tls.key"):
            os.symlink(os.path.join("..data", f), os.path.join(d, f))
        cfg = config(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"),
                     pki.path("both-cas.pem"), True)
        with Server(svc.path, config=cfg) as s:
            port = int(http_addr(s).rsplit(":", 1)[1])
            self.assertEqual(presented_cert(port), der("server.pem"))
            # a connection opened before the swap
            ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
            ctx.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
            import http.client
            old = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=5)
            old.request("GET", "/v1/me")
            self.assertEqual(json.loads(old.getresponse().read())["cn"], "client-1")
            tmp_link = os.path.join(d, "..data_tmp")
            os.symlink("v2", tmp_link)
            os.rename(tmp_link, os.path.join(d, "..data"))
            deadline = time.monotonic() + 5
            while presented_cert(port) != der("server2.pem") and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(presented_cert(port), der("server2.pem"))
            # the old connection goes on with the old certificate
            old.request("GET", "/v1/me")
            self.assertEqual(json.loads(old.getresponse().read())["cn"], "client-1")
            self.assertEqual(old.sock.getpeercert(binary_form=True), der("server.pem"))
            old.close()
            rc, out, err = curl(port, "--cert", pki.path("client.pem"),
                                "--key", pki.path("client.key"), cacert="ca2.pem")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out)["cn"], "client-1")
            s.wait_log("new connections get the certificate")
            # and back, with handshakes in flight as the contexts change: a
            # connection accepted before a rotation still makes its SSL from
            # the context it was accepted with
            os.symlink("v1", tmp_link)
            os.rename(tmp_link, os.path.join(d, "..data"))
            deadline = time.monotonic() + 5
            while presented_cert(port) != der("server.pem") and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(presented_cert(port), der("server.pem"))


if __name__ == "__main__":
    unittest.main()
