/* The YAML config loader over arbitrary text: never a crash or a leak, and
 * a config is either accepted without a message or refused with one. */
#include <stdint.h>
#include <stdlib.h>

#include "base/mw_log.h"
#include "config/mw_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mw_config c;
  mw_diag d = {0};
  mw_config_init(&c);
  /* Relative paths resolve against a directory that holds nothing. */
  int rc = mw_config_load_string(&c, (const char *)data, size, "fuzz.yaml",
                                 "/nonexistent", &d);
  size_t n = mw_diag_count(&d);
  if ((rc == 0) != (n == 0 && d.dropped == 0)) abort();
  if (rc != 0 && rc != -1) abort();
  mw_diag_free(&d);
  mw_config_free(&c);
  return 0;
}
