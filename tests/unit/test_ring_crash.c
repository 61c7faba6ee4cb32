/* test_ring_crash.c -- a writer killed while it holds the ring's lock, at
 * every step of a publish and of a delete, leaves the ring consistent, and
 * the next writer goes on.
 *
 * sse_ring.c, built with -DSSE_RING_TEST_HOOKS (this test only; the module
 * has no trace of it), calls sse_ring_test_hook after each step of a write
 * (sse_ring.h: the tail moved, the padding, the header, the links, the id,
 * the frame, the commit, each channel's bookkeeping; for a delete, the
 * dropped history, the DELETE record, its commit). The ring lives in
 * MAP_SHARED|MAP_ANONYMOUS memory, as the module's lives in anonymous
 * shared memory. For each scenario and each k = 1, 2, ... the parent lays
 * out a ring, fills it, and forks a child that takes the lock, publishes
 * (or deletes) and dies by raise(SIGKILL) in the k-th hook call, with the
 * lock held; k grows until the child gets through all steps and exits 0.
 *
 * The lock is APR's process mutex of kind APR_LOCK_PROC_PTHREAD, made by
 * apr_proc_mutex_create: what httpd's `sse-ring` mutex is with the default
 * mechanism on this platform (apr.h: APR_USE_PROC_PTHREAD_SERIALIZE; a
 * global mutex wraps this process mutex). APR makes it a robust,
 * process-shared pthread mutex in shared memory of its own, and its lock
 * call repairs it (pthread_mutex_consistent) when it gets EOWNERDEAD: the
 * same recovery code path as in httpd, rather than a copy of it here.
 *
 * After each death the parent takes the lock (recovering it: a hang is
 * caught by alarm()) and checks, against its own model of what was
 * published:
 *   "seq"      reading from the tail with sse_ring_read returns exactly the
 *              committed records that are retained, in order, each intact
 *              (the id, frame, channel links and epochs byte for byte),
 *              with no SSE_RING_LOST past the first read, up to the last
 *              committed record;
 *   "invisible" the half-written event (killed before its commit) is never
 *              returned, by sse_ring_read or by a chain walk; one killed
 *              after its commit is returned whole, once;
 *   "last"     every channel's last record (sse_ring_chan_last) is NONE
 *              or a committed record (below the head);
 *   "chain"    walking each channel's chain back with sse_ring_read_at
 *              meets exactly the retained records of that channel, newest
 *              first (an event killed after its commit but before a
 *              channel's bookkeeping is on the ring but not on that
 *              channel's chain: complete, never torn);
 * then publishes a few more events and a whole ring's worth (overwriting
 * the dead writer's bytes) and checks the same again.
 *
 * Scenarios: a fresh ring (nothing evicted), a wrapped ring (the tail
 * moves), a wrapped ring whose next record needs padding to the end, and a
 * DELETE on a fresh and on a wrapped ring. Breaking the crash safety of
 * sse_ring.c is caught, each time on the first death after the broken step:
 *   the tail moved only after the record is written: "seq" (a torn record
 *     at the tail: sse_ring_read says LOST, the rest is skipped) and
 *     "chain"; then the next writer stops on sse_ring.c's own SSE_ASSERT
 *     when it evicts the torn record;
 *   the head moved before the record bytes are written: "invisible" and
 *     "seq" (the half-written record is read), "chain";
 *   a channel's bookkeeping (last_off) done before the commit: "last" (the
 *     channel's last record is past the head), "chain" (the link reads
 *     EMPTY; after the next publish, a record links to itself).
 *
 * Prints a line per scenario and a closing "N passed, N failed" line;
 * exits non-zero on failure.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <apr_general.h>
#include <apr_proc_mutex.h>

#include "sse_wire.h"
#include "sse_ring.h"

#define DATA_SIZE   (64 * 1024)
#define NCHAN       3
#define MAXEV       1024
#define MAXSTEPS    64
#define BUFSIZE     (DATA_SIZE / 4)
#define HDR_SIZE    24          /* sse_ring.c's rec_hdr */
#define LINK_SIZE   16          /* sse_ring_link */
#define ALIGN8(x)   (((x) + 7) & ~(uint64_t)7)
#define X_DATA      3000        /* the dying writer's event */

