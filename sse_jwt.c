/* sse_jwt.c -- Mercure JWT verification (see sse_jwt.h).
 *
 * Why the checks before libjwt: libjwt 1.10's jwt_decode lets the token's
 * header choose the algorithm. Given an RS256 key's PEM text it would
 * verify an "HS256" token by HMAC with that PEM as the secret, and the PEM
 * is public: anyone could sign. So the header is decoded here first and its
 * "alg" must be the configured one, byte for byte, before libjwt sees the
 * token; libjwt is then only asked whether the signature of that algorithm
 * holds. libjwt is also lax about form (its base64 decoder stops at the
 * first character outside the alphabet, so "h.p.sig.anything" can verify
 * with RS or ES keys, and each segment is copied on the stack by alloca),
 * hence the size bound and the strict shape check, also done first.
 *
 * The claims are read from the payload decoded here, not from libjwt's
 * copy: both come from the same canonical base64url, so they are the
 * signed bytes, and jansson is asked to refuse duplicate names so that no
 * two readers of the token can disagree about its "exp".
 *
 * Public keys are parsed by OpenSSL at configuration time to refuse a file
 * that is not a public key of the configured kind, then written back as
 * canonical PEM ("BEGIN PUBLIC KEY"), which is what libjwt is handed: the
 * key that was checked is the key that verifies.
 *
 * Invariants: nothing is logged and the token is never quoted in a
 * reason; every libjwt, jansson and OpenSSL allocation is freed before
 * returning; the OpenSSL error queue of the calling thread is left empty
 * (a failed verification leaves errors there that mod_ssl, on the same
 * thread, would otherwise pick up as its own).
 */
#include "sse_jwt.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <apr_file_io.h>
#include <apr_strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

/* A key file larger than this is not a public key (a 16384-bit RSA key
 * is about 3 KiB of PEM). */
#define KEY_FILE_MAX (64 * 1024)
#define RSA_MIN_BITS 2048

enum kind { KIND_HMAC, KIND_RSA, KIND_EC };

static const struct alg {
    const char *name;
    jwt_alg_t   jalg;
    enum kind   kind;
    const char *group;      /* EC: OpenSSL's name of the curve */
} algs[] = {
    { "HS256", JWT_ALG_HS256, KIND_HMAC, NULL },
    { "HS384", JWT_ALG_HS384, KIND_HMAC, NULL },
    { "HS512", JWT_ALG_HS512, KIND_HMAC, NULL },
    { "RS256", JWT_ALG_RS256, KIND_RSA,  NULL },
    { "RS512", JWT_ALG_RS512, KIND_RSA,  NULL },
    { "ES256", JWT_ALG_ES256, KIND_EC,   "prime256v1" },
    { "ES384", JWT_ALG_ES384, KIND_EC,   "secp384r1" },
};

struct sse_jwt_key {
    const struct alg    *alg;
    const unsigned char *material;  /* HMAC secret, or PEM of the public key */
    int                  len;
};

const char *sse_jwt_key_alg(const sse_jwt_key *key)
{
    return key->alg->name;
}

/* The PEM file at path: its public key checked against a, then written
 * back as canonical PEM into key. */
static const char *read_public_key(apr_pool_t *p, const char *path, const struct alg *a,
                                   sse_jwt_key *key)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_size_t got;
    char *text, err[120];
    const char *why = NULL;
    BIO *in = NULL, *out = NULL;
    EVP_PKEY *pk = NULL;
    char *pem;
    long pem_len;

    rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, p);
    if (rv != APR_SUCCESS)
        return apr_psprintf(p, "cannot open the %s key file %s: %s", a->name, path,
                            apr_strerror(rv, err, sizeof err));
    rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    if (rv == APR_SUCCESS && fi.size > KEY_FILE_MAX) {
        apr_file_close(f);
        return apr_psprintf(p, "the %s key file %s is larger than %d bytes: not a public key",
                            a->name, path, KEY_FILE_MAX);
    }
    text = apr_palloc(p, KEY_FILE_MAX + 1);
    rv = apr_file_read_full(f, text, KEY_FILE_MAX, &got);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF)
        return apr_psprintf(p, "cannot read the %s key file %s: %s", a->name, path,
                            apr_strerror(rv, err, sizeof err));
    text[got] = '\0';
    /* A verification key is public; a private one in the configuration
     * would be read by every child for nothing, and is most likely the
     * wrong file. */
    if (strstr(text, "PRIVATE KEY"))
        return apr_psprintf(p, "the %s key file %s holds a private key: give the public key "
                            "alone (openssl pkey -in key.pem -pubout)", a->name, path);

    in = BIO_new_mem_buf(text, (int)got);
    if (!in) {
        why = "out of memory";
        goto done;
    }
    pk = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
    if (!pk) {
        why = apr_psprintf(p, "the %s key file %s holds no PEM public key "
                           "(-----BEGIN PUBLIC KEY-----)", a->name, path);
        goto done;
    }
    if (a->kind == KIND_RSA) {
        if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
            why = apr_psprintf(p, "the key in %s is not an RSA key, as %s needs", path,
                               a->name);
            goto done;
        }
        if (EVP_PKEY_get_bits(pk) < RSA_MIN_BITS) {
            why = apr_psprintf(p, "the RSA key in %s has %d bits: %s needs at least %d",
                               path, EVP_PKEY_get_bits(pk), a->name, RSA_MIN_BITS);
            goto done;
        }
    }
    else {
        char group[64];
        size_t glen = 0;

        if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) {
            why = apr_psprintf(p, "the key in %s is not an EC key, as %s needs", path,
                               a->name);
            goto done;
        }
        if (!EVP_PKEY_get_group_name(pk, group, sizeof group, &glen)
            || strcmp(group, a->group) != 0) {
            why = apr_psprintf(p, "the EC key in %s is not on the curve %s needs (%s)", path,
                               a->name, strcmp(a->group, "prime256v1") ? "P-384" : "P-256");
            goto done;
        }
    }
    out = BIO_new(BIO_s_mem());
    if (!out || !PEM_write_bio_PUBKEY(out, pk)) {
        why = "out of memory";
        goto done;
    }
    pem_len = BIO_get_mem_data(out, &pem);
    if (pem_len <= 0 || pem_len > KEY_FILE_MAX) {
        why = "out of memory";
        goto done;
    }
    key->material = apr_pmemdup(p, pem, (apr_size_t)pem_len);
    key->len = (int)pem_len;
