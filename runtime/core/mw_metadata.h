/* Response metadata (headers, trailers) as gRPC core takes it, with the
 * checks a key and a value must pass: lowercase keys of letters, digits,
 * '-', '_' and '.', none reserved for gRPC ("grpc-..."), and printable ASCII
 * values unless the key ends in -bin. */
#ifndef MW_METADATA_H
#define MW_METADATA_H

#include <stddef.h>

#include <grpc/grpc.h>

typedef struct mw_md_list {
  grpc_metadata *v; /* owned; keys and values are owned slices */
  size_t n, cap;
  size_t bytes; /* the entries' size as HTTP/2 counts it (RFC 7540 6.5.2:
                   key + value + 32 each; -bin values as base64) */
} mw_md_list;

/* Appends a copy of k: v. Returns 0, or -1 with a message in err when the
 * key or value is not valid, when the list would grow past max_bytes (0: no
 * limit; `what` names the list in the message), or when
 * memory ran out. */
int mw_md_list_add(mw_md_list *l, const char *k, size_t kl, const char *v,
                   size_t vl, size_t max_bytes, const char *what, char *err,
                   size_t errlen);
/* The same for an entry of the runtime's own under a reserved key (the
 * grpc-status-details-bin trailer): the key is not checked, the size is. */
int mw_md_list_add_reserved(mw_md_list *l, const char *k, size_t kl, const char *v,
                            size_t vl, size_t max_bytes, const char *what,
                            char *err, size_t errlen);
/* Frees the entries; the list may be reused. Safe to call twice. */
void mw_md_list_free(mw_md_list *l);

#endif