static int passed, failed;

#define CHECK(cond, name) check((cond), name, #cond, __LINE__)
static int check(int ok, const char *name, const char *what, int line)
{
    if (ok) {
        passed++;
    }
    else {
        failed++;
        printf("FAIL [%s] line %d: %s\n", name, line, what);
    }
    return ok;
}

/* ---- shared state: the ring, the lock, the dying writer's trail ---- */

static sse_ring *ring;
static void *ring_mem;
static size_t ring_len;
static sse_ring_params params = { DATA_SIZE, 16, 4 };
static apr_proc_mutex_t *lock;

typedef struct {
    int calls;                  /* hook calls made */
    int steps[MAXSTEPS];        /* the step of each */
} trail;
static trail *tr;               /* MAP_SHARED: written by the child */
static int die_at;              /* the child dies in this hook call */

static void hook(int step)
{
    if (tr->calls < MAXSTEPS)
        tr->steps[tr->calls] = step;
    tr->calls++;
    if (tr->calls == die_at)
        raise(SIGKILL);
}

/* ---- the model: what was published, and what must be visible ---- */

typedef struct {
    int      kind;              /* SSE_REC_EVENT or SSE_REC_DELETE */
    int      committed;         /* the head moved past it */
    int      nchan;
    int      chan[2];           /* channel numbers 0 .. NCHAN-1 */
    uint32_t epoch[2];          /* the slot's epoch when published */
    int      on_chain[2];       /* on that channel's chain */
    char     id[SSE_FIELD_MAX + 1];
    char    *frame;
    size_t   frame_len;
} model_ev;

static model_ev ev[MAXEV];
static int nev;
static int slot[NCHAN];
static unsigned serial;        /* prefill events, per ring */
static int x_idx = -1;          /* the dying writer's event in the model */

static void model_reset(void)
{
    int i;

    for (i = 0; i < nev; i++)
        free(ev[i].frame);
    nev = 0;
    serial = 0;
    x_idx = -1;
}

static uint64_t now_ms(void)
{
    static uint64_t t = 1700000000000ull;

    return t++;
}

static void fresh_ring(void)
{
    char name[16];
    int i;

    model_reset();
    memset(ring_mem, 0xA5, ring_len);   /* stale bytes everywhere, not zeros */
    ring = sse_ring_init(ring_mem, &params, now_ms());
    for (i = 0; i < NCHAN; i++) {
        sprintf(name, "c%d", i);
        slot[i] = sse_ring_chan_intern(ring, name, strlen(name));
    }
}

static uint64_t room(void)
{
    return DATA_SIZE - sse_ring_head(ring) % DATA_SIZE;
}

/* The record of an event with an id and one line of data, but its data
 * and the alignment: "id: <id>\n" "data: <data>\n" "\n" after the id. */
static uint64_t rec_base(int nchan, size_t id_len)
{
    return HDR_SIZE + (uint64_t)nchan * LINK_SIZE + id_len + 4 + id_len + 1 + 6 + 1 + 1;
}

static uint64_t rec_size(int nchan, size_t id_len, size_t data_len)
{
    return ALIGN8(rec_base(nchan, id_len) + data_len);
}

