"""REST rules (google.api.http options and the config's http.rules) are
compiled with every generation: `moonwire check` and `serve` accept good
ones and refuse wrong ones with a message naming the method and the rule.
(Serving the routes is the HTTP listener's; its tests send the requests.)"""
import os
import subprocess
import unittest

import mwtest
from mwtest import SOURCE_DIR, run_cli

LIBRARY = open(os.path.join(SOURCE_DIR, "tests", "data", "transcode", "library.proto")).read()

BAD_OPTION = """
syntax = "proto3";
package bad.v1;
import "google/api/annotations.proto";
service Bad {
  rpc Get(Req) returns (Req) {
    option (google.api.http) = {get: "/v1/{nope}"};
  }
}
message Req { string id = 1; }
"""

GOOD_RULES = """
http:
  rules:
    - selector: library.v1.Library.Plain
      get: /v2/plain/{id}
      additional_bindings:
        - post: /v2/plain
          body: "*"
"""

CONFLICT = """
http:
  rules:
    - selector: library.v1.Library.Plain
      get: /v1/shelves/{id}
"""

UNKNOWN = """
http:
  rules:
    - selector: library.v1.Library.Nope
      get: /v2/nope
"""


class RestRules(mwtest.TestCase):
    def check(self, files, config=None):
        if config is not None:
            files = dict(files, **{"cfg.yaml": config})
        d = self.service_dir(files)
        args = ["check"] + (["-c", d.file("cfg.yaml")] if config is not None else []) + [d.path]
        r = run_cli(*args)
        return d, r, r.stdout + r.stderr

    def test_options_and_rules_build(self):
        d, r, out = self.check({"library.proto": LIBRARY}, GOOD_RULES)
        self.assertEqual(r.returncode, 0, out)

    def test_options_alone_build(self):
        d, r, out = self.check({"library.proto": LIBRARY})
        self.assertEqual(r.returncode, 0, out)

    def test_conflict_names_both_methods(self):
        d, r, out = self.check({"library.proto": LIBRARY}, CONFLICT)
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("cfg.yaml: http rules: GET /v1/{name=shelves/*} (library.v1.Library.GetShelf, "
                      "option) and GET /v1/shelves/{id} (library.v1.Library.Plain, config) match "
                      "the same requests", out)

    def test_unknown_selector(self):
        d, r, out = self.check({"library.proto": LIBRARY}, UNKNOWN)
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("http.rules[0]: selector 'library.v1.Library.Nope' names no served method",
                      out)

    def test_bad_option(self):
        d, r, out = self.check({"bad.proto": BAD_OPTION})
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("http rule of bad.v1.Bad.Get (option): template '/v1/{nope}': variable "
                      "'nope': a field the message lacks", out)
        try:
            s = run_cli("serve", "--listen", "127.0.0.1:0", d.path, timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("moonwire serve kept running with a wrong http rule")
        self.assertNotEqual(s.returncode, 0)
        self.assertIn("variable 'nope'", s.stdout + s.stderr)


class LibraryService(mwtest.TestCase):
    """tests/data/transcode (the transcoder's proto, its handlers) served
    over gRPC: the service the HTTP listener's REST tests call."""

    def test_serves(self):
        import grpc
        data = os.path.join(SOURCE_DIR, "tests", "data", "transcode")
        protos = mwtest.Protos(data, includes=[os.path.join(SOURCE_DIR, "proto")])
        with mwtest.Server(data, config="workers: 1\n") as srv:
            ch = srv.channel()
            shelf = protos.unary(ch, "/library.v1.Library/GetShelf")(
                protos.msg("library.v1.GetShelfRequest")(name="shelves/1"))
            self.assertEqual(shelf.theme, "fiction")
            book = protos.unary(ch, "/library.v1.Library/CreateBook")(
                protos.msg("library.v1.CreateBookRequest")(
                    parent="shelves/1", book={"title": "Dune", "genre": 1}))
            self.assertEqual(book.name, "shelves/1/books/1")
            listed = protos.unary(ch, "/library.v1.Library/ListBooks")(
                protos.msg("library.v1.ListBooksRequest")(parent="shelves/1"))
            self.assertEqual([b.title for b in listed.books], ["Dune"])
            with self.assertRaises(grpc.RpcError) as cm:
                protos.unary(ch, "/library.v1.Library/GetShelf")(
                    protos.msg("library.v1.GetShelfRequest")(name="shelves/9"))
            self.assertStatus(cm, grpc.StatusCode.NOT_FOUND, "no shelf shelves/9")


if __name__ == "__main__":
    unittest.main()
