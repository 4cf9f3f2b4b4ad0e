/* sectunnel native addon, AEAD part: in-place seal/open with one OpenSSL cipher
 * context per direction per SA, keyed once, one packet or a whole batch per call.
 * Node's own OpenSSL (its binary exports the EVP symbols; headers ship with
 * Node's include/node/openssl), so no extra system library is linked.
 *
 * AES-GCM per RFC 4106 (16-octet ICV), ChaCha20-Poly1305 per RFC 7634:
 * KEYMAT = key ‖ 4-octet salt, nonce = salt ‖ 8-octet IV read from the packet.
 *
 * Per packet: 1. nonce = salt ‖ IV  2. EVP_CipherInit_ex with only the IV (the key
 * schedule stays in the context)  3. AAD  4. in-place update  5. final  6. tag get/set.
 *
 * Exports (the TypeScript twin is src/crypto/native.ts):
 *   aeadCreate(algorithm: string, keymat: Uint8Array) -> handle (external)
 *   aeadSeal(h, data, ivOff, textOff, textLen, aad) -> undefined (throws on a bad span)
 *   aeadOpen(h, data, ivOff, textOff, textLen, aad) -> boolean
 *   aeadSealBatch(h, data, desc: Int32Array, aad: Uint8Array, count) -> undefined
 *   aeadOpenBatch(h, data, desc, aad, count, ok: Uint8Array) -> number authentic
 *   aeadDestroy(h) -> undefined (frees the contexts, key schedules are cleansed)
 * Every offset is checked against the data length here; nothing reads out of bounds.
 */
#include "addon.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define ST_SALT_BYTES 4
#define ST_IV_BYTES 8
#define ST_NONCE_BYTES 12
#define ST_ICV_BYTES 16
#define ST_DESC_STRIDE 4
#define ST_BATCH_AAD_STRIDE 16
#define ST_MAX_KEY_BYTES 32

/* Distinguishes our externals from any other addon's. */
static const napi_type_tag st_aead_tag = {0x7365637475616561ULL, 0x6164616561642d31ULL};

typedef struct {
  EVP_CIPHER_CTX *enc; /* keyed for encryption */
  EVP_CIPHER_CTX *dec; /* keyed for decryption */
  unsigned char nonce[ST_NONCE_BYTES]; /* salt ‖ IV; the IV half is rewritten per packet */
  int destroyed;
} st_aead;

typedef struct {
  const char *name;
  int key_bytes;
  const EVP_CIPHER *(*cipher)(void);
} st_alg;

static const st_alg st_algs[] = {
    {"aes-gcm-128", 16, EVP_aes_128_gcm},
    {"aes-gcm-192", 24, EVP_aes_192_gcm},
    {"aes-gcm-256", 32, EVP_aes_256_gcm},
    {"chacha20-poly1305", 32, EVP_chacha20_poly1305},
};

/* Frees both contexts (EVP_CIPHER_CTX_free cleanses the key schedule) and the salt. */
static void st_aead_clear(st_aead *a) {
  if (a->enc != NULL) EVP_CIPHER_CTX_free(a->enc);
  if (a->dec != NULL) EVP_CIPHER_CTX_free(a->dec);
  a->enc = NULL;
  a->dec = NULL;
  OPENSSL_cleanse(a->nonce, sizeof a->nonce);
  a->destroyed = 1;
}

static void st_aead_finalize(napi_env env, void *data, void *hint) {
  st_aead *a = data;
  st_aead_clear(a);
  free(a);
}

/* One context keyed for direction enc (1 encrypt, 0 decrypt), or NULL. */
static EVP_CIPHER_CTX *st_ctx_new(const EVP_CIPHER *cipher, const unsigned char *key, int enc) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return NULL;
  if (EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, ST_NONCE_BYTES, NULL) != 1 ||
      EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, enc) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* ---- argument helpers: each returns 0 after throwing a JS error ---- */

static int st_get_handle(napi_env env, napi_value v, st_aead **out) {
  bool is_ours = false;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, &st_aead_tag, &is_ours) != napi_ok || !is_ours) {
    st_throw(env, "ST_AEAD_BAD_HANDLE", "aead: first argument is not a handle from aeadCreate()");
    return 0;
  }
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    st_throw(env, "ST_AEAD_BAD_HANDLE", "aead: unreadable handle");
    return 0;
  }
  *out = p;
  if ((*out)->destroyed) {
    st_throw(env, "ST_AEAD_DESTROYED", "aead: handle used after aeadDestroy()");
    return 0;
  }
  return 1;
}