/* Describes an event (not published yet) in the model; returns its index. */
static int model_add(const char *id, const char *data, size_t data_len,
                     int nchan, const int *chans)
{
    model_ev *e = &ev[nev];
    sse_wire_event w;
    int i;

    memset(e, 0, sizeof(*e));
    e->kind = SSE_REC_EVENT;
    e->nchan = nchan;
    for (i = 0; i < nchan; i++) {
        e->chan[i] = chans[i];
        e->epoch[i] = sse_ring_chan_epoch(ring, slot[chans[i]]);
        e->on_chain[i] = 1;
    }
    snprintf(e->id, sizeof(e->id), "%s", id);
    memset(&w, 0, sizeof(w));
    w.id = e->id;
    w.id_len = strlen(e->id);
    w.retry = -1;
    w.data = data;
    w.data_len = data_len;
    e->frame_len = sse_wire_frame_size(&w);
    e->frame = malloc(e->frame_len);
    sse_wire_frame(e->frame, &w);
    return nev++;
}

static void msg_of(const model_ev *e, const char *data, size_t data_len, int *slots,
                   sse_ring_msg *m)
{
    int i;

    for (i = 0; i < e->nchan; i++)
        slots[i] = slot[e->chan[i]];
    memset(m, 0, sizeof(*m));
    m->nchan = e->nchan;
    m->chan = slots;
    m->id = e->id;
    m->id_len = strlen(e->id);
    m->retry = -1;
    m->data = data;
    m->data_len = data_len;
}

/* The parent publishes one event (it holds the lock, or nobody else runs). */
static void publish(int nchan, const int *chans, size_t data_len)
{
    static char data[BUFSIZE];
    char id[16];
    uint64_t before = sse_ring_head(ring), r = room(), stamp, size;
    sse_ring_msg m;
    int slots[2], n;

    snprintf(id, sizeof(id), "e%05u", serial);
    n = snprintf(data, sizeof(data), "%05u ", serial);
    memset(data + n, 'a' + serial % 26, data_len - (size_t)n);
    serial++;
    n = model_add(id, data, data_len, nchan, chans);
    msg_of(&ev[n], data, data_len, slots, &m);
    CHECK(sse_ring_publish(ring, &m, now_ms(), &stamp, NULL) == 0, "publish");
    ev[n].committed = 1;
    size = rec_size(nchan, strlen(id), data_len);
    /* The layout this test relies on to make padding happen. */
    CHECK(sse_ring_head(ring) - before == (r < size ? r + size : size), "record size");
}

/* Prefill: a mix of one- and two-channel events of varied sizes. */
static void publish_some(uint64_t bytes)
{
    uint64_t until = sse_ring_head(ring) + bytes;

    while (sse_ring_head(ring) < until) {
        int chans[2] = { (int)(serial % NCHAN), (int)((serial + 1) % NCHAN) };
        publish(serial % 4 == 3 ? 2 : 1, chans, 200 + (serial * 37) % 900);
    }
}

/* ---- checking the ring against the model ---- */

static int same_event(const sse_ring_rec *rec, const model_ev *e)
{
    int i;

    if (rec->kind != e->kind || rec->nchan != e->nchan)
        return 0;
    for (i = 0; i < e->nchan; i++) {
        if (rec->links[i].chan != (uint32_t)slot[e->chan[i]] || rec->links[i].epoch != e->epoch[i])
            return 0;
    }
    if (e->kind == SSE_REC_DELETE)
        return rec->frame_len == 0 && rec->id_len == 0;
    return rec->id_len == strlen(e->id) && memcmp(rec->id, e->id, rec->id_len) == 0
           && rec->frame_len == e->frame_len && memcmp(rec->frame, e->frame, e->frame_len) == 0;
}

static int is_crash_event(const sse_ring_rec *rec)
{
    return rec->kind == SSE_REC_EVENT && rec->id_len == 7 && memcmp(rec->id, "crash-x", 7) == 0;
}

/* The dying writer's event may be read: it was committed. */
static int x_visible(void)
{
    return x_idx >= 0 && ev[x_idx].committed;
}

