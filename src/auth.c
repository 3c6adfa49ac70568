/*
 * auth.c - the HMAC challenge/response of Listener/Client, byte for byte
 * CPython 3.12+'s (multiprocessing/connection.py), with the legacy HMAC-MD5
 * form of Python <= 3.11 accepted unless the caller is strict.
 *
 * DESIGN
 * Pure functions (see auth.h): they parse and build handshake messages and
 * never do I/O, so that listener.c can drive them over a connection with a
 * deadline and the fuzz target can throw arbitrary peer messages at them.
 * Every parse is bounded by the message's length: nothing is read past n
 * bytes, and no message is treated as a C string.
 *
 * Python's rules, kept exactly so both can talk:
 *   - a message of 16 or 20 bytes is legacy by its length alone (a 20-byte
 *     challenge body, a 16-byte answer); legacy means HMAC-MD5 without a
 *     prefix;
 *   - otherwise it must start with "{name}", the closing brace at most at
 *     index 9 (Python searches message.find(b'}', 1, _MAX_DIGEST_LEN + 2)),
 *     name one of md5, sha256, sha384, sha3_256, sha3_384;
 *   - the MAC is over the whole challenge body, digest prefix included;
 *   - a MAC of the wrong length is refused before any comparison, and the
 *     comparison itself is constant-time (hmac.compare_digest in Python,
 *     CRYPTO_memcmp here).
 * What mproc adds: strict mode refuses MD5 in any form, so a peer cannot
 * downgrade a strict side to it (with a {md5} prefix or the legacy form).
 *
 * Digests come from OpenSSL's libcrypto (HMAC() with the EVP_* digests);
 * the key is never copied here, and the MACs computed on the stack are
 * wiped before returning (OPENSSL_cleanse), as they are key-derived.
 */
#include "auth.h"

#include "mproc/errno.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <string.h>

/* Python's _ALLOWED_DIGESTS; the longest name has 8 characters
 * (_MAX_DIGEST_LEN), so the closing brace is at index 9 at most. */
#define DIGEST_NAME_MAX 8

typedef struct digest_entry {
  const char *name;
  size_t len;
  const EVP_MD *(*md)(void);
} digest_entry;

static const digest_entry digests[] = {
    {"md5", 3, EVP_md5},
    {"sha256", 6, EVP_sha256},
    {"sha384", 6, EVP_sha384},
    {"sha3_256", 8, EVP_sha3_256},
    {"sha3_384", 8, EVP_sha3_384},
};

#define MD5_ENTRY (&digests[0])
#define SHA256_ENTRY (&digests[1])

/*
 * Python's _get_digest_name_and_payload.  Returns 1 and the digest (NULL
 * for the legacy form) and where the payload starts; 0 if the message is
 * none of the accepted forms.
 */
static int split_message(const unsigned char *msg, size_t n,
                         const digest_entry **digest, size_t *payload_at) {
  if (n == MPROC__AUTH_LEGACY_RANDOM_LEN || n == MPROC__AUTH_MD5_LEN) {
    *digest = NULL;
    *payload_at = 0;
    return 1;
  }
  if (n < 2 || msg[0] != '{') {
    return 0;
  }
  /* The first '}' in msg[1 .. DIGEST_NAME_MAX + 2), as Python's find. */
  size_t end = DIGEST_NAME_MAX + 2 < n ? DIGEST_NAME_MAX + 2 : n;
  size_t curly = 0;
  for (size_t i = 1; i < end; i++) {
    if (msg[i] == '}') {
      curly = i;
      break;
    }
  }
  if (curly == 0) {
    return 0;
  }
  size_t name_len = curly - 1;
  for (size_t k = 0; k < sizeof digests / sizeof digests[0]; k++) {
    if (digests[k].len == name_len &&
        memcmp(digests[k].name, msg + 1, name_len) == 0) {
      *digest = &digests[k];
      *payload_at = curly + 1;
      return 1;
    }
  }
  return 0;
}

/* HMAC of data under key with digest d into mac (EVP_MAX_MD_SIZE bytes).
 * Returns 0 and *maclen, or a negative code when libcrypto refuses (an
 * algorithm a FIPS provider does not offer, or no memory). */
