/* sse_assert.h -- invariants whose breach means memory corruption.
 *
 * SSE_ASSERT(e) is checked in every build, not only in debug builds: a ring
 * or a registry that broke its own invariant would go on to overwrite
 * shared memory or free what another thread uses, and a child that stops
 * at once (httpd's ap_assert logs where, then aborts; the parent starts a
 * new child, and the ring's lock recovers) is the lesser harm. The pure
 * units use it too; built without httpd (the unit tests, the fuzzers:
 * -DSSE_NO_HTTPD), it prints where and aborts.
 *
 * SSE_STATIC_ASSERT states at compile time what two sizes or limits must
 * agree on.
 */
#ifndef SSE_ASSERT_H
#define SSE_ASSERT_H

#ifdef SSE_NO_HTTPD
#include <stdio.h>
#include <stdlib.h>
#define SSE_ASSERT(e) \
    ((e) ? (void)0 : (fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
                              #e), abort()))
#else
#include <httpd.h>
#define SSE_ASSERT(e) ap_assert(e)
#endif

#define SSE_STATIC_ASSERT(e, why) _Static_assert(e, why)

#endif
