/* sse_buf.h -- one growable byte buffer, for the places that hold bytes of
 * a size known only as they arrive: a request body, a response to publish,
 * a line of a text/event-stream being parsed, a record read from the ring.
 *
 * A buffer grows from a pool (pool != NULL: the old block stays in the pool
 * until it is cleared, as everything there does) or from the heap (pool ==
 * NULL: realloc, and sse_buf_free() when done), doubling, so that n appends
 * cost O(n) copies. Growth never exceeds `limit` when one is set: reserving
 * past it fails, and the caller says what the limit was.
 *
 * Only APR pools: no httpd. Tested by tests/unit.
 */
#ifndef SSE_BUF_H
#define SSE_BUF_H

#include <apr_pools.h>

typedef struct {
    char       *s;
    apr_size_t  len, cap;
    apr_size_t  limit;      /* most bytes it may hold; 0: no limit */
    apr_pool_t *pool;       /* NULL: heap */
} sse_buf;

#define SSE_BUF_INITIAL 256    /* the first block, unless more is asked for */

/* An empty buffer; nothing is allocated until the first reserve. */
void sse_buf_init(sse_buf *b, apr_pool_t *pool, apr_size_t limit);

/* Makes room for len + more bytes (and a NUL after them). Returns 1, or 0
 * when that would pass the limit or memory ran out (the buffer is then as
 * it was). */
int sse_buf_reserve(sse_buf *b, apr_size_t more);

/* Appends n bytes; 1, or 0 as for sse_buf_reserve. */
int sse_buf_append(sse_buf *b, const void *data, apr_size_t n);

/* Hands the heap block over (the buffer is then empty): the caller frees
 * it. Only for heap buffers. */
char *sse_buf_detach(sse_buf *b);

/* Frees a heap buffer's block; nothing for a pool buffer. */
void sse_buf_free(sse_buf *b);

#endif
