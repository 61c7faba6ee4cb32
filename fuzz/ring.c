/* ring.c -- fuzzes the event ring (sse_ring.c) under a sequence of
 * operations read from the input, on a small ring (64 KiB of data, 16
 * channels, 24 channel names, so that channels are forgotten and their
 * slots reused): intern, publish (1 to 3 channels, server or publisher id,
 * event type, retry, data of up to 64 KiB with CR, LF and NUL), delete,
 * sse_ring_publish_at with a stamp above the last or stale (at or below it),
 * sse_ring_rebirth (accepted only by a ring nothing was written to),
 * sse_ring_delete_at (a stamp above the last, or stale),
 * subscribe/unsubscribe, the clock moving either way, sse_ring_read by a
 * reader that keeps its cursor, with buffers too small at times.
 *
 * Properties, after every operation:
 *  - a publish that sse_ring_fits accepts succeeds, with a stamp above every
 *    earlier one and the id asked for (or the stamp's server id); one it
 *    refuses fails, unless it has no publisher id (sse_ring_fits measures
 *    the longest server id, the real one may be shorter); a publish that
 *    fails leaves the head and the last stamp where they were;
 *  - sse_ring_publish_at with a stamp above the last behaves the same with
 *    exactly that stamp; with a stale one it answers SSE_RING_STALE and
 *    changes nothing;
 *  - sse_ring_delete drops what sse_ring_chan_get said was retained;
 *  - reading from the tail to the head (sse_ring_read) gives, in order,
 *    exactly the newest records published (a model kept here), each intact:
 *    its kind, stamp, links (channel, epoch), id and frame bytes as
 *    published, the frame parsing (sse_parse_stream) to one event with that
 *    id; padding is skipped, nothing is lost once at the tail, and the walk
 *    ends at the head;
 *  - each channel's chain (sse_ring_chan_last, then each record's link back,
 *    read with sse_ring_read_at) visits exactly the channel's retained
 *    records of its current epoch, newest first, and their count is
 *    sse_ring_chan_get's `retained`; sse_ring_chan_evicted is below all of
 *    them;
 *  - the reader's records come with increasing stamps; SSE_RING_SMALL says
 *    how much it needs and does not move the cursor; SSE_RING_LOST moves it
 *    forward.
 */
#include "fuzz.h"
#include "sse_ring.h"

#define DATA_SIZE   (64 * 1024)
#define MAX_CHANS   16
#define NAMES       24
#define MAX_STEPS   400
#define REC_MAX     (DATA_SIZE / 4)     /* the ring's largest record */

typedef struct {
    uint64_t stamp;
    int      kind;
    int      nchan;
    uint32_t chan[3], epoch[3];
    char     id[SSE_FIELD_MAX + 1];
    size_t   id_len;
    char    *frame;                     /* NULL once evicted */
    size_t   frame_len;
    int      parsed;                    /* its frame was parsed back once */
} model_rec;

typedef struct {
    const uint8_t *d;
    size_t n, i;
} input;

static unsigned next(input *in)
{
    return in->i < in->n ? in->d[in->i++] : 0;
}

static char names[NAMES][8];

static struct {
    apr_pool_t *pool;
    sse_ring   *r;
    model_rec  *m;
    size_t      nm, cap, first;         /* model; first: oldest not evicted */
    uint64_t    now, reader, reader_last;
    int         proc, subs[64];         /* subscribers we added, per slot */
    char       *buf;                    /* a record read back */
    char        data[65536];            /* an event's data */
} S;

static void model_push(const model_rec *rec)
{
    if (S.nm == S.cap) {
        S.cap = S.cap ? 2 * S.cap : 64;
        S.m = realloc(S.m, S.cap * sizeof(*S.m));
        FUZZ_CHECK(S.m != NULL);
    }
    S.m[S.nm++] = *rec;
}

static int name_slot(unsigned b)
{
    const char *nm = names[b % NAMES];

    return sse_ring_chan_find(S.r, nm, strlen(nm));
}

