/* sse_buf.c -- the growable byte buffer (see sse_buf.h). */
#include "sse_buf.h"

#include <stdlib.h>
#include <string.h>

void sse_buf_init(sse_buf *b, apr_pool_t *pool, apr_size_t limit)
{
    b->s = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
    b->pool = pool;
}

int sse_buf_reserve(sse_buf *b, apr_size_t more)
{
    apr_size_t need, cap;
    char *bigger;

    if (more > (apr_size_t)-1 / 2 - b->len)
        return 0;
    need = b->len + more;
    if (b->limit && need > b->limit)
        return 0;
    if (need < b->cap)          /* room for the NUL too */
        return 1;
    cap = b->cap ? b->cap : SSE_BUF_INITIAL;
    while (cap <= need)
        cap *= 2;
    if (b->limit && cap > b->limit + 1)
        cap = b->limit + 1;
    if (b->pool) {
        if (!(bigger = apr_palloc(b->pool, cap)))
            return 0;
        if (b->len)
            memcpy(bigger, b->s, b->len);
    }
    else if (!(bigger = realloc(b->s, cap))) {
        return 0;
    }
    b->s = bigger;
    b->cap = cap;
    return 1;
}

int sse_buf_append(sse_buf *b, const void *data, apr_size_t n)
{
    if (!sse_buf_reserve(b, n))
        return 0;
    if (n)
        memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 1;
}

char *sse_buf_detach(sse_buf *b)
{
    char *s = b->s;

    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

void sse_buf_free(sse_buf *b)
{
    if (!b->pool)
        free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}
