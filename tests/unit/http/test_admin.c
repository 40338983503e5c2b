/* /debug/config's rendering: valid JSON shapes for the sections, paths
 * shown, secrets recognised by name. */
#include <stdlib.h>
#include <string.h>

#include "http/mw_admin.h"
#include "mw_test.h"

static void test_secret_names(void) {
  const char *secret[] = {"token", "jwt_secret", "Password", "hmac", "shared_key",
                          "client_credentials", "private_key", "bearer_token"};
  const char *plain[] = {"key", "cert", "key_file", "private_key_file", "token_path",
                         "listen", "client_ca", "keepalive"};
  for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++) {
    mw_test_current = secret[i];
    MW_CHECK(mw_admin_is_secret(secret[i]));
  }
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    mw_test_current = plain[i];
    MW_CHECK(!mw_admin_is_secret(plain[i]));
  }
}

static void test_config_json(void) {
  mw_config c;
  mw_diag d = {0};
  mw_config_init(&c);
  const char y[] = "workers: 3\n"
                   "admin: {listen: \"127.0.0.1:9\", max_connections: 5}\n"
                   "methods: {\"/a.B/C\": {max_concurrent: 2, interceptors: [access_log]},\n"
                   "          \"/a.B/D\": {idempotency: {key: {field: id}, ttl: 300ms}}}\n"
                   "interceptors:\n"
                   "  - auth: {jwt: {secret: hunter2, audience: [shop]}, leeway: 30s}\n"
                   "  - rate_limit: {rate: 2.5, burst: 4, key: peer, on: true}\n"
                   "tracing: {otlp: \"http://127.0.0.1:4318/v1/traces\", sample: 0.5}\n"
                   "listen: [\"127.0.0.1:1\", \"[::1]:2\"]\n";
  MW_CHECK_INT(mw_config_load_string(&c, y, sizeof y - 1, "t.yaml", "/tmp", &d), 0);
  size_t len;
  char *j = mw_admin_config_json(&c, &len);
  MW_CHECK(j != NULL && strlen(j) == len);
  MW_CHECK_CONTAINS(j, "\"workers\":3");
  MW_CHECK_CONTAINS(j, "\"listen\":[\"127.0.0.1:1\",\"[::1]:2\"]");
  MW_CHECK_CONTAINS(j, "\"admin\":{\"listen\":\"127.0.0.1:9\",\"max_connections\":5,"
                       "\"timeout_ms\":10000}");
  MW_CHECK_CONTAINS(j, "\"methods\":{\"/a.B/C\":{\"max_concurrent\":2,");
  MW_CHECK_CONTAINS(j, "\"deadline_max_ms\":0,\"interceptors\":[{\"access_log\":{}}],"
                       "\"idempotency\":null},");
  /* A method's idempotency options as written. */
  MW_CHECK_CONTAINS(j, "\"interceptors\":[],\"idempotency\":{\"key\":{\"field\":\"id\"},"
                       "\"ttl\":\"300ms\"}}}");
  MW_CHECK_CONTAINS(j, "\"tls\":{\"cert\":null,\"key\":null");
  /* Interceptor options as written, a secret redacted wherever it sits. */
  MW_CHECK_CONTAINS(j, "\"interceptors\":[{\"auth\":{\"jwt\":{\"secret\":\"<redacted>\","
                       "\"audience\":[\"shop\"]},\"leeway\":\"30s\"}},"
                       "{\"rate_limit\":{\"rate\":2.5,\"burst\":4,\"key\":\"peer\",\"on\":true}}]");
  MW_CHECK(strstr(j, "hunter2") == NULL);
  MW_CHECK_CONTAINS(j, "\"tracing\":{\"otlp\":\"http://127.0.0.1:4318/v1/traces\","
                       "\"service_name\":null,\"sample\":0.5,");
  free(j);
  mw_config_free(&c);
  mw_diag_free(&d);
}

int main(void) {
  MW_RUN(test_secret_names);
  MW_RUN(test_config_json);
  return mw_test_done();
}
