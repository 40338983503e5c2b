/* What the client commands print besides their results: JSON indented for
 * a terminal, metadata for -v, a failed call's status. cmd/call.c calls
 * these; stdout carries only responses, everything else goes to stderr. */
#ifndef MW_CMD_OUTPUT_H
#define MW_CMD_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include "cmd/rpc.h"

/* Writes compact JSON (as codec/mw_json.h makes it) indented by two
 * spaces, then a newline. */
void mw_out_json_pretty(FILE *f, const char *json, size_t len);
/* -v: the request metadata about to be sent. */
void mw_out_request_md(const mw_rpc_md *md, size_t n);
/* -v: the response headers (trailers == 0) or trailers; -bin values in
 * base64. */
void mw_out_md(const mw_rpc *r, int trailers);
/* "ERROR: NOT_FOUND (5): message", and core's own description of a
 * transport failure when it says more. */
void mw_out_status(const mw_rpc *r, int code);

#endif
