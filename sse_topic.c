/* sse_topic.c -- Mercure topic selectors (see sse_topic.h).
 *
 * WHAT MATCHES. The reference hub does not expand templates: it turns each
 * one into a regular expression (yosida95/uritemplate v3, Template.Regexp)
 * and tests the topic against it, after an exact comparison. A drop-in
 * replacement must deliver and authorize the same topics, so this file
 * implements that language, which differs from "could be an expansion"
 * in a few ways that Symfony applications may rely on (noted below).
 *
 * A template is literals and expressions. A literal matches its own bytes
 * ("%41" matches "%41", not "A"). An expression matches either nothing
 * (all its variables undefined) or its first character, a value, then up
 * to n-1 further values each after the separator, n being the number of
 * variables ({/a,b}: two values), any number when one is exploded ('*').
 * A value is a run, possibly empty, of the characters of its operator and
 * of percent-encoded triplets %XX (either case). With U the unreserved
 * characters (ALPHA DIGIT - . _ ~) and R the reserved ones
 * (: / ? # [ ] @ ! $ & ' ( ) * + , ; =):
 *
 *   operator       first  sep  value characters       example: matches / does not
 *   {id}  simple     -     ,   U ,                    books/{id}: books/1, books/,
 *                                                     books/a%2Fb / books/1/2, books/a b
 *   {+p}  reserved   -     ,   U R                    {+p}: a/b?c=d#e / a b, a%zz
 *   {#f}  fragment   #     ,   U R                    x{#f}: x, x#a/b / xa, x#a b
 *   {.e}  label      .     .   U ,                    f{.e}: f.json, f.tar.gz / f.a/b
 *   {/s}  path       /     /   U ,                    p{/a,b}: p/x/y / p/x/y/z, p/x?
 *   {;k}  params     ;     ;   U , =                  m{;x,y}: m;x=1;y=2 / m;a;b;c
 *   {?k}  query      ?     &   U , =                  s{?q}: s?q=1, s?zz, s? / s?q=1&r=2
 *   {&k}  continue   &     &   U , =                  s?a=1{&b}: s?a=1&b=2 / s?a=1&b&c
 *
 * and an exploded variable ({/s*}, {?k*}, {x*}) adds '=' to the value
 * characters and lifts the count (p{/s*}: p/a/b/c/d, p/k=v).
 *
 * Where this is looser than RFC 6570 expansion, as the reference hub is:
 *  - the names of ; ? & are not checked ({?q} matches "?zz" and "?x=1");
 *  - a prefix modifier does not bound the length ({id:2} matches "12345");
 *  - an expression's variables may all be undefined, and a value empty.
 * And stricter in one corner: in a simple, '.' or '/' expression whose
 * first variable is not exploded, the first value has no '=', so an
 * exploded associative array expanding first does not match ({x,keys*}
 * with x undefined expands to "semi=%3B,dot=.", which neither matches).
 * The simple operator never matches '/', ':', '?', '#', spaces, raw
 * non-ASCII bytes: books/{id} is one path segment, as users expect.
 *
 * Every selector also matches the topic identical to it, byte for byte
 * (the hub's first test). "*" matches every topic. A selector holding no
 * '{' is exact: only that topic. Exactness is by bytes: NUL, invalid UTF-8
 * and all compare as themselves.
 *
 * WHAT IS MALFORMED. A selector holding a '{' is a template under RFC
 * 6570's grammar, as the reference parser applies it: literals refuse
 * controls, space, " < > \ ^ ` { | } and DEL (percent-encode them), '%'
 * starts a triplet, non-ASCII literals are valid UTF-8 in ucschar or
 * iprivate; operators = , ! @ | are reserved; a name is ALPHA, DIGIT, '_'
 * and %XX, with single dots inside; a prefix is 1 to 9999 without a
 * leading zero, and excludes explode. The reference hub falls back to an
 * exact comparison for a malformed template; sse_topic_compile refuses it
 * (a subscriber's typo deserves a 400 that says what is wrong) and
 * sse_topic_exact gives the fallback where a 400 is not the answer.
 * Differences with the reference otherwise: none intended, but Go's regexp
 * reads a non-UTF-8 topic byte as U+FFFD (here bytes are bytes; Mercure
 * topics are UTF-8 anyway) and cannot compile {0,n} for n > 1000 (a
 * template of over 1001 variables in one expression; here it works).
 *
 * HOW. A template is cut into its literal prefix (before the first '{'),
 * its literal suffix (after the last '}') and the middle; the prefix and
 * suffix are compared with memcmp, so most topics are refused in a few
 * bytes. The middle compiles to a small NFA program, run by Thompson's
 * simulation over a bitset of program positions (two bitsets on the
 * stack, no allocation):
 *
 *   BYTE c       consumes c, goes to pc+1
 *   STAR class   consumes a class byte and stays; consumes '%' to pc+1;
 *                also continues to pc+3 without consuming (the run ends)
 *   HEX1, HEX2   consume a hex digit; HEX2 returns to its STAR (pc-2)
 *   SPLIT x y    continues to x and to y without consuming
 *   MATCH        the end
 *
 * Non-consuming moves go forward, except the SPLIT that closes an exploded
 * repetition, whose backward target is the separator's BYTE (a consuming
 * position). So the closure of a set is one ascending sweep over its bits,
 * with no stack. Each topic byte costs one pass over the set words and one
 * step per live position: O(topic length x program size) at worst, the
 * program holding at most 3 positions per template byte (a literal byte is
 * 1; {x} is 4 for 3 bytes; each further ",y" is 5 for 2 bytes), hence the
 * bitset size below. Most programs have at most 64 positions (a URL with a
 * few expressions): for them compile also stores each position's closure,
 * the set is one word, and a step is one pass over the live consuming
 * positions (run_small; about 10 ns a byte, against 50 the general way).
 * A selector is immutable after compile: matching from many threads at
 * once is safe.
 */