/* Checks the whole ring; returns the number of failed checks. */
static int check_ring(const char *when)
{
    static uint64_t buf[BUFSIZE / 8];
    int before = failed, first = -1, next = -1, n_read = 0, last_visible = -1;
    int retained[MAXEV] = { 0 };
    uint64_t cursor = 0, head = sse_ring_head(ring), tail_seen = 0;
    sse_ring_rec rec;
    size_t need;
    int rv, i, c;

    for (i = 0; i < nev; i++) {
        if (ev[i].committed)
            last_visible = i;
    }
    /* "seq": from the tail to the head, the committed records, in order. */
    for (;;) {
        rv = sse_ring_read(ring, &cursor, buf, sizeof(buf), &need, &rec);
        if (rv == SSE_RING_EMPTY)
            break;
        if (rv == SSE_RING_LOST && n_read == 0 && tail_seen == 0) {
            tail_seen = cursor;         /* read from 0 on a wrapped ring */
            continue;
        }
        if (!CHECK(rv == SSE_RING_OK, "seq: every record from the tail reads back"))
            break;
        if (!CHECK(!is_crash_event(&rec) || x_visible(),
                   "invisible: the half-written event is never read"))
            break;
        if (first < 0) {
            for (i = 0; i < nev && !(ev[i].committed && same_event(&rec, &ev[i])); i++)
                ;
            if (!CHECK(i < nev, "seq: the record at the tail is one that was published"))
                break;
            first = next = i;
        }
        while (next < nev && !ev[next].committed)
            next++;
        if (!CHECK(next < nev && same_event(&rec, &ev[next]),
                   "seq: each record is the next committed event, intact"))
            break;
        retained[next] = 1;
        next++;
        n_read++;
    }
    CHECK(n_read > 0 && next - 1 == last_visible, "seq: the last record read is the last committed");
    CHECK(cursor == head, "seq: reading ends at the head");

    /* "last" and "chain", per channel. */
    for (c = 0; c < NCHAN; c++) {
        int want[MAXEV], nwant = 0, k = 0;
        uint64_t off = sse_ring_chan_last(ring, slot[c]);

        for (i = nev - 1; i >= 0; i--) {
            int j;
            for (j = 0; j < ev[i].nchan; j++) {
                if (ev[i].kind == SSE_REC_EVENT && ev[i].chan[j] == c && ev[i].on_chain[j]
                    && ev[i].committed && retained[i])
                    want[nwant++] = i;
            }
        }
        CHECK(off == SSE_RING_NONE || off < head, "last: a channel's last record is committed");
        while (off != SSE_RING_NONE) {
            int j;
            rv = sse_ring_read_at(ring, off, buf, sizeof(buf), &need, &rec);
            if (rv == SSE_RING_LOST)
                break;                  /* evicted: the chain ends */
            if (!CHECK(rv == SSE_RING_OK, "chain: every link reads back"))
                break;
            if (!CHECK(!is_crash_event(&rec) || x_visible(),
                       "invisible: the half-written event is not on a chain"))
                break;
            if (!CHECK(k < nwant && same_event(&rec, &ev[want[k]]),
                       "chain: the channel's events, newest first"))
                break;
            k++;
            for (j = 0; j < rec.nchan && rec.links[j].chan != (uint32_t)slot[c]; j++)
                ;
            if (!CHECK(j < rec.nchan && rec.links[j].prev != off
                       && (rec.links[j].prev == SSE_RING_NONE || rec.links[j].prev < off),
                       "chain: each link points to an earlier record"))
                break;
            off = rec.links[j].prev;
        }
        CHECK(k == nwant, "chain: the walk meets every retained event of the channel");
    }
    if (failed != before)
        printf("  (checks above: %s)\n", when);
    return failed - before;
}

/* ---- the scenarios ---- */

enum { OP_PUBLISH, OP_DELETE };

typedef struct {
    const char *name;
    int         op;
    int         wrapped;    /* fill more than the ring first */
    int         pad;        /* leave less room before the end than the record */
} scenario;

