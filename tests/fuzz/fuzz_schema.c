/* Descriptor sets from arbitrary bytes (mw_schema_add_set, as a service
 * directory's .pb files are read): never a crash or a leak; a refused set
 * says why; what loads can be walked and looked up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema/mw_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mw_schema *s = mw_schema_new();
  if (!s) return 0;
  mw_diag d = {0};
  int rc = mw_schema_add_set(s, (const char *)data, size, "fuzz.pb", &d);
  if (rc != 0 && mw_diag_count(&d) == 0 && d.dropped == 0) abort();
  if (rc == 0) {
    /* The same set again: every file is there already. */
    mw_diag d2 = {0};
    if (mw_schema_add_set(s, (const char *)data, size, "fuzz.pb", &d2) != 0) abort();
    mw_diag_free(&d2);
  }
  for (size_t i = 0; i < mw_schema_service_count(s); i++) {
    const upb_ServiceDef *sv = mw_schema_service(s, i);
    for (int j = 0; j < upb_ServiceDef_MethodCount(sv); j++) {
      const upb_MethodDef *m = upb_ServiceDef_Method(sv, j);
      if (!upb_MethodDef_InputType(m) || !upb_MethodDef_OutputType(m)) abort();
    }
  }
  for (size_t i = 0; i < mw_schema_pool_file_count(s); i++) {
    size_t len;
    const char *name = mw_schema_pool_file(s, i);
    if (name && !mw_schema_file_proto(s, name, &len)) abort();
  }
  mw_diag_free(&d);
  mw_schema_free(s);
  return 0;
}