#include "sse_topic.h"

#include <stdint.h>
#include <string.h>

#include <apr_strings.h>

#include "sse_assert.h"

enum { SEL_ALL, SEL_EXACT, SEL_TEMPLATE };

enum { OP_BYTE, OP_STAR, OP_HEX1, OP_HEX2, OP_SPLIT, OP_MATCH };

typedef struct {
    uint8_t code;
    uint8_t arg;        /* BYTE: the byte; STAR: the class mask */
    uint16_t x, y;      /* SPLIT: the targets */
} topic_op;

/* Positions: 3 per template byte and the MATCH (see above). */
#define TOPIC_MAX_OPS   (3 * SSE_TOPIC_TEMPLATE_MAX + 1)
#define TOPIC_MAX_WORDS ((TOPIC_MAX_OPS + 63) / 64)
SSE_STATIC_ASSERT(TOPIC_MAX_OPS < 65536, "program positions fit topic_op's uint16_t");

struct sse_topic_selector {
    int kind;
    const char *text;           /* the selector as given (exact comparison) */
    apr_size_t len;
    apr_size_t prefix, suffix;  /* SEL_TEMPLATE: literal bytes around the middle */
    const topic_op *ops;        /* SEL_TEMPLATE: the middle's program */
    int nops;
    /* Programs of at most 64 positions: the closure of each position, and
     * the consuming ones, so that a set is one word (see run_small). */
    const uint64_t *eps;
    uint64_t consuming;
};

/* Byte classes. C_COMMA and C_EQ single out ',' and '=' (reserved, but
 * allowed in the values of the U-only operators, see above). */
#define C_UNRES 0x01
#define C_RES   0x02
#define C_COMMA 0x04
#define C_EQ    0x08
#define C_HEX   0x10

static const uint8_t cls[256] = {
    ['0' ... '9'] = C_UNRES | C_HEX, ['A' ... 'F'] = C_UNRES | C_HEX,
    ['G' ... 'Z'] = C_UNRES, ['a' ... 'f'] = C_UNRES | C_HEX, ['g' ... 'z'] = C_UNRES,
    ['-'] = C_UNRES, ['.'] = C_UNRES, ['_'] = C_UNRES, ['~'] = C_UNRES,
    [':'] = C_RES, ['/'] = C_RES, ['?'] = C_RES, ['#'] = C_RES, ['['] = C_RES, [']'] = C_RES,
    ['@'] = C_RES, ['!'] = C_RES, ['$'] = C_RES, ['&'] = C_RES, ['\''] = C_RES,
    ['('] = C_RES, [')'] = C_RES, ['*'] = C_RES, ['+'] = C_RES, [';'] = C_RES,
    [','] = C_RES | C_COMMA, ['='] = C_RES | C_EQ,
};

