/* sse_ring.h -- the event ring and channel table, laid out in one block of
 * shared memory that every httpd process maps.
 *
 * Layout of the block:
 *
 *   +--------+---------------+----------------------+-------+---------+------------+
 *   | header | channel table | subscriber counts    | wake  | metrics | event data |
 *   |        | (chan_cap)    | [max_procs][chan_cap]| words | (below) | (data_size)|
 *   +--------+---------------+----------------------+-------+---------+------------+
 *
 * The metrics block (sse_metrics.h) has a row per process slot; releasing
 * or reaping a slot forgets the row's gauges, never its counters.
 *
 * Events are records in the data ring, addressed by a 64-bit logical offset
 * that only grows; the byte is at (offset % data_size). `head` is where the
 * next record goes, `tail` is the oldest record kept. A record never wraps:
 * when it does not fit before the end, the writer pads to the end first.
 *
 * Concurrency:
 *  - Writers (publish, delete, channel and process bookkeeping) hold the
 *    caller's global lock (the `sse-ring` mutex); this file never locks.
 *  - Readers take no lock. A writer moves `tail` past the records it is
 *    about to overwrite *before* it writes, and moves `head` past a record
 *    only *after* the record is complete. A reader copies a record out, then
 *    re-reads `tail`: if the tail has passed the record, the copy may be torn
 *    and is thrown away (the reader has fallen a whole ring behind: a gap).
 *  - Crash safety: a writer that dies mid-publish has not moved `head`, so
 *    its half-written record is invisible; the lock's owner-death recovery
 *    lets the next writer overwrite it. Nothing a writer does leaves the
 *    ring unreadable at any instruction boundary.
 *  - Subscriber counts are per process (one column each), so a process that
 *    dies without cleaning up is forgotten by zeroing its column.
 *
 * Each event record carries, per channel it was published to, the offset of
 * that channel's previous record: replay from an id walks one channel's
 * chain backwards and costs what it returns, not the size of the ring.
 *
 * Pure C with GCC atomics: no httpd, no APR. Tested by tests/unit.
 */
#ifndef SSE_RING_H
#define SSE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "sse_wire.h"

#define SSE_RING_MAX_CHANNELS_PER_EVENT 64
#define SSE_RING_NONE UINT64_MAX        /* "no record" offset */

typedef struct sse_ring sse_ring;       /* the shared block */

typedef struct {
    uint64_t data_size;     /* bytes of event data, multiple of 8 */
    uint32_t max_channels;  /* channels that may exist at once */
    uint32_t max_procs;     /* processes that may subscribe at once */
} sse_ring_params;

/* Bytes the block needs for these parameters. */
size_t sse_ring_size(const sse_ring_params *p);

/* Lays out a fresh ring in mem (sse_ring_size(p) bytes, zeroed or not).
 * now_ms stamps the ring's birth: ids from before it may have been lost. */
sse_ring *sse_ring_init(void *mem, const sse_ring_params *p, uint64_t now_ms);

/* Checks that mem holds a ring laid out with exactly these parameters. */
sse_ring *sse_ring_attach(void *mem, const sse_ring_params *p);

/* Whether mem holds a ring laid out by this build of the code: a ring
 * kept by the parent across a graceful restart may come from an older
 * module (the first two words, magic and layout number, never move). */
int sse_ring_same_layout(const void *mem);

/* Only on a ring of this layout. */
void sse_ring_get_params(const sse_ring *r, sse_ring_params *p);

/* The largest frame a single event may have in this ring. */
size_t sse_ring_max_frame(const sse_ring *r);

/* The 32-bit word that changes on every publish: futex target. */

uint64_t sse_ring_head(const sse_ring *r);
uint64_t sse_ring_born(const sse_ring *r);   /* stamp of the ring's birth */
/* Moves the birth of a ring that nothing was ever written to back to
 * born (below its birth), and its last stamp with it: the ring is about to
 * be filled with older events from a shared history (the Redis store at
 * start-up), from which ids from born on are known. -1, changing nothing,
 * when the ring is not empty or born is not below its birth. The caller
 * holds the lock. */
int sse_ring_rebirth(sse_ring *r, uint64_t born);
/* Stamp of the newest record: every id issued so far is at most this.
 * Lock-free; under the lock it is also the stamp of the record before
 * head. */
uint64_t sse_ring_last_stamp(const sse_ring *r);

/* A word of the header for a store's own use, 0 in a fresh ring, changed
 * only with atomics by its users: the Redis store keeps there the pid of
 * the one process that writes what Redis has into this ring. */
uint32_t *sse_ring_leader_word(sse_ring *r);

/* ---- channels (the caller holds the lock, except where noted) ---- */

/* Slots are numbered 0 .. sse_ring_chan_slots() - 1. */
uint32_t sse_ring_chan_slots(const sse_ring *r);

