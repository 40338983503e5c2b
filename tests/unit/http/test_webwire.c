/* The wire helpers of gRPC-Web and Connect (http/mw_webwire.h): content
 * types, envelopes, base64 (padded, unpadded, chunked text bodies),
 * timeouts, the code tables and the Connect error JSON with details. */
#include <stdlib.h>
#include <string.h>

#include "http/mw_webwire.h"
#include "mw_test.h"

static void test_classify(void) {
  mw_test_current = "classify";
  int json;
  struct {
    const char *ct;
    mw_web_kind kind;
    int json;
  } cases[] = {
      {"application/grpc-web", MW_WEB_GRPC_WEB, 0},
      {"application/grpc-web+proto", MW_WEB_GRPC_WEB, 0},
      {"Application/GRPC-Web+Proto; charset=utf-8", MW_WEB_GRPC_WEB, 0},
      {"application/grpc-web+json", MW_WEB_GRPC_WEB, 1},
      {"application/grpc-web-text", MW_WEB_GRPC_WEB_TEXT, 0},
      {"application/grpc-web-text+proto", MW_WEB_GRPC_WEB_TEXT, 0},
      {"application/proto", MW_WEB_CONNECT_UNARY, 0},
      {"application/json; charset=utf-8", MW_WEB_CONNECT_UNARY, 1},
      {"application/connect+proto", MW_WEB_CONNECT_STREAM, 0},
      {"application/connect+json", MW_WEB_CONNECT_STREAM, 1},
      {"application/grpc", MW_WEB_NONE, 0},
      {"image/jpeg", MW_WEB_NONE, 0},
      {"application/grpc-web-textx", MW_WEB_NONE, 0},
      {"", MW_WEB_NONE, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mw_test_current = cases[i].ct;
    MW_CHECK_INT(mw_web_classify(cases[i].ct, strlen(cases[i].ct), &json), cases[i].kind);
    MW_CHECK_INT(json, cases[i].json);
  }
  MW_CHECK_INT(mw_web_classify(NULL, 0, &json), MW_WEB_NONE);
}

static void test_frames(void) {
  mw_test_current = "frames";
  mw_buf b = {0};
  mw_web_put_frame(&b, 0, "abc", 3);
  mw_web_put_frame(&b, 1, "", 0);
  mw_web_put_frame(&b, 0x80, "xy", 2);
  MW_CHECK_INT(b.len, 5 + 3 + 5 + 5 + 2);
  mw_web_frame f[4];
  char err[128];
  MW_CHECK_INT(mw_web_frames(b.p, b.len, f, 4, err, sizeof err), 3);
  MW_CHECK_INT(mw_web_frames(b.p, b.len, NULL, 4, err, sizeof err), 3);
  MW_CHECK_INT(f[0].flags, 0);
  MW_CHECK_INT(f[0].len, 3);
  MW_CHECK(memcmp(f[0].data, "abc", 3) == 0);
  MW_CHECK_INT(f[1].flags, 1);
  MW_CHECK_INT(f[1].len, 0);
  MW_CHECK_INT(f[2].flags, 0x80);
  MW_CHECK_INT(mw_web_frames(b.p, b.len, f, 2, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "more than 2");
  MW_CHECK_INT(mw_web_frames(b.p, 3, f, 4, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "5-byte prefix");
  MW_CHECK_INT(mw_web_frames(b.p, 6, f, 4, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "says 3 bytes but 1 follow");
  MW_CHECK_INT(mw_web_frames("", 0, f, 4, err, sizeof err), 0);
  /* big-endian length */
  mw_buf big = {0};
  char *payload = calloc(1, 70000);
  mw_web_put_frame(&big, 0, payload, 70000);
  MW_CHECK((unsigned char)big.p[2] == 0x01 && (unsigned char)big.p[3] == 0x11 &&
           (unsigned char)big.p[4] == 0x70);
  MW_CHECK_INT(mw_web_frames(big.p, big.len, f, 1, err, sizeof err), 1);
  MW_CHECK_INT(f[0].len, 70000);
  free(payload);
  mw_buf_free(&big);
  mw_buf_free(&b);
}

static void test_base64(void) {
  mw_test_current = "base64";
  struct {
    const char *raw, *padded, *unpadded;
  } v[] = {{"", "", ""},       {"f", "Zg==", "Zg"},       {"fo", "Zm8=", "Zm8"},
           {"foo", "Zm9v", "Zm9v"}, {"foob", "Zm9vYg==", "Zm9vYg"}, {"\xff\xfe", "//4=", "//4"}};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    mw_buf b = {0};
    mw_web_b64_encode(&b, (const unsigned char *)v[i].raw, strlen(v[i].raw), 1);
    MW_CHECK_STR(b.p ? b.p : "", v[i].padded);
    mw_buf_free(&b);
    mw_web_b64_encode(&b, (const unsigned char *)v[i].raw, strlen(v[i].raw), 0);
    MW_CHECK_STR(b.p ? b.p : "", v[i].unpadded);
    mw_buf_free(&b);
    unsigned char out[16];
    long n = mw_web_b64_decode(v[i].padded, strlen(v[i].padded), out, 0);
    MW_CHECK_INT(n, strlen(v[i].raw));
    MW_CHECK(n >= 0 && memcmp(out, v[i].raw, (size_t)n) == 0);
    MW_CHECK_INT(mw_web_b64_decode(v[i].unpadded, strlen(v[i].unpadded), out, 1),
                 strlen(v[i].raw));
  }
  unsigned char out[64];
  /* strict: unpadded refused unless allowed, bad characters, bad lengths,
   * non-zero leftover bits */
  MW_CHECK_INT(mw_web_b64_decode("Zg", 2, out, 0), -1);
  MW_CHECK_INT(mw_web_b64_decode("Zm9v*A==", 8, out, 0), -1);
  MW_CHECK_INT(mw_web_b64_decode("Zm9vY", 5, out, 1), -1);
  MW_CHECK_INT(mw_web_b64_decode("Zh==", 4, out, 0), -1);
  MW_CHECK_INT(mw_web_b64_decode("Zm 9", 4, out, 0), -1);
  /* text bodies: several padded chunks one after another */
  const char chunks[] = "Zg==Zm8=Zm9v";
  MW_CHECK_INT(mw_web_b64_decode_chunks(chunks, strlen(chunks), out), 6);
  MW_CHECK(memcmp(out, "ffofoo", 6) == 0);
  MW_CHECK_INT(mw_web_b64_decode_chunks("Zg=", 3, out), -1);
  MW_CHECK_INT(mw_web_b64_decode_chunks("Zg==Z", 5, out), -1);
  MW_CHECK_INT(mw_web_b64_decode_chunks("Zg==!!!!", 8, out), -1);
  MW_CHECK_INT(mw_web_b64_decode_chunks("", 0, out), 0);
}

static void test_timeouts(void) {
  mw_test_current = "timeouts";
  MW_CHECK(mw_web_grpc_timeout("1S", 2) == 1.0);
  MW_CHECK(mw_web_grpc_timeout("250m", 4) == 0.25);
  MW_CHECK(mw_web_grpc_timeout("2M", 2) == 120.0);
  MW_CHECK(mw_web_grpc_timeout("1H", 2) == 3600.0);
  MW_CHECK(mw_web_grpc_timeout("5000u", 5) == 0.005);
  MW_CHECK(mw_web_grpc_timeout("7n", 2) > 0);
  MW_CHECK(mw_web_grpc_timeout("12345678S", 9) == 12345678.0);
  MW_CHECK(mw_web_grpc_timeout("123456789S", 10) < 0); /* 9 digits */
  MW_CHECK(mw_web_grpc_timeout("S", 1) < 0);
  MW_CHECK(mw_web_grpc_timeout("10x", 3) < 0);
  MW_CHECK(mw_web_grpc_timeout("-1S", 3) < 0);
  MW_CHECK(mw_web_connect_timeout("1500", 4) == 1.5);
  MW_CHECK(mw_web_connect_timeout("0", 1) == 0);
  MW_CHECK(mw_web_connect_timeout("9999999999", 10) > 0);
  MW_CHECK(mw_web_connect_timeout("12345678901", 11) < 0); /* 11 digits */
  MW_CHECK(mw_web_connect_timeout("1.5", 3) < 0);
  MW_CHECK(mw_web_connect_timeout("", 0) < 0);
}

static void test_codes(void) {
  mw_test_current = "codes";
  /* the google/rpc/code.proto table */
  const int http[17] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                        400, 409, 400, 501, 500, 503, 500, 401};
  for (int c = 1; c < 17; c++) MW_CHECK_INT(mw_web_code_http(c), http[c]);
  MW_CHECK_STR(mw_web_code_name(1), "canceled");
  MW_CHECK_STR(mw_web_code_name(4), "deadline_exceeded");
  MW_CHECK_STR(mw_web_code_name(12), "unimplemented");
  MW_CHECK_STR(mw_web_code_name(16), "unauthenticated");
  MW_CHECK_STR(mw_web_code_name(99), "unknown");
  mw_buf b = {0};
  mw_web_percent_encode(&b, "a b%c\n\xc3\xa9", 8);
  MW_CHECK_STR(b.p, "a b%25c%0A%C3%A9");
  mw_buf_free(&b);
}

static void test_accepted_coding(void) {
  mw_test_current = "accepted coding";
  struct {
    const char *v;
    int want;
  } cases[] = {{"gzip", 2},
               {"deflate", 1},
               {"gzip, deflate, br", 2},
               {"br, deflate", 1},
               {"identity", 0},
               {"", 0},
               {"GZIP", 2},
               {" gzip ;q=0.8", 2},
               {"gzip;q=0, deflate", 1},
               {"gzip; q=0.000", 0},
               {"gzip;q=0.001", 2},
               {"gzipx, xgzip", 0},
               {"*", 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mw_test_current = cases[i].v;
    MW_CHECK_INT(mw_web_accepted_coding(cases[i].v, strlen(cases[i].v)), cases[i].want);
  }
  MW_CHECK_INT(mw_web_accepted_coding(NULL, 0), 0);
  /* the set, for gRPC-Web's choice of the configured algorithm first */
  MW_CHECK_INT(mw_web_accepted_codings("identity,deflate,gzip", 21), 6);
  MW_CHECK_INT(mw_web_accepted_codings("deflate", 7), 2);
  MW_CHECK_INT(mw_web_accepted_codings("gzip;q=0, deflate", 17), 2);
  MW_CHECK_INT(mw_web_accepted_codings("identity", 8), 0);
  MW_CHECK_INT(mw_web_accepted_codings(NULL, 0), 0);
}

static void test_error_json(void) {
  mw_test_current = "error json";
  mw_buf b = {0};
  mw_web_error_json(&b, 5, "no \"x\"", 6, NULL, 0);
  MW_CHECK_STR(b.p, "{\"code\":\"not_found\",\"message\":\"no \\\"x\\\"\"}");
  mw_buf_free(&b);
  mw_web_error_json(&b, 13, "", 0, NULL, 0);
  MW_CHECK_STR(b.p, "{\"code\":\"internal\"}");
  mw_buf_free(&b);
  /* google.rpc.Status{code=3, message="m", details=[Any{type_url=
   * "type.googleapis.com/google.rpc.BadRequest", value="\x01\x02"}]} */
  static const char url[] = "type.googleapis.com/google.rpc.BadRequest";
  unsigned char st[128];
  size_t n = 0, ul = sizeof url - 1;
  st[n++] = 0x08;
  st[n++] = 3;
  st[n++] = 0x12;
  st[n++] = 1;
  st[n++] = 'm';
  st[n++] = 0x1a;
  st[n++] = (unsigned char)(2 + ul + 2 + 2);
  st[n++] = 0x0a;
  st[n++] = (unsigned char)ul;
  memcpy(st + n, url, ul);
  n += ul;
  st[n++] = 0x12;
  st[n++] = 2;
  st[n++] = 1;
  st[n++] = 2;
  mw_web_error_json(&b, 3, "m", 1, (const char *)st, n);
  MW_CHECK_STR(b.p, "{\"code\":\"invalid_argument\",\"message\":\"m\",\"details\":"
                    "[{\"type\":\"google.rpc.BadRequest\",\"value\":\"AQI\"}]}");
  mw_buf_free(&b);
  /* malformed details are left out, not guessed at */
  mw_web_error_json(&b, 3, "m", 1, "\x1a\x7f", 2);
  MW_CHECK_STR(b.p, "{\"code\":\"invalid_argument\",\"message\":\"m\"}");
  mw_buf_free(&b);
}

int main(void) {
  test_classify();
  test_frames();
  test_base64();
  test_timeouts();
  test_codes();
  test_error_json();
  test_accepted_coding();
  return mw_test_done();
}
