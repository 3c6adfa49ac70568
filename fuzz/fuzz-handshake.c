/*
 * fuzz/fuzz-handshake.c - libFuzzer target for the Listener/Client
 * challenge/response (src/auth.c), both roles, with arbitrary peer
 * messages.
 *
 * Input: one flags byte (bit 0: strict; bits 1-2: which role or check),
 * one key-length byte (0-63), the key, and the rest is the peer's
 * message.
 *   answerer:  the message is a challenge; mproc__auth_answer must refuse
 *              it (MPROC_EAUTH) or produce an answer that fits its buffer
 *              and that mproc__auth_verify accepts for the same body and
 *              key (the two halves must agree);
 *   deliverer: the message is the answer to a challenge made from the
 *              input's bytes; verify must return 0 or MPROC_EAUTH, and in
 *              strict mode never accept an MD5 form;
 *   reply:     check_reply accepts exactly "#WELCOME#".
 * Violations abort(), which libFuzzer reports.
 */
#include "auth.h"

#include "mproc/errno.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void answerer(const uint8_t *key, size_t klen, const uint8_t *msg,
                     size_t n, int strict) {
  unsigned char out[MPROC__AUTH_ANSWER_MAX + 16];
  memset(out, 0xee, sizeof out);
  size_t olen = 12345;
  int r = mproc__auth_answer(key, klen, msg, n, strict, out, &olen);
  if (r != 0) {
    if (r != MPROC_EAUTH || olen != 0) {
      abort();
    }
    return;
  }
  if (olen == 0 || olen > MPROC__AUTH_ANSWER_MAX || out[olen] != 0xee) {
    abort();
  }
  /* Our own answer must pass our own check of the same challenge. */
  if (n < MPROC__AUTH_CHALLENGE_LEN ||
      mproc__auth_verify(key, klen, msg + MPROC__AUTH_CHALLENGE_LEN,
                         n - MPROC__AUTH_CHALLENGE_LEN, out, olen,
                         strict) != 0) {
    abort();
  }
  /* A strict answer is never MD5: never the raw legacy form. */
  if (strict && olen == MPROC__AUTH_MD5_LEN) {
    abort();
  }
}

static void deliverer(const uint8_t *key, size_t klen, const uint8_t *resp,
                      size_t n, int strict) {
  unsigned char rnd[MPROC__AUTH_RANDOM_LEN];
  for (size_t i = 0; i < sizeof rnd; i++) {
    rnd[i] = (unsigned char)(i * 31 + klen);
  }
  unsigned char chal[MPROC__AUTH_CHALLENGE_MAX];
  size_t cl = mproc__auth_make_challenge(chal, rnd);
  if (cl != 59 || cl > sizeof chal) {
    abort();
  }
  const unsigned char *body = chal + MPROC__AUTH_CHALLENGE_LEN;
  size_t blen = cl - MPROC__AUTH_CHALLENGE_LEN;
  int r = mproc__auth_verify(key, klen, body, blen, resp, n, strict);
  if (r != 0 && r != MPROC_EAUTH) {
    abort();
  }
  if (r == 0 && strict &&
      (n == MPROC__AUTH_MD5_LEN || (n >= 5 && memcmp(resp, "{md5}", 5) == 0))) {
    abort();
  }
  /* The right answer passes. */
  unsigned char ans[MPROC__AUTH_ANSWER_MAX];
  size_t alen = 0;
  if (mproc__auth_answer(key, klen, chal, cl, strict, ans, &alen) != 0 ||
      mproc__auth_verify(key, klen, body, blen, ans, alen, strict) != 0) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) {
    return 0;
  }
  int strict = data[0] & 1;
  int mode = (data[0] >> 1) & 3;
  size_t klen = data[1] & 63;
  if (size < 2 + klen) {
    return 0;
  }
  /* The key in its own allocation, so ASan sees any read past it. */
  uint8_t *key = malloc(klen > 0 ? klen : 1);
  if (key == NULL) {
    return 0;
  }
  memcpy(key, data + 2, klen);
  size_t n = size - 2 - klen;
  uint8_t *msg = malloc(n > 0 ? n : 1);
  if (msg == NULL) {
    free(key);
    return 0;
  }
  memcpy(msg, data + 2 + klen, n);
  switch (mode) {
  case 0:
  case 1:
    answerer(key, klen, msg, n, strict);
    break;
  case 2:
    deliverer(key, klen, msg, n, strict);
    break;
  default: {
    int r = mproc__auth_check_reply(msg, n);
    int want = n == 9 && memcmp(msg, "#WELCOME#", 9) == 0 ? 0 : MPROC_EAUTH;
    if (r != want) {
      abort();
    }
    break;
  }
  }
  free(msg);
  free(key);
  return 0;
}
