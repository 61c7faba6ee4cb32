/* sse_wake.h -- sleeping on a 32-bit word in shared memory until another
 * process changes it.
 *
 * The ring keeps a wake word per process (sse_ring.h, "waking readers");
 * this is how a reader sleeps on its word and how a publisher wakes it,
 * across processes. One backend is compiled in, chosen by platform in
 * sse_wake.c, the way Redis's ae.c picks ae_epoll.c or ae_kqueue.c:
 *
 *   sse_wake_futex.c   Linux: a shared (not FUTEX_PRIVATE_FLAG) futex;
 *   sse_wake_poll.c    elsewhere: the sleeper polls the word.
 *
 * Neither blocks a waker. A sleeper may return early (a signal, a spurious
 * wake-up): callers re-check what they wait for.
 */
#ifndef SSE_WAKE_H
#define SSE_WAKE_H

#include <apr_time.h>
#include <stdint.h>

/* The backend's name, for the log. */
extern const char *const sse_wake_backend;

/* Sleeps while *word == seen, at most timeout. */
void sse_wake_wait(uint32_t *word, uint32_t seen, apr_interval_time_t timeout);

/* Wakes every sleeper on word (after the caller changed it). The second
 * argument is unused: the signature is sse_ring_waker's. */
void sse_wake_all(uint32_t *word, void *unused);

#endif
