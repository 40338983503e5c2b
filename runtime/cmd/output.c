/* The client commands' diagnostics and indented JSON (output.h). */
#include "cmd/output.h"

#include <string.h>

#include "base/mw_buf.h"
#include "base/mw_status.h"
#include "cmd/client.h"

static void newline(FILE *f, int depth) {
  fputc('\n', f);
  for (int i = 0; i < depth; i++) fputs("  ", f);
}

void mw_out_json_pretty(FILE *f, const char *json, size_t len) {
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = json[i];
    if (in_str) {
      fputc(ch, f);
      if (ch == '\\' && i + 1 < len) fputc(json[++i], f);
      else if (ch == '"') in_str = 0;
      continue;
    }
    switch (ch) {
      case '"':
        in_str = 1;
        fputc(ch, f);
        break;
      case '{':
      case '[':
        fputc(ch, f);
        /* {} and [] stay on one line */
        if (i + 1 < len && (json[i + 1] == '}' || json[i + 1] == ']')) {
          fputc(json[++i], f);
        } else {
          newline(f, ++depth);
        }
        break;
      case '}':
      case ']':
        newline(f, --depth);
        fputc(ch, f);
        break;
      case ',':
        fputc(ch, f);
        newline(f, depth);
        break;
      case ':': fputs(": ", f); break;
      case ' ':
      case '\n':
      case '\t':
      case '\r': break;
      default: fputc(ch, f);
    }
  }
  fputc('\n', f);
}

static int is_bin(const char *k, size_t kl) { return kl > 4 && !memcmp(k + kl - 4, "-bin", 4); }

static void one(const char *k, size_t kl, const char *v, size_t vl) {
  mw_buf b = {0};
  if (is_bin(k, kl)) mw_cli_base64(&b, v, vl);
  else mw_buf_put(&b, v, vl);
  fprintf(stderr, "  %.*s: %s\n", (int)kl, k, b.p ? b.p : "");
  mw_buf_free(&b);
}

void mw_out_request_md(const mw_rpc_md *md, size_t n) {
  fprintf(stderr, "request metadata:%s\n", n ? "" : " (none)");
  for (size_t i = 0; i < n; i++) one(md[i].key, strlen(md[i].key), md[i].val, md[i].len);
}

void mw_out_md(const mw_rpc *r, int trailers) {
  size_t n = trailers ? mw_rpc_trailer_count(r) : mw_rpc_header_count(r);
  fprintf(stderr, "response %s:%s\n", trailers ? "trailers" : "headers", n ? "" : " (none)");
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_rpc_md_at(r, trailers, i, &k, &kl, &v, &vl);
    one(k, kl, v, vl);
  }
}

void mw_out_status(const mw_rpc *r, int code) {
  fprintf(stderr, "ERROR: %s (%d): %s\n", mw_status_name(code), code, mw_rpc_message(r));
  const char *why = mw_rpc_error_string(r);
  /* core's description repeats the message for the server's own statuses;
   * it says more only for failures of the transport. */
  if (why && code == MW_STATUS_UNAVAILABLE && !strstr(why, mw_rpc_message(r)))
    fprintf(stderr, "  %s\n", why);
}
