/* moonwire.core: the C primitives the Lua library (lua/moonwire/) is
 * written over. Each part is opened by the file that implements it. */
#include <lauxlib.h>

#include "lua/l_api.h"

int mw_lcore_open(lua_State *L) {
  lua_newtable(L); /* [core] */
  mw_lstatus_open(L);
  mw_lctx_open(L);
  mw_lstream_open(L);
  mw_lsleep_open(L);
  mw_lshield_open(L);
  mw_llog_open(L);
  mw_lschema_open(L);
  mw_lhandoff_open(L);
  mw_lhealth_open(L);
  mw_lmetrics_open(L);
  mw_ldrain_open(L);
  mw_lreflect_open(L);
  mw_lintercept_open(L);
  mw_ljson_open(L);
  mw_ljws_open(L);
  mw_lratelimit_open(L);
  mw_lshared_open(L);
  mw_lsessions_open(L);
  mw_lclient_open(L);
  mw_lidem_open(L);
  mw_ltrace_open(L);
  mw_lyaml_open(L);
  mw_lstub_open(L);
  lua_pushstring(L, MW_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
