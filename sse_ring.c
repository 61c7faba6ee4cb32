/* sse_ring.c -- the shared event ring and channel table.
 *
 * See sse_ring.h for the layout and the concurrency contract. The invariants
 * every function here keeps:
 *
 *   tail <= head, both multiples of 8;
 *   [tail, head) holds complete records, back to back, except that a record
 *   never straddles the end of the data area: the gap before the end is an
 *   explicit PAD record, or implicit when it is smaller than a record header;
 *   head - tail <= data_size;
 *   a channel's last_off is SSE_RING_NONE or the offset of a record that
 *   was complete when last_off was stored.
 */
#include "sse_ring.h"
#include "sse_assert.h"
#include "sse_metrics.h"

#include <string.h>

#define RING_MAGIC  0x52455353u     /* "SSER" */
/* Bumped whenever the shared block's layout changes. A graceful restart
 * into a build with another layout starts a new ring (sse_shm.c); a test
 * builds the module with -DSSE_RING_LAYOUT to prove it. */
#ifdef SSE_RING_LAYOUT
#define RING_LAYOUT SSE_RING_LAYOUT
#else
#define RING_LAYOUT 5u
#endif

enum { CHAN_FREE = 0, CHAN_LIVE = 1, CHAN_GONE = 2 };

/* A channel that exists only because streams wait on it: interned by a
 * subscription and never published to (see sse_ring_chan_intern_waiting). */
#define CHAN_WAITING 1u

typedef struct {
    uint32_t size;          /* whole record, multiple of 8 */
    uint16_t kind;
    uint16_t nchan;
    uint64_t stamp;
    uint32_t id_len;
    uint32_t frame_len;
} rec_hdr;

#define HDR ((uint64_t)sizeof(rec_hdr))

/* Records are multiples of 8 bytes, and so are their parts before the id. */
SSE_STATIC_ASSERT(sizeof(rec_hdr) % 8 == 0, "record header keeps records aligned");
SSE_STATIC_ASSERT(sizeof(sse_ring_link) % 8 == 0, "channel links keep records aligned");

/* A process's wake word, and whether its reader sleeps on it (for the
 * shared waker: how many readers do). One cache line each: a publisher
 * writes the words of other processes, a reader its own. */
typedef struct {
    uint32_t word;
    uint32_t sleeping;
} __attribute__((aligned(64))) waker;

typedef struct {
    uint32_t state;
    uint32_t epoch;
    uint32_t hash;
    uint32_t retained;
    uint32_t flags;         /* CHAN_WAITING */
    uint32_t unused;
    uint64_t last_off;
    uint64_t last_stamp;
    uint64_t evicted;
    uint64_t published;
    uint16_t name_len;
    uint16_t last_id_len;
    char     name[SSE_CHANNEL_MAX + 1];
    char     last_id[SSE_FIELD_MAX + 1];
} chan_slot;

struct sse_ring {
    uint32_t magic;
    uint32_t layout;
    sse_ring_params params;
    uint32_t chan_cap;          /* power of two, > max_channels */
    uint32_t chan_live;
    uint32_t chan_waiting;      /* live channels with CHAN_WAITING */
    uint32_t leader;            /* sse_ring_leader_word */
    uint64_t born;
    uint64_t last_stamp;
    uint64_t evicted;           /* events overwritten, ever */
    uint64_t chan_off, procs_off, counts_off, wakers_off, metrics_off, data_off;

    /* Written by every publish and read by every process: own cache lines. */
    uint64_t head __attribute__((aligned(64)));
    uint64_t tail __attribute__((aligned(64)));
    waker    shared;            /* for processes without a slot */
};

#define ALIGN(x, a) (((x) + ((a) - 1)) & ~(uint64_t)((a) - 1))

/* Test hooks (tests/unit/test_ring_crash.c): RING_STEP(n) marks a point
 * of a write where a writer may die; compiled to nothing in the module. */
#ifdef SSE_RING_TEST_HOOKS
void (*sse_ring_test_hook)(int step);
#define RING_STEP(n) do { if (sse_ring_test_hook) sse_ring_test_hook(n); } while (0)
#else
#define RING_STEP(n) ((void)0)
#endif