done:
    BIO_free(out);
    BIO_free(in);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return why;
}

const char *sse_jwt_key_make(apr_pool_t *p, const char *arg, const char *alg,
                             sse_jwt_key **out)
{
    sse_jwt_key *key;
    const struct alg *a = NULL;
    size_t i;

    if (!alg)
        alg = "HS256";
    for (i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        if (strcmp(alg, algs[i].name) == 0)
            a = &algs[i];
    }
    if (!a)
        return apr_psprintf(p, "unknown JWT algorithm '%s': use HS256, HS384, HS512, RS256, "
                            "RS512, ES256 or ES384", alg);
    if (!arg || !*arg)
        return a->kind == KIND_HMAC ? "the JWT secret is empty"
                                    : "the path of the JWT public key file is empty";
    key = apr_pcalloc(p, sizeof *key);
    key->alg = a;
    if (a->kind == KIND_HMAC) {
        size_t n = strlen(arg);
        if (n > SSE_JWT_MAX_LEN)
            return "the JWT secret is longer than 8192 bytes";
        key->material = (const unsigned char *)apr_pstrdup(p, arg);
        key->len = (int)n;
    }
    else {
        const char *why = read_public_key(p, arg, a, key);
        if (why)
            return why;
    }
    *out = key;
    return NULL;
}

/* ---- tokens ---- */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Unpadded canonical base64url [s, s+n) into out (room for n*3/4 bytes):
 * the number of bytes, or -1 when a character is outside the alphabet,
 * the length cannot end a base64 text, or the unused low bits of the last
 * character are not zero (so that each byte string has one encoding). */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    size_t i;

    if (n % 4 == 1)
        return -1;
    for (i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? o : -1;
}

/* A segment decoded and parsed as a JSON object without duplicate names;
 * NULL otherwise. The caller json_decref's it. */
