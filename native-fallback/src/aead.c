/* Placeholder until the aead part lands; registers nothing. */
#include "addon.h"
napi_status st_aead_init(napi_env env, napi_value exports) { return napi_ok; }