/* Slot of a channel, or -1. */
int sse_ring_chan_find(const sse_ring *r, const char *name, size_t len);
/* Slot of a channel, created if needed; -1 when the table is full even
 * after forgetting idle channels (no subscribers, nothing retained). */
int sse_ring_chan_intern(sse_ring *r, const char *name, size_t len);

/* The same for a subscription: a channel it creates is "waiting" (it
 * exists only because streams wait on it) until something is published to
 * it. Waiting channels may take at most sse_ring_waiting_share() slots, so
 * that subscribers alone can never fill the table and lock publishers out;
 * past it, SSE_RING_SHARE_FULL. */
#define SSE_RING_SHARE_FULL (-2)
int sse_ring_chan_intern_waiting(sse_ring *r, const char *name, size_t len);
/* Half of max_channels (at least 1). */
uint32_t sse_ring_waiting_share(const sse_ring *r);

typedef struct {
    char     name[SSE_CHANNEL_MAX + 1];
    char     last_id[SSE_FIELD_MAX + 1];   /* "" when none */
    uint32_t retained;
    uint32_t epoch;
    uint64_t subscribers;
    uint64_t published;
} sse_ring_chan_info;

/* Snapshot of a slot; lock-free (a racing publish may tear last_id, so
 * callers that report it hold the lock). */
void sse_ring_chan_get(const sse_ring *r, int slot, sse_ring_chan_info *out);
/* Current epoch of a slot: lock-free. Deleting a channel bumps it, and
 * records carry the epoch they were published in. */
uint32_t sse_ring_chan_epoch(const sse_ring *r, int slot);

/* Whether a slot holds a channel now (lock-free; for monitoring scans). */
int sse_ring_chan_is_live(const sse_ring *r, int slot);

/* ---- figures for monitoring ---- */

struct sse_metrics;
/* The ring's metrics block (sse_metrics.h), one row per process slot. */
struct sse_metrics *sse_ring_metrics(sse_ring *r);
/* Bytes between tail and head (lock-free). */
uint64_t sse_ring_used(const sse_ring *r);
/* Events overwritten to make room, since the ring was created (lock-free). */
uint64_t sse_ring_evicted(const sse_ring *r);
/* Stamp of the oldest record retained, 0 when none (the caller holds the
 * lock). */
uint64_t sse_ring_oldest_stamp(const sse_ring *r);

/* ---- subscriber counts and process slots (lock-free) ---- */

int  sse_ring_proc_claim(sse_ring *r, uint32_t pid);    /* slot or -1 */
void sse_ring_proc_release(sse_ring *r, int proc);
/* Releases the slots of processes for which alive(pid) is false. */
int  sse_ring_proc_reap(sse_ring *r, int (*alive)(uint32_t pid));
void sse_ring_subs_add(sse_ring *r, int proc, int slot, int delta);
uint64_t sse_ring_subs_total(const sse_ring *r, int slot);

/* ---- waking readers (lock-free) ----
 *
 * Each process slot has a wake word that its reader (the child's
 * dispatcher) sleeps on, e.g. with a futex; processes without a slot share
 * one more. A publisher wakes only the processes with subscribers on the
 * channels it published to, and makes the system call only for those whose
 * reader sleeps: a busy reader costs the publisher one atomic add. */

typedef void (*sse_ring_waker)(uint32_t *word, void *arg);

uint32_t *sse_ring_wake_word(sse_ring *r, int proc);   /* proc < 0: shared */
/* Announces that proc's reader, having read up to cursor, will sleep on its
 * word. Returns 1 if it may; 0 (not announced) when records arrived since.
 * Read the word before looking at the ring, and sleep only while it still
 * has that value. */
int  sse_ring_sleep_begin(sse_ring *r, int proc, uint64_t cursor);
void sse_ring_sleep_end(sse_ring *r, int proc);
/* After records on slots[0..n) were committed: bumps the word of every
 * process with subscribers on one of them, and of the shared waker, calling
 * fn for each that has a sleeper; n < 0 means every process. Returns how
 * many fn calls were made. */
int  sse_ring_wake(sse_ring *r, const int *slots, int n, sse_ring_waker fn, void *arg);
/* The same for one process (e.g. to make its reader notice a stop). */
int  sse_ring_wake_proc(sse_ring *r, int proc, sse_ring_waker fn, void *arg);

/* ---- publishing (the caller holds the lock) ---- */

typedef struct {
    int           nchan;
    const int    *chan;        /* slots from sse_ring_chan_intern */
    const char   *id;          /* publisher-chosen id, or NULL for a server id */
    size_t        id_len;
    const char   *event;       size_t event_len;
    long          retry;       /* < 0: none */
    const char   *data;        size_t data_len;
    const char   *meta;        size_t meta_len;    /* a hub's metadata (sse_wire.h), or NULL */
} sse_ring_msg;