static void op_intern(input *in)
{
    const char *nm = names[next(in) % NAMES];
    int slot = sse_ring_chan_intern(S.r, nm, strlen(nm));
    sse_ring_chan_info info;

    if (slot < 0) {
        FUZZ_CHECK(sse_ring_chan_find(S.r, nm, strlen(nm)) < 0);
        return;
    }
    FUZZ_CHECK((uint32_t)slot < sse_ring_chan_slots(S.r));
    FUZZ_CHECK(sse_ring_chan_find(S.r, nm, strlen(nm)) == slot);
    sse_ring_chan_get(S.r, slot, &info);
    FUZZ_CHECK(strcmp(info.name, nm) == 0);
}

static void op_publish(input *in)
{
    unsigned nchan = 1 + next(in) % 3, flags, i, k, seed;
    int slots[3];
    char idbuf[SSE_FIELD_MAX + 1], evbuf[16], id_out[SSE_FIELD_MAX + 1];
    size_t len;
    char *data;
    sse_ring_msg msg;
    uint64_t head, stamp = 0, last = sse_ring_last_stamp(S.r);
    model_rec rec;
    sse_wire_event ev = { 0 };     /* meta: none, as msg has none */
    int fits, rv;

    for (i = 0; i < nchan; i++) {
        const char *nm = names[next(in) % NAMES];
        slots[i] = sse_ring_chan_intern(S.r, nm, strlen(nm));
        if (slots[i] < 0)
            return;                 /* the table is full */
        for (k = 0; k < i; k++) {
            if (slots[k] == slots[i])
                return;             /* the store never names a channel twice */
        }
    }
    flags = next(in);
    memset(&msg, 0, sizeof(msg));
    msg.nchan = (int)nchan;
    msg.chan = slots;
    msg.retry = -1;
    if (flags & 1) {
        /* A publisher's id: short, or up to the longest allowed. */
        len = flags & 2 ? SSE_FIELD_MAX - next(in) % 8 : (size_t)snprintf(idbuf, sizeof(idbuf),
                                                                          "p-%u", next(in));
        if (flags & 2)
            memset(idbuf, 'i', len);
        FUZZ_CHECK(sse_wire_check_id(idbuf, len) == NULL);
        msg.id = idbuf;
        msg.id_len = len;
    }
    if (flags & 4) {
        msg.event = evbuf;
        msg.event_len = (size_t)snprintf(evbuf, sizeof(evbuf), "t%u", next(in));
    }
    if (flags & 8) {
        k = next(in) << 8;
        k |= next(in);
        msg.retry = (long)(k * 32771u % (SSE_RETRY_MAX + 1u));
    }
    /* Data: up to 64 KiB, so that some events do not fit. */
    len = (size_t)next(in) << 8;
    len |= next(in);
    if (!(flags & 16))
        len &= 0x7ff;
    seed = next(in) | 1;
    data = S.data;
    for (i = 0; i < len; i++) {
        static const char alphabet[] = "abcdefgh \r\n\0:\xc3\xa9";
        seed = seed * 1103515245u + 12345u;
        data[i] = flags & 32 ? alphabet[(seed >> 16) % (sizeof(alphabet) - 1)]
                             : (char)('a' + (seed >> 16) % 26);
    }
    msg.data = data;
    msg.data_len = len;

    fits = sse_ring_fits(S.r, &msg);
    head = sse_ring_head(S.r);
    if (flags & 64) {
        /* A stamp chosen by the caller (the Redis store's follower): above
         * the last by a sequence step or a jump of milliseconds, or stale
         * (equal to or below the last), which must change nothing. */
        unsigned k = next(in);
        int stale = k & 1;

        stamp = stale ? last - (k >> 1) % (last + 1)
                      : last + 1 + (k & 2 ? SSE_STAMP((k >> 2), 0) : (k >> 2));
        rv = sse_ring_publish_at(S.r, &msg, stamp, id_out);
        if (stale) {
            FUZZ_CHECK(rv == SSE_RING_STALE);
            FUZZ_CHECK(sse_ring_head(S.r) == head && sse_ring_last_stamp(S.r) == last);
            return;
        }
    }
    else {
        rv = sse_ring_publish(S.r, &msg, S.now, &stamp, id_out);
    }
    if (rv != 0) {
        FUZZ_CHECK(rv == -1 && !fits);
        FUZZ_CHECK(sse_ring_head(S.r) == head && sse_ring_last_stamp(S.r) == last);
        return;
    }
    FUZZ_CHECK(fits || msg.id == NULL);
    FUZZ_CHECK(stamp > last && sse_ring_last_stamp(S.r) == stamp);
    FUZZ_CHECK(sse_ring_head(S.r) > head);
    memset(&rec, 0, sizeof(rec));
    rec.stamp = stamp;
    rec.kind = SSE_REC_EVENT;
    rec.nchan = (int)nchan;
    for (i = 0; i < nchan; i++) {
        rec.chan[i] = (uint32_t)slots[i];
        rec.epoch[i] = sse_ring_chan_epoch(S.r, slots[i]);
        FUZZ_CHECK(sse_ring_chan_last(S.r, slots[i]) != SSE_RING_NONE);
    }
    if (msg.id) {
        rec.id_len = msg.id_len;
        memcpy(rec.id, msg.id, msg.id_len);
    }
    else {
        rec.id_len = sse_wire_format_id(stamp, rec.id);
    }
    FUZZ_CHECK(strlen(id_out) == rec.id_len && memcmp(id_out, rec.id, rec.id_len) == 0);
    ev.id = rec.id;
    ev.id_len = rec.id_len;
    ev.event = msg.event;
    ev.event_len = msg.event_len;
    ev.retry = msg.retry;
    ev.data = msg.data;
    ev.data_len = msg.data_len;
    rec.frame_len = sse_wire_frame_size(&ev);
    rec.frame = malloc(rec.frame_len);
    FUZZ_CHECK(rec.frame && sse_wire_frame(rec.frame, &ev) == rec.frame_len);
    model_push(&rec);
}

