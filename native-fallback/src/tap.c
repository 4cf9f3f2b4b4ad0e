/* Placeholder until the tap part lands; registers nothing. */
#include "addon.h"
napi_status st_tap_init(napi_env env, napi_value exports) { return napi_ok; }
