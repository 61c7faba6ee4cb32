/* topic.c -- fuzzes Mercure topic selectors (sse_topic.c).
 *
 * Input: one separator byte, then three fields cut at it: the selector,
 * a topic, and bytes that drive an expansion of the selector. Properties:
 *  - sse_topic_compile refuses a selector (NULL and a non-empty reason)
 *    exactly when a second parser written here from sse_topic.c's grammar
 *    does, and a selector it accepts carries no reason;
 *  - "*" matches every topic; a selector without '{' matches exactly the
 *    topic of the same bytes; every selector matches itself; a selector
 *    from sse_topic_exact matches exactly the identical topic;
 *  - sse_topic_match's two ways (one word for small programs, the general
 *    one) agree, on every topic below;
 *  - for a template and a topic of at most 64 bytes, sse_topic_match gives
 *    the answer of a second matcher written here (a memoized recursion over
 *    the template's parts, from the table in sse_topic.c's comment);
 *  - an RFC 6570 expansion of the template matches it: each variable is
 *    undefined, a string, a list or an associative array, from the third
 *    field; values percent-encoded as the operator requires (U, or U R and
 *    triplets for + and #), prefixes applied, named operators writing
 *    name=value, explode and ifemp as RFC 6570 section 3.2.1 says; the
 *    literals are copied as written (the reference hub compares them so).
 *    One case is left out, as the reference hub does not match it either:
 *    an exploded associative array giving the first value of a simple,
 *    '.' or '/' expression whose first variable is not exploded (sse_topic.c
 *    says so).
 */
#include "fuzz.h"
#include "sse_topic.h"

/* sse_topic.c's switch (SSE_TOPIC_TEST_HOOKS): 1 runs every program the
 * general way; small programs otherwise take the one-word way. */
extern int sse_topic_test_general;

/* sse_topic_match both ways, which must agree. */
static int match2(const sse_topic_selector *sel, const char *t, size_t len)
{
    int one, general;

    sse_topic_test_general = 0;
    one = sse_topic_match(sel, t, len);
    sse_topic_test_general = 1;
    general = sse_topic_match(sel, t, len);
    sse_topic_test_general = 0;
    FUZZ_CHECK(one == general);
    return one;
}

/* ---- a second parser ---- */

typedef struct {
    const char *name;
    size_t nlen;
    int prefix, explode;
} ref_var;

typedef struct {
    int lit;
    const char *s;      /* lit: the bytes */
    size_t len;
    char op;            /* '\0' simple, else one of +#./;?& */
    ref_var *vars;
    int nvars;
} ref_part;

static int ref_hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int ref_varchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* RFC 6570 literals: the ASCII ones, else one UTF-8 code point of ucschar
 * or iprivate. Returns the bytes taken, 0 when not a literal. */
static size_t ref_literal(const unsigned char *s, size_t n)
{
    static const char ok[] = "!#$&'()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_"
                             "abcdefghijklmnopqrstuvwxyz~";
    unsigned long cp;
    size_t k, i;

    if (s[0] == '%')
        return n >= 3 && ref_hex(s[1]) && ref_hex(s[2]) ? 3 : 0;
    if (s[0] < 0x80)
        return s[0] && strchr(ok, s[0]) ? 1 : 0;
    k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (k == 0 || s[0] > 0xf4 || n < k)
        return 0;
    cp = s[0] & (0x7f >> k);
    for (i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < (k == 2 ? 0x80ul : k == 3 ? 0x800ul : 0x10000ul) || cp > 0x10ffff)
        return 0;
    if (cp <= 0xffff) {
        int in = (cp >= 0xa0 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xf8ff)
                 || (cp >= 0xf900 && cp <= 0xfdcf) || (cp >= 0xfdf0 && cp <= 0xffef);
        return in ? k : 0;
    }
    if ((cp & 0xffff) >= 0xfffe || (cp >= 0xe0000 && cp <= 0xe0fff))
        return 0;
    return k;
}