static void op_delete(input *in)
{
    unsigned b = next(in);
    int slot = name_slot(b);
    sse_ring_chan_info info;
    model_rec rec;
    uint32_t epoch;

    if (slot < 0)
        return;
    sse_ring_chan_get(S.r, slot, &info);
    epoch = sse_ring_chan_epoch(S.r, slot);
    if (b & 0x80) {
        /* With the caller's stamp: above the last, or stale (nothing changes). */
        uint64_t last = sse_ring_last_stamp(S.r), head = sse_ring_head(S.r);
        uint32_t dropped = 0;
        unsigned k = next(in);

        if (k & 1) {
            FUZZ_CHECK(sse_ring_delete_at(S.r, slot, last - (k >> 1) % (last + 1), &dropped)
                       == SSE_RING_STALE);
            FUZZ_CHECK(sse_ring_head(S.r) == head && sse_ring_last_stamp(S.r) == last
                       && sse_ring_chan_epoch(S.r, slot) == epoch);
            return;
        }
        FUZZ_CHECK(sse_ring_delete_at(S.r, slot, last + 1 + (k >> 1), &dropped) == 0);
        FUZZ_CHECK(dropped == info.retained && sse_ring_last_stamp(S.r) == last + 1 + (k >> 1));
    }
    else {
        FUZZ_CHECK(sse_ring_delete(S.r, slot, S.now) == info.retained);
    }
    FUZZ_CHECK(sse_ring_chan_epoch(S.r, slot) == epoch + 1);
    FUZZ_CHECK(sse_ring_chan_last(S.r, slot) == SSE_RING_NONE);
    memset(&rec, 0, sizeof(rec));
    rec.stamp = sse_ring_last_stamp(S.r);
    rec.kind = SSE_REC_DELETE;
    rec.nchan = 1;
    rec.chan[0] = (uint32_t)slot;
    rec.epoch[0] = epoch;
    FUZZ_CHECK(S.nm == 0 || rec.stamp > S.m[S.nm - 1].stamp);
    model_push(&rec);
}

static void op_subs(input *in)
{
    unsigned b = next(in);
    int slot = name_slot(b);

    if (slot < 0)
        return;
    FUZZ_CHECK(slot < 64);
    if (b & 0x80) {
        sse_ring_subs_add(S.r, S.proc, slot, 1);
        S.subs[slot]++;
    }
    else if (S.subs[slot] > 0) {
        sse_ring_subs_add(S.r, S.proc, slot, -1);
        S.subs[slot]--;
    }
    FUZZ_CHECK(sse_ring_subs_total(S.r, slot) == (uint64_t)S.subs[slot]);
}

