/* sse_frame.c -- reference-counted frames (see sse_frame.h). */
#include "sse_frame.h"
#include "sse_assert.h"

#include <stdlib.h>
#include <string.h>

sse_frame *sse_frame_make(apr_uint64_t stamp, const char *bytes, apr_size_t len)
{
    sse_frame *f = malloc(sizeof(*f) + len);

    if (!f)
        return NULL;
    f->refs = 1;
    f->stamp = stamp;
    f->len = len;
    memcpy(f->bytes, bytes, len);
    return f;
}

void sse_frame_ref(sse_frame *f)
{
    __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
}

void sse_frame_unref(sse_frame *f)
{
    apr_uint32_t left = __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL);

    SSE_ASSERT(left != (apr_uint32_t)-1);       /* released once too often */
    if (left == 0)
        free(f);
}