/* The parts of a template; -1 when it is not one. */
static int ref_parse(apr_pool_t *p, const char *sel, size_t len, ref_part **out)
{
    const unsigned char *s = (const unsigned char *)sel;
    ref_part *parts = apr_pcalloc(p, sizeof(ref_part) * (len + 1));
    int n = 0;
    size_t i = 0;

    if (len > SSE_TOPIC_TEMPLATE_MAX)
        return -1;
    while (i < len) {
        if (s[i] != '{') {
            size_t start = i, k;
            while (i < len && s[i] != '{') {
                if (!(k = ref_literal(s + i, len - i)))
                    return -1;
                i += k;
            }
            parts[n].lit = 1;
            parts[n].s = sel + start;
            parts[n++].len = i - start;
            continue;
        }
        /* An expression. */
        i++;
        if (i < len && s[i] && strchr("+#./;?&", s[i]))
            parts[n].op = (char)s[i++];
        parts[n].vars = apr_pcalloc(p, sizeof(ref_var) * (len + 1));
        for (;;) {
            ref_var *v = &parts[n].vars[parts[n].nvars++];
            size_t start = i;
            /* Chunks of varchars and triplets, single dots between. */
            for (;;) {
                size_t chunk = i;
                while (i < len && (ref_varchar(s[i])
                                   || (s[i] == '%' && i + 2 < len && ref_hex(s[i + 1])
                                       && ref_hex(s[i + 2]))))
                    i += s[i] == '%' ? 3 : 1;
                if (i == chunk)
                    return -1;
                if (i < len && s[i] == '.') {
                    i++;
                    continue;
                }
                break;
            }
            v->name = sel + start;
            v->nlen = i - start;
            if (i < len && s[i] == ':') {
                size_t d = ++i;
                while (i < len && s[i] >= '0' && s[i] <= '9' && i - d < 5)
                    v->prefix = v->prefix * 10 + (s[i++] - '0');
                if (i == d || s[d] == '0' || i - d > 4)
                    return -1;
            }
            else if (i < len && s[i] == '*') {
                v->explode = 1;
                i++;
            }
            if (i >= len)
                return -1;
            if (s[i] == '}')
                break;
            if (s[i] != ',')
                return -1;
            i++;
        }
        i++;
        n++;
    }
    *out = parts;
    return n;
}

/* ---- a second matcher ---- */

#define R_U   1     /* unreserved */
#define R_R   2     /* reserved */
#define R_CM  4     /* ',' */
#define R_EQ  8     /* '=' */

static int ref_in(int c, int cls)
{
    int u = ref_varchar(c) || c == '-' || c == '.' || c == '~';
    int r = c && strchr(":/?#[]@!$&'()*+,;=", c);
    return ((cls & R_U) && u) || ((cls & R_R) && r) || ((cls & R_CM) && c == ',')
           || ((cls & R_EQ) && c == '=');
}

typedef struct {
    const ref_part *parts;
    int nparts;
    const unsigned char *t;
    size_t len;
    signed char *memo;  /* [part][k][pos], -1 unknown */
    size_t kdim;
} ref_matcher;

static void ref_shape(const ref_part *e, char *first, char *sep, int *ca, int *cb, int *max)
{
    int named = e->op == ';' || e->op == '?' || e->op == '&';
    int reserved = e->op == '+' || e->op == '#', any = 0, i;

    for (i = 0; i < e->nvars; i++)
        any |= e->vars[i].explode;
    *first = e->op == '+' ? 0 : e->op == '?' ? '?' : e->op;
    *sep = e->op == '.' || e->op == '/' || e->op == ';' ? e->op
           : e->op == '?' || e->op == '&' ? '&' : ',';
    *ca = reserved ? R_U | R_R : R_U | R_CM | (named || e->vars[0].explode ? R_EQ : 0);
    *cb = reserved ? R_U | R_R : R_U | R_CM | (named || any ? R_EQ : 0);
    *max = any ? -1 : e->nvars - 1;
}

/* Whether t[pos..] matches parts e.. when in state k of part e: 0 before
 * it, 1 + u inside its value number u (u > 1 is 1 when unbounded). */