static void op_clock(input *in)
{
    int step = (int)(int8_t)next(in);
    uint64_t born = sse_ring_born(S.r), last = sse_ring_last_stamp(S.r);

    /* A rebirth further back: only an untouched ring takes it. */
    if (step < -100) {
        uint64_t to = born - SSE_STAMP((uint64_t)(-step), 0);
        int ok = sse_ring_head(S.r) == 0 && last == born;

        FUZZ_CHECK(sse_ring_rebirth(S.r, to) == (ok ? 0 : -1));
        FUZZ_CHECK(sse_ring_born(S.r) == (ok ? to : born));
        FUZZ_CHECK(sse_ring_last_stamp(S.r) == (ok ? to : last));
        return;
    }

    /* Mostly forward by a few ms, sometimes back (ids must still grow). */
    if (step < 0 && (uint64_t)(-step) * 100 < S.now)
        S.now -= (uint64_t)(-step) * 100;
    else if (step >= 0)
        S.now += (uint64_t)step;
}

static void op_read(input *in)
{
    unsigned count = 1 + next(in) % 16, small = next(in), i;
    size_t bufsize = small & 1 ? small % 200 : REC_MAX, need = 0;
    sse_ring_rec rec;

    for (i = 0; i < count; i++) {
        uint64_t before = S.reader;
        int rv = sse_ring_read(S.r, &S.reader, S.buf, bufsize, &need, &rec);

        if (rv == SSE_RING_EMPTY) {
            FUZZ_CHECK(S.reader == sse_ring_head(S.r));
            return;
        }
        if (rv == SSE_RING_SMALL) {
            FUZZ_CHECK(need > bufsize && need <= REC_MAX && need % 8 == 0);
            FUZZ_CHECK(S.reader >= before);
            bufsize = need;
            continue;
        }
        if (rv == SSE_RING_LOST) {
            FUZZ_CHECK(S.reader > before);
            continue;
        }
        FUZZ_CHECK(rv == SSE_RING_OK);
        FUZZ_CHECK(rec.stamp > S.reader_last && rec.off >= before && S.reader == rec.next);
        S.reader_last = rec.stamp;
    }
}

