/* sse_wake_poll.c -- no portable cross-process wait: the sleeper looks at
 * the word every POLL_INTERVAL, and waking is nothing more than the change
 * the waker already made. Included by sse_wake.c. */
#include <apr_time.h>

#define POLL_INTERVAL apr_time_from_msec(10)

const char *const sse_wake_backend = "poll";

void sse_wake_wait(uint32_t *word, uint32_t seen, apr_interval_time_t timeout)
{
    apr_interval_time_t waited = 0;

    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == seen && waited < timeout) {
        apr_sleep(POLL_INTERVAL);
        waited += POLL_INTERVAL;
    }
}

void sse_wake_all(uint32_t *word, void *unused)
{
}
