/*
 * src/auth.h - the challenge/response of Listener/Client, as CPython 3.12+
 * (multiprocessing/connection.py: deliver_challenge, answer_challenge,
 * _create_response, _verify_challenge, _get_digest_name_and_payload).
 *
 * Everything here is pure: bytes in, bytes out, no I/O, no allocation, no
 * global state except OpenSSL's digest tables.  listener.c moves the
 * messages over a connection; the fuzz target (fuzz/fuzz-handshake.c)
 * calls these functions directly with arbitrary peer messages.
 *
 * The exchange, one direction (the server "delivers", the client
 * "answers"; after it, the roles swap and it runs again):
 *
 *   deliverer -> answerer   "#CHALLENGE#" + "{sha256}" + 40 random bytes
 *   answerer  -> deliverer  "{sha256}" + HMAC-SHA256(key, "{sha256}" + rnd)
 *   deliverer -> answerer   "#WELCOME#" or "#FAILURE#"
 *
 * The MAC covers the digest prefix, so a peer cannot swap in a weaker
 * digest without knowing the key.  A Python <= 3.11 peer speaks the
 * legacy form: its challenge is "#CHALLENGE#" + 20 random bytes, its
 * answer the raw 16-byte HMAC-MD5 of everything after "#CHALLENGE#".
 * Messages of 16 or 20 bytes are legacy by their length alone (Python's
 * rule): every modern message is longer.
 */
#ifndef MPROC_AUTH_H
#define MPROC_AUTH_H

#include <stddef.h>

/* The random part of a modern challenge (Python's MESSAGE_LENGTH). */
#define MPROC__AUTH_RANDOM_LEN 40
/* The random part of a legacy challenge, and the shortest accepted. */
#define MPROC__AUTH_LEGACY_RANDOM_LEN 20
/* A legacy answer: a raw HMAC-MD5. */
#define MPROC__AUTH_MD5_LEN 16

#define MPROC__AUTH_CHALLENGE "#CHALLENGE#"
#define MPROC__AUTH_CHALLENGE_LEN 11
#define MPROC__AUTH_WELCOME "#WELCOME#"
#define MPROC__AUTH_FAILURE "#FAILURE#"
#define MPROC__AUTH_REPLY_LEN 9

/* Room for any challenge mproc builds ("#CHALLENGE#{sha256}" + 40). */
#define MPROC__AUTH_CHALLENGE_MAX 64
/* Room for any answer mproc builds ("{sha3_384}" + 48-byte MAC). */
#define MPROC__AUTH_ANSWER_MAX 64

/*
 * mproc__auth_make_challenge - the deliverer's first message:
 * "#CHALLENGE#{sha256}" followed by the 40 bytes at rnd (fresh random
 * bytes, which the caller draws).  out must hold MPROC__AUTH_CHALLENGE_MAX
 * bytes.  Returns the message's length (59).  The part the answerer MACs,
 * and that mproc__auth_verify must be given, is out + 11 (the message
 * without "#CHALLENGE#"), 48 bytes.
 */
size_t mproc__auth_make_challenge(unsigned char *out,
                                  const unsigned char *rnd);

/*
 * mproc__auth_answer - the answerer's reply to a challenge message msg of
 * n bytes received from the peer (the whole message, "#CHALLENGE#"
 * included), keyed with key[0 .. keylen) (keylen 0 is a key; key may then
 * be NULL).
 *
 * As Python's answer_challenge + _create_response: the message must start
 * with "#CHALLENGE#" and carry at least 20 bytes after it; exactly 20 is a
 * legacy challenge, answered with the raw 16-byte HMAC-MD5 (unless strict,
 * which refuses it); otherwise it must start with "{digest}", digest one
 * of md5, sha256, sha384, sha3_256, sha3_384 (md5 refused when strict),
 * and the answer is "{digest}" + HMAC-digest(key, everything after
 * "#CHALLENGE#").
 *
 * out must hold MPROC__AUTH_ANSWER_MAX bytes.  Returns 0 and *outlen;
 * MPROC_EAUTH for any malformed or refused challenge (nothing written to
 * *outlen but 0); MPROC_ENOMEM or MPROC_ENOTSUP if libcrypto cannot
 * compute the MAC (a FIPS build without MD5).
 */
int mproc__auth_answer(const void *key, size_t keylen,
                       const unsigned char *msg, size_t n, int strict,
                       unsigned char *out, size_t *outlen);

/*
 * mproc__auth_verify - the deliverer's check of the answer resp (rlen
 * bytes) to the challenge body chal (clen bytes: what follows
 * "#CHALLENGE#" in the message it sent).
 *
 * As Python's _verify_challenge: a 16- or 20-byte answer is legacy and is
 * checked as a raw HMAC-MD5 (refused when strict); otherwise it must be
 * "{digest}" + MAC with an allowed digest (md5 refused when strict) and a
 * MAC of exactly that digest's length.  The MACs are compared in constant
 * time (CRYPTO_memcmp).  Returns 0 if the peer knows the key, MPROC_EAUTH
 * otherwise (wrong MAC, wrong length, unknown digest, refused legacy
 * form).  Never reads outside the two buffers.
 */
int mproc__auth_verify(const void *key, size_t keylen,
                       const unsigned char *chal, size_t clen,
                       const unsigned char *resp, size_t rlen, int strict);

/*
 * mproc__auth_check_reply - the answerer's reading of the deliverer's
 * verdict: 0 if msg is exactly "#WELCOME#", MPROC_EAUTH for "#FAILURE#"
 * or anything else (Python: "digest sent was rejected").
 */
int mproc__auth_check_reply(const unsigned char *msg, size_t n);

/* Overwrite n bytes of key material so the compiler cannot drop it
 * (OPENSSL_cleanse). */
void mproc__auth_wipe(void *p, size_t n);

#endif /* MPROC_AUTH_H */
