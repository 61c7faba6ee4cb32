/* sse_jwt.h -- verifying the JWTs of the Mercure protocol (sse-mercure).
 *
 * A key is made once at configuration time from SSEMercurePublisherJWT or
 * SSEMercureSubscriberJWT: an algorithm and its key material (an HMAC
 * secret, or a PEM public key read from a file). A token is then verified
 * against exactly that key and algorithm: the token's header must name the
 * configured algorithm, so "none", and a token that names another
 * algorithm to have the key used the wrong way (an HS256 token "signed"
 * with a PEM public key taken as an HMAC secret), are refused before any
 * signature is computed. The signature itself is checked by libjwt
 * (OpenSSL); the claims are read with jansson.
 *
 * What a token must be to pass (RFC 7515 compact form, RFC 7519 claims):
 *  - at most SSE_JWT_MAX_LEN bytes; three non-empty segments of unpadded,
 *    canonical base64url, separated by two dots, nothing else;
 *  - a header that is a JSON object whose "alg" is the configured
 *    algorithm, whose "typ", if present, is "JWT" (any case), and without
 *    "crit" (no extension is understood, so none may be required);
 *  - a signature valid for the key;
 *  - claims that are a JSON object without duplicate names; "exp" and
 *    "nbf", when present, numbers (now must be before exp and not before
 *    nbf; no leeway); "mercure", when present, an object whose "publish"
 *    and "subscribe", when present, are arrays of strings. A null
 *    "mercure", "publish", "subscribe" or "payload" counts as absent (as
 *    the Go hub reads it). A non-null "https://mercure.rocks/" claim
 *    (namespaced, for identity providers that require it) replaces
 *    "mercure", under the same rules, as in the Go hub.
 * Other claims (iat, sub, aud, ...) are not checked.
 *
 * Pure: no httpd, no logging; allocates from the pool it is given and,
 * inside libjwt and jansson, with malloc (freed before returning).
 * Thread-safe: a key is read-only after sse_jwt_key_make. Tested by
 * tests/unit/test_units.c and fuzzed by fuzz/jwt.c.
 */
#ifndef SSE_JWT_H
#define SSE_JWT_H

#include <apr_pools.h>
#include <apr_tables.h>

/* Longer tokens are refused before anything is decoded ("token too
 * large"): an Authorization header of httpd is at most 8 KiB anyway. */
#define SSE_JWT_MAX_LEN 8192

typedef struct sse_jwt_key sse_jwt_key;     /* algorithm + key material */

/* Config time: alg NULL means HS256; for RS and ES algorithms arg is the
 * path of a PEM public key file, read now. NULL on success, else a message
 * naming what is wrong (unknown alg, unreadable file, not a PEM key of that
 * kind, empty secret). The algorithms: HS256, HS384, HS512, RS256, RS512,
 * ES256, ES384 (exactly so spelled). An RSA key must have at least 2048
 * bits; an ES256 key must be on P-256, an ES384 key on P-384. */
const char *sse_jwt_key_make(apr_pool_t *p, const char *arg, const char *alg,
                             sse_jwt_key **out);

/* The key's algorithm, as configured ("HS256", ...). */
const char *sse_jwt_key_alg(const sse_jwt_key *key);

typedef struct {
    apr_array_header_t *publish;    /* of const char * selectors; NULL: claim absent */
    apr_array_header_t *subscribe;  /* same */
    const char *payload;            /* mercure.payload as compact JSON; NULL: absent */
    apr_int64_t exp;                /* seconds since the epoch; 0: no exp */
} sse_jwt_claims;

/* Verifies token (len bytes) with key at time now (seconds since the
 * epoch). NULL with *out filled from p on success; else a short English
 * reason fit for a WWW-Authenticate error_description (never echoing the
 * token), one of:
 *   "token too large"            more than SSE_JWT_MAX_LEN bytes
 *   "malformed token"            not three base64url segments, or a header
 *                                or claims that are not a JSON object
 *   "algorithm not allowed"      the header's alg is not the configured one
 *   "unsupported token type"     typ present and not JWT
 *   "unsupported critical header"  crit present
 *   "bad signature"
 *   "malformed claims"           exp/nbf not numbers, mercure not an
 *                                object, publish/subscribe not arrays of strings
 *   "token expired"              now >= exp
 *   "token not yet valid"        now < nbf
 * The form and the header are checked first, then the signature, then
 * the claims: a reason about the claims (or the time) is given
 * only for a token whose signature is good. Thread-safe. */
const char *sse_jwt_verify(apr_pool_t *p, const sse_jwt_key *key,
                           const char *token, apr_size_t len, apr_int64_t now,
                           sse_jwt_claims *out);

#endif
