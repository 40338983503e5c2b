/* Schema: .proto files compiled by protoc into descriptor sets at start-up
 * (and at each reload), plus precompiled sets, loaded into one upb_DefPool. */
#ifndef MW_SCHEMA_H
#define MW_SCHEMA_H

#include <stddef.h>

#include "base/mw_diag.h"
#include "upb/def.h"

typedef struct mw_schema mw_schema;

typedef struct mw_schema_input {
  /* Service directories: every *.proto below each (recursively; names are
   * relative to the directory, which is also an include path) and every
   * *.pb / *.protoset file (serialized FileDescriptorSet) below it. */
  const char *const *dirs;
  size_t n_dirs;
  /* Extra include paths for imports (config proto_path). protoc's own
   * well-known types and the project's proto/ are always included. */
  const char *const *proto_path;
  size_t n_proto_path;
  /* .proto names to compile from the proto_path (config `protos`), served
   * like a service directory's own files. */
  const char *const *protos;
  size_t n_protos;
} mw_schema_input;

/* Compiles and loads everything, then the google.rpc error types (below).
 * On any problem (protoc's messages keep their file:line:column) returns
 * NULL and fills diag. */
mw_schema *mw_schema_load(const mw_schema_input *in, mw_diag *diag);

/* Adds a serialized google.protobuf.FileDescriptorSet; files already in the
 * pool with the same name are skipped. Returns 0 or -1 with diag filled;
 * origin names the source in messages. */
int mw_schema_add_set(mw_schema *s, const char *data, size_t len,
                      const char *origin, mw_diag *diag);

/* Adds google.rpc.Status and the standard error details
 * (google/rpc/status.proto, error_details.proto and their imports, from a
 * descriptor set compiled into the binary) unless the pool has them: files
 * of the same name already loaded (a service's own copy) are kept. Every
 * loaded schema has them, so rich errors need no configuration. Returns 0,
 * or -1 with diag filled (another file defining google.rpc.Status). */
int mw_schema_add_rpc_types(mw_schema *s, mw_diag *diag);

/* An empty schema (for tests and for mw_schema_add_set). */
mw_schema *mw_schema_new(void);

const upb_DefPool *mw_schema_pool(const mw_schema *s);

/* The services defined by the files loaded from the inputs (not by their
 * imports from include paths), in load order. */
size_t mw_schema_service_count(const mw_schema *s);
const upb_ServiceDef *mw_schema_service(const mw_schema *s, size_t i);

/* Files that went into the schema (.proto and descriptor sets), for the
 * reload watcher. */
size_t mw_schema_file_count(const mw_schema *s);
const char *mw_schema_file(const mw_schema *s, size_t i);

/* Every file in the pool (imports included), by the name others import it
 * by, in load order; and its FileDescriptorProto as loaded (serialized;
 * owned by the schema), or NULL for a name the pool lacks. For reflection. */
size_t mw_schema_pool_file_count(const mw_schema *s);
const char *mw_schema_pool_file(const mw_schema *s, size_t i);
const char *mw_schema_file_proto(const mw_schema *s, const char *name, size_t *len);

/* Runs protoc over the given .proto files (names relative to one of the
 * include paths) and returns the serialized descriptor set (malloc'd, *len
 * set) or NULL with protoc's messages in diag. */
char *mw_protoc_compile(const char *const *files, size_t n_files,
                        const char *const *includes, size_t n_includes,
                        size_t *len, mw_diag *diag);

/* Frees the schema. Its pool goes only after mw_schema_epoch_bump(), so
 * that nothing cached by a message's address (the codec's plans) can be
 * taken for a message of a later pool at the same address. */
void mw_schema_free(mw_schema *s);

/* A number that changes before any schema's pool is freed: what was cached
 * for a upb_MessageDef's address while it had one value is to be built
 * again once it has another (an address of a freed pool may come back in a
 * later one). Read from any thread. */
unsigned mw_schema_epoch(void);

/* Changes mw_schema_epoch(): mw_schema_free calls it, and so must whoever
 * frees a upb_DefPool of their own that went through the codec while a Lua
 * state that saw it lives on. */
void mw_schema_epoch_bump(void);

#endif