/* The whole ring, tail to head, against the model. */
static void check_ring(void)
{
    uint64_t cursor = 0, prev_next = 0, head = sse_ring_head(S.r);
    size_t k = S.nm, seen = 0, need;
    uint32_t retained[64] = { 0 };
    int first = 1, i, n;
    sse_ring_rec rec;

    for (;;) {
        int rv = sse_ring_read(S.r, &cursor, S.buf, REC_MAX, &need, &rec);

        if (rv == SSE_RING_LOST) {
            FUZZ_CHECK(first && seen == 0);      /* only from before the tail */
            first = 0;
            continue;
        }
        first = 0;
        if (rv == SSE_RING_EMPTY)
            break;
        FUZZ_CHECK(rv == SSE_RING_OK);
        FUZZ_CHECK(rec.off >= prev_next && rec.next > rec.off && rec.next <= head);
        FUZZ_CHECK(rec.off % 8 == 0 && rec.next % 8 == 0 && rec.next - rec.off <= REC_MAX);
        prev_next = rec.next;
        if (seen == 0) {
            /* The oldest record kept: everything before it was evicted. */
            for (k = S.first; k < S.nm && S.m[k].stamp != rec.stamp; k++) {
                free(S.m[k].frame);
                S.m[k].frame = NULL;
            }
            FUZZ_CHECK(k < S.nm);
            S.first = k;
        }
        FUZZ_CHECK(k < S.nm);
        {
            model_rec *m = &S.m[k];
            FUZZ_CHECK(rec.stamp == m->stamp && rec.kind == m->kind && rec.nchan == m->nchan);
            for (i = 0; i < rec.nchan; i++)
                FUZZ_CHECK(rec.links[i].chan == m->chan[i] && rec.links[i].epoch == m->epoch[i]);
            FUZZ_CHECK(fuzz_bytes_eq(rec.id, rec.id_len, m->id, m->id_len));
            if (m->kind == SSE_REC_EVENT) {
                FUZZ_CHECK(fuzz_bytes_eq(rec.frame, rec.frame_len, m->frame, m->frame_len));
                if (!m->parsed) {
                    apr_array_header_t *evs;
                    const sse_body_event *ev;
                    int dropped = -1;
                    FUZZ_CHECK(sse_parse_stream(S.pool, rec.frame, rec.frame_len, &evs,
                                                &dropped) == NULL);
                    FUZZ_CHECK(dropped == 0 && evs->nelts == 1);
                    ev = (const sse_body_event *)evs->elts;
                    FUZZ_CHECK(fuzz_bytes_eq(ev->id.s, ev->id.len, rec.id, rec.id_len));
                    m->parsed = 1;
                }
                for (i = 0; i < rec.nchan; i++) {
                    if (rec.links[i].epoch == sse_ring_chan_epoch(S.r, (int)rec.links[i].chan))
                        retained[rec.links[i].chan]++;
                }
            }
            else {
                FUZZ_CHECK(m->kind == SSE_REC_DELETE && rec.frame_len == 0
                           && rec.links[0].prev == SSE_RING_NONE);
            }
        }
        k++;
        seen++;
    }
    FUZZ_CHECK(cursor == head);
    /* The newest record is always kept (a record is at most a quarter of
     * the ring), so the walk ends with the last one published. */
    FUZZ_CHECK(k == S.nm);
    FUZZ_CHECK(S.nm == 0 || seen > 0);

    /* Each channel's chain: its retained records of this epoch. */
    for (n = 0; n < NAMES; n++) {
        int slot = sse_ring_chan_find(S.r, names[n], strlen(names[n]));
        uint64_t off, evicted, last_stamp = UINT64_MAX;
        uint32_t epoch, walked = 0;
        sse_ring_chan_info info;

        if (slot < 0)
            continue;
        FUZZ_CHECK(slot < 64);
        sse_ring_chan_get(S.r, slot, &info);
        epoch = sse_ring_chan_epoch(S.r, slot);
        evicted = sse_ring_chan_evicted(S.r, slot);
        FUZZ_CHECK(info.retained == retained[slot]);
        for (off = sse_ring_chan_last(S.r, slot); off != SSE_RING_NONE; ) {
            int rv = sse_ring_read_at(S.r, off, S.buf, REC_MAX, &need, &rec), link = -1;
            if (rv == SSE_RING_LOST)
                break;
            FUZZ_CHECK(rv == SSE_RING_OK && rec.kind == SSE_REC_EVENT && rec.off == off);
            for (i = 0; i < rec.nchan; i++) {
                if (rec.links[i].chan == (uint32_t)slot)
                    link = i;
            }
            FUZZ_CHECK(link >= 0 && rec.links[link].epoch == epoch);
            FUZZ_CHECK(rec.stamp < last_stamp && rec.stamp > evicted);
            if (walked == 0)
                FUZZ_CHECK(strlen(info.last_id) == rec.id_len
                           && memcmp(info.last_id, rec.id, rec.id_len) == 0);
            last_stamp = rec.stamp;
            walked++;
            off = rec.links[link].prev;
        }
        FUZZ_CHECK(walked == info.retained);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static sse_ring_params params = { DATA_SIZE, MAX_CHANS, 2 };
    input in = { d, n, 0 };
    void *mem;
    size_t i;
    int steps;

    if (!names[0][0]) {
        for (i = 0; i < NAMES; i++)
            snprintf(names[i], sizeof(names[i]), "ch-%02zu", i);
    }
    memset(&S, 0, sizeof(S));
    S.pool = fuzz_pool();
    mem = calloc(1, sse_ring_size(&params));
    S.buf = malloc(REC_MAX);
    FUZZ_CHECK(mem && S.buf);
    S.now = 1795476000000ull;
    S.r = sse_ring_init(mem, &params, S.now);
    FUZZ_CHECK(sse_ring_max_frame(S.r) > 0 && sse_ring_chan_slots(S.r) <= 64);
    S.proc = sse_ring_proc_claim(S.r, 4242);
    FUZZ_CHECK(S.proc >= 0);
    S.reader = sse_ring_head(S.r);

    for (steps = 0; in.i < in.n && steps < MAX_STEPS; steps++) {
        switch (next(&in) % 8) {
        case 0: op_intern(&in); break;
        case 1: case 2: case 3: op_publish(&in); break;
        case 4: op_delete(&in); break;
        case 5: op_subs(&in); break;
        case 6: op_clock(&in); break;
        case 7: op_read(&in); break;
        }
        check_ring();
    }
    for (i = 0; i < S.nm; i++)
        free(S.m[i].frame);
    free(S.m);
    free(S.buf);
    free(mem);
    return 0;
}
