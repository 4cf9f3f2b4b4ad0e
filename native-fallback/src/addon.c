/* sectunnel native addon entry: batched AEAD (aead.c), TAP devices (tap.c)
 * and batched UDP (udp.c). Every function here has a TypeScript twin in src/
 * that is used when the addon is absent (TAP creation excepted). */
#include "addon.h"

#include <stdio.h>
#include <string.h>

napi_value st_throw(napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

napi_value st_throw_errno(napi_env env, const char *what, int err) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s: %s (errno %d)", what, strerror(err), err);
  napi_throw_error(env, "ST_NATIVE_ERRNO", buf);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  if (st_aead_init(env, exports) != napi_ok) return NULL;
  if (st_tap_init(env, exports) != napi_ok) return NULL;
  if (st_udp_init(env, exports) != napi_ok) return NULL;
  if (st_packet_init(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