/* The value classes of the operators (STAR's argument). */
#define V_U      (C_UNRES | C_COMMA)
#define V_U_EQ   (C_UNRES | C_COMMA | C_EQ)
#define V_UR     (C_UNRES | C_RES)

typedef struct {
    char first, sep;    /* '\0': none */
    int named;          /* ; ? & */
    int reserved;       /* + # */
} topic_operator;

static int op_of(char c, topic_operator *o)
{
    static const char chars[] = "+#./;?&";
    static const topic_operator table[] = {
        { 0, ',', 0, 1 }, { '#', ',', 0, 1 }, { '.', '.', 0, 0 }, { '/', '/', 0, 0 },
        { ';', ';', 1, 0 }, { '?', '&', 1, 0 }, { '&', '&', 1, 0 },
    };
    const char *at = c ? strchr(chars, c) : NULL;

    if (!at) {
        *o = (topic_operator){ 0, ',', 0, 0 };
        return 0;
    }
    *o = table[at - chars];
    return 1;
}

static int is_hex(unsigned char c)
{
    return (cls[c] & C_HEX) != 0;
}

/* An ASCII character allowed as itself in a template literal. */
static int literal_ascii(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"<>\\^`{|}%", c);
}

/* Length of the UTF-8 sequence at s (n bytes left) when it is one code
 * point of ucschar or iprivate (RFC 6570 literals), else 0. */
static int literal_utf8(const unsigned char *s, apr_size_t n)
{
    uint32_t cp;
    int k, i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        k = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        k = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        k = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n < (apr_size_t)k)
        return 0;
    for (i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (cp < 0xa0 || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp >= 0xfff0 && cp <= 0xffff))
        return 0;
    if (cp >= 0x10000 && ((cp & 0xffff) > 0xfffd || (cp >= 0xe0000 && cp < 0xe1000)))
        return 0;
    return k;
}

/* The compiler: one pass over the template emits the middle's program
 * (ops NULL: only counts it), the first pass also checking the grammar. */
typedef struct {
    apr_pool_t *p;
    const char *s;
    apr_size_t len, lo, hi;     /* the middle is [lo, hi) */
    topic_op *ops;
    int n;
    const char *why;
} topic_compiler;

static int emit(topic_compiler *c, int code, int arg, int x, int y)
{
    if (c->ops) {
        topic_op *o = &c->ops[c->n];
        o->code = (uint8_t)code;
        o->arg = (uint8_t)arg;
        o->x = (uint16_t)x;
        o->y = (uint16_t)y;
    }
    return c->n++;
}

static void patch_end(topic_compiler *c, int from, int end)
{
    int i;

    if (!c->ops)
        return;
    for (i = from; i < end; i++)
        if (c->ops[i].code == OP_SPLIT && c->ops[i].y == UINT16_MAX)
            c->ops[i].y = (uint16_t)end;
}

/* A value run: STAR, HEX1, HEX2. */
static void emit_value(topic_compiler *c, int vclass)
{
    emit(c, OP_STAR, vclass, 0, 0);
    emit(c, OP_HEX1, 0, 0, 0);
    emit(c, OP_HEX2, 0, 0, 0);
}

static int fail(topic_compiler *c, apr_size_t at, const char *what)
{
    c->why = apr_psprintf(c->p, "%s (at byte %" APR_SIZE_T_FMT ")", what, at + 1);
    return 0;
}

/* Parses the expression whose '{' is at *i and emits its program when it
 * lies in the middle; *i ends past its '}'. */
