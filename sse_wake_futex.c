/* sse_wake_futex.c -- Linux: the word is a futex shared between processes
 * (no FUTEX_PRIVATE_FLAG: the sleepers are in other processes, mapping the
 * same segment). Included by sse_wake.c. */
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

const char *const sse_wake_backend = "futex";

void sse_wake_wait(uint32_t *word, uint32_t seen, apr_interval_time_t timeout)
{
    struct timespec ts;

    ts.tv_sec = (time_t)apr_time_sec(timeout);
    ts.tv_nsec = (long)apr_time_usec(timeout) * 1000;
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
}

void sse_wake_all(uint32_t *word, void *unused)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