static int ref_m(ref_matcher *m, int e, size_t k, size_t pos)
{
    signed char *memo;
    int r = 0;

    if (e == m->nparts)
        return pos == m->len;
    memo = &m->memo[((size_t)e * m->kdim + k) * (m->len + 1) + pos];
    if (*memo >= 0)
        return *memo;
    if (m->parts[e].lit) {
        const ref_part *l = &m->parts[e];
        r = pos + l->len <= m->len && memcmp(m->t + pos, l->s, l->len) == 0
            && ref_m(m, e + 1, 0, pos + l->len);
    }
    else {
        char first, sep;
        int ca, cb, max;
        ref_shape(&m->parts[e], &first, &sep, &ca, &cb, &max);
        if (k == 0) {
            r = ref_m(m, e + 1, 0, pos)
                || (!first ? ref_m(m, e, 1, pos)
                           : pos < m->len && m->t[pos] == (unsigned char)first && ref_m(m, e, 1, pos + 1));
        }
        else {
            size_t u = k - 1, nu = max < 0 ? 1 : u + 1;
            int cls = u == 0 ? ca : cb;
            r = ref_m(m, e + 1, 0, pos);
            if (!r && pos < m->len && m->t[pos] == (unsigned char)sep && (max < 0 || u < (size_t)max))
                r = ref_m(m, e, 1 + nu, pos + 1);
            if (!r && pos < m->len && ref_in(m->t[pos], cls))
                r = ref_m(m, e, k, pos + 1);
            if (!r && pos + 2 < m->len && m->t[pos] == '%' && ref_hex(m->t[pos + 1])
                && ref_hex(m->t[pos + 2]))
                r = ref_m(m, e, k, pos + 3);
        }
    }
    *memo = (signed char)r;
    return r;
}

static int ref_match(apr_pool_t *p, const ref_part *parts, int n, const char *t, size_t len)
{
    ref_matcher m = { parts, n, (const unsigned char *)t, len, NULL, len + 3 };
    size_t size = (size_t)(n + 1) * m.kdim * (len + 1);

    m.memo = apr_palloc(p, size);
    memset(m.memo, -1, size);
    return ref_m(&m, 0, 0, 0);
}

/* ---- an RFC 6570 expansion ---- */

typedef struct {
    const unsigned char *d;
    size_t n, i;
} ref_src;

static int next(ref_src *s)
{
    return s->i < s->n ? s->d[s->i++] : 0;
}

static void put(char **o, const char *s, size_t n)
{
    memcpy(*o, s, n);
    *o += n;
}

/* Encodes n bytes of s: U stay, R and triplets too when reserved. */
static void enc(char **o, const unsigned char *s, size_t n, int reserved)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ref_in(s[i], R_U) || (reserved && ref_in(s[i], R_R))) {
            *(*o)++ = (char)s[i];
        }
        else if (reserved && s[i] == '%' && i + 2 < n && ref_hex(s[i + 1]) && ref_hex(s[i + 2])) {
            put(o, (const char *)s + i, 3);
            i += 2;
        }
        else {
            *o += sprintf(*o, "%%%02X", s[i]);
        }
    }
}

/* A string of the source: a length, then the bytes. */
static const unsigned char *str(ref_src *s, size_t *n)
{
    size_t want = (size_t)next(s) % 8;
    const unsigned char *at = s->d + s->i;

    *n = want < s->n - s->i ? want : s->n - s->i;
    s->i += *n;
    return at;
}

/* Expands the parts with values from src into out (large enough: see
 * the caller); returns the length. */