static json_t *segment_object(apr_pool_t *p, const char *s, size_t n)
{
    unsigned char *buf = apr_palloc(p, n * 3 / 4 + 1);
    long len = b64url_decode(s, n, buf);
    json_t *j;

    if (len < 0)
        return NULL;
    j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* A NumericDate (RFC 7519: seconds, possibly fractional) as the smallest
 * whole second not before it, so that "now < exp" and "now >= nbf" mean
 * the same for a whole now; 0 when v is not a number. */
static int numeric_date(const json_t *v, apr_int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (apr_int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        /* By hand rather than ceil(): the module then needs no libm. */
        double d = json_real_value(v);
        apr_int64_t t;

        if (d >= 9.2e18)
            t = INT64_MAX;
        else if (d <= -9.2e18)
            t = INT64_MIN;
        else {
            t = (apr_int64_t)d;     /* toward zero */
            if ((double)t < d)
                t++;
        }
        *out = t;
        return 1;
    }
    return 0;
}

/* mercure.publish or .subscribe: absent or null (NULL), else an array of
 * strings copied into *out; 0 when it is anything else. */
static int selectors(apr_pool_t *p, const json_t *mercure, const char *name,
                     apr_array_header_t **out)
{
    const json_t *a = mercure ? json_object_get(mercure, name) : NULL;
    size_t i;

    *out = NULL;
    if (!a || json_is_null(a))
        return 1;
    if (!json_is_array(a))
        return 0;
    *out = apr_array_make(p, (int)json_array_size(a) + 1, sizeof(const char *));
    for (i = 0; i < json_array_size(a); i++) {
        const json_t *s = json_array_get(a, i);
        if (!json_is_string(s))
            return 0;
        /* jansson refuses \u0000 (no JSON_ALLOW_NUL): a C string is whole. */
        APR_ARRAY_PUSH(*out, const char *) = apr_pstrmemdup(p, json_string_value(s),
                                                           json_string_length(s));
    }
    return 1;
}

/* The claims past the signature: types, then time. */
static const char *claims(apr_pool_t *p, const json_t *body, apr_int64_t now,
                          sse_jwt_claims *out)
{
    const json_t *exp = json_object_get(body, "exp"), *nbf = json_object_get(body, "nbf");
    const json_t *mercure = json_object_get(body, "mercure"), *payload = NULL;
    const json_t *namespaced = json_object_get(body, "https://mercure.rocks/");
    apr_int64_t exp_v = 0, nbf_v = 0;

    /* The namespaced claim, for identity providers that allow only
     * namespaced custom claims (Auth0, ...): it replaces "mercure" when
     * present, as in the Go hub. */
    if (namespaced && !json_is_null(namespaced))
        mercure = namespaced;

    if ((exp && !numeric_date(exp, &exp_v)) || (nbf && !numeric_date(nbf, &nbf_v)))
        return "malformed claims";
    if (json_is_null(mercure))
        mercure = NULL;
    if (mercure && !json_is_object(mercure))
        return "malformed claims";
    if (!selectors(p, mercure, "publish", &out->publish)
        || !selectors(p, mercure, "subscribe", &out->subscribe))
        return "malformed claims";
    if (exp && now >= exp_v)
        return "token expired";
    if (nbf && now < nbf_v)
        return "token not yet valid";
    out->exp = exp ? exp_v : 0;
    out->payload = NULL;
    if (mercure)
        payload = json_object_get(mercure, "payload");
    if (payload && !json_is_null(payload)) {
        char *s = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s)
            return "malformed claims";
        out->payload = apr_pstrdup(p, s);
        free(s);
    }
    return NULL;
}

/* The header's own rules: the configured alg, typ JWT if any, no crit. */
static const char *header(const json_t *head, const struct alg *a)
{
    const json_t *alg = json_object_get(head, "alg"), *typ = json_object_get(head, "typ");

    if (!json_is_string(alg) || strcmp(json_string_value(alg), a->name) != 0
        || json_string_length(alg) != strlen(a->name))
        return "algorithm not allowed";
    /* libjwt refuses another typ too, which would pass for a bad signature. */
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0
                || json_string_length(typ) != 3))
        return "unsupported token type";
    if (json_object_get(head, "crit"))
        return "unsupported critical header";
    return NULL;
}

const char *sse_jwt_verify(apr_pool_t *p, const sse_jwt_key *key,
                           const char *token, apr_size_t len, apr_int64_t now,
                           sse_jwt_claims *out)
{
    const char *dot1, *dot2, *why;
    json_t *head = NULL, *body = NULL;
    jwt_t *jwt = NULL;
    char *copy;
    int rc;

    if (len > SSE_JWT_MAX_LEN)
        return "token too large";
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (apr_size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || dot1 == token || dot2 == dot1 + 1)
        return "malformed token";
    head = segment_object(p, token, (apr_size_t)(dot1 - token));
    if (!head)
        return "malformed token";
    /* The alg before the signature's form, so that an unsigned token
     * ("alg": "none", empty signature) is told apart. */
    why = header(head, key->alg);
    json_decref(head);
    if (why)
        return why;
    {
        /* Non-empty, and no further dot: b64url_decode refuses a dot as
         * any other character outside the alphabet. */
        const char *sig = dot2 + 1;
        apr_size_t n = len - (apr_size_t)(sig - token);
        unsigned char *raw = apr_palloc(p, n * 3 / 4 + 1);
        if (n == 0 || b64url_decode(sig, n, raw) < 0)
            return "malformed token";
    }
    body = segment_object(p, dot1 + 1, (apr_size_t)(dot2 - dot1 - 1));
    if (!body)
        return "malformed token";

    copy = apr_pstrmemdup(p, token, len);
    rc = jwt_decode(&jwt, copy, key->material, key->len);
    /* Belt and braces: what libjwt verified with must be what was asked. */
    if (rc == 0 && jwt_get_alg(jwt) != key->alg->jalg)
        rc = EINVAL;
    jwt_free(jwt);
    ERR_clear_error();
    if (rc != 0) {
        json_decref(body);
        return "bad signature";
    }

    memset(out, 0, sizeof *out);
    why = claims(p, body, now, out);
    json_decref(body);
    return why;
}
