/* sectunnel native addon: shared declarations of the module parts.
 * Each part registers its functions on the exports object. */
#ifndef SECTUNNEL_ADDON_H
#define SECTUNNEL_ADDON_H

#define NAPI_VERSION 8
#include <node_api.h>

/* Throw a JS Error with a stable code ("ST_NATIVE_...") and return NULL. */
napi_value st_throw(napi_env env, const char *code, const char *msg);
/* Throw an Error whose message names the failing call and errno's text. */
napi_value st_throw_errno(napi_env env, const char *what, int err);

napi_status st_aead_init(napi_env env, napi_value exports);
napi_status st_tap_init(napi_env env, napi_value exports);
napi_status st_udp_init(napi_env env, napi_value exports);
napi_status st_packet_init(napi_env env, napi_value exports);

#endif
