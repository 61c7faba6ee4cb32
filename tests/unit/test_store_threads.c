/* test_store_threads.c -- the store boundary under concurrency.
 *
 * Publisher threads publish batches through sse_store_publish (the path of
 * every POST, response and sse_publish() call) on a small ring that wraps
 * many times, while reader threads follow the ring lock-free as the child
 * dispatchers do, and a subscriber thread comes and goes on the channels.
 * What must hold whatever the interleaving:
 *
 *  - all or none, in order: the events of a batch are consecutive records
 *    of the ring (no other publisher's event between them), with
 *    consecutive receipts, and a reader that sees one event of a batch and
 *    then the next record intact sees the next event of the same batch;
 *  - every record a reader returns is intact (its data is the pattern its
 *    publisher wrote) or reported lost, never torn;
 *  - ids are strictly increasing stamps, across all publishers;
 *  - a batch refused on capacity midway (a new channel when the table is
 *    full) leaves nothing in the ring, and the subscriber counts return to
 *    zero once every stream unsubscribed;
 *  - a subscriber limit (SSEMaxChannelSubscribers) is exact: of more
 *    streams than the limit subscribing at once, exactly the limit are
 *    counted, a refused stream counts on none of its channels, and a place
 *    freed is taken again;
 *  - SSEMaxSubscribers is exact: of more simultaneous subscribers than it
 *    allows, exactly that many get in, and under churn the open-stream
 *    gauge never passes it.
 *
 * The lock is a real apr_global_mutex (process and thread lock), as httpd's
 * `sse-ring` mutex is. Built with ASan/UBSan and with TSan (make unit).
 * Prints one line per failed check and a closing "N passed, N failed" line.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <apr_general.h>
#include <apr_global_mutex.h>
#include <apr_strings.h>
#include <httpd.h>

#include "sse_store.h"

#define PUBLISHERS   3
#define READERS      2
#define BATCHES      1500       /* per publisher */
#define BATCH_MAX    4
#define CHANNELS     6
#define DATA_SIZE    (64 * 1024)