static int expression(topic_compiler *c, apr_size_t *i)
{
    const char *s = c->s;
    apr_size_t k = *i + 1, name;
    topic_operator o;
    int nvars = 0, explode_first = 0, explode_any = 0, start = c->n;
    int vclass_first, vclass_rest;

    if (k < c->len && s[k] && strchr("=,!@|", s[k]))
        return fail(c, k, "reserved operator in a template expression (one of = , ! @ |)");
    if (k < c->len && op_of(s[k], &o))
        k++;
    for (;;) {
        int explode = 0, prefixed = 0;

        /* varname: varchar *( ["."] varchar ), varchar ALPHA DIGIT _ %XX */
        name = k;
        while (k < c->len) {
            unsigned char ch = (unsigned char)s[k];
            if (ch == '%') {
                if (k + 2 >= c->len || !is_hex((unsigned char)s[k + 1])
                    || !is_hex((unsigned char)s[k + 2]))
                    return fail(c, k, "'%' not followed by two hex digits in a variable name");
                k += 3;
            }
            else if (ch == '.') {
                if (k == name || s[k - 1] == '.' || k + 1 >= c->len
                    || strchr(",}:*.", s[k + 1]))
                    return fail(c, k, "a '.' in a variable name must be between two characters");
                k++;
            }
            else if ((cls[ch] & C_UNRES) && ch != '-' && ch != '~') {
                k++;
            }
            else {
                break;
            }
        }
        if (k >= c->len)
            return fail(c, *i, "unclosed '{' in the template");
        if (!strchr(",}:*", s[k]) || !s[k])
            return fail(c, k, "invalid character in a template variable name");
        if (k == name)
            return fail(c, k, "empty variable name in a template expression");
        if (s[k] == ':') {
            int digits = 0, value = 0;
            k++;
            while (k < c->len && s[k] >= '0' && s[k] <= '9' && digits < 5) {
                value = value * 10 + (s[k] - '0');
                if (digits == 0 && value == 0)
                    return fail(c, k, "a prefix length must be 1 to 9999");
                digits++;
                k++;
            }
            if (k >= c->len)
                return fail(c, *i, "unclosed '{' in the template");
            if (digits == 0 || value > 9999)
                return fail(c, k, "a prefix length must be 1 to 9999");
            prefixed = 1;
        }
        else if (s[k] == '*') {
            explode = 1;
            k++;
        }
        if (k >= c->len)
            return fail(c, *i, "unclosed '{' in the template");
        if (nvars == 0)
            explode_first = explode;
        explode_any |= explode;
        nvars++;
        if (s[k] == '}')
            break;
        if (s[k] != ',')
            return fail(c, k, prefixed && s[k] == '*' ? "a variable cannot have both a prefix and '*'"
                                          : "expected ',' or '}' after a template variable");
        k++;
    }
    k++;        /* the '}' */

    if (*i >= c->lo && *i < c->hi) {
        int end_later = UINT16_MAX;
        vclass_first = o.reserved ? V_UR : (o.named || explode_first) ? V_U_EQ : V_U;
        vclass_rest = o.reserved ? V_UR : (o.named || explode_any) ? V_U_EQ : V_U;
        emit(c, OP_SPLIT, 0, c->n + 1, end_later);
        if (o.first)
            emit(c, OP_BYTE, (unsigned char)o.first, 0, 0);
        emit_value(c, vclass_first);
        /* When the separator is a value character and the first value's
         * class holds the others', the further values add nothing. */
        if ((nvars > 1 || explode_any)
            && !((cls[(unsigned char)o.sep] & vclass_first) && (vclass_rest & ~vclass_first) == 0)) {
            if (explode_any) {
                int sep;
                emit(c, OP_SPLIT, 0, c->n + 1, end_later);
                sep = emit(c, OP_BYTE, (unsigned char)o.sep, 0, 0);
                emit_value(c, vclass_rest);
                emit(c, OP_SPLIT, 0, sep, end_later);
            }
            else {
                int v;
                for (v = 1; v < nvars; v++) {
                    emit(c, OP_SPLIT, 0, c->n + 1, end_later);
                    emit(c, OP_BYTE, (unsigned char)o.sep, 0, 0);
                    emit_value(c, vclass_rest);
                }
            }
        }
        patch_end(c, start, c->n);
    }
    *i = k;
    return 1;
}

/* Checks the whole template and emits the middle's program. */
static int run_compiler(topic_compiler *c)
{
    const unsigned char *u = (const unsigned char *)c->s;
    apr_size_t i = 0;

    c->n = 0;
    while (i < c->len) {
        int k;
        if (u[i] == '{') {
            if (!expression(c, &i))
                return 0;
            continue;
        }
        if (u[i] == '%') {
            if (i + 2 >= c->len || !is_hex(u[i + 1]) || !is_hex(u[i + 2]))
                return fail(c, i, "'%' not followed by two hex digits in the template");
            k = 3;
        }
        else if (literal_ascii(u[i])) {
            k = 1;
        }
        else if (u[i] >= 0x80 && (k = literal_utf8(u + i, c->len - i)) > 0) {
            ;
        }
        else if (u[i] >= 0x80) {
            return fail(c, i, "invalid UTF-8 or a non-character in the template");
        }
        else {
            return fail(c, i, u[i] == '}' ? "'}' without '{' in the template"
                                          : "character not allowed in a template (percent-encode it)");
        }
        for (; k > 0; k--, i++)
            if (i >= c->lo && i < c->hi)
                emit(c, OP_BYTE, u[i], 0, 0);
    }
    emit(c, OP_MATCH, 0, 0, 0);
    return 1;
}

