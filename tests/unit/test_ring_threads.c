/* test_ring_threads.c -- the event ring under concurrent writers and
 * lock-free readers.
 *
 * A small ring (64 KiB of data, so that it wraps hundreds of times) is fed
 * by NPUB publisher threads that publish under one pthread mutex standing
 * in for the global `sse-ring` lock, while reader threads follow it with no
 * lock at all, as the module's children do:
 *
 *   fast         follows with sse_ring_read and spins at the head: the
 *                first to copy a record once the head moves past it;
 *   slow         now and then lets the writers get half a ring to a ring
 *                and a half ahead, so it reads at the tail or has lost it;
 *   slug         lets them get more than a ring ahead after every record:
 *                each LOST is followed by a copy of the record at the
 *                tail, the one the writers evict next;
 *   racer        copies the record at the tail again and again until it
 *                is reported LOST, comparing each copy with the first:
 *                it spends its time copying what the writers overwrite;
 *   replay       walks channel chains back with sse_ring_chan_last and
 *   replay-slow  sse_ring_read_at, the second letting the writers move an
 *                eighth of a ring between steps.
 * Slowness is measured in the writers' progress (sse_ring_head), not in
 * time, so the readers are overtaken whatever the speed of the machine or
 * of the sanitizer.
 *
 * Every event's data checks itself: it names its publisher, the
 * publisher's sequence number, a global sequence number (the order of
 * publishing under the lock), its length, for each of its channels the
 * global number of that channel's previous event, a body the reader can
 * regenerate from (publisher, sequence), and an FNV-1a sum of all that.
 * The id, event type and retry are functions of (publisher, sequence) too.
 *
 * For every record a reader gets as SSE_RING_OK it checks that the frame
 * parses back (id, event, retry, data lines) to exactly that, that the
 * record's links are the channels' slots and epochs and point back in the
 * ring, and that
 *   - a follower's stamps strictly increase, per publisher the sequence
 *     numbers strictly increase, and, with no SSE_RING_LOST in between,
 *     the global numbers are consecutive (nothing skipped silently);
 *   - a chain walk meets exactly the channel's previous event each step,
 *     with decreasing stamps.
 * A record is either intact or reported lost, never torn. The run must
 * also show that it tested something: more than 10 wrap-arounds, LOST
 * results for every reader but the fast ones, at least 100 records checked
 * by every reader.
 *
 * Breaking the ring's ordering is caught in every run: without the
 * reader's re-check of the tail after its copy, with the tail moved only
 * after the record is written, or with the head moved before it is.
 *
 * Under ThreadSanitizer, a reader's copy of a record that a writer may be
 * overwriting is the intended race (the copy is checked afterwards by the
 * re-read of the tail): sse_ring.c has to keep that one copy out of TSan's
 * sight, and any other report is a bug.
 *
 * SSE_STRESS_EVENTS sets the events per publisher (default 20000, about a
 * second and a half under ASan on 2 cores; 8000 under ThreadSanitizer,
 * about three seconds).
 * Prints a line per torn record (the first PRINT_MAX), a line per reader,
 * and a closing "N passed, N failed" line; exits non-zero on failure.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sse_wire.h"
#include "sse_ring.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* The test's own work on thread-private memory (making and checking event
 * data) is left out of ThreadSanitizer's instrumentation: it cannot race,
 * and instrumented it would take most of the run. */
#if UNDER_TSAN
#define PRIVATE_WORK __attribute__((no_sanitize("thread")))
#else
#define PRIVATE_WORK
#endif

#define DATA_SIZE   (64 * 1024)
#define NPUB        3
#define NCHAN       4
#define BUFSIZE     (DATA_SIZE / 4)     /* the largest record this ring takes */
#define MAXDATA     12000
#define TRAILER     13                  /* "\nsum=" and 8 hex digits */
#ifndef PRINT_MAX
#define PRINT_MAX   20                  /* failures printed in full */
#endif

#include "check.h"

/* ---- shared state ---- */

