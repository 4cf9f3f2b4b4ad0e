/* Placeholder until the udp part lands; registers nothing. */
#include "addon.h"
napi_status st_udp_init(napi_env env, napi_value exports) { return napi_ok; }
