/* sse_dispatch.h -- the child's dispatcher thread.
 *
 * Every child runs one. It sleeps on its process's wake word (woken only by
 * publishes on channels with streams in this child, sse_store.h), reads the
 * new records from the ring once, up to SSE_FANOUT_MAX at a time, and hands
 * them to the registry (sse_registry.h), which gives each stream its share.
 * It ends when the child stops, after waking every stream so that clients
 * reconnect to the next generation.
 */
#ifndef SSE_DISPATCH_H
#define SSE_DISPATCH_H

#include <pthread.h>
#include <httpd.h>

/* Starts the dispatcher of this child (child_init); stopped and joined by a
 * pre-cleanup of pchild. */
void sse_dispatch_child_init(apr_pool_t *pchild, server_rec *s);

/* Starts one of a child's own threads (the dispatcher, the Redis follower):
 * a small stack, and every signal blocked, so that httpd's signals reach
 * the threads that expect them. Returns pthread_create's result. */
int sse_dispatch_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* Joins such a thread, waiting at most `seconds`: 1 when it was joined, 0
 * when it did not end in time. Bounded because under prefork a child's
 * cleanups may run in a signal handler, and the process exits right after
 * whether or not the thread has ended. */
int sse_dispatch_thread_join(pthread_t thread, int seconds);

#endif