static const scenario scenarios[] = {
    { "publish, fresh ring", OP_PUBLISH, 0, 0 },
    { "publish, wrapped ring", OP_PUBLISH, 1, 0 },
    { "publish, wrapped ring, padding", OP_PUBLISH, 1, 1 },
    { "delete, fresh ring", OP_DELETE, 0, 0 },
    { "delete, wrapped ring", OP_DELETE, 1, 0 },
};

static const int x_chans[2] = { 0, 1 };
static char x_data[X_DATA];

static void setup(const scenario *sc)
{
    fresh_ring();
    publish_some(sc->wrapped ? 2 * DATA_SIZE + DATA_SIZE / 2 : 6000);
    if (sc->pad) {
        uint64_t xs = rec_size(2, 7, X_DATA), target;
        int one[1] = { 2 };
        while (room() >= xs + 1200)
            publish(1, one, 300);
        /* One event that leaves xs - 48 bytes before the end: more than a
         * record header, less than the dying writer's record. */
        target = room() - (xs - 48);
        publish(1, one, (size_t)(target - rec_base(1, 6)));
        CHECK(room() == xs - 48, "setup: the next record needs padding");
    }
}

/* In the child: the write that dies. */
static void child_write(const scenario *sc)
{
    if (apr_proc_mutex_lock(lock) != APR_SUCCESS)
        _exit(3);
    sse_ring_test_hook = hook;
    if (sc->op == OP_PUBLISH) {
        sse_ring_msg m;
        int slots[2];
        uint64_t stamp;
        msg_of(&ev[x_idx], x_data, X_DATA, slots, &m);
        if (sse_ring_publish(ring, &m, now_ms(), &stamp, NULL) != 0)
            _exit(4);
    }
    else {
        sse_ring_delete(ring, slot[0], now_ms());
    }
    sse_ring_test_hook = NULL;
    apr_proc_mutex_unlock(lock);
    _exit(0);
}

static int count_steps(int upto, int step)
{
    int i, n = 0;

    for (i = 0; i < upto && i < MAXSTEPS; i++)
        n += tr->steps[i] == step;
    return n;
}

/* After the child died at hook call k (or finished: k = tr->calls), what
 * of its write is in effect. */
static void model_apply(const scenario *sc, int k)
{
    int committed = count_steps(k, SSE_RING_STEP_COMMIT) > 0, i;

    if (sc->op == OP_PUBLISH) {
        model_ev *x = &ev[x_idx];
        int done = count_steps(k, SSE_RING_STEP_CHANNEL);
        x->committed = committed;
        for (i = 0; i < x->nchan; i++)
            x->on_chain[i] = i < done;
        return;
    }
    if (count_steps(k, SSE_RING_STEP_DROPPED)) {
        model_ev *d = &ev[nev++];
        for (i = 0; i < nev - 1; i++) {
            int j;
            for (j = 0; j < ev[i].nchan; j++)
                if (ev[i].chan[j] == 0)
                    ev[i].on_chain[j] = 0;
        }
        memset(d, 0, sizeof(*d));
        d->kind = SSE_REC_DELETE;
        d->nchan = 1;
        d->chan[0] = 0;
        d->epoch[0] = sse_ring_chan_epoch(ring, slot[0]) - 1;
        d->committed = committed;
    }
}