#define BIT_SET(set, i) ((set)[(i) >> 6] |= (uint64_t)1 << ((i) & 63))
#define BIT_HAS(set, i) (((set)[(i) >> 6] >> ((i) & 63)) & 1)

/* Adds to set what its positions reach without consuming: one ascending
 * sweep, as every such move goes forward or to a consuming position. */
static void closure(const topic_op *ops, uint64_t *set, int nwords)
{
    int w;

    for (w = 0; w < nwords; w++) {
        uint64_t bits = set[w];
        while (bits) {
            int b = __builtin_ctzll(bits), pc = w * 64 + b;
            const topic_op *o = &ops[pc];
            if (o->code == OP_SPLIT) {
                BIT_SET(set, o->x);
                BIT_SET(set, o->y);
            }
            else if (o->code == OP_STAR) {
                BIT_SET(set, pc + 3);
            }
            /* Bits set above b in this word are swept too. */
            bits = b == 63 ? 0 : set[w] & (~(uint64_t)0 << (b + 1));
        }
    }
}

static sse_topic_selector *new_selector(apr_pool_t *p, int kind, const char *s, apr_size_t len)
{
    sse_topic_selector *sel = apr_pcalloc(p, sizeof(*sel));
    char *copy = apr_palloc(p, len + 1);

    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    sel->kind = kind;
    sel->text = copy;
    sel->len = len;
    return sel;
}

sse_topic_selector *sse_topic_exact(apr_pool_t *p, const char *selector, apr_size_t len)
{
    return new_selector(p, SEL_EXACT, selector, len);
}

sse_topic_selector *sse_topic_compile(apr_pool_t *p, const char *selector,
                                      apr_size_t len, const char **why)
{
    topic_compiler c;
    sse_topic_selector *sel;
    const char *open, *close;
    apr_size_t j;

    *why = NULL;
    if (len == 1 && selector[0] == '*')
        return new_selector(p, SEL_ALL, selector, len);
    open = len ? memchr(selector, '{', len) : NULL;
    if (!open)
        return new_selector(p, SEL_EXACT, selector, len);
    if (len > SSE_TOPIC_TEMPLATE_MAX) {
        *why = apr_psprintf(p, "template longer than %d bytes", SSE_TOPIC_TEMPLATE_MAX);
        return NULL;
    }
    /* The last '}': a valid template has none in its literals. */
    for (close = NULL, j = len; j > 0; j--) {
        if (selector[j - 1] == '}') {
            close = selector + j - 1;
            break;
        }
    }
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.s = selector;
    c.len = len;
    c.lo = (apr_size_t)(open - selector);
    c.hi = close && close > open ? (apr_size_t)(close - selector) + 1 : len;
    if (!run_compiler(&c)) {
        *why = c.why;
        return NULL;
    }
    SSE_ASSERT(c.n <= TOPIC_MAX_OPS);
    sel = new_selector(p, SEL_TEMPLATE, selector, len);
    sel->prefix = c.lo;
    sel->suffix = len - c.hi;
    c.ops = apr_palloc(p, sizeof(topic_op) * (apr_size_t)c.n);
    if (!run_compiler(&c))
        SSE_ASSERT(!"a template compiles twice alike");
    sel->ops = c.ops;
    sel->nops = c.n;
    if (c.n <= 64) {
        uint64_t *eps = apr_palloc(p, sizeof(uint64_t) * (apr_size_t)c.n);
        int pc;
        for (pc = 0; pc < c.n; pc++) {
            eps[pc] = (uint64_t)1 << pc;
            closure(c.ops, &eps[pc], 1);
            if (c.ops[pc].code <= OP_HEX2)
                sel->consuming |= (uint64_t)1 << pc;
        }
        sel->eps = eps;
    }
    return sel;
}

