/* jwt.c -- fuzzes sse_jwt_verify (Mercure JWTs).
 *
 * The input is the token. It is verified, at a fixed now, against three
 * keys made once: an HS256 secret, the RS256 public key below, and an
 * HS256 key whose secret is that public key's PEM text (an administrator's
 * mistake, and the other half of the key-confusion attack). Properties:
 *  - no crash, leak or sanitizer report, whatever the bytes;
 *  - the answer is NULL or one of the reasons sse_jwt.h lists;
 *  - a token accepted is signed with that very key, as checked here by a
 *    second implementation with OpenSSL alone (HMAC recomputed over the
 *    signing input and compared with the signature segment; RSA
 *    signature decoded and verified with EVP_DigestVerify): random or
 *    mutated bytes are never accepted unless they carry a real signature;
 *  - a token accepted has the compact form (two dots, at most
 *    SSE_JWT_MAX_LEN bytes) and is not expired at now (exp 0 or > now);
 *  - no token passes both the RS256 key and the HS256 key holding the
 *    same PEM (one header alg, never both).
 * The seeds (fuzz/seeds.py) hold tokens valid for each key, including
 * the HS256-over-the-PEM token that libjwt alone would accept for RS256.
 * The RSA private key was used once to sign that seed and thrown away.
 */
#include "fuzz.h"

#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "sse_jwt.h"

#define NOW 1800000000
#define SECRET "fuzz-secret-of-thirty-two-bytes!"

static const char rsa_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4DlF9a9G+SD4hcXjDo+3\n"
    "VtJz+f4SQxhryJIoo7NfB0UNpD1JuQnb+AA3WcdAE+jWW8f5eF3B9YSuMGDUvI24\n"
    "ffBI3NuAIDquHUtpEqtiEncwRaxsgLUGLIZcMM1JV0mCezskWYmaSpzpDQrd9kLn\n"
    "xcoGJ3JbISLFpp3v5XDv1rdoloKet7qGqRKVpAzX1iaaHT0HdtQrPCWYpCQtXgu9\n"
    "Tpz0tdQOS47KOA2srDYAUTPnnQWXI0t+zCcE9sOeF7rQlvcO5p7OlGT7YQUzxljx\n"
    "BKE/cIXlxW3w7C1uRgQ4u12XqMnGYB9bbqdlgOQdYW0fbXUzj/CzfCLLx2L+waRD\n"
    "6wIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char *const reasons[] = {
    "token too large", "malformed token", "algorithm not allowed", "unsupported token type",
    "unsupported critical header", "bad signature", "malformed claims", "token expired",
    "token not yet valid",
};

static apr_pool_t *key_pool;
static sse_jwt_key *hs, *rs, *hs_pem;
static EVP_PKEY *rsa_key;

static void make_keys(void)
{
    char path[] = "/tmp/sse-fuzz-jwt-XXXXXX";
    int fd;

    apr_initialize();
    apr_pool_create(&key_pool, NULL);
    fd = mkstemp(path);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, rsa_pem, sizeof rsa_pem - 1) == (ssize_t)(sizeof rsa_pem - 1));
    close(fd);
    FUZZ_CHECK(sse_jwt_key_make(key_pool, SECRET, "HS256", &hs) == NULL);
    FUZZ_CHECK(sse_jwt_key_make(key_pool, path, "RS256", &rs) == NULL);
    FUZZ_CHECK(sse_jwt_key_make(key_pool, rsa_pem, "HS256", &hs_pem) == NULL);
    unlink(path);
    {
        BIO *b = BIO_new_mem_buf(rsa_pem, -1);
        rsa_key = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
        BIO_free(b);
        FUZZ_CHECK(rsa_key != NULL);
    }
}

/* base64url, without padding, as the JWS form writes it. */
static size_t b64url(const unsigned char *d, size_t n, char *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i, o = 0;
    uint32_t v;

    for (i = 0; i + 3 <= n; i += 3) {
        v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        v = (uint32_t)d[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
    }
    else if (n - i == 2) {
        v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
    }
    return o;
}

/* The signature segment is the base64url of HMAC-SHA256(secret, input). */
static int hmac_signed(const char *tok, size_t signing_len, const char *sig, size_t sig_len,
                       const char *secret, size_t secret_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char enc[EVP_MAX_MD_SIZE * 2];
    size_t n;

    HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)tok, signing_len, mac,
         &mac_len);
    n = b64url(mac, mac_len, enc);
    return fuzz_bytes_eq(enc, n, sig, sig_len);
}

/* The signature segment decodes (re-encoding gives it back: canonical) to
 * an RSASSA-PKCS1-v1_5 SHA-256 signature of the input under rsa_key. */
static int rsa_signed(apr_pool_t *p, const char *tok, size_t signing_len, const char *sig,
                      size_t sig_len)
{
    unsigned char *raw = apr_palloc(p, sig_len);
    char *back = apr_palloc(p, sig_len + 4);
    size_t i, n = 0;
    uint32_t acc = 0;
    int bits = 0, ok;
    EVP_MD_CTX *md;

    for (i = 0; i < sig_len; i++) {
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *c = memchr(a, sig[i], 64);
        if (!c)
            return 0;
        acc = acc << 6 | (uint32_t)(c - a);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (!fuzz_bytes_eq(back, b64url(raw, n, back), sig, sig_len))
        return 0;
    md = EVP_MD_CTX_new();
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, rsa_key) == 1
         && EVP_DigestVerify(md, raw, n, (const unsigned char *)tok, signing_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static void check_answer(const char *why, const sse_jwt_claims *c)
{
    size_t i;
    int known = 0;

    if (!why) {
        FUZZ_CHECK(c->exp == 0 || c->exp > NOW);
        return;
    }
    for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        known |= strcmp(why, reasons[i]) == 0;
    FUZZ_CHECK(known);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *tok = (const char *)data, *why_hs, *why_rs, *why_pem, *dot;
    sse_jwt_claims c;
    size_t signing = 0, dots = 0, i;

    if (!hs)
        make_keys();
    p = fuzz_pool();
    for (i = 0; i < size; i++) {
        if (data[i] == '.') {
            dots++;
            signing = i;
        }
    }
    dot = tok + signing;

    why_hs = sse_jwt_verify(p, hs, tok, size, NOW, &c);
    check_answer(why_hs, &c);
    if (!why_hs) {
        FUZZ_CHECK(dots == 2 && size <= SSE_JWT_MAX_LEN);
        FUZZ_CHECK(hmac_signed(tok, signing, dot + 1, size - signing - 1, SECRET,
                               strlen(SECRET)));
    }
    why_rs = sse_jwt_verify(p, rs, tok, size, NOW, &c);
    check_answer(why_rs, &c);
    if (!why_rs) {
        FUZZ_CHECK(dots == 2 && size <= SSE_JWT_MAX_LEN);
        FUZZ_CHECK(rsa_signed(p, tok, signing, dot + 1, size - signing - 1));
    }
    why_pem = sse_jwt_verify(p, hs_pem, tok, size, NOW, &c);
    check_answer(why_pem, &c);
    if (!why_pem) {
        FUZZ_CHECK(dots == 2 && size <= SSE_JWT_MAX_LEN);
        FUZZ_CHECK(hmac_signed(tok, signing, dot + 1, size - signing - 1, rsa_pem,
                               strlen(rsa_pem)));
    }
    FUZZ_CHECK(why_rs || why_pem);
    return 0;
}