static int st_get_array(napi_env env, napi_value v, napi_typedarray_type want, const char *what, void **data,
                        size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &length, &p, NULL, NULL) != napi_ok || type != want) {
    char msg[128];
    snprintf(msg, sizeof msg, "aead: %s must be a%s", what,
             want == napi_int32_array ? "n Int32Array" : " Uint8Array");
    st_throw(env, "ST_AEAD_BAD_ARGUMENT", msg);
    return 0;
  }
  *data = p;
  *len = length; /* elements; for Int32Array the caller multiplies by 4 if needed */
  return 1;
}

static int st_get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_int32(env, v, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "aead: %s must be a number", what);
    st_throw(env, "ST_AEAD_BAD_ARGUMENT", msg);
    return 0;
  }
  return 1;
}

/* True if data[iv_off, +8) and data[text_off, +text_len+16) lie inside len octets. */
static int st_span_ok(size_t len, int32_t iv_off, int32_t text_off, int32_t text_len) {
  return iv_off >= 0 && text_off >= 0 && text_len >= 0 && (uint64_t)iv_off + ST_IV_BYTES <= len &&
         (uint64_t)text_off + (uint64_t)text_len + ST_ICV_BYTES <= len;
}

/* ---- the per-packet operations (spans already checked) ---- */

static int st_seal_one(st_aead *a, unsigned char *data, int32_t iv_off, int32_t text_off, int32_t text_len,
                       const unsigned char *aad, size_t aad_len) {
  EVP_CIPHER_CTX *ctx = a->enc;
  unsigned char *text = data + text_off;
  unsigned char scratch[32];
  int outl = 0;
  memcpy(a->nonce + ST_SALT_BYTES, data + iv_off, ST_IV_BYTES);
  if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, a->nonce, -1) != 1) return 0;
  if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) return 0;
  if (text_len > 0 && EVP_CipherUpdate(ctx, text, &outl, text, text_len) != 1) return 0;
  if (EVP_CipherFinal_ex(ctx, scratch, &outl) != 1) return 0;
  return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, ST_ICV_BYTES, text + text_len) == 1;
}

static int st_open_one(st_aead *a, unsigned char *data, int32_t iv_off, int32_t text_off, int32_t text_len,
                       const unsigned char *aad, size_t aad_len) {
  EVP_CIPHER_CTX *ctx = a->dec;
  unsigned char *text = data + text_off;
  unsigned char scratch[32];
  int outl = 0;
  memcpy(a->nonce + ST_SALT_BYTES, data + iv_off, ST_IV_BYTES);
  if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, a->nonce, -1) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, ST_ICV_BYTES, text + text_len) != 1) return 0;
  if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) return 0;
  if (text_len > 0 && EVP_CipherUpdate(ctx, text, &outl, text, text_len) != 1) return 0;
  /* Final compares the tag in constant time; on mismatch the text is unspecified. */
  return EVP_CipherFinal_ex(ctx, scratch, &outl) == 1;
}

/* ---- exported functions ---- */

static napi_value st_aead_create(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) return st_throw(env, "ST_AEAD_BAD_ARGUMENT", "aeadCreate(algorithm, keymat) needs 2 arguments");
  char name[32];
  size_t name_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok)
    return st_throw(env, "ST_AEAD_BAD_ALGORITHM", "aeadCreate: algorithm must be a string");
  const st_alg *alg = NULL;
  for (size_t i = 0; i < sizeof st_algs / sizeof st_algs[0]; i++)
    if (strcmp(name, st_algs[i].name) == 0) alg = &st_algs[i];
  if (alg == NULL) {
    char msg[96];
    snprintf(msg, sizeof msg, "aeadCreate: unknown algorithm \"%s\"", name);
    return st_throw(env, "ST_AEAD_BAD_ALGORITHM", msg);
  }
  void *km = NULL;
  size_t km_len = 0;
  if (!st_get_array(env, argv[1], napi_uint8_array, "keymat", &km, &km_len)) return NULL;
  if (km_len != (size_t)alg->key_bytes + ST_SALT_BYTES) {
    char msg[128];
    snprintf(msg, sizeof msg, "aeadCreate: %s KEYMAT must be %d octets, got %zu", alg->name,
             alg->key_bytes + ST_SALT_BYTES, km_len);
    return st_throw(env, "ST_AEAD_BAD_KEYMAT", msg);
  }

  st_aead *a = calloc(1, sizeof *a);
  if (a == NULL) return st_throw(env, "ST_AEAD_NO_MEMORY", "aeadCreate: out of memory");
  unsigned char key[ST_MAX_KEY_BYTES];
  memcpy(key, km, (size_t)alg->key_bytes);
  memcpy(a->nonce, (unsigned char *)km + alg->key_bytes, ST_SALT_BYTES);
  a->enc = st_ctx_new(alg->cipher(), key, 1);
  a->dec = st_ctx_new(alg->cipher(), key, 0);
  OPENSSL_cleanse(key, sizeof key);
  if (a->enc == NULL || a->dec == NULL) {
    st_aead_clear(a);
    free(a);
    return st_throw(env, "ST_AEAD_OPENSSL", "aeadCreate: OpenSSL could not initialise the cipher context");
  }

  napi_value handle;
  if (napi_create_external(env, a, st_aead_finalize, NULL, &handle) != napi_ok) {
    st_aead_clear(a);
    free(a);
    return NULL;
  }
  if (napi_type_tag_object(env, handle, &st_aead_tag) != napi_ok) return NULL; /* finalizer frees a */
  return handle;
}

