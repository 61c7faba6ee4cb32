/* sse_wake.c -- picks the wake-up backend for this platform (sse_wake.h). */
#include "sse_wake.h"

#ifdef __linux__
#include "sse_wake_futex.c"
#else
#include "sse_wake_poll.c"
#endif