static void run(const scenario *sc)
{
    int k, completed = 0, deaths = 0, seen[16] = { 0 }, i;
    int one[1] = { 0 }, two[2] = { 1, 2 };

    for (k = 1; !completed && k < MAXSTEPS; k++) {
        pid_t pid;
        int status = 0, calls, fails = 0;

        setup(sc);
        if (sc->op == OP_PUBLISH) {
            memset(x_data, 'X', sizeof(x_data));
            x_idx = model_add("crash-x", x_data, X_DATA, 2, x_chans);
        }
        memset(tr, 0, sizeof(*tr));
        die_at = k;
        pid = fork();
        if (pid == 0)
            child_write(sc);
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork and wait");
        calls = tr->calls;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            completed = 1;
            CHECK(calls == k - 1, "the child made fewer hook calls than it was allowed");
        }
        else {
            CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && calls == k,
                  "the child died by SIGKILL in the hook call it was told to");
            deaths++;
        }
        if (calls >= 1 && calls <= k && tr->steps[calls - 1] < 16)
            seen[tr->steps[calls - 1]] = 1;

        /* Take the lock: the dead child held it (robust mutex recovery). */
        alarm(20);
        CHECK(apr_proc_mutex_lock(lock) == APR_SUCCESS, "the lock is recovered");
        alarm(0);
        model_apply(sc, completed ? calls : k);
        fails += check_ring("after the writer died");
        /* The next writer goes on: a few events, then a whole ring more. */
        publish(1, one, 100);
        publish(2, two, 700);
        publish(2, x_chans, 50);
        fails += check_ring("after three more publishes");
        publish_some(DATA_SIZE + DATA_SIZE / 3);
        fails += check_ring("after a whole ring more");
        apr_proc_mutex_unlock(lock);
        if (fails)
            printf("  %s: died in hook call %d (step %d)\n", sc->name, k,
                   calls ? tr->steps[calls - 1] : 0);
    }
    CHECK(completed, "the child finally got through every step");
    printf("ring crash: %-32s %2d deaths, steps:", sc->name, deaths);
    for (i = 0; i < 16; i++)
        if (seen[i])
            printf(" %d", i);
    printf("\n");
    /* Every step this scenario is about was a place of death. */
    if (sc->op == OP_PUBLISH) {
        CHECK(seen[SSE_RING_STEP_HEADER] && seen[SSE_RING_STEP_LINKS] && seen[SSE_RING_STEP_ID]
              && seen[SSE_RING_STEP_FRAME] && seen[SSE_RING_STEP_COMMIT]
              && seen[SSE_RING_STEP_CHANNEL], "publish: died at every step");
    }
    else {
        CHECK(seen[SSE_RING_STEP_DROPPED] && seen[SSE_RING_STEP_RECORD]
              && seen[SSE_RING_STEP_COMMIT], "delete: died at every step");
    }
    /* (A DELETE record is small enough to fit in a wrapped ring's slack.) */
    if (sc->wrapped && sc->op == OP_PUBLISH)
        CHECK(seen[SSE_RING_STEP_TAIL], "wrapped: died after the tail moved");
    else
        CHECK(!seen[SSE_RING_STEP_TAIL], "fresh: the tail never moved");
    if (sc->pad)
        CHECK(seen[SSE_RING_STEP_PAD], "padding: died after the padding was written");
}

int main(void)
{
    apr_pool_t *pool;
    size_t i;

    /* Line by line: a failure is printed before an abort (an SSE_ASSERT of
     * the next writer finding a torn record) or a hang. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(300);
    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (apr_proc_mutex_create(&lock, NULL, APR_LOCK_PROC_PTHREAD, pool) != APR_SUCCESS) {
        printf("FAIL: cannot create an APR_LOCK_PROC_PTHREAD mutex\n");
        return 1;
    }
    printf("ring crash: lock %s (APR's default: %s)\n", apr_proc_mutex_name(lock),
           apr_proc_mutex_defname());
    ring_len = sse_ring_size(&params);
    ring_mem = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    tr = mmap(NULL, sizeof(*tr), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ring_mem == MAP_FAILED || tr == MAP_FAILED) {
        printf("FAIL: mmap: %s\n", strerror(errno));
        return 1;
    }
    for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        run(&scenarios[i]);
    model_reset();
    apr_proc_mutex_destroy(lock);
    apr_pool_destroy(pool);
    apr_terminate();
    printf("ring crash: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