#define LOAD(p)        __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)    __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static chan_slot *chans(const sse_ring *r)
{
    return (chan_slot *)((char *)r + r->chan_off);
}

static uint32_t *procs(const sse_ring *r)
{
    return (uint32_t *)((char *)r + r->procs_off);
}

static uint32_t *counts(const sse_ring *r)
{
    return (uint32_t *)((char *)r + r->counts_off);
}

static waker *wakers(const sse_ring *r)
{
    return (waker *)((char *)r + r->wakers_off);
}

static sse_metrics *metrics(const sse_ring *r)
{
    return (sse_metrics *)((char *)r + r->metrics_off);
}

static char *data(const sse_ring *r)
{
    return (char *)r + r->data_off;
}

static uint32_t table_cap(uint32_t max_channels)
{
    uint64_t want = (uint64_t)max_channels + max_channels / 3 + 1, cap = 16;

    while (cap < want)
        cap <<= 1;
    return (uint32_t)cap;
}

static void layout(const sse_ring_params *p, sse_ring *r, uint64_t *total)
{
    uint32_t cap = table_cap(p->max_channels);

    r->chan_off = ALIGN(sizeof(sse_ring), 64);
    r->procs_off = ALIGN(r->chan_off + (uint64_t)cap * sizeof(chan_slot), 64);
    r->counts_off = ALIGN(r->procs_off + (uint64_t)p->max_procs * sizeof(uint32_t), 64);
    r->wakers_off = ALIGN(r->counts_off + (uint64_t)p->max_procs * cap * sizeof(uint32_t), 64);
    r->metrics_off = ALIGN(r->wakers_off + (uint64_t)p->max_procs * sizeof(waker), 64);
    r->data_off = ALIGN(r->metrics_off + sse_metrics_size(p->max_procs), 4096);
    *total = r->data_off + ALIGN(p->data_size, 8);
}

size_t sse_ring_size(const sse_ring_params *p)
{
    sse_ring offsets;
    uint64_t total;

    layout(p, &offsets, &total);
    return (size_t)total;
}

sse_ring *sse_ring_init(void *mem, const sse_ring_params *p, uint64_t now_ms)
{
    sse_ring *r = mem;
    uint64_t total;

    /* The block comes zeroed (anonymous shared memory): touching it all here
     * would make every page resident for nothing. Only the header is set. */
    memset(r, 0, sizeof(*r));
    r->magic = RING_MAGIC;
    r->layout = RING_LAYOUT;
    r->params = *p;
    r->params.data_size = ALIGN(p->data_size, 8);
    r->chan_cap = table_cap(p->max_channels);
    layout(p, r, &total);
    r->born = SSE_STAMP(now_ms, 0);
    r->last_stamp = r->born;
    sse_metrics_init(metrics(r), p->max_procs);
    return r;
}

sse_ring *sse_ring_attach(void *mem, const sse_ring_params *p)
{
    sse_ring *r = mem;

    if (r->magic != RING_MAGIC || r->layout != RING_LAYOUT
        || r->params.data_size != ALIGN(p->data_size, 8)
        || r->params.max_channels != p->max_channels
        || r->params.max_procs != p->max_procs)
        return NULL;
    return r;
}

int sse_ring_same_layout(const void *mem)
{
    const uint32_t *head = mem;     /* magic, layout: first in every layout */

    return head[0] == RING_MAGIC && head[1] == RING_LAYOUT;
}

void sse_ring_get_params(const sse_ring *r, sse_ring_params *p)
{
    *p = r->params;
}

static uint64_t max_record(const sse_ring *r)
{
    return r->params.data_size / 4;
}

size_t sse_ring_max_frame(const sse_ring *r)
{
    uint64_t over = HDR + SSE_RING_MAX_CHANNELS_PER_EVENT * sizeof(sse_ring_link)
                    + SSE_FIELD_MAX + 8;

    return max_record(r) > over ? (size_t)(max_record(r) - over) : 0;
}