static int hmac(const digest_entry *d, const void *key, size_t keylen,
                const unsigned char *data, size_t n, unsigned char *mac,
                unsigned int *maclen) {
  /* An empty key is a key (Python 3.13); give libcrypto a valid pointer
   * for it rather than NULL, which HMAC_Init_ex reads as "keep the old
   * key". */
  static const unsigned char empty[1] = {0};
  const EVP_MD *md = d->md();
  if (md == NULL) {
    return MPROC_ENOTSUP;
  }
  if (keylen > (size_t)INT32_MAX) {
    return MPROC_EINVAL;
  }
  *maclen = 0;
  if (HMAC(md, keylen > 0 ? key : empty, (int)keylen, data, n, mac,
           maclen) == NULL) {
    return MPROC_ENOMEM;
  }
  return 0;
}

size_t mproc__auth_make_challenge(unsigned char *out,
                                  const unsigned char *rnd) {
  size_t at = 0;
  memcpy(out, MPROC__AUTH_CHALLENGE, MPROC__AUTH_CHALLENGE_LEN);
  at += MPROC__AUTH_CHALLENGE_LEN;
  out[at++] = '{';
  memcpy(out + at, SHA256_ENTRY->name, SHA256_ENTRY->len);
  at += SHA256_ENTRY->len;
  out[at++] = '}';
  memcpy(out + at, rnd, MPROC__AUTH_RANDOM_LEN);
  at += MPROC__AUTH_RANDOM_LEN;
  return at;
}

int mproc__auth_answer(const void *key, size_t keylen,
                       const unsigned char *msg, size_t n, int strict,
                       unsigned char *out, size_t *outlen) {
  *outlen = 0;
  /* "Protocol error, expected challenge". */
  if (n < MPROC__AUTH_CHALLENGE_LEN ||
      memcmp(msg, MPROC__AUTH_CHALLENGE, MPROC__AUTH_CHALLENGE_LEN) != 0) {
    return MPROC_EAUTH;
  }
  const unsigned char *body = msg + MPROC__AUTH_CHALLENGE_LEN;
  size_t blen = n - MPROC__AUTH_CHALLENGE_LEN;
  /* "challenge too short". */
  if (blen < MPROC__AUTH_LEGACY_RANDOM_LEN) {
    return MPROC_EAUTH;
  }
  const digest_entry *d = NULL;
  size_t payload_at = 0;
  if (!split_message(body, blen, &d, &payload_at)) {
    return MPROC_EAUTH; /* "unsupported ... digest" */
  }
  if (strict && (d == NULL || d == MD5_ENTRY)) {
    return MPROC_EAUTH; /* a downgrade to MD5 */
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  int r = hmac(d != NULL ? d : MD5_ENTRY, key, keylen, body, blen, mac,
               &maclen);
  if (r < 0) {
    return r;
  }
  size_t at = 0;
  if (d != NULL) {
    out[at++] = '{';
    memcpy(out + at, d->name, d->len);
    at += d->len;
    out[at++] = '}';
  }
  memcpy(out + at, mac, maclen);
  at += maclen;
  OPENSSL_cleanse(mac, sizeof mac);
  *outlen = at;
  return 0;
}

int mproc__auth_verify(const void *key, size_t keylen,
                       const unsigned char *chal, size_t clen,
                       const unsigned char *resp, size_t rlen, int strict) {
  const digest_entry *d = NULL;
  size_t payload_at = 0;
  if (!split_message(resp, rlen, &d, &payload_at)) {
    return MPROC_EAUTH;
  }
  if (strict && (d == NULL || d == MD5_ENTRY)) {
    return MPROC_EAUTH;
  }
  unsigned char expected[EVP_MAX_MD_SIZE];
  unsigned int elen = 0;
  if (hmac(d != NULL ? d : MD5_ENTRY, key, keylen, chal, clen, expected,
           &elen) < 0) {
    /* Python: AuthenticationError(f'{response_digest=} unsupported'). */
    return MPROC_EAUTH;
  }
  /* The length is not secret: it follows from the digest the peer named.
   * A 20-byte legacy answer ends up here as a wrong-length MD5, as in
   * Python. */
  int ok = rlen - payload_at == elen &&
           CRYPTO_memcmp(expected, resp + payload_at, elen) == 0;
  OPENSSL_cleanse(expected, sizeof expected);
  return ok ? 0 : MPROC_EAUTH;
}

int mproc__auth_check_reply(const unsigned char *msg, size_t n) {
  if (n == MPROC__AUTH_REPLY_LEN &&
      memcmp(msg, MPROC__AUTH_WELCOME, MPROC__AUTH_REPLY_LEN) == 0) {
    return 0;
  }
  return MPROC_EAUTH;
}

void mproc__auth_wipe(void *p, size_t n) {
  if (p != NULL && n > 0) {
    OPENSSL_cleanse(p, n);
  }
}