/* Shared by aeadSeal and aeadOpen: parses (h, data, ivOff, textOff, textLen, aad). */
typedef struct {
  st_aead *a;
  unsigned char *data;
  size_t data_len;
  int32_t iv_off, text_off, text_len;
  unsigned char *aad;
  size_t aad_len;
} st_single_args;

static int st_parse_single(napi_env env, napi_callback_info info, st_single_args *s) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < 6) {
    st_throw(env, "ST_AEAD_BAD_ARGUMENT", "aead: expected (handle, data, ivOff, textOff, textLen, aad)");
    return 0;
  }
  void *d = NULL, *aad = NULL;
  if (!st_get_handle(env, argv[0], &s->a) || !st_get_array(env, argv[1], napi_uint8_array, "data", &d, &s->data_len) ||
      !st_get_i32(env, argv[2], "ivOff", &s->iv_off) || !st_get_i32(env, argv[3], "textOff", &s->text_off) ||
      !st_get_i32(env, argv[4], "textLen", &s->text_len) ||
      !st_get_array(env, argv[5], napi_uint8_array, "aad", &aad, &s->aad_len))
    return 0;
  if (s->aad_len > INT32_MAX) {
    st_throw(env, "ST_AEAD_BAD_ARGUMENT", "aead: aad longer than 2^31-1 octets");
    return 0;
  }
  s->data = d;
  s->aad = aad;
  return 1;
}

static napi_value st_aead_seal(napi_env env, napi_callback_info info) {
  st_single_args s;
  if (!st_parse_single(env, info, &s)) return NULL;
  if (!st_span_ok(s.data_len, s.iv_off, s.text_off, s.text_len)) {
    char msg[192];
    snprintf(msg, sizeof msg,
             "seal span (ivOff %d, textOff %d, textLen %d + 16-octet ICV) does not fit in data of %zu octets",
             s.iv_off, s.text_off, s.text_len, s.data_len);
    return st_throw(env, "ST_AEAD_BAD_DESCRIPTOR", msg);
  }
  if (!st_seal_one(s.a, s.data, s.iv_off, s.text_off, s.text_len, s.aad, s.aad_len))
    return st_throw(env, "ST_AEAD_OPENSSL", "aeadSeal: OpenSSL failed to seal");
  return NULL;
}