int sse_ring_fits(const sse_ring *r, const sse_ring_msg *m)
{
    sse_wire_event ev;

    if (m->nchan < 1 || m->nchan > SSE_RING_MAX_CHANNELS_PER_EVENT)
        return 0;
    ev.id = m->id;
    ev.id_len = m->id ? m->id_len : SSE_ID_MAXLEN;
    ev.event = m->event;
    ev.event_len = m->event_len;
    ev.retry = m->retry;
    ev.data = m->data;
    ev.data_len = m->data_len;
    ev.meta = m->meta;
    ev.meta_len = m->meta ? m->meta_len : 0;
    return ev.id_len <= SSE_FIELD_MAX && sse_wire_frame_size(&ev) <= sse_ring_max_frame(r);
}

uint64_t sse_ring_head(const sse_ring *r)
{
    return LOAD(&r->head);
}

uint64_t sse_ring_last_stamp(const sse_ring *r)
{
    return LOAD(&r->last_stamp);
}

uint32_t *sse_ring_leader_word(sse_ring *r)
{
    return &r->leader;
}

int sse_ring_rebirth(sse_ring *r, uint64_t born)
{
    /* Only before anything was written: no reader can have taken a
     * position from the old birth or stamp yet, in records. */
    if (r->head != 0 || r->last_stamp != r->born || born >= r->born)
        return -1;
    STORE(&r->born, born);
    STORE(&r->last_stamp, born);
    return 0;
}

uint64_t sse_ring_born(const sse_ring *r)
{
    return LOAD(&r->born);
}

/* ---- channel table ---- */

