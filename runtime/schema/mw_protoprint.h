/* A .proto printer over upb defs: services, methods, messages, enums and
 * whole files written back in .proto syntax, for people (moonwire describe
 * prints what a server's reflection sent; any module can show a schema the
 * same way). What descriptors do not keep is not printed: comments,
 * reserved ranges, custom options. Type names are written the shortest way
 * that resolves to the same type from where they appear (as one writes them
 * in a .proto), falling back to the fully qualified ".pkg.Type".
 *
 * Each function appends to b (base/mw_buf.h; check b->oom once at the
 * end), indented by indent levels of two spaces, one declaration a line. */
#ifndef MW_PROTOPRINT_H
#define MW_PROTOPRINT_H

#include "base/mw_buf.h"
#include "upb/def.h"

/* `message Name { ... }` with its fields, oneofs, maps, nested messages,
 * enums, extension ranges and extensions declared inside it. */
void mw_protoprint_message(mw_buf *b, const upb_MessageDef *m, int indent);
/* `enum Name { ... }`. */
void mw_protoprint_enum(mw_buf *b, const upb_EnumDef *e, int indent);
/* `rpc Name(Req) returns (stream Resp);` */
void mw_protoprint_method(mw_buf *b, const upb_MethodDef *m, int indent);
/* `service Name { ... }` with its methods. */
void mw_protoprint_service(mw_buf *b, const upb_ServiceDef *s, int indent);
/* A whole file: syntax, package, imports, then its declarations. */
void mw_protoprint_file(mw_buf *b, const upb_FileDef *f);

#endif