static size_t expand(const ref_part *parts, int n, ref_src *src, char *out)
{
    char *o = out;
    int e, i, j;

    for (e = 0; e < n; e++) {
        const ref_part *x = &parts[e];
        char first, sep;
        int ca, cb, max, named = x->op == ';' || x->op == '?' || x->op == '&';
        int reserved = x->op == '+' || x->op == '#', defined = 0;
        const char *ifemp = x->op == '?' || x->op == '&' ? "=" : "";

        if (x->lit) {
            put(&o, x->s, x->len);
            continue;
        }
        ref_shape(x, &first, &sep, &ca, &cb, &max);
        for (i = 0; i < x->nvars; i++) {
            const ref_var *v = &x->vars[i];
            int type = next(src) % 4, count = 1 + next(src) % 3;
            const unsigned char *k, *val;
            size_t kn, vn;

            if (type == 0)
                continue;               /* undefined */
            /* The case the reference hub misses (see above): a list. */
            if (type == 3 && v->explode && !defined && !named && !reserved
                && !x->vars[0].explode)
                type = 2;
            if (defined)
                *o++ = sep;
            else if (first)
                *o++ = first;
            defined = 1;
            if (type == 1) {            /* a string */
                val = str(src, &vn);
                if (v->prefix && (size_t)v->prefix < vn)
                    vn = (size_t)v->prefix;
                if (named) {
                    put(&o, v->name, v->nlen);
                    if (vn == 0) {
                        put(&o, ifemp, strlen(ifemp));
                        continue;
                    }
                    *o++ = '=';
                }
                enc(&o, val, vn, reserved);
                continue;
            }
            /* A list (type 2) or pairs (type 3) of count items. */
            if (!v->explode && named) {
                put(&o, v->name, v->nlen);
                *o++ = '=';
            }
            for (j = 0; j < count; j++) {
                if (j)
                    *o++ = v->explode ? sep : ',';
                if (type == 3) {
                    k = str(src, &kn);
                    val = str(src, &vn);
                    enc(&o, k, kn, reserved);
                    if (v->explode) {
                        if (vn == 0 && named) {
                            put(&o, ifemp, strlen(ifemp));
                            continue;
                        }
                        *o++ = '=';
                    }
                    else {
                        *o++ = ',';
                    }
                    enc(&o, val, vn, reserved);
                }
                else {
                    val = str(src, &vn);
                    if (v->explode && named) {
                        put(&o, v->name, v->nlen);
                        if (vn == 0) {
                            put(&o, ifemp, strlen(ifemp));
                            continue;
                        }
                        *o++ = '=';
                    }
                    enc(&o, val, vn, reserved);
                }
            }
        }
    }
    return (size_t)(o - out);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    const char *f[3], *why = "unset";
    size_t len[3], xlen;
    sse_topic_selector *sel, *ex;
    ref_part *parts = NULL;
    int nparts, got;
    int has_brace;

    if (n < 1)
        return 0;
    fuzz_split(d + 1, n - 1, d[0], 3, f, len);
    has_brace = len[0] && memchr(f[0], '{', len[0]) != NULL;

    sel = sse_topic_compile(p, f[0], len[0], &why);
    nparts = has_brace ? ref_parse(p, f[0], len[0], &parts) : 0;
    FUZZ_CHECK((sel == NULL) == (nparts < 0));
    FUZZ_CHECK(sel ? why == NULL : why != NULL && strlen(why) > 0);
    ex = sse_topic_exact(p, f[0], len[0]);
    FUZZ_CHECK(sse_topic_match(ex, f[0], len[0]) == 1);
    FUZZ_CHECK(sse_topic_match(ex, f[1], len[1]) == fuzz_bytes_eq(f[0], len[0], f[1], len[1]));
    if (!sel)
        return 0;
    got = match2(sel, f[1], len[1]);
    FUZZ_CHECK(got == 0 || got == 1);
    FUZZ_CHECK(match2(sel, f[0], len[0]) == 1);
    if (len[0] == 1 && f[0][0] == '*') {
        FUZZ_CHECK(got == 1);
        return 0;
    }
    if (!has_brace) {
        FUZZ_CHECK(got == fuzz_bytes_eq(f[0], len[0], f[1], len[1]));
        return 0;
    }
    if (len[1] <= 64 && len[0] <= 256)
        FUZZ_CHECK(got == (fuzz_bytes_eq(f[0], len[0], f[1], len[1])
                           || ref_match(p, parts, nparts, f[1], len[1])));
    {
        /* An expansion: per variable at most 3 items of 2 strings of 7
         * bytes, each byte 3 when encoded, with a name, '=' and a
         * separator each; the literals as they are. */
        ref_src src = { (const unsigned char *)f[2], len[2], 0 };
        size_t nvars = 0, cap;
        char *out;
        int e;

        for (e = 0; e < nparts; e++)
            nvars += (size_t)parts[e].nvars + 1;
        cap = len[0] + nvars * 3 * (2 * 7 * 3 + 2 * len[0] + 4) + 16;
        out = apr_palloc(p, cap);
        xlen = expand(parts, nparts, &src, out);
        FUZZ_CHECK(xlen <= cap);
        FUZZ_CHECK(match2(sel, out, xlen) == 1);
        if (xlen <= 64 && len[0] <= 256)
            FUZZ_CHECK(ref_match(p, parts, nparts, out, xlen) == 1);
    }
    return 0;
}