static int run_program(const sse_topic_selector *sel, const unsigned char *s, apr_size_t n)
{
    uint64_t a[TOPIC_MAX_WORDS], b[TOPIC_MAX_WORDS], *cur = a, *next = b, *t;
    const topic_op *ops = sel->ops;
    int nwords = (sel->nops + 63) / 64, w;
    apr_size_t i;

    memset(cur, 0, sizeof(uint64_t) * (size_t)nwords);
    BIT_SET(cur, 0);
    closure(ops, cur, nwords);
    for (i = 0; i < n; i++) {
        unsigned char ch = s[i];
        uint64_t any = 0;

        memset(next, 0, sizeof(uint64_t) * (size_t)nwords);
        for (w = 0; w < nwords; w++) {
            uint64_t bits = cur[w];
            while (bits) {
                int bit = __builtin_ctzll(bits), pc = w * 64 + bit;
                const topic_op *o = &ops[pc];
                bits &= bits - 1;
                switch (o->code) {
                case OP_BYTE:
                    if (ch == o->arg)
                        BIT_SET(next, pc + 1);
                    break;
                case OP_STAR:
                    if (cls[ch] & o->arg)
                        BIT_SET(next, pc);
                    else if (ch == '%')
                        BIT_SET(next, pc + 1);
                    break;
                case OP_HEX1:
                    if (cls[ch] & C_HEX)
                        BIT_SET(next, pc + 1);
                    break;
                case OP_HEX2:
                    if (cls[ch] & C_HEX)
                        BIT_SET(next, pc - 2);
                    break;
                default:
                    break;
                }
            }
        }
        closure(ops, next, nwords);
        for (w = 0; w < nwords; w++)
            any |= next[w];
        if (!any)
            return 0;
        t = cur, cur = next, next = t;
    }
    return BIT_HAS(cur, sel->nops - 1) != 0;
}

/* run_program for a program of one word: the closures are precomputed,
 * so a step is one pass over the live consuming positions. */
static int run_small(const sse_topic_selector *sel, const unsigned char *s, apr_size_t n)
{
    const topic_op *ops = sel->ops;
    const uint64_t *eps = sel->eps;
    uint64_t cur = eps[0];
    apr_size_t i;

    for (i = 0; i < n; i++) {
        unsigned char ch = s[i];
        uint64_t next = 0, bits = cur & sel->consuming;

        while (bits) {
            int pc = __builtin_ctzll(bits);
            const topic_op *o = &ops[pc];
            bits &= bits - 1;
            switch (o->code) {
            case OP_BYTE:
                if (ch == o->arg)
                    next |= eps[pc + 1];
                break;
            case OP_STAR:
                if (cls[ch] & o->arg)
                    next |= eps[pc];
                else if (ch == '%')
                    next |= eps[pc + 1];
                break;
            case OP_HEX1:
                if (cls[ch] & C_HEX)
                    next |= eps[pc + 1];
                break;
            default:    /* OP_HEX2 */
                if (cls[ch] & C_HEX)
                    next |= eps[pc - 2];
                break;
            }
        }
        if (!next)
            return 0;
        cur = next;
    }
    return (int)((cur >> (sel->nops - 1)) & 1);
}

#ifdef SSE_TOPIC_TEST_HOOKS
/* Tests set it to run every program the general way (run_program), so
 * that both ways are checked on the same selectors. */
int sse_topic_test_general;
#else
#define sse_topic_test_general 0
#endif

apr_size_t sse_topic_cost(const sse_topic_selector *sel)
{
    if (sel->kind != SEL_TEMPLATE || (sel->eps && !sse_topic_test_general))
        return 1;
    return sel->nops > 0 ? (apr_size_t)sel->nops : 1;
}

int sse_topic_match(const sse_topic_selector *sel, const char *topic, apr_size_t len)
{
    if (sel->kind == SEL_ALL)
        return 1;
    if (len == sel->len && (len == 0 || memcmp(topic, sel->text, len) == 0))
        return 1;
    if (sel->kind == SEL_EXACT)
        return 0;
    if (len < sel->prefix + sel->suffix || memcmp(topic, sel->text, sel->prefix) != 0
        || memcmp(topic + len - sel->suffix, sel->text + sel->len - sel->suffix, sel->suffix) != 0)
        return 0;
    if (sel->eps && !sse_topic_test_general)
        return run_small(sel, (const unsigned char *)topic + sel->prefix,
                         len - sel->prefix - sel->suffix);
    return run_program(sel, (const unsigned char *)topic + sel->prefix,
                       len - sel->prefix - sel->suffix);
}
