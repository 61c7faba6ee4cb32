/* check.h -- the unit tests' check counter: CHECK(cond) counts a pass, or
 * prints the failed condition with its place and counts a failure; each
 * program ends with a "<name>: N passed, N failed" line from these counts.
 * Single-threaded use (test_store_threads keeps a locked one of its own). */
#ifndef SSE_TEST_CHECK_H
#define SSE_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)
static void check(int ok, const char *what, const char *file, int line)
{
    if (ok) {
        passed++;
    }
    else {
        failed++;
        printf("FAIL %s:%d: %s\n", file, line, what);
    }
}

#endif