static napi_value st_aead_open(napi_env env, napi_callback_info info) {
  st_single_args s;
  if (!st_parse_single(env, info, &s)) return NULL;
  bool ok = st_span_ok(s.data_len, s.iv_off, s.text_off, s.text_len) &&
            st_open_one(s.a, s.data, s.iv_off, s.text_off, s.text_len, s.aad, s.aad_len);
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

/* Shared by the batch calls: parses (h, data, desc, aad, count[, ok]). */
typedef struct {
  st_aead *a;
  unsigned char *data;
  size_t data_len;
  int32_t *desc;
  unsigned char *aad;
  unsigned char *ok;
  int32_t count;
} st_batch_args;

static int st_parse_batch(napi_env env, napi_callback_info info, st_batch_args *b, int with_ok) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < (size_t)(with_ok ? 6 : 5)) {
    st_throw(env, "ST_AEAD_BAD_ARGUMENT",
             with_ok ? "aeadOpenBatch: expected (handle, data, desc, aad, count, ok)"
                     : "aeadSealBatch: expected (handle, data, desc, aad, count)");
    return 0;
  }
  void *d = NULL, *desc = NULL, *aad = NULL, *ok = NULL;
  size_t desc_len = 0, aad_len = 0, ok_len = 0;
  if (!st_get_handle(env, argv[0], &b->a) || !st_get_array(env, argv[1], napi_uint8_array, "data", &d, &b->data_len) ||
      !st_get_array(env, argv[2], napi_int32_array, "desc", &desc, &desc_len) ||
      !st_get_array(env, argv[3], napi_uint8_array, "aad", &aad, &aad_len) ||
      !st_get_i32(env, argv[4], "count", &b->count))
    return 0;
  if (with_ok && !st_get_array(env, argv[5], napi_uint8_array, "ok", &ok, &ok_len)) return 0;
  if (b->count < 0 || (uint64_t)b->count * ST_DESC_STRIDE > desc_len ||
      (uint64_t)b->count * ST_BATCH_AAD_STRIDE > aad_len || (with_ok && (uint64_t)b->count > ok_len)) {
    char msg[160];
    snprintf(msg, sizeof msg, "AeadBatch.count %d exceeds the batch capacity (desc %zu, aad %zu, ok %zu)", b->count,
             desc_len / ST_DESC_STRIDE, aad_len / ST_BATCH_AAD_STRIDE, ok_len);
    st_throw(env, "ST_AEAD_BAD_DESCRIPTOR", msg);
    return 0;
  }
  b->data = d;
  b->desc = desc;
  b->aad = aad;
  b->ok = ok;
  return 1;
}

static int st_entry_ok(const st_batch_args *b, int32_t i) {
  const int32_t *e = b->desc + (size_t)i * ST_DESC_STRIDE;
  return e[3] >= 0 && e[3] <= ST_BATCH_AAD_STRIDE && st_span_ok(b->data_len, e[0], e[1], e[2]);
}

static napi_value st_aead_seal_batch(napi_env env, napi_callback_info info) {
  st_batch_args b;
  if (!st_parse_batch(env, info, &b, 0)) return NULL;
  /* Check every entry first: a bad descriptor is a caller bug and nothing is sealed. */
  for (int32_t i = 0; i < b.count; i++) {
    if (!st_entry_ok(&b, i)) {
      const int32_t *e = b.desc + (size_t)i * ST_DESC_STRIDE;
      char msg[224];
      snprintf(msg, sizeof msg,
               "AeadBatch entry %d (ivOff %d, textOff %d, textLen %d, aadLen %d) does not fit in data of %zu octets", i,
               e[0], e[1], e[2], e[3], b.data_len);
      return st_throw(env, "ST_AEAD_BAD_DESCRIPTOR", msg);
    }
  }
  for (int32_t i = 0; i < b.count; i++) {
    const int32_t *e = b.desc + (size_t)i * ST_DESC_STRIDE;
    if (!st_seal_one(b.a, b.data, e[0], e[1], e[2], b.aad + (size_t)i * ST_BATCH_AAD_STRIDE, (size_t)e[3]))
      return st_throw(env, "ST_AEAD_OPENSSL", "aeadSealBatch: OpenSSL failed to seal");
  }
  return NULL;
}

static napi_value st_aead_open_batch(napi_env env, napi_callback_info info) {
  st_batch_args b;
  if (!st_parse_batch(env, info, &b, 1)) return NULL;
  int32_t good = 0;
  for (int32_t i = 0; i < b.count; i++) {
    const int32_t *e = b.desc + (size_t)i * ST_DESC_STRIDE;
    int ok = st_entry_ok(&b, i) &&
             st_open_one(b.a, b.data, e[0], e[1], e[2], b.aad + (size_t)i * ST_BATCH_AAD_STRIDE, (size_t)e[3]);
    b.ok[i] = (unsigned char)ok;
    good += ok;
  }
  napi_value r;
  napi_create_int32(env, good, &r);
  return r;
}

static napi_value st_aead_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return st_throw(env, "ST_AEAD_BAD_ARGUMENT", "aeadDestroy(handle) needs 1 argument");
  bool is_ours = false;
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, argv[0], &st_aead_tag, &is_ours) != napi_ok || !is_ours ||
      napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL)
    return st_throw(env, "ST_AEAD_BAD_HANDLE", "aeadDestroy: argument is not a handle from aeadCreate()");
  st_aead_clear(p); /* idempotent; the finalizer frees the struct later */
  return NULL;
}

napi_status st_aead_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"aeadCreate", NULL, st_aead_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadSeal", NULL, st_aead_seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadOpen", NULL, st_aead_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadSealBatch", NULL, st_aead_seal_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadOpenBatch", NULL, st_aead_open_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"aeadDestroy", NULL, st_aead_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