static int passed, failed;
static pthread_mutex_t report = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond) check((cond), #cond, __LINE__)
static int check(int ok, const char *what, int line)
{
    pthread_mutex_lock(&report);
    if (ok) {
        passed++;
    }
    else if (++failed <= 20) {
        printf("FAIL %s:%d: %s\n", __FILE__, line, what);
    }
    pthread_mutex_unlock(&report);
    return ok;
}

static sse_store *store;
static int publishers_done;

/* The data of event idx of n of batch k of publisher t, padded to a length
 * that varies, and a checksum of all of it: a torn copy cannot match. */
static size_t make_data(char *buf, int t, int k, int idx, int n)
{
    size_t len = (size_t)snprintf(buf, 64, "t=%d k=%d i=%d n=%d ", t, k, idx, n);
    size_t pad = (size_t)((t * 131 + k * 17 + idx * 7) % 300), i;
    unsigned sum = 0;

    for (i = 0; i < pad; i++)
        buf[len++] = (char)('a' + (k + i) % 26);
    for (i = 0; i < len; i++)
        sum = sum * 31 + (unsigned char)buf[i];
    return len + (size_t)snprintf(buf + len, 16, " %08x", sum);
}

/* Parses "data: <payload>\n" back out of a frame and checks the checksum. */
static int parse_frame(const char *frame, size_t len, int *t, int *k, int *idx, int *n)
{
    const char *d = memmem(frame, len, "data: ", 6), *end;
    unsigned sum = 0, want;
    size_t plen, i;

    if (!d)
        return 0;
    d += 6;
    end = memchr(d, '\n', len - (size_t)(d - frame));
    if (!end || end - d < 10)
        return 0;
    plen = (size_t)(end - d) - 9;
    for (i = 0; i < plen; i++)
        sum = sum * 31 + (unsigned char)d[i];
    if (sscanf(end - 8, "%8x", &want) != 1 || want != sum)
        return 0;
    return sscanf(d, "t=%d k=%d i=%d n=%d ", t, k, idx, n) == 4;
}

static void *publisher(void *arg)
{
    int t = (int)(long)arg, k;
    apr_pool_t *p;
    apr_uint64_t last = 0;

    apr_pool_create(&p, NULL);
    for (k = 0; k < BATCHES; k++) {
        int n = 1 + (k + t) % BATCH_MAX, i, status;
        apr_array_header_t *events = apr_array_make(p, n, sizeof(sse_body_event));
        sse_store_receipt *res;
        const char *why = NULL;

        for (i = 0; i < n; i++) {
            sse_body_event *ev = apr_array_push(events);
            sse_bytes *c;
            char *data = apr_palloc(p, 512);

            memset(ev, 0, sizeof(*ev));
            ev->retry = -1;
            ev->channels = apr_array_make(p, 2, sizeof(sse_bytes));
            c = apr_array_push(ev->channels);
            c->s = apr_psprintf(p, "ch%d", (t + k + i) % CHANNELS);
            c->len = strlen(c->s);
            if (i == 1) {               /* some events on two channels */
                c = apr_array_push(ev->channels);
                c->s = apr_psprintf(p, "ch%d", (t + k + i + 1) % CHANNELS);
                c->len = strlen(c->s);
            }
            ev->data.s = data;
            ev->data.len = make_data(data, t, k, i, n);
        }
        status = sse_store_publish(store, p, events, &res, &why);
        if (!CHECK(status == OK))
            printf("  publish: %d %s\n", status, why ? why : "");
        for (i = 0; status == OK && i < n; i++) {
            apr_uint64_t stamp = 0;
            CHECK(sse_wire_parse_server_id(res[i].id, strlen(res[i].id), &stamp));
            CHECK(stamp > last);        /* strictly increasing, and a batch in order */
            last = stamp;
        }
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    __atomic_add_fetch(&publishers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

typedef struct {
    long ok, lost, batches_followed;
} reader_stats;

static void *reader(void *arg)
{
    reader_stats *rs = arg;
    const sse_ring *ring = sse_store_ring(store);
    apr_uint64_t cursor = sse_ring_head(ring), last_stamp = 0;
    static __thread char buf[DATA_SIZE];
    int pt = -1, pk = -1, pidx = -1, pn = 0;

    for (;;) {
        int done = __atomic_load_n(&publishers_done, __ATOMIC_ACQUIRE) == PUBLISHERS;
        sse_ring_rec rec;
        size_t need = 0;
        int rv = sse_ring_read(ring, &cursor, buf, sizeof(buf), &need, &rec);
        int t, k, idx, n;

        if (rv == SSE_RING_EMPTY) {
            if (done && sse_ring_head(ring) == cursor)
                break;
            sched_yield();
            continue;
        }
        if (rv == SSE_RING_LOST) {
            rs->lost++;
            pt = -1;                    /* the chain of a batch is broken */
            continue;
        }
        if (!CHECK(rv == SSE_RING_OK))
            break;
        if (rec.kind != SSE_REC_EVENT)
            continue;
        rs->ok++;
        CHECK(rec.stamp > last_stamp);
        last_stamp = rec.stamp;
        if (!CHECK(parse_frame(rec.frame, rec.frame_len, &t, &k, &idx, &n))) {
            printf("  torn record at %llu\n", (unsigned long long)rec.off);
            continue;
        }
        if (pt >= 0 && pidx + 1 < pn) {
            /* The rest of the batch follows at once: all or none, no
             * other publisher's event in between. */
            if (!CHECK(t == pt && k == pk && idx == pidx + 1))
                printf("  after t=%d k=%d i=%d/%d came t=%d k=%d i=%d/%d\n",
                       pt, pk, pidx, pn, t, k, idx, n);
            rs->batches_followed += idx + 1 == n;
        }
        else {
            CHECK(idx == 0 || pt < 0);
        }
        pt = t, pk = k, pidx = idx, pn = n;
    }
    return NULL;
}

static void *subscriber(void *unused)
{
    apr_pool_t *p;

    apr_pool_create(&p, NULL);
    while (__atomic_load_n(&publishers_done, __ATOMIC_ACQUIRE) < PUBLISHERS) {
        apr_array_header_t *names = apr_array_make(p, 2, sizeof(sse_bytes));
        sse_store_channels chans;
        sse_store_info info;
        sse_bytes *c = apr_array_push(names);
        apr_uint32_t dropped;
        const char *why;

        c->s = "ch1";
        c->len = 3;
        c = apr_array_push(names);
        c->s = "ch1";                   /* named twice: counted once */
        c->len = 3;
        if (CHECK(sse_store_subscribe(store, p, names, 0, &chans, &why) == OK)) {
            CHECK(chans.n == 1);
            CHECK(sse_store_channel(store, c, 0, &info, &dropped, &why) == OK
                  && info.subscribers >= 1);
            sse_store_unsubscribe(store, &chans);
        }
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    return NULL;
}

/* A batch whose second event needs a channel the full table cannot take
 * is refused whole: 503, and the ring is as it was. */
static void capacity_midway(apr_pool_t *p)
{
    apr_array_header_t *events = apr_array_make(p, 2, sizeof(sse_body_event));
    const sse_ring *ring = sse_store_ring(store);
    apr_uint64_t head = sse_ring_head(ring);
    sse_store_receipt *res;
    const char *why = NULL;
    int i;

    for (i = 0; i < 2; i++) {
        sse_body_event *ev = apr_array_push(events);
        sse_bytes *c;

        memset(ev, 0, sizeof(*ev));
        ev->retry = -1;
        ev->channels = apr_array_make(p, 1, sizeof(sse_bytes));
        c = apr_array_push(ev->channels);
        c->s = i == 0 ? "ch0" : "a-channel-too-many";
        c->len = strlen(c->s);
        ev->data.s = "x";
        ev->data.len = 1;
    }
    CHECK(sse_store_publish(store, p, events, &res, &why) == HTTP_SERVICE_UNAVAILABLE);
    CHECK(why && strstr(why, "SSEMaxChannels") != NULL);
    CHECK(sse_ring_head(ring) == head);
}

/* ---- the subscriber limit under threads ---- */

#define LIMIT        5
#define CONTENDERS   8          /* threads subscribing at once */
#define LIMIT_ROUNDS 200

static pthread_barrier_t limit_start;   /* all subscribe at once */

typedef struct {
    int                ok;
    const char        *why;
    sse_store_channels chans;
    apr_pool_t        *p;
} contender;

static apr_array_header_t *names_of(apr_pool_t *p, const char *a, const char *b)
{
    apr_array_header_t *names = apr_array_make(p, 2, sizeof(sse_bytes));
    sse_bytes *c = apr_array_push(names);

    c->s = a;
    c->len = strlen(a);
    if (b) {
        c = apr_array_push(names);
        c->s = b;
        c->len = strlen(b);
    }
    return names;
}

static void *contend(void *arg)
{
    contender *me = arg;
    apr_array_header_t *names = names_of(me->p, "ch2", NULL);

    pthread_barrier_wait(&limit_start);
    me->ok = sse_store_subscribe(store, me->p, names, LIMIT, &me->chans, &me->why) == OK;
    return NULL;
}

static void limit_exact(apr_pool_t *pool)
{
    const sse_ring *ring = sse_store_ring(store);
    int slot = sse_ring_chan_find(ring, "ch2", 3), other = sse_ring_chan_find(ring, "ch3", 3);
    contender who[CONTENDERS];
    pthread_t th[CONTENDERS];
    sse_store_channels chans;
    const char *why;
    int round, i, ok;

    CHECK(slot >= 0 && other >= 0);
    pthread_barrier_init(&limit_start, NULL, CONTENDERS);
    for (round = 0; round < LIMIT_ROUNDS; round++) {
        for (i = 0; i < CONTENDERS; i++) {
            memset(&who[i], 0, sizeof(who[i]));
            apr_pool_create(&who[i].p, pool);
            pthread_create(&th[i], NULL, contend, &who[i]);
        }
        for (i = 0; i < CONTENDERS; i++)
            pthread_join(th[i], NULL);
        for (i = 0, ok = 0; i < CONTENDERS; i++) {
            ok += who[i].ok;
            if (!who[i].ok)
                CHECK(who[i].why && strcmp(who[i].why, "channel 'ch2' already has the 5 "
                                           "subscribers SSEMaxChannelSubscribers allows") == 0);
        }
        CHECK(ok == LIMIT);
        CHECK(sse_ring_subs_total(ring, slot) == LIMIT);
        /* Full: a stream on it and on another channel counts on neither. */
        CHECK(sse_store_subscribe(store, pool, names_of(pool, "ch3", "ch2"), LIMIT, &chans,
                                  &why) == HTTP_SERVICE_UNAVAILABLE && chans.n == 0);
        CHECK(sse_ring_subs_total(ring, other) == 0);
        /* Without a limit (another location), the channel takes more. */
        CHECK(sse_store_subscribe(store, pool, names_of(pool, "ch2", NULL), 0, &chans,
                                  &why) == OK);
        CHECK(sse_ring_subs_total(ring, slot) == LIMIT + 1);
        sse_store_unsubscribe(store, &chans);
        /* A place freed is taken again, at once. */
        for (i = 0; i < CONTENDERS && !who[i].ok; i++)
            ;
        sse_store_unsubscribe(store, &who[i].chans);
        CHECK(sse_store_subscribe(store, pool, names_of(pool, "ch2", NULL), LIMIT,
                                  &who[i].chans, &why) == OK);
        for (i = 0; i < CONTENDERS; i++) {
            if (who[i].ok)
                sse_store_unsubscribe(store, &who[i].chans);
            apr_pool_destroy(who[i].p);
        }
        CHECK(sse_ring_subs_total(ring, slot) == 0);
    }
    pthread_barrier_destroy(&limit_start);
}

/* ---- SSEMaxSubscribers ---- */

#define MAX_SUBS      5
#define SUB_THREADS   8
#define SUB_ROUNDS    300

static pthread_barrier_t at_once;
static int admitted;

static int subscribe_one(apr_pool_t *p, sse_store_channels *chans, const char **why)
{
    apr_array_header_t *names = apr_array_make(p, 1, sizeof(sse_bytes));
    sse_bytes *c = apr_array_push(names);

    c->s = "ch2";
    c->len = 3;
    return sse_store_subscribe(store, p, names, 0, chans, why);
}

static void *limited_subscriber(void *unused)
{
    sse_store_channels chans;
    const char *why = NULL;
    apr_pool_t *p;
    int i, rc;

    apr_pool_create(&p, NULL);
    /* All at once: exactly MAX_SUBS of SUB_THREADS get in. */
    pthread_barrier_wait(&at_once);
    rc = subscribe_one(p, &chans, &why);
    if (rc == OK)
        __atomic_add_fetch(&admitted, 1, __ATOMIC_RELAXED);
    else
        CHECK(rc == HTTP_SERVICE_UNAVAILABLE && why && strstr(why, "SSEMaxSubscribers"));
    pthread_barrier_wait(&at_once);
    if (rc == OK)
        sse_store_unsubscribe(store, &chans);
    pthread_barrier_wait(&at_once);
    /* Churn: whoever is in never sees more than MAX_SUBS open. */
    for (i = 0; i < SUB_ROUNDS; i++) {
        if (subscribe_one(p, &chans, &why) == OK) {
            CHECK(sse_metrics_gauge(store->metrics, SSE_G_STREAMS) <= MAX_SUBS);
            sse_store_unsubscribe(store, &chans);
        }
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    return NULL;
}

static void max_subscribers_exact(void)
{
    pthread_t t[SUB_THREADS];
    apr_uint64_t opened = sse_metrics_counter(store->metrics, SSE_C_STREAMS_OPENED);
    int i;

    sse_store_set_max_subscribers(store, MAX_SUBS);
    pthread_barrier_init(&at_once, NULL, SUB_THREADS);
    for (i = 0; i < SUB_THREADS; i++)
        pthread_create(&t[i], NULL, limited_subscriber, NULL);
    for (i = 0; i < SUB_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&at_once);
    CHECK(admitted == MAX_SUBS);
    CHECK(sse_metrics_gauge(store->metrics, SSE_G_STREAMS) == 0);
    CHECK(sse_metrics_counter(store->metrics, SSE_C_STREAMS_OPENED) - opened >= MAX_SUBS);
    sse_store_set_max_subscribers(store, 0);
}

int main(void)
{
    sse_ring_params params = { DATA_SIZE, CHANNELS, 4 };
    pthread_t pub[PUBLISHERS], rd[READERS], sub;
    reader_stats stats[READERS];
    apr_global_mutex_t *lock;
    apr_pool_t *pool;
    sse_ring *ring;
    void *mem;
    long i;
    int c;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    mem = calloc(1, sse_ring_size(&params));
    ring = sse_ring_init(mem, &params, (uint64_t)apr_time_now() / 1000);
    if (apr_global_mutex_create(&lock, NULL, APR_LOCK_DEFAULT, pool) != APR_SUCCESS) {
        printf("FAIL cannot create the lock\n");
        return 1;
    }
    store = sse_store_ring_open(pool, ring, lock);
    sse_store_set(store);
    CHECK(sse_store_proc_claim(store, (apr_uint32_t)getpid(), NULL) == 0);

    memset(stats, 0, sizeof(stats));
    for (i = 0; i < READERS; i++)
        pthread_create(&rd[i], NULL, reader, &stats[i]);
    pthread_create(&sub, NULL, subscriber, NULL);
    for (i = 0; i < PUBLISHERS; i++)
        pthread_create(&pub[i], NULL, publisher, (void *)i);
    for (i = 0; i < PUBLISHERS; i++)
        pthread_join(pub[i], NULL);
    pthread_join(sub, NULL);
    for (i = 0; i < READERS; i++)
        pthread_join(rd[i], NULL);

    /* The runs were real: the ring wrapped many times, readers saw events
     * and followed whole batches. */
    CHECK(sse_ring_head(ring) > 10 * (uint64_t)DATA_SIZE);
    for (i = 0; i < READERS; i++) {
        CHECK(stats[i].ok > 1000);
        CHECK(stats[i].batches_followed > 100);
    }
    for (c = 0; c < CHANNELS; c++) {
        int slot = sse_ring_chan_find(ring, apr_psprintf(pool, "ch%d", c), 3);
        CHECK(slot >= 0 && sse_ring_subs_total(ring, slot) == 0);
    }
    capacity_midway(pool);
    limit_exact(pool);
    max_subscribers_exact();
    sse_store_proc_release(store);
    /* A process without a slot cannot count: a limited stream is refused. */
    {
        sse_store_channels chans;
        const char *why;

        CHECK(sse_store_subscribe(store, pool, names_of(pool, "ch2", NULL), LIMIT, &chans,
                                  &why) == HTTP_SERVICE_UNAVAILABLE
              && strstr(why, "no slot") != NULL);
        CHECK(sse_store_subscribe(store, pool, names_of(pool, "ch2", NULL), 0, &chans,
                                  &why) == OK);
        sse_store_unsubscribe(store, &chans);
    }

    printf("store threads: %ld records read, %ld lost to overtaking; head %llu\n",
           stats[0].ok + stats[1].ok, stats[0].lost + stats[1].lost,
           (unsigned long long)sse_ring_head(ring));
    printf("store threads: %d passed, %d failed\n", passed, failed);
    free(mem);
    apr_pool_destroy(pool);
    apr_terminate();
    return failed ? 1 : 0;
}