/* True when m can be published in this ring, whatever id it is given:
 * 1..SSE_RING_MAX_CHANNELS_PER_EVENT channels and a frame that fits. */
int sse_ring_fits(const sse_ring *r, const sse_ring_msg *m);

/* Appends one event, framed, evicting the oldest records as needed.
 * Returns 0 and the stamp (and the id text in id_out) or -1 when it does
 * not fit (never for a message sse_ring_fits() accepted). */
int sse_ring_publish(sse_ring *r, const sse_ring_msg *m, uint64_t now_ms,
                     uint64_t *stamp, char id_out[SSE_FIELD_MAX + 1]);

/* The same with a stamp chosen by the caller (a store that takes its ids
 * from a shared server): the stamp must be strictly greater than
 * sse_ring_last_stamp(); otherwise nothing is written and SSE_RING_STALE is
 * returned, so that the ring's order is always its stamps' order. -1 when
 * m does not fit, as above. A stamp from the future moves the ring's clock
 * on: later sse_ring_publish() and sse_ring_delete() stamps follow it. */
#define SSE_RING_STALE (-2)
int sse_ring_publish_at(sse_ring *r, const sse_ring_msg *m, uint64_t stamp,
                        char id_out[SSE_FIELD_MAX + 1]);

/* Drops a channel's retained events and appends a DELETE record that tells
 * every process to end its streams on that channel. Returns the count of
 * events dropped. */
uint32_t sse_ring_delete(sse_ring *r, int slot, uint64_t now_ms);
/* The same with the caller's stamp for the DELETE record (a deletion that
 * came from a shared server): strictly above sse_ring_last_stamp(), or
 * SSE_RING_STALE and nothing changes. 0 and *dropped otherwise. */
int sse_ring_delete_at(sse_ring *r, int slot, uint64_t stamp, uint32_t *dropped);

/* ---- reading (lock-free) ---- */

enum { SSE_REC_EVENT = 1, SSE_REC_PAD = 2, SSE_REC_DELETE = 3 };

typedef struct {
    uint32_t chan;      /* slot */
    uint32_t epoch;     /* the slot's epoch when published */
    uint64_t prev;      /* offset of the channel's previous record */
} sse_ring_link;

typedef struct {
    uint64_t off, next;         /* this record, and the one after it */
    uint64_t stamp;
    int      kind;
    int      nchan;
    const sse_ring_link *links;
    const char *id;     size_t id_len;
    const char *frame;  size_t frame_len;
} sse_ring_rec;

enum {
    SSE_RING_OK = 0,
    SSE_RING_EMPTY,     /* nothing at *cursor yet */
    SSE_RING_LOST,      /* *cursor was overwritten; it now points at the tail */
    SSE_RING_SMALL      /* buf too small: *need says how big */
};

/* Copies the record at *cursor into buf and describes it in rec; advances
 * *cursor past it (and past padding). */
int sse_ring_read(const sse_ring *r, uint64_t *cursor, void *buf, size_t bufsize,
                  size_t *need, sse_ring_rec *rec);

/* Same for a known record offset (a chain link), without moving on:
 * SSE_RING_LOST when it is no longer retained. */
int sse_ring_read_at(const sse_ring *r, uint64_t off, void *buf, size_t bufsize,
                     size_t *need, sse_ring_rec *rec);

/* Last record offset of a channel in its current epoch, or SSE_RING_NONE. */
uint64_t sse_ring_chan_last(const sse_ring *r, int slot);
/* Highest stamp of the channel's events that were overwritten (0: none). */
uint64_t sse_ring_chan_evicted(const sse_ring *r, int slot);

#ifdef SSE_RING_TEST_HOOKS
/* Only in test builds (tests/unit/test_ring_crash.c): called, when set, at
 * each step of a write, with the step that was just completed. */
enum {
    SSE_RING_STEP_TAIL = 1,     /* reserve: the tail moved past what is overwritten */
    SSE_RING_STEP_PAD,          /* reserve: the padding to the end is written */
    SSE_RING_STEP_HEADER,       /* publish: the record's header is written */
    SSE_RING_STEP_LINKS,        /* publish: its channel links */
    SSE_RING_STEP_ID,           /* publish: its id */
    SSE_RING_STEP_FRAME,        /* publish: its frame: the record is complete */
    SSE_RING_STEP_COMMIT,       /* publish, delete: the head moved past it */
    SSE_RING_STEP_CHANNEL,      /* publish: one channel's bookkeeping is done */
    SSE_RING_STEP_DROPPED,      /* delete: the channel's history is dropped */
    SSE_RING_STEP_RECORD        /* delete: the DELETE record is written */
};
extern void (*sse_ring_test_hook)(int step);
#endif

#endif