static sse_ring *ring;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* the global lock */
static int chan_slot[NCHAN];
static uint32_t chan_epoch[NCHAN];
static unsigned events_per_pub;
static int done;                        /* publishers finished (atomic) */
static int start_gate;                  /* readers are running (atomic) */
static unsigned long torn;              /* records that were neither intact nor lost (atomic) */

/* Under the lock. */
static uint64_t next_g;
static long long last_g[NCHAN];
static unsigned long pub_errors;

typedef struct {
    int           mode;
    char          name[24];
    unsigned long ok, reread, lost, empty, walks, torn;
    pthread_t     tid;
} reader;

/* A record that is neither intact nor reported lost. */
static void report(reader *me, const char *why, const sse_ring_rec *rec)
{
    unsigned long n = __atomic_add_fetch(&torn, 1, __ATOMIC_RELAXED);

    me->torn++;
    if (n <= PRINT_MAX)
        printf("TORN %s: %s (off %llu, stamp %llu, frame_len %zu)\n", me->name, why,
               (unsigned long long)rec->off, (unsigned long long)rec->stamp, rec->frame_len);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = { 0, us * 1000 };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Waits until the writers have written lag bytes past pos (or are done):
 * slowness measured in the writers' progress, whatever their speed. */
static void fall_behind(uint64_t pos, uint64_t lag)
{
    while (sse_ring_head(ring) < pos + lag && !__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        sleep_us(20);
}

/* ---- the events ---- */

PRIVATE_WORK
static uint64_t mix(uint64_t x)     /* splitmix64 */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

PRIVATE_WORK
static uint32_t fnv(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Everything about event s of publisher p but its global numbers. */
typedef struct {
    unsigned nchan;
    unsigned chan[2];
    int      own_id;        /* publisher-chosen id "p<p>.s<s>" */
    int      has_event;     /* event type "t<p>" */
    long     retry;
    size_t   body_len;
    uint64_t seed;
} shape;

PRIVATE_WORK
static void shape_of(unsigned p, unsigned s, shape *sh)
{
    uint64_t h = mix(((uint64_t)p << 32) | s);

    sh->chan[0] = (unsigned)(h % NCHAN);
    sh->nchan = (h >> 8) % 4 == 0 ? 2 : 1;
    sh->chan[1] = (unsigned)((sh->chan[0] + 1 + (h >> 16) % (NCHAN - 1)) % NCHAN);
    sh->own_id = s % 5 == 0;
    sh->has_event = s % 3 == 0;
    sh->retry = s % 7 == 0 ? (long)(1000 + s % 5000) : -1;
    /* Mostly up to 1.5 KB, one in 16 up to 9 KB: records of every size,
     * padding at the end of the ring, several records overwritten by one. */
    sh->body_len = (h >> 24) % 16 == 0 ? 4000 + (size_t)((h >> 32) % 5000)
                                       : (size_t)((h >> 32) % 1500);
    sh->seed = mix(h);
}

/* Lowercase letters and line feeds (empty lines included). */
PRIVATE_WORK
static void body_of(const shape *sh, char *out)
{
    uint64_t x = sh->seed;
    size_t i;

    for (i = 0; i < sh->body_len; i++) {
        unsigned v;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        v = (unsigned)(x >> 33);
        out[i] = v % 53 == 0 ? '\n' : (char)('a' + v % 26);
    }
}

/* The data: "p=P s=S g=G l=L c<chan><<prev g> ...\n" BODY "\nsum=XXXXXXXX". */
PRIVATE_WORK
static size_t make_data(char *out, unsigned p, unsigned s, uint64_t g, const shape *sh,
                        const long long *prev_g, const char *body)
{
    size_t n;
    unsigned i;

    n = (size_t)sprintf(out, "p=%u s=%u g=%llu l=%zu", p, s, (unsigned long long)g, sh->body_len);
    for (i = 0; i < sh->nchan; i++)
        n += (size_t)sprintf(out + n, " c%u<%lld", sh->chan[i], prev_g[i]);
    out[n++] = '\n';
    memcpy(out + n, body, sh->body_len);
    n += sh->body_len;
    n += (size_t)sprintf(out + n, "\nsum=%08x", fnv(out, n));
    return n;
}

/* ---- publishers ---- */

static void *publisher(void *arg)
{
    unsigned p = (unsigned)(uintptr_t)arg, s, i;
    char *data = malloc(MAXDATA), *body = malloc(MAXDATA);
    char id[32], ev[16], id_out[SSE_FIELD_MAX + 1];

    while (!__atomic_load_n(&start_gate, __ATOMIC_ACQUIRE))
        sched_yield();
    for (s = 1; s <= events_per_pub; s++) {
        shape sh;
        long long prev[2];
        int slots[2];
        uint64_t g, stamp;
        sse_ring_msg m;
        size_t len;

        shape_of(p, s, &sh);
        body_of(&sh, body);
        pthread_mutex_lock(&lock);
        g = next_g++;
        for (i = 0; i < sh.nchan; i++) {
            prev[i] = last_g[sh.chan[i]];
            slots[i] = chan_slot[sh.chan[i]];
        }
        len = make_data(data, p, s, g, &sh, prev, body);
        memset(&m, 0, sizeof(m));
        m.nchan = (int)sh.nchan;
        m.chan = slots;
        if (sh.own_id) {
            m.id = id;
            m.id_len = (size_t)sprintf(id, "p%u.s%u", p, s);
        }
        if (sh.has_event) {
            m.event = ev;
            m.event_len = (size_t)sprintf(ev, "t%u", p);
        }
        m.retry = sh.retry;
        m.data = data;
        m.data_len = len;
        if (sse_ring_publish(ring, &m, now_ms(), &stamp, id_out) != 0)
            pub_errors++;
        for (i = 0; i < sh.nchan; i++)
            last_g[sh.chan[i]] = (long long)g;
        pthread_mutex_unlock(&lock);
        if (s % 64 == 0)
            sched_yield();      /* let the other publishers take the lock */
    }
    free(data);
    free(body);
    return NULL;
}

/* ---- checking one record ---- */

typedef struct {
    unsigned  p, s;
    uint64_t  g;
    unsigned  nchan;
    unsigned  chan[2];
    long long prev_g[2];
} info;

PRIVATE_WORK
static int take(const char **at, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - *at) < n || memcmp(*at, lit, n) != 0)
        return 0;
    *at += n;
    return 1;
}

PRIVATE_WORK
static int take_u64(const char **at, const char *end, unsigned long long *v)
{
    const char *q = *at;
    unsigned long long x = 0;

    while (q < end && *q >= '0' && *q <= '9' && q - *at < 20)
        x = x * 10 + (unsigned long long)(*q++ - '0');
    if (q == *at)
        return 0;
    *at = q;
    *v = x;
    return 1;
}

/* Checks that rec (a copy in buf) is one whole event as a publisher made
 * it; on success fills in, else sets *why. */
PRIVATE_WORK
static int intact(const sse_ring_rec *rec, const char *buf, info *in, const char **why)
{
    static const char sum_lit[] = "\nsum=";
    char data[MAXDATA + 64], expect[MAXDATA], evname[32], tmp[48];
    const char *f, *end, *at, *dend;
    size_t dlen = 0, n, blen;
    unsigned long long v;
    shape sh;
    unsigned i;

#define BAD(msg) do { *why = (msg); return 0; } while (0)
    if (rec->kind != SSE_REC_EVENT)
        BAD("not an event record");
    if (rec->nchan < 1 || rec->nchan > 2)
        BAD("channel count out of range");
    if ((const char *)rec->links < buf || rec->id < buf || rec->frame < buf
        || rec->id_len > SSE_FIELD_MAX || rec->frame_len > BUFSIZE
        || rec->frame + rec->frame_len > buf + BUFSIZE
        || rec->next <= rec->off || rec->next - rec->off > BUFSIZE
        || rec->next - rec->off < rec->frame_len + rec->id_len)
        BAD("lengths out of bounds");

    /* The frame, field by field, as sse_wire_frame writes it. */
    f = rec->frame;
    end = f + rec->frame_len;
    at = f;
    if (!take(&at, end, "id: ", 4) || !take(&at, end, rec->id, rec->id_len)
        || !take(&at, end, "\n", 1))
        BAD("frame does not start with the record's id");
    if (take(&at, end, "event: ", 7)) {
        const char *q = memchr(at, '\n', (size_t)(end - at));
        if (!q || (size_t)(q - at) >= sizeof(evname))
            BAD("event line");
        memcpy(evname, at, (size_t)(q - at));
        evname[q - at] = '\0';
        at = q + 1;
    }
    else {
        evname[0] = '\0';
    }
    {
        long retry = -1;
        if (take(&at, end, "retry: ", 7)) {
            if (!take_u64(&at, end, &v) || !take(&at, end, "\n", 1))
                BAD("retry line");
            retry = (long)v;
        }
        while (take(&at, end, "data: ", 6)) {
            const char *q = memchr(at, '\n', (size_t)(end - at));
            if (!q)
                BAD("data line without its end");
            n = (size_t)(q - at);
            if (dlen + n + 1 > sizeof(data))
                BAD("data longer than any event");
            if (dlen)
                data[dlen++] = '\n';
            memcpy(data + dlen, at, n);
            dlen += n;
            at = q + 1;
        }
        if (!take(&at, end, "\n", 1) || at != end)
            BAD("frame does not end with one blank line after its data");

        /* The data checks itself. */
        if (dlen < TRAILER || memcmp(data + dlen - TRAILER, sum_lit, 5) != 0)
            BAD("no checksum");
        sprintf(tmp, "%08x", fnv(data, dlen - TRAILER));
        if (memcmp(data + dlen - 8, tmp, 8) != 0)
            BAD("checksum mismatch");

        at = data;
        dend = data + dlen - TRAILER;
        if (!take(&at, dend, "p=", 2) || !take_u64(&at, dend, &v) || v >= NPUB)
            BAD("publisher");
        in->p = (unsigned)v;
        if (!take(&at, dend, " s=", 3) || !take_u64(&at, dend, &v) || v < 1 || v > events_per_pub)
            BAD("sequence");
        in->s = (unsigned)v;
        if (!take(&at, dend, " g=", 3) || !take_u64(&at, dend, &v))
            BAD("global number");
        in->g = v;
        if (!take(&at, dend, " l=", 3) || !take_u64(&at, dend, &v))
            BAD("length");
        blen = (size_t)v;
        shape_of(in->p, in->s, &sh);
        in->nchan = sh.nchan;
        for (i = 0; i < sh.nchan; i++) {
            in->chan[i] = sh.chan[i];
            n = (size_t)sprintf(tmp, " c%u<", sh.chan[i]);
            if (!take(&at, dend, tmp, n))
                BAD("channel list");
            if (take(&at, dend, "-1", 2))
                in->prev_g[i] = -1;
            else if (take_u64(&at, dend, &v) && v < in->g)
                in->prev_g[i] = (long long)v;
            else
                BAD("previous number of a channel");
        }
        if (!take(&at, dend, "\n", 1) || blen != sh.body_len || (size_t)(dend - at) != blen)
            BAD("body length");
        body_of(&sh, expect);
        if (memcmp(at, expect, blen) != 0)
            BAD("body differs from the publisher's");

        /* The fields around the data. */
        if (sh.own_id) {
            n = (size_t)sprintf(tmp, "p%u.s%u", in->p, in->s);
            if (rec->id_len != n || memcmp(rec->id, tmp, n) != 0)
                BAD("publisher-chosen id");
        }
        else {
            uint64_t st;
            if (!sse_wire_parse_server_id(rec->id, rec->id_len, &st) || st != rec->stamp)
                BAD("server id is not the record's stamp");
        }
        if (sh.has_event) {
            sprintf(tmp, "t%u", in->p);
            if (strcmp(evname, tmp) != 0)
                BAD("event type");
        }
        else if (evname[0]) {
            BAD("event type where there is none");
        }
        if (retry != sh.retry)
            BAD("retry");
    }

    /* The record's links: the channels' slots, epochs, and earlier records. */
    if ((unsigned)rec->nchan != sh.nchan)
        BAD("record's channel count");
    for (i = 0; i < sh.nchan; i++) {
        const sse_ring_link *l = &rec->links[i];
        if (l->chan != (uint32_t)chan_slot[sh.chan[i]] || l->epoch != chan_epoch[sh.chan[i]])
            BAD("link: channel or epoch");
        if (l->prev != SSE_RING_NONE && l->prev >= rec->off)
            BAD("link: previous record not before this one");
        if (in->prev_g[i] < 0 && l->prev != SSE_RING_NONE)
            BAD("link: previous record where the channel had none");
    }
#undef BAD
    return 1;
}

/* ---- readers ---- */

enum { R_FAST, R_SLOW, R_SLUG, R_RACER, R_REPLAY, R_REPLAY_SLOW };
static const char *const mode_name[] = { "fast", "slow", "slug", "racer", "replay", "replay-slow" };

static void *follower(void *arg)
{
    reader *me = arg;
    uint64_t *buf = malloc(BUFSIZE), *ref = malloc(BUFSIZE), ref_len = 0;
    uint64_t cursor = 0, last_stamp = 0, last_g = 0, last_off = 0, rnd = mix((uintptr_t)me);
    unsigned last_s[NPUB] = { 0 };
    int have = 0, lost_since = 0;
    size_t need;
    sse_ring_rec rec;
    info in;
    const char *why;

    memset(&rec, 0, sizeof(rec));
    __atomic_add_fetch(&start_gate, 1, __ATOMIC_RELEASE);
    for (;;) {
        int finished = __atomic_load_n(&done, __ATOMIC_ACQUIRE);
        int rv = sse_ring_read(ring, &cursor, buf, BUFSIZE, &need, &rec);

        if (rv == SSE_RING_EMPTY) {
            if (finished)
                break;
            me->empty++;
            if (me->mode == R_FAST)
                sched_yield();
            else
                sleep_us(50);
            continue;
        }
        if (rv == SSE_RING_LOST) {
            me->lost++;
            lost_since = 1;
            continue;
        }
        if (rv != SSE_RING_OK) {
            report(me, "SSE_RING_SMALL with a buffer of the largest record", &rec);
            continue;
        }
        if (me->mode == R_RACER && have && rec.off == last_off) {
            /* The racer reads the record at the tail again and again
             * until the writers evict it: a logical offset is never
             * reused, so every copy not reported LOST must be the same
             * bytes as the first one (checked in full below). Comparing
             * is cheap, so most of the racer's time goes into copying,
             * i.e. into racing the writers. */
            if (rec.next - rec.off != ref_len || memcmp(buf, ref, ref_len) != 0) {
                report(me, intact(&rec, (const char *)buf, &in, &why)
                           ? "a record read again is another intact record" : why, &rec);
                goto restart;
            }
            me->reread++;
            cursor = rec.off;
            if (finished)
                break;
            if (me->reread % 1024 == 0)
                sched_yield();
            continue;
        }
        if (!intact(&rec, (const char *)buf, &in, &why)) {
            report(me, why, &rec);
            goto restart;
        }
        me->ok++;
        if (me->mode == R_RACER) {
            ref_len = rec.next - rec.off;
            memcpy(ref, buf, ref_len);
            cursor = rec.off;
        }
        if (rec.stamp <= last_stamp)
            report(me, "stamp not above the previous one", &rec);
        if (in.s <= last_s[in.p])
            report(me, "publisher's sequence went back", &rec);
        if (have && !lost_since && in.g != last_g + 1)
            report(me, "a record skipped without SSE_RING_LOST", &rec);
        if (have && in.g <= last_g)
            report(me, "global number went back", &rec);
        last_stamp = rec.stamp;
        last_off = rec.off;
        last_s[in.p] = in.s;
        last_g = in.g;
        have = 1;
        lost_since = 0;

        /* slow: now and then, let the writers get half a ring to one
         * and a half ahead, so that it reads at the tail or has lost it;
         * slug: always more than a ring, so that every other read is a
         * LOST and the next one copies the record the writers evict next. */
        rnd = mix(rnd);
        if (me->mode == R_SLOW && rnd % 8 == 0)
            fall_behind(cursor, DATA_SIZE / 2 + (rnd >> 32) % DATA_SIZE);
        else if (me->mode == R_SLUG)
            fall_behind(cursor, DATA_SIZE + (rnd >> 32) % (DATA_SIZE / 4));
        continue;

    restart:
        /* After a torn record (reported): start again from the tail, where
         * rec.next, which may be garbage, cannot strand the reader, and
         * forget the order so far, so that one failure is not reported
         * over and over. */
        cursor = 0;
        have = 0;
        last_stamp = 0;
        memset(last_s, 0, sizeof(last_s));
    }
    free(buf);
    free(ref);
    return NULL;
}

static void *replayer(void *arg)
{
    reader *me = arg;
    uint64_t *buf = malloc(BUFSIZE), rnd = mix((uintptr_t)me);
    size_t need;
    sse_ring_rec rec;
    info in;
    const char *why;

    memset(&rec, 0, sizeof(rec));
    __atomic_add_fetch(&start_gate, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        unsigned ch, i;
        uint64_t off, prev_stamp = UINT64_MAX;
        long long want_g = -2;          /* -2: any (the chain's newest) */

        rnd = mix(rnd);
        ch = (unsigned)(rnd % NCHAN);
        off = sse_ring_chan_last(ring, chan_slot[ch]);
        me->walks++;
        while (off != SSE_RING_NONE) {
            int rv = sse_ring_read_at(ring, off, buf, BUFSIZE, &need, &rec);
            if (rv == SSE_RING_LOST) {
                me->lost++;
                break;
            }
            if (rv != SSE_RING_OK) {
                report(me, rv == SSE_RING_EMPTY ? "chain link at or past the head"
                                                : "SSE_RING_SMALL", &rec);
                break;
            }
            if (!intact(&rec, (const char *)buf, &in, &why)) {
                report(me, why, &rec);
                break;
            }
            me->ok++;
            for (i = 0; i < in.nchan && in.chan[i] != ch; i++)
                ;
            if (i == in.nchan) {
                report(me, "record in a chain it is not on", &rec);
                break;
            }
            if (want_g != -2 && (long long)in.g != want_g) {
                report(me, "chain link is not the channel's previous event", &rec);
                break;
            }
            if (rec.stamp >= prev_stamp) {
                report(me, "stamps not decreasing along a chain", &rec);
                break;
            }
            prev_stamp = rec.stamp;
            want_g = in.prev_g[i];
            off = rec.links[i].prev;
            if (me->mode == R_REPLAY_SLOW)     /* an eighth of a ring per step */
                fall_behind(sse_ring_head(ring), DATA_SIZE / 8);
        }
        sched_yield();
    }
    free(buf);
    return NULL;
}

/* ---- main ---- */

int main(void)
{
    static const int modes[] = { R_FAST, R_SLOW, R_SLUG, R_RACER, R_REPLAY, R_REPLAY_SLOW };
    enum { NREAD = sizeof(modes) / sizeof(modes[0]) };
    sse_ring_params params = { DATA_SIZE, 16, 4 };
    reader rd[NREAD];
    pthread_t pub[NPUB];
    const char *env = getenv("SSE_STRESS_EVENTS");
    void *mem;
    uint64_t head;
    unsigned long ok_total = 0;
    double t0, t1;
    int i;

    /* A hang (a reader looping on a broken ring) is a failure too. */
    alarm(UNDER_TSAN ? 300 : 120);
    events_per_pub = env && atoi(env) > 0 ? (unsigned)atoi(env) : UNDER_TSAN ? 8000 : 20000;

    mem = calloc(1, sse_ring_size(&params) + 64);
    ring = sse_ring_init(mem, &params, now_ms());
    CHECK(sse_ring_max_frame(ring) > MAXDATA + MAXDATA / 4);   /* every event fits */
    for (i = 0; i < NCHAN; i++) {
        char name[16];
        sprintf(name, "c%d", i);
        chan_slot[i] = sse_ring_chan_intern(ring, name, strlen(name));
        chan_epoch[i] = sse_ring_chan_epoch(ring, chan_slot[i]);
        last_g[i] = -1;
    }

    t0 = now_s();
    for (i = 0; i < NREAD; i++) {
        memset(&rd[i], 0, sizeof(rd[i]));
        rd[i].mode = modes[i];
        snprintf(rd[i].name, sizeof(rd[i].name), "%s", mode_name[modes[i]]);
        pthread_create(&rd[i].tid, NULL, modes[i] >= R_REPLAY ? replayer : follower, &rd[i]);
    }
    while (__atomic_load_n(&start_gate, __ATOMIC_ACQUIRE) < NREAD)
        sched_yield();
    for (i = 0; i < NPUB; i++)
        pthread_create(&pub[i], NULL, publisher, (void *)(uintptr_t)i);
    for (i = 0; i < NPUB; i++)
        pthread_join(pub[i], NULL);
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (i = 0; i < NREAD; i++)
        pthread_join(rd[i].tid, NULL);
    t1 = now_s();

    head = sse_ring_head(ring);
    printf("ring threads: %u publishers x %u events, %d readers, %.2f s, head %llu = %.0f x data size\n",
           NPUB, events_per_pub, NREAD, t1 - t0, (unsigned long long)head,
           (double)head / DATA_SIZE);
    for (i = 0; i < NREAD; i++) {
        printf("  %-12s ok %7lu  lost %6lu  torn %5lu  empty %8lu", rd[i].name, rd[i].ok,
               rd[i].lost, rd[i].torn, rd[i].empty);
        if (rd[i].walks)
            printf("  walks %lu", rd[i].walks);
        if (rd[i].reread)
            printf("  re-read %lu", rd[i].reread);
        printf("\n");
        ok_total += rd[i].ok;
    }

    CHECK(pub_errors == 0);
    CHECK(next_g == (uint64_t)NPUB * events_per_pub);
    /* Records are intact or reported lost: never torn, skipped or reordered. */
    CHECK(__atomic_load_n(&torn, __ATOMIC_RELAXED) == 0);
    /* And the run tested something. */
    CHECK(head > 10ull * DATA_SIZE);
    CHECK(ok_total >= events_per_pub);
    for (i = 0; i < NREAD; i++) {
        check(rd[i].ok >= 100, "every reader checked records", __FILE__, __LINE__);
        if (rd[i].mode != R_FAST && rd[i].mode != R_REPLAY)
            check(rd[i].lost > 0, "a slow reader was overtaken (SSE_RING_LOST)", __FILE__, __LINE__);
    }
    /* What the ring keeps at the end is intact and ends with the last event. */
    {
        uint64_t cursor = 0, *buf = malloc(BUFSIZE), last = 0;
        size_t need;
        sse_ring_rec rec;
        info in;
        const char *why;
        int rv, bad = 0;
        while ((rv = sse_ring_read(ring, &cursor, buf, BUFSIZE, &need, &rec)) != SSE_RING_EMPTY) {
            if (rv == SSE_RING_OK) {
                if (intact(&rec, (const char *)buf, &in, &why))
                    last = in.g;
                else
                    bad++;
            }
        }
        CHECK(!bad && last == next_g - 1);
        free(buf);
    }

    free(mem);
    printf("ring threads: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