static uint32_t hash_name(const char *s, size_t len)
{
    uint32_t h = 2166136261u;           /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

uint32_t sse_ring_chan_slots(const sse_ring *r)
{
    return r->chan_cap;
}

int sse_ring_chan_find(const sse_ring *r, const char *name, size_t len)
{
    uint32_t h = hash_name(name, len), mask = r->chan_cap - 1, i, n;
    const chan_slot *t = chans(r);

    for (i = h & mask, n = 0; n < r->chan_cap; i = (i + 1) & mask, n++) {
        const chan_slot *c = &t[i];
        uint32_t state = LOAD(&c->state);
        if (state == CHAN_FREE)
            return -1;
        if (state == CHAN_LIVE && c->hash == h && c->name_len == len
            && memcmp(c->name, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* Forgets channels nobody uses any more, to make room. */
static void chan_reclaim(sse_ring *r)
{
    chan_slot *t = chans(r);
    uint32_t i;

    for (i = 0; i < r->chan_cap; i++) {
        chan_slot *c = &t[i];
        if (c->state == CHAN_LIVE && c->retained == 0 && sse_ring_subs_total(r, (int)i) == 0) {
            STORE(&c->state, CHAN_GONE);
            r->chan_live--;
            if (c->flags & CHAN_WAITING)
                r->chan_waiting--;
        }
    }
}

uint32_t sse_ring_waiting_share(const sse_ring *r)
{
    return r->params.max_channels / 2 ? r->params.max_channels / 2 : 1;
}

static int chan_create(sse_ring *r, const char *name, size_t len, uint32_t flags);

int sse_ring_chan_intern(sse_ring *r, const char *name, size_t len)
{
    int slot = sse_ring_chan_find(r, name, len);

    return slot >= 0 ? slot : chan_create(r, name, len, 0);
}

int sse_ring_chan_intern_waiting(sse_ring *r, const char *name, size_t len)
{
    int slot = sse_ring_chan_find(r, name, len);

    if (slot >= 0)
        return slot;
    if (r->chan_waiting >= sse_ring_waiting_share(r)) {
        chan_reclaim(r);
        if (r->chan_waiting >= sse_ring_waiting_share(r))
            return SSE_RING_SHARE_FULL;
    }
    return chan_create(r, name, len, CHAN_WAITING);
}

static int chan_create(sse_ring *r, const char *name, size_t len, uint32_t flags)
{
    uint32_t h, mask = r->chan_cap - 1, i, n;
    chan_slot *t = chans(r), *c;

    if (len == 0 || len > SSE_CHANNEL_MAX)
        return -1;
    if (r->chan_live >= r->params.max_channels) {
        chan_reclaim(r);
        if (r->chan_live >= r->params.max_channels)
            return -1;
    }
    h = hash_name(name, len);
    for (i = h & mask, n = 0; n < r->chan_cap; i = (i + 1) & mask, n++) {
        if (t[i].state != CHAN_LIVE)
            break;
    }
    if (n == r->chan_cap)
        return -1;
    c = &t[i];
    /* A new epoch: records of the slot's previous owner no longer match. */
    STORE(&c->epoch, c->epoch + 1);
    c->hash = h;
    c->retained = 0;
    STORE(&c->last_off, SSE_RING_NONE);
    c->last_stamp = 0;
    c->evicted = 0;
    c->published = 0;
    c->name_len = (uint16_t)len;
    memcpy(c->name, name, len);
    c->name[len] = '\0';
    c->last_id_len = 0;
    c->last_id[0] = '\0';
    c->flags = flags;
    STORE(&c->state, CHAN_LIVE);
    r->chan_live++;
    if (flags & CHAN_WAITING)
        r->chan_waiting++;
    return (int)i;
}

void sse_ring_chan_get(const sse_ring *r, int slot, sse_ring_chan_info *out)
{
    const chan_slot *c = &chans(r)[slot];

    memcpy(out->name, c->name, c->name_len);
    out->name[c->name_len] = '\0';
    memcpy(out->last_id, c->last_id, c->last_id_len);
    out->last_id[c->last_id_len] = '\0';
    out->retained = c->retained;
    out->epoch = LOAD(&c->epoch);
    out->published = c->published;
    out->subscribers = sse_ring_subs_total(r, slot);
}

uint32_t sse_ring_chan_epoch(const sse_ring *r, int slot)
{
    return LOAD(&chans(r)[slot].epoch);
}

uint64_t sse_ring_chan_last(const sse_ring *r, int slot)
{
    return LOAD(&chans(r)[slot].last_off);
}

uint64_t sse_ring_chan_evicted(const sse_ring *r, int slot)
{
    return LOAD(&chans(r)[slot].evicted);
}

int sse_ring_chan_is_live(const sse_ring *r, int slot)
{
    return LOAD(&chans(r)[slot].state) == CHAN_LIVE;
}

/* ---- figures for monitoring ---- */

sse_metrics *sse_ring_metrics(sse_ring *r)
{
    return metrics(r);
}

uint64_t sse_ring_used(const sse_ring *r)
{
    uint64_t tail = LOAD(&r->tail), head = LOAD(&r->head);

    return head > tail ? head - tail : 0;
}

uint64_t sse_ring_evicted(const sse_ring *r)
{
    return __atomic_load_n(&r->evicted, __ATOMIC_RELAXED);
}

uint64_t sse_ring_oldest_stamp(const sse_ring *r)
{
    uint64_t ds = r->params.data_size, off = r->tail;

    while (off < r->head) {
        uint64_t phys = off % ds, room = ds - phys;
        const rec_hdr *h;

        if (room < HDR) {
            off += room;
            continue;
        }
        h = (const rec_hdr *)(data(r) + phys);
        if (h->kind != SSE_REC_PAD)
            return h->stamp;
        off += h->size;
    }
    return 0;
}

/* ---- processes and subscriber counts ---- */

int sse_ring_proc_claim(sse_ring *r, uint32_t pid)
{
    uint32_t *p = procs(r), i;

    for (i = 0; i < r->params.max_procs; i++) {
        uint32_t expect = 0;
        if (__atomic_compare_exchange_n(&p[i], &expect, pid, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return (int)i;
    }
    return -1;
}

void sse_ring_proc_release(sse_ring *r, int proc)
{
    uint32_t *col = counts(r) + (uint64_t)proc * r->chan_cap, i;

    for (i = 0; i < r->chan_cap; i++) {
        if (col[i])
            __atomic_store_n(&col[i], 0, __ATOMIC_RELAXED);
    }
    /* A process killed in its sleep must not leave the next one a sleeper. */
    __atomic_store_n(&wakers(r)[proc].sleeping, 0, __ATOMIC_RELAXED);
    /* Nor its open streams in the gauges; its counters stay. */
    sse_metrics_forget(metrics(r), proc);
    STORE(&procs(r)[proc], 0);
}

int sse_ring_proc_reap(sse_ring *r, int (*alive)(uint32_t pid))
{
    uint32_t *p = procs(r), i;
    int reaped = 0;

    for (i = 0; i < r->params.max_procs; i++) {
        uint32_t pid = LOAD(&p[i]);
        if (pid && !alive(pid)) {
            sse_ring_proc_release(r, (int)i);
            reaped++;
        }
    }
    return reaped;
}

void sse_ring_subs_add(sse_ring *r, int proc, int slot, int delta)
{
    uint32_t *n = counts(r) + (uint64_t)proc * r->chan_cap + (uint32_t)slot;

    __atomic_add_fetch(n, (uint32_t)delta, __ATOMIC_RELAXED);
}

uint64_t sse_ring_subs_total(const sse_ring *r, int slot)
{
    const uint32_t *n = counts(r) + (uint32_t)slot;
    uint64_t sum = 0;
    uint32_t i;

    for (i = 0; i < r->params.max_procs; i++, n += r->chan_cap)
        sum += __atomic_load_n(n, __ATOMIC_RELAXED);
    return sum;
}

/* ---- waking readers ----
 *
 * The Dekker handshake that makes a missed wake-up impossible: a reader
 * stores `sleeping`, then loads `head`; a publisher stores `head`, then
 * bumps the word and loads `sleeping`. With a full fence between each
 * store and load, either the reader sees the new head and does not sleep,
 * or the publisher sees the sleeper and wakes it; and a reader that sleeps
 * on the word value it read before its last look at the ring returns at
 * once if the word moved since.
 */

static waker *waker_of(sse_ring *r, int proc)
{
    return proc >= 0 && (uint32_t)proc < r->params.max_procs ? &wakers(r)[proc] : &r->shared;
}

uint32_t *sse_ring_wake_word(sse_ring *r, int proc)
{
    return &waker_of(r, proc)->word;
}

int sse_ring_sleep_begin(sse_ring *r, int proc, uint64_t cursor)
{
    waker *w = waker_of(r, proc);

    __atomic_add_fetch(&w->sleeping, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&r->head, __ATOMIC_SEQ_CST) == cursor)
        return 1;
    __atomic_sub_fetch(&w->sleeping, 1, __ATOMIC_RELAXED);
    return 0;
}

void sse_ring_sleep_end(sse_ring *r, int proc)
{
    __atomic_sub_fetch(&waker_of(r, proc)->sleeping, 1, __ATOMIC_RELAXED);
}

static int bump(waker *w, sse_ring_waker fn, void *arg)
{
    __atomic_add_fetch(&w->word, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&w->sleeping, __ATOMIC_SEQ_CST))
        return 0;
    fn(&w->word, arg);
    return 1;
}

int sse_ring_wake(sse_ring *r, const int *slots, int n, sse_ring_waker fn, void *arg)
{
    const uint32_t *col = counts(r);
    uint32_t p;
    int i, woken = 0;

    for (p = 0; p < r->params.max_procs; p++, col += r->chan_cap) {
        if (n < 0) {
            woken += bump(&wakers(r)[p], fn, arg);
            continue;
        }
        for (i = 0; i < n; i++) {
            if (slots[i] >= 0 && __atomic_load_n(&col[slots[i]], __ATOMIC_RELAXED))
                break;
        }
        if (i < n)
            woken += bump(&wakers(r)[p], fn, arg);
    }
    return woken + bump(&r->shared, fn, arg);
}

int sse_ring_wake_proc(sse_ring *r, int proc, sse_ring_waker fn, void *arg)
{
    return bump(waker_of(r, proc), fn, arg);
}

/* ---- writing ---- */

/* The stamp after last: strictly increasing even when the clock stalls or
 * steps back (the sequence part absorbs it, and its overflow carries into
 * the milliseconds). */
static uint64_t stamp_after(uint64_t last, uint64_t now_ms)
{
    uint64_t now = SSE_STAMP(now_ms, 0);

    return now > last ? now : last + 1;
}

/* Forgets the record at tail; returns the offset after it. */
static uint64_t evict_one(sse_ring *r, uint64_t tail, uint64_t head)
{
    uint64_t ds = r->params.data_size, phys = tail % ds, room = ds - phys;
    const rec_hdr *h;
    const sse_ring_link *links;
    chan_slot *t = chans(r);
    int i, evicted = 0;

    if (room < HDR)
        return tail + room;
    h = (const rec_hdr *)(data(r) + phys);
    /* [tail, head) holds complete records: anything else is corruption. */
    SSE_ASSERT(h->size >= HDR && h->size % 8 == 0 && h->size <= room);
    if (h->kind == SSE_REC_EVENT) {
        links = (const sse_ring_link *)(h + 1);
        for (i = 0; i < h->nchan; i++) {
            chan_slot *c = &t[links[i].chan % r->chan_cap];
            if (c->state != CHAN_LIVE || c->epoch != links[i].epoch)
                continue;
            if (c->retained)
                c->retained--;
            evicted = 1;
            if (h->stamp > c->evicted)
                STORE(&c->evicted, h->stamp);
            if (c->last_off == tail)
                STORE(&c->last_off, SSE_RING_NONE);
        }
        /* An event lost to every channel it still had (not one whose
         * channels were all deleted since). */
        if (evicted)
            __atomic_add_fetch(&r->evicted, 1, __ATOMIC_RELAXED);
    }
    return tail + h->size;
}

/* Makes room for a record of size bytes; returns its offset. */
static uint64_t reserve(sse_ring *r, uint64_t size)
{
    uint64_t ds = r->params.data_size, head = r->head, tail = r->tail;
    uint64_t room = ds - head % ds, start = head, end;

    if (room < size)
        start = head + room;
    end = start + size;
    while (end - tail > ds && tail < head)
        tail = evict_one(r, tail, head);
    if (end - tail > ds)
        tail = end - ds;        /* only padding was left; nothing to account */
    if (tail != r->tail) {
        /* Readers must see the new tail before any byte is overwritten. */
        STORE(&r->tail, tail);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        RING_STEP(SSE_RING_STEP_TAIL);
    }
    if (start != head && room >= HDR) {
        rec_hdr *pad = (rec_hdr *)(data(r) + head % ds);
        memset(pad, 0, sizeof(*pad));
        pad->size = (uint32_t)room;
        pad->kind = SSE_REC_PAD;
        RING_STEP(SSE_RING_STEP_PAD);
    }
    return start;
}

static void commit(sse_ring *r, uint64_t end)
{
    STORE(&r->head, end);
}

/* Appends m with the given stamp (already known to be above last_stamp). */
static int append(sse_ring *r, const sse_ring_msg *m, uint64_t stamp,
                  char id_out[SSE_FIELD_MAX + 1])
{
    uint64_t ds = r->params.data_size, size, off, end;
    char idbuf[SSE_ID_BUFSIZE];
    sse_wire_event ev;
    size_t frame_len;
    rec_hdr *h;
    sse_ring_link *links;
    chan_slot *t = chans(r);
    char *p;
    int i;

    if (m->nchan < 1 || m->nchan > SSE_RING_MAX_CHANNELS_PER_EVENT)
        return -1;
    ev.event = m->event;
    ev.event_len = m->event_len;
    ev.retry = m->retry;
    ev.data = m->data;
    ev.data_len = m->data_len;
    ev.meta = m->meta;
    ev.meta_len = m->meta ? m->meta_len : 0;
    ev.id = m->id ? m->id : idbuf;
    ev.id_len = m->id ? m->id_len : sse_wire_format_id(stamp, idbuf);
    frame_len = sse_wire_frame_size(&ev);
    size = ALIGN(HDR + (uint64_t)m->nchan * sizeof(sse_ring_link) + ev.id_len + frame_len, 8);
    /* The frame is measured once, with the id it really gets: an event
     * that sse_ring_fits() accepted (sized for the longest id) fits. */
    if (frame_len > sse_ring_max_frame(r) || size > max_record(r))
        return -1;
    STORE(&r->last_stamp, stamp);

    off = reserve(r, size);
    end = off + size;
    h = (rec_hdr *)(data(r) + off % ds);
    h->size = (uint32_t)size;
    h->kind = SSE_REC_EVENT;
    h->nchan = (uint16_t)m->nchan;
    h->stamp = stamp;
    h->id_len = (uint32_t)ev.id_len;
    h->frame_len = (uint32_t)frame_len;
    RING_STEP(SSE_RING_STEP_HEADER);
    links = (sse_ring_link *)(h + 1);
    for (i = 0; i < m->nchan; i++) {
        chan_slot *c = &t[m->chan[i]];
        links[i].chan = (uint32_t)m->chan[i];
        links[i].epoch = c->epoch;
        links[i].prev = c->last_off;
    }
    RING_STEP(SSE_RING_STEP_LINKS);
    p = (char *)(links + m->nchan);
    memcpy(p, ev.id, ev.id_len);
    RING_STEP(SSE_RING_STEP_ID);
    sse_wire_frame(p + ev.id_len, &ev);
    RING_STEP(SSE_RING_STEP_FRAME);
    commit(r, end);
    RING_STEP(SSE_RING_STEP_COMMIT);

    for (i = 0; i < m->nchan; i++) {
        chan_slot *c = &t[m->chan[i]];
        if (c->flags & CHAN_WAITING) {
            c->flags &= ~CHAN_WAITING;  /* publishing has taken it over */
            r->chan_waiting--;
        }
        c->retained++;
        c->published++;
        c->last_stamp = stamp;
        memcpy(c->last_id, ev.id, ev.id_len);
        c->last_id_len = (uint16_t)ev.id_len;
        STORE(&c->last_off, off);
        RING_STEP(SSE_RING_STEP_CHANNEL);
    }
    if (id_out) {
        memcpy(id_out, ev.id, ev.id_len);
        id_out[ev.id_len] = '\0';
    }
    return 0;
}

int sse_ring_publish(sse_ring *r, const sse_ring_msg *m, uint64_t now_ms,
                     uint64_t *stamp_out, char id_out[SSE_FIELD_MAX + 1])
{
    uint64_t stamp = stamp_after(r->last_stamp, now_ms);

    if (append(r, m, stamp, id_out) != 0)
        return -1;
    *stamp_out = stamp;
    return 0;
}

int sse_ring_publish_at(sse_ring *r, const sse_ring_msg *m, uint64_t stamp,
                        char id_out[SSE_FIELD_MAX + 1])
{
    /* One order for every reader: a stamp at or below the last would put a
     * record after one it should precede, and replay stops at stamps. */
    if (stamp <= r->last_stamp)
        return SSE_RING_STALE;
    return append(r, m, stamp, id_out);
}

static uint32_t delete_with(sse_ring *r, int slot, uint64_t stamp);

uint32_t sse_ring_delete(sse_ring *r, int slot, uint64_t now_ms)
{
    return delete_with(r, slot, stamp_after(r->last_stamp, now_ms));
}

int sse_ring_delete_at(sse_ring *r, int slot, uint64_t stamp, uint32_t *dropped)
{
    if (stamp <= r->last_stamp)
        return SSE_RING_STALE;
    *dropped = delete_with(r, slot, stamp);
    return 0;
}

static uint32_t delete_with(sse_ring *r, int slot, uint64_t stamp)
{
    chan_slot *c = &chans(r)[slot];
    uint64_t ds = r->params.data_size, size, off;
    uint32_t dropped = c->retained, old_epoch = c->epoch;
    sse_ring_link *link;
    rec_hdr *h;

    c->retained = 0;
    c->published = 0;
    c->last_id_len = 0;
    c->last_id[0] = '\0';
    STORE(&c->last_off, SSE_RING_NONE);
    STORE(&c->epoch, old_epoch + 1);
    RING_STEP(SSE_RING_STEP_DROPPED);

    size = ALIGN(HDR + sizeof(sse_ring_link), 8);
    off = reserve(r, size);
    h = (rec_hdr *)(data(r) + off % ds);
    memset(h, 0, size);
    h->size = (uint32_t)size;
    h->kind = SSE_REC_DELETE;
    h->nchan = 1;
    STORE(&r->last_stamp, stamp);
    h->stamp = stamp;
    link = (sse_ring_link *)(h + 1);
    link->chan = (uint32_t)slot;
    link->epoch = old_epoch;
    link->prev = SSE_RING_NONE;
    RING_STEP(SSE_RING_STEP_RECORD);
    commit(r, off + size);
    RING_STEP(SSE_RING_STEP_COMMIT);
    return dropped;
}

/* ---- reading ---- */

/* A reader copies a record while a writer may be overwriting it: that is
 * the design (the copy is checked against the tail afterwards and thrown
 * away if the writer got there), and it is a data race only in the letter
 * of the memory model. ThreadSanitizer is told to look away for that copy
 * and nothing else; every other access stays checked. */
#if defined(__SANITIZE_THREAD__)
#define RING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RING_TSAN 1
#endif
#endif
#ifdef RING_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#endif

static void copy_out(void *dst, const sse_ring *r, uint64_t phys, size_t n)
{
#ifdef RING_TSAN
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
#endif
    memcpy(dst, data(r) + phys, n);
#ifdef RING_TSAN
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static int load_record(const sse_ring *r, uint64_t off, const rec_hdr *h,
                       void *buf, size_t bufsize, size_t *need, sse_ring_rec *rec)
{
    uint64_t ds = r->params.data_size, phys = off % ds;
    const rec_hdr *copy = buf;
    uint64_t body;

    if (h->size > bufsize) {
        *need = h->size;
        return SSE_RING_SMALL;
    }
    copy_out(buf, r, phys, h->size);
    if (LOAD(&r->tail) > off)
        return SSE_RING_LOST;
    body = HDR + (uint64_t)copy->nchan * sizeof(sse_ring_link)
           + copy->id_len + copy->frame_len;
    if (body > copy->size)
        return SSE_RING_LOST;
    rec->off = off;
    rec->next = off + copy->size;
    rec->stamp = copy->stamp;
    rec->kind = copy->kind;
    rec->nchan = copy->nchan;
    rec->links = (const sse_ring_link *)(copy + 1);
    rec->id = (const char *)(rec->links + copy->nchan);
    rec->id_len = copy->id_len;
    rec->frame = rec->id + copy->id_len;
    rec->frame_len = copy->frame_len;
    return SSE_RING_OK;
}

/* Reads the header at off into h; SSE_RING_LOST if it may be torn. */
static int peek_header(const sse_ring *r, uint64_t off, rec_hdr *h)
{
    uint64_t ds = r->params.data_size, phys = off % ds;

    copy_out(h, r, phys, sizeof(*h));
    if (LOAD(&r->tail) > off)
        return SSE_RING_LOST;
    if (h->size < HDR || h->size % 8 || h->size > ds - phys)
        return SSE_RING_LOST;
    return SSE_RING_OK;
}

int sse_ring_read(const sse_ring *r, uint64_t *cursor, void *buf, size_t bufsize,
                  size_t *need, sse_ring_rec *rec)
{
    uint64_t ds = r->params.data_size, head = LOAD(&r->head);

    for (;;) {
        uint64_t c = *cursor, tail = LOAD(&r->tail), room;
        rec_hdr h;
        int rv;

        if (c >= head)
            return SSE_RING_EMPTY;
        if (c < tail) {
            *cursor = tail;
            return SSE_RING_LOST;
        }
        room = ds - c % ds;
        if (room < HDR) {
            *cursor = c + room;
            continue;
        }
        if (peek_header(r, c, &h) != SSE_RING_OK) {
            tail = LOAD(&r->tail);
            *cursor = tail > c ? tail : head;
            return SSE_RING_LOST;
        }
        if (h.kind == SSE_REC_PAD) {
            *cursor = c + h.size;
            continue;
        }
        rv = load_record(r, c, &h, buf, bufsize, need, rec);
        if (rv == SSE_RING_LOST) {
            tail = LOAD(&r->tail);
            *cursor = tail > c ? tail : head;
        }
        else if (rv == SSE_RING_OK) {
            *cursor = rec->next;
        }
        return rv;
    }
}

int sse_ring_read_at(const sse_ring *r, uint64_t off, void *buf, size_t bufsize,
                     size_t *need, sse_ring_rec *rec)
{
    rec_hdr h;

    if (off == SSE_RING_NONE || off < LOAD(&r->tail))
        return SSE_RING_LOST;
    if (off >= LOAD(&r->head))
        return SSE_RING_EMPTY;
    if (peek_header(r, off, &h) != SSE_RING_OK || h.kind == SSE_REC_PAD)
        return SSE_RING_LOST;
    return load_record(r, off, &h, buf, bufsize, need, rec);
}
