/* test_units.c -- unit tests of the pure units: sse_wire, sse_ring, sse_body,
 * sse_parse, sse_num, sse_metrics, sse_topic, sse_jwt.
 *
 * No httpd: the ring lives in calloc'd memory and the lock is this single
 * thread. Built under AddressSanitizer and UBSan by `make unit`. Prints one
 * line per failed check and a closing "N passed, N failed" line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>

#include "sse_wire.h"
#include "sse_ring.h"
#include "sse_redis_url.h"
#include "sse_body.h"
#include "sse_parse.h"
#include "sse_num.h"
#include "sse_metrics.h"
#include "sse_topic.h"
#include "sse_jwt.h"

#include <pthread.h>
#include <unistd.h>

#include <apr_strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "check.h"

static void check_bytes(const char *got, size_t got_len, const char *want, size_t want_len,
                        int line)
{
    int ok = got_len == want_len && memcmp(got, want, want_len) == 0;
    check(ok, "bytes equal", __FILE__, line);
    if (!ok)
        printf("  got  [%.*s]\n  want [%.*s]\n", (int)got_len, got, (int)want_len, want);
}

/* ---- wire ---- */

static void frame_is(const char *id, const char *event, long retry, const char *data,
                     size_t data_len, const char *want, size_t want_len, int line)
{
    sse_wire_event ev = { id, id ? strlen(id) : 0, event, event ? strlen(event) : 0,
                          retry, data, data_len, NULL, 0 };
    size_t size = sse_wire_frame_size(&ev);
    char *buf = malloc(size + 1);
    size_t n = sse_wire_frame(buf, &ev);

    check(n == size, "frame size matches sse_wire_frame_size", __FILE__, line);
    check_bytes(buf, n, want, want_len, line);
    free(buf);
}
#define FRAME(id, ev, retry, data, want) \
    frame_is(id, ev, retry, data, sizeof(data) - 1, want, sizeof(want) - 1, __LINE__)

static void test_wire(void)
{
    uint64_t st;
    uint32_t retry;
    char buf[SSE_ID_BUFSIZE];

    FRAME("1-0", NULL, -1, "hello", "id: 1-0\ndata: hello\n\n");
    FRAME("a", "upd", 1500, "x", "id: a\nevent: upd\nretry: 1500\ndata: x\n\n");
    FRAME("a", NULL, -1, "", "id: a\ndata: \n\n");
    FRAME("a", NULL, -1, "one\r\ntwo\nthree\rfour", "id: a\ndata: one\ndata: two\ndata: three\ndata: four\n\n");
    FRAME("a", NULL, -1, "end\n", "id: a\ndata: end\ndata: \n\n");
    FRAME("a", NULL, -1, "\r\n\r\n", "id: a\ndata: \ndata: \ndata: \n\n");
    FRAME("a", NULL, -1, "\n\r", "id: a\ndata: \ndata: \ndata: \n\n");
    FRAME("a", NULL, -1, " lead", "id: a\ndata:  lead\n\n");
    FRAME("a", NULL, -1, "n\0ul", "id: a\ndata: n\0ul\n\n");

    CHECK(sse_wire_check_channel("news", 4) == NULL);
    CHECK(sse_wire_check_channel("a-b.c_d~e:f/g@h!i$j&k'l(m)n*o+p,q;r=s", 37) == NULL);
    CHECK(sse_wire_check_channel("", 0) != NULL);
    CHECK(sse_wire_check_channel("a b", 3) != NULL);
    CHECK(sse_wire_check_channel("a\"b", 3) != NULL);
    CHECK(sse_wire_check_channel("a%b", 3) != NULL);
    CHECK(sse_wire_check_channel("caf\xc3\xa9", 5) != NULL);
    {
        char name[257];
        memset(name, 'x', sizeof(name));
        CHECK(sse_wire_check_channel(name, 255) == NULL);
        CHECK(sse_wire_check_channel(name, 256) != NULL);
    }
    CHECK(sse_wire_check_event("update", 6) == NULL);
    CHECK(sse_wire_check_event("a\nb", 3) != NULL);
    CHECK(sse_wire_check_event("a\rb", 3) != NULL);
    CHECK(sse_wire_check_event("a\0b", 3) != NULL);
    CHECK(sse_wire_check_event("sse-gap", 7) != NULL);
    CHECK(sse_wire_check_event("ssex", 4) == NULL);
    CHECK(sse_wire_check_event("\xff", 1) != NULL);
    CHECK(sse_wire_check_id("order-17", 8) == NULL);
    CHECK(sse_wire_check_id("17-3", 4) != NULL);
    CHECK(sse_wire_check_id("17-", 3) == NULL);
    CHECK(sse_wire_check_id("a\nb", 3) != NULL);
    CHECK(sse_wire_check_id("a\0b", 3) != NULL);
    CHECK(sse_wire_check_id("\xc3\xa9t\xc3\xa9", 5) == NULL);
    CHECK(sse_wire_check_id("\xc3", 1) != NULL);

    CHECK(sse_wire_parse_retry("0", 1, &retry) == NULL && retry == 0);
    CHECK(sse_wire_parse_retry("2500", 4, &retry) == NULL && retry == 2500);
    CHECK(sse_wire_parse_retry("1000ms", 6, &retry) != NULL);
    CHECK(sse_wire_parse_retry("-1", 2, &retry) != NULL);
    CHECK(sse_wire_parse_retry("1.5", 3, &retry) != NULL);
    CHECK(sse_wire_parse_retry("", 0, &retry) != NULL);
    CHECK(sse_wire_parse_retry("2147483648", 10, &retry) != NULL);

    CHECK(sse_wire_parse_server_id("1795475281660-3", 15, &st) && SSE_STAMP_MS(st) == 1795475281660ull
          && SSE_STAMP_SEQ(st) == 3);
    CHECK(!sse_wire_parse_server_id("x-1", 3, &st));
    CHECK(!sse_wire_parse_server_id("1-99999999", 10, &st));   /* seq out of range */
    CHECK(!sse_wire_parse_server_id("99999999999999999999-0", 22, &st));
    CHECK(sse_wire_format_id(SSE_STAMP(1795475281660ull, 12), buf) == 16
          && strcmp(buf, "1795475281660-12") == 0);
}

/* SSEHistoryTTL's rule, at its boundary: expired when age > TTL. */
static void test_expiry(void)
{
    const uint64_t now = 1795475281660ull, ttl = 2000;
    uint64_t floor = sse_wire_expiry_floor(now, ttl);

    CHECK(sse_wire_expiry_floor(now, 0) == 0);              /* no TTL: nothing expires */
    CHECK(sse_wire_expiry_floor(1500, 2000) == 0);          /* younger clock than TTL */
    CHECK(sse_wire_expiry_floor(2000, 2000) == 0);
    CHECK(sse_wire_expiry_floor(2001, 2000) == SSE_STAMP(1, 0));
    /* Exactly TTL old, any sequence in that millisecond: kept. */
    CHECK(SSE_STAMP(now - ttl, 0) >= floor);
    CHECK(SSE_STAMP(now - ttl, SSE_STAMP_SEQ_MASK) >= floor);
    /* A millisecond older, even at its last sequence: expired. */
    CHECK(SSE_STAMP(now - ttl - 1, SSE_STAMP_SEQ_MASK) < floor);
    CHECK(SSE_STAMP(now - ttl - 1, 0) < floor);
    /* Now, and from a clock that stepped back: kept. */
    CHECK(SSE_STAMP(now, 0) >= floor);
    CHECK(SSE_STAMP(now + 5000, 7) >= floor);
    /* A year's TTL (SSEHistoryTTL's maximum) in milliseconds. */
    CHECK(sse_wire_expiry_floor(now, 31536000000ull) == SSE_STAMP(now - 31536000000ull, 0));
}

/* ---- ring ---- */

static sse_ring *new_ring(uint64_t data_size, uint32_t max_channels, void **mem)
{
    sse_ring_params p = { data_size, max_channels, 4 };

    *mem = calloc(1, sse_ring_size(&p) + 64);
    return sse_ring_init(*mem, &p, 1000);
}

static int pub(sse_ring *r, const char *channel, const char *id, const char *data,
               uint64_t now, uint64_t *stamp, char *id_out)
{
    int slot = sse_ring_chan_intern(r, channel, strlen(channel));
    sse_ring_msg m = { 1, &slot, id, id ? strlen(id) : 0, NULL, 0, -1, data, strlen(data), NULL, 0 };

    return slot < 0 ? -2 : sse_ring_publish(r, &m, now, stamp, id_out);
}

static int never_alive(uint32_t pid) { return 0; }
static int always_alive(uint32_t pid) { return 1; }

static void test_ring_basic(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 16, &mem);
    uint64_t cursor = sse_ring_head(r), s1, s2, s3;
    char id[SSE_FIELD_MAX + 1], buf[4096];
    size_t need;
    sse_ring_rec rec;
    sse_ring_chan_info info;
    int a, b, slots[2];

    CHECK(pub(r, "a", NULL, "one", 2000, &s1, id) == 0 && strcmp(id, "2000-0") == 0);
    CHECK(pub(r, "b", NULL, "two", 2000, &s2, id) == 0 && strcmp(id, "2000-1") == 0);
    /* The clock going back never makes ids go back. */
    CHECK(pub(r, "a", "mine", "three", 1500, &s3, id) == 0 && strcmp(id, "mine") == 0);
    CHECK(s1 < s2 && s2 < s3);

    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK);
    CHECK(rec.stamp == s1 && rec.kind == SSE_REC_EVENT && rec.nchan == 1);
    check_bytes(rec.frame, rec.frame_len, "id: 2000-0\ndata: one\n\n", 22, __LINE__);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK && rec.stamp == s2);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK && rec.stamp == s3);
    check_bytes(rec.id, rec.id_len, "mine", 4, __LINE__);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_EMPTY);
    CHECK(sse_ring_read(r, &cursor, buf, 8, &need, &rec) == SSE_RING_EMPTY);

    /* The chain of channel a: three -> one. */
    a = sse_ring_chan_find(r, "a", 1);
    b = sse_ring_chan_find(r, "b", 1);
    CHECK(a >= 0 && b >= 0 && a != b);
    CHECK(sse_ring_read_at(r, sse_ring_chan_last(r, a), buf, sizeof(buf), &need, &rec) == SSE_RING_OK
          && rec.stamp == s3);
    CHECK(rec.links[0].chan == (uint32_t)a);
    CHECK(sse_ring_read_at(r, rec.links[0].prev, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
          && rec.stamp == s1 && rec.links[0].prev == SSE_RING_NONE);
    CHECK(sse_ring_read_at(r, sse_ring_chan_last(r, a), buf, 16, &need, &rec) == SSE_RING_SMALL
          && need > 16);

    sse_ring_chan_get(r, a, &info);
    CHECK(info.retained == 2 && info.published == 2 && strcmp(info.last_id, "mine") == 0);

    /* One event on two channels is one record. */
    slots[0] = a;
    slots[1] = b;
    {
        sse_ring_msg m = { 2, slots, NULL, 0, "both", 4, -1, "x", 1, NULL, 0 };
        uint64_t s4;
        CHECK(sse_ring_publish(r, &m, 3000, &s4, id) == 0);
        CHECK(sse_ring_chan_last(r, a) == sse_ring_chan_last(r, b));
    }

    /* Subscriber counts per process, forgotten with the process. */
    {
        int p0 = sse_ring_proc_claim(r, 100), p1 = sse_ring_proc_claim(r, 200);
        CHECK(p0 >= 0 && p1 >= 0 && p0 != p1);
        sse_ring_subs_add(r, p0, a, 1);
        sse_ring_subs_add(r, p0, a, 1);
        sse_ring_subs_add(r, p1, a, 1);
        CHECK(sse_ring_subs_total(r, a) == 3);
        sse_ring_subs_add(r, p0, a, -1);
        CHECK(sse_ring_subs_total(r, a) == 2);
        CHECK(sse_ring_proc_reap(r, always_alive) == 0 && sse_ring_subs_total(r, a) == 2);
        CHECK(sse_ring_proc_reap(r, never_alive) == 2 && sse_ring_subs_total(r, a) == 0);
    }

    /* Delete: drops what is retained, bumps the epoch, tells the readers. */
    {
        uint32_t epoch = sse_ring_chan_epoch(r, a);
        CHECK(sse_ring_delete(r, a, 4000) == 3);
        CHECK(sse_ring_chan_epoch(r, a) == epoch + 1);
        CHECK(sse_ring_chan_last(r, a) == SSE_RING_NONE);
        sse_ring_chan_get(r, a, &info);
        CHECK(info.retained == 0 && info.published == 0 && info.last_id[0] == '\0');
        cursor = sse_ring_chan_last(r, b);
        CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK);
        CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
              && rec.kind == SSE_REC_DELETE && rec.links[0].chan == (uint32_t)a
              && rec.links[0].epoch == epoch);
    }
    free(mem);
}

/* A hub's metadata (sse-mercure): comment lines at the head of the frame,
 * checked, framed first, counted in the size, carried by the ring, and
 * found again by sse_wire_meta_len so that a stream can strip them. */
static void test_hub_meta(void)
{
    static const char meta[] = ":p\n:t https://example.com/books/1\n";
    static const char want[] = ":p\n:t https://example.com/books/1\nid: 2000-0\ndata: x\n\n";
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 16, &mem);
    int slot = sse_ring_chan_intern(r, "#mercure/hub", 12);
    sse_ring_msg m = { 1, &slot, NULL, 0, NULL, 0, -1, "x", 1, meta, sizeof(meta) - 1 };
    sse_wire_event ev = { "a", 1, NULL, 0, -1, "d", 1, meta, sizeof(meta) - 1 };
    uint64_t cursor = sse_ring_head(r), stamp;
    char id[SSE_FIELD_MAX + 1], buf[4096];
    size_t need;
    sse_ring_rec rec;

    CHECK(sse_wire_check_meta(meta, sizeof(meta) - 1) == NULL);
    CHECK(sse_wire_check_meta("", 0) != NULL);
    CHECK(sse_wire_check_meta(":p", 2) != NULL);                  /* no line end */
    CHECK(sse_wire_check_meta(":p\nid: 1\n", 10) != NULL);       /* a field, not a comment */
    CHECK(sse_wire_check_meta(":p\r\n", 4) != NULL);
    CHECK(sse_wire_check_meta(":t a\0b\n", 7) != NULL);
    CHECK(sse_wire_check_meta(":p\n\n", 4) != NULL);               /* a blank line ends an event */

    CHECK(sse_wire_check_hub_channel("#mercure/hub", 12) == NULL);
    CHECK(sse_wire_check_hub_channel("#", 1) != NULL);
    CHECK(sse_wire_check_hub_channel("mercure", 7) != NULL);
    CHECK(sse_wire_check_hub_channel("#a b", 4) != NULL);
    CHECK(sse_wire_check_hub_channel("##", 2) != NULL);
    /* No channel a client names can be a hub's. */
    CHECK(sse_wire_check_channel("#mercure/hub", 12) != NULL);

    CHECK(sse_wire_frame_size(&ev) == sizeof(meta) - 1 + sizeof("id: a\ndata: d\n\n") - 1);
    CHECK(sse_wire_meta_len(want, sizeof(want) - 1) == sizeof(meta) - 1);
    CHECK(sse_wire_meta_len("id: 1\ndata: x\n\n", 15) == 0);
    CHECK(sse_wire_meta_len(":heartbeat", 10) == 0);            /* no line end: not stripped */

    CHECK(slot >= 0 && sse_ring_fits(r, &m));
    CHECK(sse_ring_publish(r, &m, 2000, &stamp, id) == 0 && strcmp(id, "2000-0") == 0);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK);
    check_bytes(rec.frame, rec.frame_len, want, sizeof(want) - 1, __LINE__);
    check_bytes(rec.id, rec.id_len, "2000-0", 6, __LINE__);
    free(mem);
}

static void test_ring_wrap_and_evict(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 16, &mem);
    uint64_t cursor = sse_ring_head(r), stamp, first = 0, last = 0, prev = 0;
    char id[SSE_FIELD_MAX + 1], data[301], buf[4096];
    size_t need;
    sse_ring_rec rec;
    int i, a, seen = 0, lost = 0, ok = 1;

    memset(data, 'd', 300);
    data[300] = '\0';
    for (i = 0; i < 2000; i++) {
        if (pub(r, i % 2 ? "odd" : "even", NULL, data, 5000, &stamp, id) != 0)
            ok = 0;
        if (i == 0)
            first = stamp;
        last = stamp;
    }
    CHECK(ok);
    /* A reader that starts from the beginning has lost the oldest records. */
    {
        int rv = sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec);
        CHECK(rv == SSE_RING_LOST);
    }
    while (1) {
        int rv = sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec);
        if (rv == SSE_RING_EMPTY)
            break;
        if (rv != SSE_RING_OK) {
            lost++;
            break;
        }
        if (rec.stamp <= prev)
            ok = 0;
        prev = rec.stamp;
        seen++;
    }
    CHECK(lost == 0 && ok);
    CHECK(prev == last);
    CHECK(seen > 100 && seen < 2000);
    a = sse_ring_chan_find(r, "even", 4);
    CHECK(sse_ring_chan_evicted(r, a) >= first);
    {
        sse_ring_chan_info info;
        sse_ring_chan_get(r, a, &info);
        CHECK(info.retained > 0 && info.retained < 1000);
        CHECK(info.published == 1000);
    }
    /* Walking the chain of "even" visits exactly its retained records. */
    {
        sse_ring_chan_info info;
        uint64_t off = sse_ring_chan_last(r, a);
        uint32_t n = 0;
        sse_ring_chan_get(r, a, &info);
        while (sse_ring_read_at(r, off, buf, sizeof(buf), &need, &rec) == SSE_RING_OK) {
            n++;
            off = rec.links[0].prev;
        }
        CHECK(n == info.retained);
    }
    /* Too large for this ring: refused, and nothing consumed. */
    {
        char *big = malloc(40000);
        memset(big, 'x', 39999);
        big[39999] = '\0';
        uint64_t before = sse_ring_head(r);
        CHECK(pub(r, "even", NULL, big, 6000, &stamp, id) == -1);
        CHECK(sse_ring_head(r) == before);
        free(big);
    }
    free(mem);
}

/* A writer that dies after writing part of a record but before moving the
 * head leaves nothing a reader can see; the next writer overwrites it. */
static void test_ring_crash_safety(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 16, &mem);
    uint64_t cursor = sse_ring_head(r), stamp;
    char id[SSE_FIELD_MAX + 1], buf[4096];
    size_t need;
    sse_ring_rec rec;
    sse_ring_params p;
    char *data;

    CHECK(pub(r, "a", NULL, "before", 7000, &stamp, id) == 0);
    /* Scribble where the next record would go, as a dying writer would. */
    sse_ring_get_params(r, &p);
    data = (char *)r + (sse_ring_size(&p) - p.data_size);
    memset(data + sse_ring_head(r) % p.data_size, 0xA5, 200);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
          && rec.stamp == stamp);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_EMPTY);
    CHECK(pub(r, "a", NULL, "after", 7001, &stamp, id) == 0);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
          && rec.stamp == stamp);
    check_bytes(rec.frame, rec.frame_len, "id: 7001-0\ndata: after\n\n", 24, __LINE__);
    CHECK(sse_ring_attach(mem, &p) == r);
    p.max_channels++;
    CHECK(sse_ring_attach(mem, &p) == NULL);
    /* Another build's layout number: not this layout, whatever the rest. */
    CHECK(sse_ring_same_layout(mem));
    ((uint32_t *)mem)[1] += 1;
    CHECK(!sse_ring_same_layout(mem));
    ((uint32_t *)mem)[1] -= 1;
    ((uint32_t *)mem)[0] = 0;
    CHECK(!sse_ring_same_layout(mem));
    free(mem);
}

static void test_ring_channels(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 4, &mem);
    uint64_t stamp;
    char id[SSE_FIELD_MAX + 1];
    int i, s[4], reused;

    for (i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        s[i] = sse_ring_chan_intern(r, name, strlen(name));
        CHECK(s[i] >= 0);
    }
    CHECK(sse_ring_chan_intern(r, "c0", 2) == s[0]);
    /* Full, but c1..c3 are idle (nothing retained, no subscriber): reusable. */
    CHECK(pub(r, "c0", NULL, "keep", 8000, &stamp, id) == 0);
    {
        int proc = sse_ring_proc_claim(r, 1);
        sse_ring_subs_add(r, proc, s[1], 1);
        reused = sse_ring_chan_intern(r, "new", 3);
        CHECK(reused >= 0);
        CHECK(sse_ring_chan_find(r, "c0", 2) == s[0]);
        CHECK(sse_ring_chan_find(r, "c1", 2) == s[1]);
        CHECK(sse_ring_chan_find(r, "c2", 2) < 0 || sse_ring_chan_find(r, "c3", 2) < 0);
        sse_ring_proc_release(r, proc);
    }
    free(mem);
}

/* sse_ring_publish_at: the caller's stamp, strictly above the last, or
 * nothing changes; the ring's own stamps follow a stamp from the future. */
static void test_ring_publish_at(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 4, &mem);
    int slot = sse_ring_chan_intern(r, "a", 1);
    sse_ring_msg m = { 1, &slot, NULL, 0, NULL, 0, -1, "x", 1, NULL, 0 };
    sse_ring_msg own = { 1, &slot, "mine", 4, NULL, 0, -1, "y", 1, NULL, 0 };
    uint64_t at = SSE_STAMP(5000, 7), head, cursor = sse_ring_head(r), stamp;
    char id[SSE_FIELD_MAX + 1], buf[256];
    size_t need;
    sse_ring_rec rec;

    CHECK(sse_ring_publish_at(r, &m, at, id) == 0);
    CHECK(strcmp(id, "5000-7") == 0 && sse_ring_last_stamp(r) == at);
    head = sse_ring_head(r);
    CHECK(sse_ring_publish_at(r, &m, at, id) == SSE_RING_STALE);        /* equal */
    CHECK(sse_ring_publish_at(r, &m, at - 1, id) == SSE_RING_STALE);    /* below */
    CHECK(sse_ring_head(r) == head && sse_ring_last_stamp(r) == at);
    /* A publisher's own id keeps its text; the stamp orders it. */
    CHECK(sse_ring_publish_at(r, &own, at + 1, id) == 0 && strcmp(id, "mine") == 0);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
          && rec.stamp == at && rec.id_len == 6 && memcmp(rec.id, "5000-7", 6) == 0);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
          && rec.stamp == at + 1 && rec.id_len == 4);
    CHECK(sse_ring_read(r, &cursor, buf, sizeof(buf), &need, &rec) == SSE_RING_EMPTY);
    /* The local clock (1000 ms at birth) is behind 5000 ms: the next own
     * stamp comes after the caller's, not before. */
    CHECK(sse_ring_publish(r, &m, 1200, &stamp, id) == 0 && stamp == at + 2);
    /* Too big is -1 even with a good stamp. */
    {
        static char big[65536];
        sse_ring_msg huge = { 1, &slot, NULL, 0, NULL, 0, -1, big, sizeof(big), NULL, 0 };
        memset(big, 'b', sizeof(big));
        CHECK(sse_ring_publish_at(r, &huge, at + 100, id) == -1);
        CHECK(sse_ring_last_stamp(r) == at + 2);
    }
    free(mem);
    /* Rebirth: only of an empty ring, only backwards, then filled from there. */
    r = new_ring(64 * 1024, 4, &mem);
    slot = sse_ring_chan_intern(r, "a", 1);
    CHECK(sse_ring_born(r) == SSE_STAMP(1000, 0));
    CHECK(sse_ring_rebirth(r, SSE_STAMP(1000, 0)) == -1);      /* not below */
    CHECK(sse_ring_rebirth(r, SSE_STAMP(400, 3)) == 0);
    CHECK(sse_ring_born(r) == SSE_STAMP(400, 3) && sse_ring_last_stamp(r) == SSE_STAMP(400, 3));
    CHECK(sse_ring_publish_at(r, &m, SSE_STAMP(400, 3), id) == SSE_RING_STALE);
    CHECK(sse_ring_publish_at(r, &m, SSE_STAMP(400, 4), id) == 0 && strcmp(id, "400-4") == 0);
    CHECK(sse_ring_rebirth(r, SSE_STAMP(100, 0)) == -1);        /* not empty */
    CHECK(sse_ring_born(r) == SSE_STAMP(400, 3) && sse_ring_last_stamp(r) == SSE_STAMP(400, 4));
    /* A deletion with the caller's stamp: stale refused, else a DELETE
     * record with exactly that stamp, the channel's history dropped. */
    {
        uint32_t dropped = 99, epoch = sse_ring_chan_epoch(r, slot);
        uint64_t head2 = sse_ring_head(r), cur = head2;

        CHECK(sse_ring_delete_at(r, slot, SSE_STAMP(400, 4), &dropped) == SSE_RING_STALE);
        CHECK(dropped == 99 && sse_ring_head(r) == head2 && sse_ring_chan_epoch(r, slot) == epoch);
        CHECK(sse_ring_delete_at(r, slot, SSE_STAMP(401, 0), &dropped) == 0 && dropped == 1);
        CHECK(sse_ring_chan_epoch(r, slot) == epoch + 1 && sse_ring_last_stamp(r) == SSE_STAMP(401, 0));
        CHECK(sse_ring_read(r, &cur, buf, sizeof(buf), &need, &rec) == SSE_RING_OK
              && rec.kind == SSE_REC_DELETE && rec.stamp == SSE_STAMP(401, 0));
        CHECK(sse_ring_chan_last(r, slot) == SSE_RING_NONE);
    }
    free(mem);
}

/* SSERedis addresses: every accepted form with its parts, and each kind
 * of mistake refused. */
static void test_redis_url(void)
{
    sse_redis_url u;
    static const char *bad[] = {
        "", "redis:/h", "http://h", "redis://", "redis://:6379", "redis://h:0",
        "redis://h:65536", "redis://h:12a", "redis://h:", "redis://h/x", "redis://h/-1",
        "redis://h/1000001", "redis://h/1/2", "redis://u@h", "redis://u:@h",
        "redis://:p%4@h", "redis://:p%zz@h", "redis://:p%00@h", "redis://h o",
        "redis://h\tx", "redis://h!x", "redis://[::1", "redis://[]", "redis://[::1]x",
        "redis://[zz]", "unix:", "unix:relative.sock", "unix:/s?db=", "unix:/s?db=x",
        "unix:/s?foo=1", "unix:/s?db=1&x=2", "REDIS://h",
    };
    char longpath[200];
    size_t i;

    CHECK(sse_redis_url_parse("redis://127.0.0.1", &u) == NULL && !u.is_unix
          && strcmp(u.host, "127.0.0.1") == 0 && u.port == 6379 && u.db == 0
          && !u.has_password && u.user[0] == '\0');
    CHECK(sse_redis_url_parse("redis://cache.example-1.org:7000/3", &u) == NULL
          && strcmp(u.host, "cache.example-1.org") == 0 && u.port == 7000 && u.db == 3);
    CHECK(sse_redis_url_parse("redis://h/", &u) == NULL && u.db == 0);
    CHECK(sse_redis_url_parse("redis://:s3cret@h", &u) == NULL && u.has_password
          && u.user[0] == '\0' && strcmp(u.password, "s3cret") == 0);
    CHECK(sse_redis_url_parse("redis://app:pa%40ss%2Fw:rd@h:1/15", &u) == NULL
          && strcmp(u.user, "app") == 0 && strcmp(u.password, "pa@ss/w:rd") == 0
          && strcmp(u.host, "h") == 0 && u.port == 1 && u.db == 15);
    CHECK(sse_redis_url_parse("redis://[::1]:6380/2", &u) == NULL
          && strcmp(u.host, "::1") == 0 && u.port == 6380 && u.db == 2);
    CHECK(sse_redis_url_parse("redis://[::1]", &u) == NULL && u.port == 6379);
    CHECK(sse_redis_url_parse("unix:/run/redis/redis.sock", &u) == NULL && u.is_unix
          && strcmp(u.path, "/run/redis/redis.sock") == 0 && u.db == 0);
    CHECK(sse_redis_url_parse("unix:/tmp/r.sock?db=9", &u) == NULL
          && strcmp(u.path, "/tmp/r.sock") == 0 && u.db == 9);
    CHECK(sse_redis_url_parse("redis://h:65535/1000000", &u) == NULL
          && u.port == 65535 && u.db == 1000000);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = sse_redis_url_parse(bad[i], &u);
        if (!err)
            printf("accepted: '%s'\n", bad[i]);
        CHECK(err != NULL);
    }
    /* The socket path: 107 bytes fit sun_path, 108 do not. */
    memcpy(longpath, "unix:/", 6);
    memset(longpath + 6, 'p', 106);
    longpath[112] = '\0';
    CHECK(sse_redis_url_parse(longpath, &u) == NULL && strlen(u.path) == 107);
    longpath[112] = 'p';
    longpath[113] = '\0';
    CHECK(sse_redis_url_parse(longpath, &u) != NULL);
    CHECK(strstr(sse_redis_url_parse("redis://u@h", &u), "password") != NULL);
    CHECK(strstr(sse_redis_url_parse("redis://h:99999", &u), "port") != NULL);
}

/* Records each wake-up call made by sse_ring_wake. */
static uint32_t *woken[8];
static int nwoken;

static void record_wake(uint32_t *word, void *arg)
{
    if (nwoken < 8)
        woken[nwoken] = word;
    nwoken++;
}

static void test_ring_wake(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 8, &mem);
    int a = sse_ring_chan_intern(r, "a", 1), b = sse_ring_chan_intern(r, "b", 1);
    int p0 = sse_ring_proc_claim(r, 100), p1 = sse_ring_proc_claim(r, 200);
    int p2 = sse_ring_proc_claim(r, 300), both[2] = { a, b };
    uint32_t *w0 = sse_ring_wake_word(r, p0), *w1 = sse_ring_wake_word(r, p1);
    uint32_t *w2 = sse_ring_wake_word(r, p2), *shared = sse_ring_wake_word(r, -1);
    uint32_t v0, v1, v2, vs;
    uint64_t head, stamp;
    char id[SSE_FIELD_MAX + 1];

    CHECK(p0 >= 0 && p1 >= 0 && p2 >= 0);
    CHECK(w0 != w1 && w1 != w2 && w0 != shared && w2 != shared);
    /* Separate cache lines: a publisher bumping one child's word does not
     * slow down the reads of another. */
    CHECK((uintptr_t)w0 % 64 == 0 && (uintptr_t)w1 - (uintptr_t)w0 >= 64);
    sse_ring_subs_add(r, p0, a, 1);
    sse_ring_subs_add(r, p1, b, 1);

    /* Nobody sleeps: the words move, no system call is asked for. */
    v0 = *w0; v1 = *w1; v2 = *w2; vs = *shared;
    nwoken = 0;
    CHECK(sse_ring_wake(r, &a, 1, record_wake, NULL) == 0 && nwoken == 0);
    CHECK(*w0 == v0 + 1 && *w1 == v1 && *w2 == v2 && *shared == vs + 1);

    /* p0 and p1 sleep, having read up to head; a publish on a wakes p0
     * (and the shared word's sleepers: none) only. */
    head = sse_ring_head(r);
    CHECK(sse_ring_sleep_begin(r, p0, head) == 1);
    CHECK(sse_ring_sleep_begin(r, p1, head) == 1);
    nwoken = 0;
    CHECK(sse_ring_wake(r, &a, 1, record_wake, NULL) == 1 && nwoken == 1 && woken[0] == w0);
    nwoken = 0;
    CHECK(sse_ring_wake(r, both, 2, record_wake, NULL) == 2 && nwoken == 2);
    CHECK(woken[0] == w0 && woken[1] == w1);
    sse_ring_sleep_end(r, p0);
    nwoken = 0;
    CHECK(sse_ring_wake(r, &a, 1, record_wake, NULL) == 0 && nwoken == 0);
    /* "Every process" reaches p2 too, which has no subscriber at all. */
    CHECK(sse_ring_sleep_begin(r, p2, head) == 1);
    nwoken = 0;
    v2 = *w2;
    CHECK(sse_ring_wake(r, NULL, -1, record_wake, NULL) == 2 && *w2 == v2 + 1);
    nwoken = 0;
    CHECK(sse_ring_wake_proc(r, p2, record_wake, NULL) == 1 && woken[0] == w2);
    sse_ring_sleep_end(r, p1);
    sse_ring_sleep_end(r, p2);

    /* A reader that is behind the head may not sleep. */
    CHECK(pub(r, "a", NULL, "x", 5000, &stamp, id) == 0);
    CHECK(sse_ring_sleep_begin(r, p0, head) == 0);
    nwoken = 0;
    CHECK(sse_ring_wake(r, &a, 1, record_wake, NULL) == 0);
    CHECK(sse_ring_sleep_begin(r, p0, sse_ring_head(r)) == 1);

    /* Readers without a process slot share a word, and count as sleepers. */
    CHECK(sse_ring_sleep_begin(r, -1, sse_ring_head(r)) == 1);
    CHECK(sse_ring_sleep_begin(r, -1, sse_ring_head(r)) == 1);
    nwoken = 0;
    CHECK(sse_ring_wake(r, &b, 1, record_wake, NULL) == 1 && woken[0] == shared);
    sse_ring_sleep_end(r, -1);
    sse_ring_sleep_end(r, -1);

    /* A process killed in its sleep (p0 still is) leaves no sleeper to the
     * next one. */
    sse_ring_proc_release(r, p0);
    CHECK(sse_ring_proc_claim(r, 400) == p0);
    nwoken = 0;
    sse_ring_subs_add(r, p0, a, 1);
    CHECK(sse_ring_wake(r, &a, 1, record_wake, NULL) == 0 && nwoken == 0);
    free(mem);
}

/* ---- body ---- */

static const sse_body_event *only(apr_array_header_t *events)
{
    return events->nelts == 1 ? (const sse_body_event *)events->elts : NULL;
}

static int bytes_are(sse_bytes b, const char *s, size_t len)
{
    return b.s && b.len == len && memcmp(b.s, s, len) == 0;
}
#define BYTES(b, lit) bytes_are((b), lit, sizeof(lit) - 1)

#define S(lit) lit, sizeof(lit) - 1

static void test_body(apr_pool_t *p)
{
    apr_array_header_t *evs;
    const sse_body_event *ev;
    const char *why;

    why = sse_body_parse_form(p, S("channel=a&topic=b&data=x%0Ay+z&type=upd&id=k&retry=10"), &evs);
    CHECK(why == NULL && (ev = only(evs)) != NULL);
    if (!why) {
        CHECK(ev->channels->nelts == 2);
        CHECK(BYTES(((sse_bytes *)ev->channels->elts)[1], "b"));
        CHECK(BYTES(ev->data, "x\ny z"));
        CHECK(BYTES(ev->event, "upd"));
        CHECK(BYTES(ev->id, "k"));
        CHECK(ev->retry == 10);
    }
    CHECK(sse_body_parse_form(p, S("data=%0"), &evs) != NULL);
    CHECK(sse_body_parse_form(p, S("data=%zz"), &evs) != NULL);
    CHECK(sse_body_parse_form(p, S("data=a&data=b"), &evs) != NULL);
    CHECK(sse_body_parse_form(p, S("event=a&type=b"), &evs) != NULL);
    CHECK(sse_body_parse_form(p, S("retry=1s"), &evs) != NULL);
    CHECK(sse_body_parse_form(p, S("data=n%00l"), &evs) == NULL && BYTES(only(evs)->data, "n\0l"));
    CHECK(sse_body_parse_form(p, S("channel=a"), &evs) == NULL && BYTES(only(evs)->data, ""));

    why = sse_body_parse_json(p, S("{\"channel\":[\"a\",\"b\"],\"event\":\"e\",\"data\":{\"k\":[1,true,null]},\"retry\":5}"), &evs);
    CHECK(why == NULL);
    if (!why) {
        ev = only(evs);
        CHECK(ev && ev->channels->nelts == 2 && BYTES(ev->data, "{\"k\":[1,true,null]}") && ev->retry == 5);
    }
    why = sse_body_parse_json(p, S("[{\"channel\":\"a\",\"data\":\"x\\u0000y\"},{\"channel\":\"b\",\"data\":42}]"), &evs);
    CHECK(why == NULL && evs->nelts == 2);
    if (!why) {
        CHECK(BYTES(((sse_body_event *)evs->elts)[0].data, "x\0y"));
        CHECK(BYTES(((sse_body_event *)evs->elts)[1].data, "42"));
    }
    CHECK(sse_body_parse_json(p, S("{\"data\":"), &evs) != NULL);
    CHECK(sse_body_parse_json(p, S("[]"), &evs) != NULL);
    CHECK(sse_body_parse_json(p, S("\"x\""), &evs) != NULL);
    CHECK(sse_body_parse_json(p, S("{\"event\":1}"), &evs) != NULL);
    CHECK(sse_body_parse_json(p, S("{\"retry\":-1}"), &evs) != NULL);
    CHECK(sse_body_parse_json(p, S("{\"retry\":\"5\"}"), &evs) == NULL && only(evs)->retry == 5);
    CHECK(sse_body_parse_json(p, S("{\"channel\":[1]}"), &evs) != NULL);
    CHECK(sse_body_parse_json(p, S("{\"a\":1,\"a\":2}"), &evs) != NULL);

    CHECK(sse_body_raw(p, "raw", 3, "e", "i", "7", &evs) == NULL);
    ev = only(evs);
    CHECK(ev && BYTES(ev->data, "raw") && BYTES(ev->event, "e") && BYTES(ev->id, "i") && ev->retry == 7);
    CHECK(sse_body_check(ev) == NULL);
    CHECK(sse_body_raw(p, "", 0, NULL, NULL, "x", &evs) != NULL);
    CHECK(sse_body_raw(p, "", 0, "sse-x", NULL, NULL, &evs) == NULL && sse_body_check(only(evs)) != NULL);
    CHECK(sse_body_raw(p, "", 0, NULL, "1-2", NULL, &evs) == NULL && sse_body_check(only(evs)) != NULL);
    CHECK(sse_body_raw(p, "", 0, NULL, "", NULL, &evs) == NULL && sse_body_check(only(evs)) != NULL);

    {
        apr_array_header_t *c = apr_array_make(p, 2, sizeof(sse_bytes));
        sse_bytes *b;
        CHECK(sse_body_check_channels(p, c) != NULL);
        b = apr_array_push(c);
        b->s = "ok";
        b->len = 2;
        CHECK(sse_body_check_channels(p, c) == NULL);
        b = apr_array_push(c);
        b->s = "not ok";
        b->len = 6;
        why = sse_body_check_channels(p, c);
        CHECK(why && strstr(why, "'not ok'"));
    }
    {
        apr_array_header_t *pairs;
        CHECK(sse_body_parse_pairs(p, S("channel=a&x&channel=b&lastEventId=1-2"), &pairs) == NULL);
        CHECK(sse_body_values(p, pairs, "channel")->nelts == 2);
        CHECK(BYTES(*(sse_bytes *)sse_body_values(p, pairs, "lastEventId")->elts, "1-2"));
    }
}

/* ---- event-stream parser ---- */

static const sse_body_event *nth(const apr_array_header_t *evs, int i)
{
    return i < evs->nelts ? &((const sse_body_event *)evs->elts)[i] : NULL;
}

/* Parses s whole, and again fed one byte at a time and in two halves at
 * every split point: all must give the same events. */
static apr_array_header_t *parse_all_ways(apr_pool_t *p, const char *s, size_t len,
                                          const char **why, int *dropped, int line)
{
    apr_array_header_t *whole, *other;
    const char *w2;
    int d2, i;
    size_t cut;

    *why = sse_parse_stream(p, s, len, &whole, dropped);
    for (cut = 0; cut <= len; cut++) {
        sse_parse *ps = sse_parse_create(p);
        size_t k;
        if (cut == len) {     /* byte by byte */
            for (k = 0; k < len; k++)
                sse_parse_feed(ps, s + k, 1);
        }
        else {
            sse_parse_feed(ps, s, cut);
            sse_parse_feed(ps, s + cut, len - cut);
        }
        w2 = sse_parse_finish(ps, &other, &d2);
        check((w2 == NULL) == (*why == NULL) && d2 == *dropped && other->nelts == whole->nelts,
              "same result whatever the feeds", __FILE__, line);
        for (i = 0; i < whole->nelts && i < other->nelts; i++) {
            const sse_body_event *a = nth(whole, i), *b = nth(other, i);
            check(a->data.len == b->data.len && memcmp(a->data.s, b->data.s, a->data.len) == 0
                  && (a->event.s == NULL) == (b->event.s == NULL)
                  && (a->id.s == NULL) == (b->id.s == NULL) && a->retry == b->retry,
                  "same event whatever the feeds", __FILE__, line);
        }
    }
    return whole;
}
#define PARSE(lit, why, dropped) parse_all_ways(p, lit, sizeof(lit) - 1, why, dropped, __LINE__)

static void test_parse(apr_pool_t *p)
{
    apr_array_header_t *evs;
    const sse_body_event *ev;
    const char *why;
    int dropped;

    /* The classic PHP script's output. */
    evs = PARSE("event: foo\ndata: hello\n\n", &why, &dropped);
    CHECK(why == NULL && !dropped && evs->nelts == 1);
    ev = nth(evs, 0);
    CHECK(ev && BYTES(ev->event, "foo") && BYTES(ev->data, "hello") && ev->id.s == NULL
          && ev->retry < 0 && ev->channels && ev->channels->nelts == 0);

    /* Multi-line data, every line ending, one space dropped, not two. */
    evs = PARSE("data: a\r\ndata:b\rdata:  c\ndata\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && BYTES(nth(evs, 0)->data, "a\nb\n c\n"));

    /* id, retry, comments, unknown fields, several events in order. */
    evs = PARSE(": hi\nid: k1\nretry: 1500\nfoo: bar\ndata: one\n\n"
                "data: two\n\r\n", &why, &dropped);
    CHECK(why == NULL && !dropped && evs->nelts == 2);
    if (evs->nelts == 2) {
        CHECK(BYTES(nth(evs, 0)->id, "k1") && nth(evs, 0)->retry == 1500
              && BYTES(nth(evs, 0)->data, "one") && nth(evs, 0)->event.s == NULL);
        /* id and retry belong to their own event. */
        CHECK(nth(evs, 1)->id.s == NULL && nth(evs, 1)->retry < 0 && BYTES(nth(evs, 1)->data, "two"));
    }

    /* A block without data is not dispatched, and forgets its fields. */
    evs = PARSE("event: x\nid: y\nretry: 5\n\ndata: z\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && nth(evs, 0)->event.s == NULL
          && nth(evs, 0)->id.s == NULL && nth(evs, 0)->retry < 0 && BYTES(nth(evs, 0)->data, "z"));

    /* Empty data is an event; "data:" and "data" alike. */
    evs = PARSE("data:\n\ndata\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 2 && BYTES(nth(evs, 0)->data, "") && BYTES(nth(evs, 1)->data, ""));

    /* The unfinished last event is dropped, with or without its line end. */
    evs = PARSE("data: a\n\ndata: b\n", &why, &dropped);
    CHECK(why == NULL && dropped && evs->nelts == 1 && BYTES(nth(evs, 0)->data, "a"));
    evs = PARSE("data: a\n\ndata: b", &why, &dropped);
    CHECK(why == NULL && dropped && evs->nelts == 1);
    evs = PARSE("data: a\n\n: bye\nevent: x\n", &why, &dropped);
    CHECK(why == NULL && !dropped && evs->nelts == 1);
    evs = PARSE("", &why, &dropped);
    CHECK(why == NULL && !dropped && evs->nelts == 0);
    evs = PARSE("data: x\r", &why, &dropped);   /* CR ends the line, no blank line */
    CHECK(why == NULL && dropped && evs->nelts == 0);

    /* CR CR is two line ends, so a blank line; CR LF is one. */
    evs = PARSE("data: a\r\rdata: b\r\n\r\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 2 && BYTES(nth(evs, 1)->data, "b"));
    evs = PARSE("data: a\r\ndata: b\r\n\r\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && BYTES(nth(evs, 0)->data, "a\nb"));

    /* A leading byte order mark is skipped; only at the very start. */
    evs = PARSE("\xEF\xBB\xBF" "data: x\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && BYTES(nth(evs, 0)->data, "x"));
    evs = PARSE("\xEF\xBB" "data: x\n\n", &why, &dropped);   /* not a BOM: one odd field */
    CHECK(why == NULL && evs->nelts == 0);
    evs = PARSE("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 0);

    /* Field names are exact; a colon in the value stays. */
    evs = PARSE("Data: no\ndata : no\ndata: a: b\nevent: t:1\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && BYTES(nth(evs, 0)->data, "a: b")
          && BYTES(nth(evs, 0)->event, "t:1"));

    /* event: last one wins, empty means none. */
    evs = PARSE("event: a\nevent: b\ndata: x\n\nevent: a\nevent:\ndata: y\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 2 && BYTES(nth(evs, 0)->event, "b") && nth(evs, 1)->event.s == NULL);

    /* id: empty means none; with NUL ignored (the earlier one stays). */
    evs = PARSE("id: a\nid:\ndata: x\n\nid: b\nid: c\0d\ndata: y\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 2 && nth(evs, 0)->id.s == NULL && BYTES(nth(evs, 1)->id, "b"));

    /* retry: digits only, else ignored; too large is an error. */
    evs = PARSE("retry: 10s\nretry: -1\nretry:\nretry: 1 \ndata: x\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && nth(evs, 0)->retry < 0);
    evs = PARSE("retry: 0\ndata: x\n\nretry: 2147483647\ndata: y\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 2 && nth(evs, 0)->retry == 0 && nth(evs, 1)->retry == 2147483647L);
    evs = PARSE("retry: 2147483648\ndata: x\n\n", &why, &dropped);
    CHECK(why != NULL && strstr(why, "retry"));
    evs = PARSE("data: a\n\nretry: 99999999999999999999999\ndata: x\n\n", &why, &dropped);
    CHECK(why != NULL);

    /* NUL and any other byte pass through data. */
    evs = PARSE("data: n\0l\xff\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 1 && BYTES(nth(evs, 0)->data, "n\0l\xff"));

    /* What the parser lets through, sse_body_check still refuses. */
    evs = PARSE("event: sse-gap\ndata: x\n\nid: 17-3\ndata: y\n\n", &why, &dropped);
    CHECK(why == NULL && evs->nelts == 2 && sse_body_check(nth(evs, 0)) != NULL
          && sse_body_check(nth(evs, 1)) != NULL);

    /* A long line split over many feeds. */
    {
        apr_size_t n = 100000, k;
        char *big = malloc(n + 16);
        sse_parse *ps = sse_parse_create(p);
        memcpy(big, "data: ", 6);
        memset(big + 6, 'x', n);
        memcpy(big + 6 + n, "\n\n", 2);
        for (k = 0; k < n + 8; k += 777)
            sse_parse_feed(ps, big + k, (n + 8 - k) < 777 ? n + 8 - k : 777);
        why = sse_parse_finish(ps, &evs, &dropped);
        CHECK(why == NULL && evs->nelts == 1 && nth(evs, 0)->data.len == n
              && nth(evs, 0)->data.s[n - 1] == 'x' && nth(evs, 0)->data.s[n] == '\0');
        free(big);
    }
}

/* Ids must survive a Last-Event-ID header, whose ends httpd strips; and
 * subscribers alone may take at most half of the channel table. */
static void test_hardening(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 4, &mem);
    uint64_t stamp;
    char id[SSE_FIELD_MAX + 1];
    int a, b;

    CHECK(sse_wire_check_id(" x", 2) != NULL);
    CHECK(sse_wire_check_id("x ", 2) != NULL);
    CHECK(sse_wire_check_id("\tx", 2) != NULL);
    CHECK(sse_wire_check_id("x\t", 2) != NULL);
    CHECK(sse_wire_check_id(" ", 1) != NULL);
    CHECK(sse_wire_check_id("a b\tc", 5) == NULL);
    CHECK(sse_wire_check_id("a\x01" "b", 3) != NULL);
    CHECK(sse_wire_check_id("a\x7f" "b", 3) != NULL);
    CHECK(sse_wire_check_id("\x1b[0m", 4) != NULL);

    CHECK(sse_ring_waiting_share(r) == 2);
    CHECK((a = sse_ring_chan_intern_waiting(r, "w1", 2)) >= 0);
    CHECK((b = sse_ring_chan_intern_waiting(r, "w2", 2)) >= 0);
    sse_ring_subs_add(r, 0, a, 1);
    sse_ring_subs_add(r, 0, b, 1);
    CHECK(sse_ring_chan_intern_waiting(r, "w3", 2) == SSE_RING_SHARE_FULL);
    CHECK(sse_ring_chan_intern_waiting(r, "w1", 2) == a);      /* existing: found */
    /* Publishers still create channels, up to the whole table. */
    CHECK(pub(r, "p1", NULL, "x", 1000, &stamp, id) == 0);
    CHECK(pub(r, "p2", NULL, "x", 1000, &stamp, id) == 0);
    CHECK(pub(r, "p3", NULL, "x", 1000, &stamp, id) == -2);
    /* Publishing to a waiting channel takes it out of the share. */
    CHECK(pub(r, "w1", NULL, "x", 1000, &stamp, id) == 0);
    sse_ring_subs_add(r, 0, a, -1);
    sse_ring_subs_add(r, 0, b, -1);
    CHECK(sse_ring_chan_intern_waiting(r, "w3", 2) >= 0);      /* w2 reclaimed */
    free(mem);
}

/* ---- directive numbers ---- */

static void test_num(void)
{
    int64_t n;
    char buf[SSE_NUM_TEXT_SIZE];

    n = -1;
    CHECK(sse_num_size("65536", 1, INT64_MAX, &n) == SSE_NUM_OK && n == 65536);
    CHECK(sse_num_size("64K", 1, INT64_MAX, &n) == SSE_NUM_OK && n == 65536);
    CHECK(sse_num_size("64kb", 1, INT64_MAX, &n) == SSE_NUM_OK && n == 65536);
    CHECK(sse_num_size("16M", 1, INT64_MAX, &n) == SSE_NUM_OK && n == 16777216);
    CHECK(sse_num_size("2GB", 1, INT64_MAX, &n) == SSE_NUM_OK && n == INT64_C(2147483648));
    CHECK(sse_num_size("1024G", 1, INT64_MAX, &n) == SSE_NUM_OK && n == INT64_C(1) << 40);
    /* Not sizes: a bare B, a unit not known, zero, signs, spaces, fractions. */
    n = 7;
    CHECK(sse_num_size("512B", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("1T", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("16MBB", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("0", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("0K", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("K", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("-1", INT64_MIN, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("+1", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size(" 1", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("1 ", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("1.5M", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("0x10", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(n == 7);      /* untouched by a refusal */
    /* 64-bit overflow, in the digits or in the unit. */
    CHECK(sse_num_size("9223372036854775807", 1, INT64_MAX, &n) == SSE_NUM_OK
          && n == INT64_MAX);
    CHECK(sse_num_size("9223372036854775808", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_size("8589934591G", 1, INT64_MAX, &n) == SSE_NUM_OK
          && n == INT64_C(8589934591) << 30);
    CHECK(sse_num_size("8589934592G", 1, INT64_MAX, &n) == SSE_NUM_FORM);
    /* Bounds: the value as a whole, after the unit. */
    CHECK(sse_num_size("63K", 65536, INT64_C(1) << 40, &n) == SSE_NUM_LOW);
    CHECK(sse_num_size("64K", 65536, INT64_C(1) << 40, &n) == SSE_NUM_OK && n == 65536);
    CHECK(sse_num_size("1025G", 65536, INT64_C(1) << 40, &n) == SSE_NUM_HIGH);
    CHECK(sse_num_size("65M", 1, 64 * 1024 * 1024, &n) == SSE_NUM_HIGH);

    n = 7;
    CHECK(sse_num_count("0", 0, 86400, &n) == SSE_NUM_OK && n == 0);
    CHECK(sse_num_count("86400", 0, 86400, &n) == SSE_NUM_OK && n == 86400);
    CHECK(sse_num_count("007", 0, 86400, &n) == SSE_NUM_OK && n == 7);
    CHECK(sse_num_count("86401", 0, 86400, &n) == SSE_NUM_HIGH);
    CHECK(sse_num_count("0", 1, 1000000, &n) == SSE_NUM_LOW);
    CHECK(sse_num_count("2147483647", 0, 2147483647, &n) == SSE_NUM_OK && n == 2147483647);
    CHECK(sse_num_count("2147483648", 0, 2147483647, &n) == SSE_NUM_HIGH);
    n = 7;
    CHECK(sse_num_count("16K", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_count("-1", INT64_MIN, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_count("", 0, 10, &n) == SSE_NUM_FORM);
    CHECK(sse_num_count(" 5", 0, 10, &n) == SSE_NUM_FORM);
    CHECK(sse_num_count("5 ", 0, 10, &n) == SSE_NUM_FORM);
    CHECK(sse_num_count("99999999999999999999", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(n == 7);

    CHECK(sse_num_size_text(65536, buf) == 3 && strcmp(buf, "64K") == 0);
    CHECK(sse_num_size_text(16777216, buf) == 3 && strcmp(buf, "16M") == 0);
    CHECK(sse_num_size_text(3000, buf) == 4 && strcmp(buf, "3000") == 0);
    CHECK(sse_num_size_text(1, buf) == 1 && strcmp(buf, "1") == 0);
    CHECK(sse_num_size_text(1536, buf) == 4 && strcmp(buf, "1536") == 0);
    CHECK(sse_num_size_text(INT64_C(3) << 30, buf) == 2 && strcmp(buf, "3G") == 0);
    /* The largest unit is one a size may be written in: SSEBufferSize's
     * bound, 2^40, said "at most 1T", and "1T" is not a size. */
    CHECK(sse_num_size_text(INT64_C(1) << 40, buf) == 5 && strcmp(buf, "1024G") == 0);
    CHECK(sse_num_size(buf, 65536, INT64_C(1) << 40, &n) == SSE_NUM_OK && n == INT64_C(1) << 40);
    CHECK(sse_num_size_text(INT64_C(1) << 50, buf) == 8 && strcmp(buf, "1048576G") == 0);

    /* Times, in microseconds; ms by default; units as httpd reads them. */
    n = -1;
    CHECK(sse_num_time("10", 0, INT64_MAX, &n) == SSE_NUM_OK && n == 10000);
    CHECK(sse_num_time("10ms", 0, INT64_MAX, &n) == SSE_NUM_OK && n == 10000);
    CHECK(sse_num_time("2s", 0, INT64_MAX, &n) == SSE_NUM_OK && n == 2000000);
    CHECK(sse_num_time("3mi", 0, INT64_MAX, &n) == SSE_NUM_OK && n == 180000000);
    CHECK(sse_num_time("1h", 0, INT64_MAX, &n) == SSE_NUM_OK && n == INT64_C(3600000000));
    CHECK(sse_num_time("10msec", 0, INT64_MAX, &n) == SSE_NUM_OK && n == 10000);
    CHECK(sse_num_time("0", 0, INT64_MAX, &n) == SSE_NUM_OK && n == 0);
    n = 7;
    CHECK(sse_num_time("soon", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("-1", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("0.5s", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("5m", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("5x", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("9223372036854775807s", 0, INT64_MAX, &n) == SSE_NUM_FORM);
    CHECK(sse_num_time("61s", 0, 60000000, &n) == SSE_NUM_HIGH);
    CHECK(sse_num_time("60s", 0, 60000000, &n) == SSE_NUM_OK && n == 60000000);
}

/* ---- metrics ---- */

static void test_metrics_block(void)
{
    void *mem = calloc(1, sse_metrics_size(3));
    sse_metrics *m = sse_metrics_init(mem, 3);

    /* Counters: each slot its own row, the slot-less row too, summed. */
    sse_metrics_add(m, 0, SSE_C_EVENTS_DELIVERED, 5);
    sse_metrics_add(m, 2, SSE_C_EVENTS_DELIVERED, 7);
    sse_metrics_add(m, -1, SSE_C_EVENTS_DELIVERED, 11);
    sse_metrics_add(m, 3, SSE_C_EVENTS_DELIVERED, 13);     /* out of range: slot-less */
    CHECK(sse_metrics_counter(m, SSE_C_EVENTS_DELIVERED) == 36);
    CHECK(sse_metrics_counter(m, SSE_C_BYTES_SENT) == 0);
    /* Gauges: slots only; a forgotten slot's share goes, its counters stay. */
    sse_metrics_gauge_add(m, 0, SSE_G_STREAMS, 2);
    sse_metrics_gauge_add(m, 1, SSE_G_STREAMS, 3);
    sse_metrics_gauge_add(m, -1, SSE_G_STREAMS, 100);
    CHECK(sse_metrics_gauge(m, SSE_G_STREAMS) == 5);
    sse_metrics_forget(m, 0);
    CHECK(sse_metrics_gauge(m, SSE_G_STREAMS) == 3);
    CHECK(sse_metrics_counter(m, SSE_C_EVENTS_DELIVERED) == 36);
    /* A decrement seen before its increment never shows as negative. */
    sse_metrics_gauge_add(m, 2, SSE_G_SLOW, -1);
    CHECK(sse_metrics_gauge(m, SSE_G_SLOW) == 0);
    sse_metrics_gauge_add(m, 2, SSE_G_SLOW, 1);
    /* Reasons: one per status a publish can be refused with. */
    CHECK(sse_metrics_reason_of_status(400) == SSE_C_REJ_BAD_REQUEST);
    CHECK(sse_metrics_reason_of_status(403) == SSE_C_REJ_FORBIDDEN);
    CHECK(sse_metrics_reason_of_status(405) == SSE_C_REJ_METHOD);
    CHECK(sse_metrics_reason_of_status(413) == SSE_C_REJ_TOO_LARGE);
    CHECK(sse_metrics_reason_of_status(503) == SSE_C_REJ_UNAVAILABLE);
    CHECK(sse_metrics_reason_of_status(500) == SSE_C_REJ_INTERNAL);
    CHECK(strcmp(sse_metrics_reason(SSE_C_REJ_METHOD), "method_not_allowed") == 0);
    CHECK(sse_metrics_reason(SSE_C_GAPS) == NULL);
    CHECK(sse_metrics_reason(SSE_C_REDIS_ERR_PUBLISH) == NULL);
    CHECK(strcmp(sse_metrics_redis_op(SSE_C_REDIS_ERR_PUBLISH), "publish") == 0);
    CHECK(strcmp(sse_metrics_redis_op(SSE_C_REDIS_ERR_FOLLOW), "follow") == 0);
    CHECK(sse_metrics_redis_op(SSE_C_REJ_INTERNAL) == NULL);

    /* Redis's state: never set reads as not reached; the last setter wins. */
    CHECK(sse_metrics_redis_up(m) == 0);
    sse_metrics_set_redis_up(m, 1);
    CHECK(sse_metrics_redis_up(m) == 1);
    sse_metrics_set_redis_up(m, 0);
    CHECK(sse_metrics_redis_up(m) == 0);
    sse_metrics_add(m, 1, SSE_C_REDIS_ERR_FOLLOW, 2);
    sse_metrics_add(m, -1, SSE_C_REDIS_ERR_FOLLOW, 1);
    CHECK(sse_metrics_counter(m, SSE_C_REDIS_ERR_FOLLOW) == 3);
    free(mem);
}

static void test_metrics_forms(void)
{
    sse_metrics_snapshot s;
    json_t *o, *top, *rej;
    json_error_t err;
    char *text;

    memset(&s, 0, sizeof(s));
    s.counter[SSE_C_EVENTS_PUBLISHED] = 12345678901234ull;
    s.counter[SSE_C_REJ_TOO_LARGE] = 2;
    s.gauge[SSE_G_STREAMS] = 4;
    s.ring_size = 65536;
    s.ring_used = 800;
    s.ring_oldest_age = 1.5;
    s.channels = 2;
    s.ntop = 2;
    strcpy(s.top[0].name, "news");
    s.top[0].subscribers = 3;
    s.top[0].retained = 1;
    strcpy(s.top[0].last_id, "1-0");
    strcpy(s.top[1].name, "quiet");
    text = sse_metrics_prometheus(&s);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "# HELP sse_events_published_total ") != NULL);
        CHECK(strstr(text, "\n# TYPE sse_events_published_total counter\n"
                           "sse_events_published_total 12345678901234\n") != NULL);
        CHECK(strstr(text, "# TYPE sse_subscribers gauge\nsse_subscribers 4\n") != NULL);
        CHECK(strstr(text, "sse_publish_rejected_total{reason=\"too_large\"} 2\n") != NULL);
        CHECK(strstr(text, "sse_publish_rejected_total{reason=\"failed_response\"} 0\n") != NULL);
        CHECK(strstr(text, "sse_ring_oldest_event_age_seconds 1.500\n") != NULL);
        /* No per-channel label: cardinality stays fixed. */
        CHECK(strstr(text, "news") == NULL);
        /* Without SSERedis, no Redis metric at all. */
        CHECK(strstr(text, "sse_redis") == NULL);
        free(text);
    }
    s.redis_set = 1;
    s.redis_up = 1;
    s.counter[SSE_C_REDIS_ERR_PUBLISH] = 3;
    text = sse_metrics_prometheus(&s);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "\n# TYPE sse_redis_up gauge\nsse_redis_up 1\n") != NULL);
        CHECK(strstr(text, "\n# TYPE sse_redis_errors_total counter\n"
                           "sse_redis_errors_total{op=\"publish\"} 3\n"
                           "sse_redis_errors_total{op=\"delete\"} 0\n"
                           "sse_redis_errors_total{op=\"read\"} 0\n"
                           "sse_redis_errors_total{op=\"follow\"} 0\n") != NULL);
        free(text);
    }
    text = sse_metrics_json(&s);
    o = text ? json_loads(text, 0, &err) : NULL;
    CHECK(o != NULL);
    if (o) {
        json_t *ops = json_object_get(o, "sse_redis_errors_total");
        CHECK(json_integer_value(json_object_get(o, "sse_redis_up")) == 1);
        CHECK(json_object_size(ops) == 4);
        CHECK(json_integer_value(json_object_get(ops, "publish")) == 3);
        CHECK(json_integer_value(json_object_get(ops, "follow")) == 0);
        json_decref(o);
    }
    free(text);
    s.redis_set = 0;
    text = sse_metrics_json(&s);
    o = text ? json_loads(text, 0, &err) : NULL;
    CHECK(o != NULL);
    if (o) {
        CHECK(json_integer_value(json_object_get(o, "sse_events_published_total"))
              == 12345678901234ll);
        CHECK(json_integer_value(json_object_get(o, "sse_ring_used_bytes")) == 800);
        CHECK(json_real_value(json_object_get(o, "sse_ring_oldest_event_age_seconds")) == 1.5);
        rej = json_object_get(o, "sse_publish_rejected_total");
        CHECK(json_object_size(rej) == SSE_C_REJ_LAST - SSE_C_REJ_FIRST + 1);
        CHECK(json_integer_value(json_object_get(rej, "too_large")) == 2);
        top = json_object_get(o, "top_channels");
        CHECK(json_array_size(top) == 2);
        CHECK(strcmp(json_string_value(json_object_get(json_array_get(top, 0), "name")),
                     "news") == 0);
        CHECK(json_is_null(json_object_get(json_array_get(top, 1), "last_id")));
        json_decref(o);
    }
    free(text);
}

/* The ring keeps the metrics block: releasing or reaping a process slot
 * forgets its gauges, and evictions are counted. */
static void test_ring_metrics(void)
{
    void *mem;
    sse_ring *r = new_ring(64 * 1024, 16, &mem);
    sse_metrics *m = sse_ring_metrics(r);
    char id[SSE_FIELD_MAX + 1], data[301];
    uint64_t stamp;
    int a = sse_ring_proc_claim(r, 111), b = sse_ring_proc_claim(r, 222), i;

    CHECK(a == 0 && b == 1);
    sse_metrics_gauge_add(m, a, SSE_G_STREAMS, 2);
    sse_metrics_gauge_add(m, b, SSE_G_STREAMS, 5);
    sse_metrics_add(m, b, SSE_C_STREAMS_OPENED, 5);
    sse_ring_proc_release(r, a);
    CHECK(sse_metrics_gauge(m, SSE_G_STREAMS) == 5);
    CHECK(sse_ring_proc_reap(r, never_alive) == 1);
    CHECK(sse_metrics_gauge(m, SSE_G_STREAMS) == 0);
    CHECK(sse_metrics_counter(m, SSE_C_STREAMS_OPENED) == 5);
    /* A new process in the slot goes on counting from there. */
    CHECK(sse_ring_proc_claim(r, 333) == 0);
    sse_metrics_add(m, 0, SSE_C_STREAMS_OPENED, 1);
    CHECK(sse_metrics_counter(m, SSE_C_STREAMS_OPENED) == 6);

    CHECK(sse_ring_oldest_stamp(r) == 0 && sse_ring_used(r) == 0);
    memset(data, 'd', 300);
    data[300] = '\0';
    CHECK(pub(r, "c", NULL, data, 5000, &stamp, id) == 0);
    CHECK(sse_ring_oldest_stamp(r) == stamp);
    CHECK(sse_ring_used(r) == sse_ring_head(r) && sse_ring_used(r) > 300);
    CHECK(sse_ring_evicted(r) == 0);
    for (i = 0; i < 1000; i++)
        pub(r, "c", NULL, data, 6000 + (uint64_t)i, &stamp, id);
    CHECK(sse_ring_evicted(r) > 0 && sse_ring_evicted(r) < 1001);
    {
        sse_ring_chan_info info;
        int slot = sse_ring_chan_find(r, "c", 1);
        sse_ring_chan_get(r, slot, &info);
        /* Every event is either retained or was evicted. */
        CHECK(sse_ring_evicted(r) + info.retained == 1001);
        CHECK(sse_ring_chan_is_live(r, slot));
        CHECK(SSE_STAMP_MS(sse_ring_oldest_stamp(r)) > 6000);
    }
    CHECK(sse_ring_used(r) <= 64 * 1024);
    free(mem);
}

/* ---- topic selectors (sse_topic) ---- */

/* Matches of one selector against topics, as C strings. */
static int tmatch(apr_pool_t *p, const char *sel, const char *topic)
{
    const char *why = "unset";
    sse_topic_selector *s = sse_topic_compile(p, sel, strlen(sel), &why);

    if (!s) {
        printf("  compile '%s' refused: %s\n", sel, why);
        return -1;
    }
    if (why != NULL)
        return -2;
    return sse_topic_match(s, topic, strlen(topic));
}

typedef struct {
    const char *sel, *topic;
    int want;
} topic_case;

/* sse_topic.c's switch (built with SSE_TOPIC_TEST_HOOKS): 1 runs every
 * program the general way, else small ones take the one-word way. */
extern int sse_topic_test_general;

/* Each case both ways: the one-word matcher and the general one. */
static void topic_cases(apr_pool_t *p, const topic_case *t, size_t n, int line)
{
    size_t i;
    int way;

    for (way = 0; way < 2; way++) {
        sse_topic_test_general = way;
        for (i = 0; i < n; i++) {
            int got = tmatch(p, t[i].sel, t[i].topic);
            if (got != t[i].want)
                printf("  line %d (%s): '%s' against '%s': got %d, want %d\n", line,
                       way ? "general" : "one word", t[i].sel, t[i].topic, got, t[i].want);
            check(got == t[i].want, "topic selector match", __FILE__, line);
        }
    }
    sse_topic_test_general = 0;
}
#define TOPIC_CASES(arr) topic_cases(p, arr, sizeof(arr) / sizeof(arr[0]), __LINE__)

/* "*", exact selectors, and what is exact: bytes, NUL, no normalization. */
static void test_topic_exact(apr_pool_t *p)
{
    static const topic_case t[] = {
        { "*", "https://example.com/books/1", 1 }, { "*", "", 1 }, { "*", "*", 1 },
        { "https://example.com/books/1", "https://example.com/books/1", 1 },
        { "https://example.com/books/1", "https://example.com/books/10", 0 },
        { "https://example.com/books/1", "https://example.com/books/", 0 },
        { "https://example.com/books/1", "HTTPS://example.com/books/1", 0 },
        { "https://example.com/books/%41", "https://example.com/books/A", 0 },
        { "books", "books ", 0 }, { "", "", 1 }, { "", "a", 0 }, { "a", "", 0 },
        { "**", "*", 0 }, { "**", "**", 1 }, { "a*", "ab", 0 },
        /* Not templates (no '{'): any bytes, compared exactly. */
        { "a b}\"<>|", "a b}\"<>|", 1 }, { "caf\xc3\xa9", "caf\xc3\xa9", 1 },
        { "caf\xc3\xa9", "cafe\xcc\x81", 0 }, { "\xff\xfe", "\xff\xfe", 1 },
        /* A template also matches itself exactly (the hub compares first). */
        { "https://example.com/books/{id}", "https://example.com/books/{id}", 1 },
        { "/a/{x}/{+y}", "/a/{x}/{+y}", 1 },
    };
    const char *why = "unset";
    sse_topic_selector *s;

    TOPIC_CASES(t);
    /* Embedded NUL bytes: compared as bytes, never a terminator. */
    s = sse_topic_compile(p, "a\0b", 3, &why);
    CHECK(s != NULL && why == NULL);
    CHECK(s && sse_topic_match(s, "a\0b", 3) == 1);
    CHECK(s && sse_topic_match(s, "a\0c", 3) == 0);
    CHECK(s && sse_topic_match(s, "a", 1) == 0);
    CHECK(s && sse_topic_match(s, "a\0b\0", 4) == 0);
    s = sse_topic_compile(p, "*", 1, &why);
    CHECK(s && sse_topic_match(s, "\0", 1) == 1);
    s = sse_topic_compile(p, "x/{id}", 6, &why);
    CHECK(s && sse_topic_match(s, "x/1\0", 4) == 0);
    CHECK(s && sse_topic_match(s, "x/\0", 3) == 0);
    CHECK(s && sse_topic_match(s, "x/1", 3) == 1);
    /* A selector is its own copy: the caller's buffer may change after. */
    {
        char buf[8] = "k/{id}";
        s = sse_topic_compile(p, buf, 6, &why);
        memcpy(buf, "zzzzzz", 6);
        CHECK(s && sse_topic_match(s, "k/7", 3) == 1);
        CHECK(s && sse_topic_match(s, "zzzzzz", 6) == 0);
    }
    /* sse_topic_exact: the reference hub's fallback, exact whatever it holds. */
    s = sse_topic_exact(p, "*", 1);
    CHECK(sse_topic_match(s, "*", 1) == 1 && sse_topic_match(s, "a", 1) == 0);
    s = sse_topic_exact(p, "b/{id", 5);
    CHECK(sse_topic_match(s, "b/{id", 5) == 1 && sse_topic_match(s, "b/1", 3) == 0);
    s = sse_topic_exact(p, "b/{id}", 6);
    CHECK(sse_topic_match(s, "b/{id}", 6) == 1 && sse_topic_match(s, "b/1", 3) == 0);
}

/* Level 1: simple expansion, a value of U characters, ',' and %XX. */
static void test_topic_simple(apr_pool_t *p)
{
    static const topic_case t[] = {
        { "https://example.com/books/{id}", "https://example.com/books/1", 1 },
        { "https://example.com/books/{id}", "https://example.com/books/abc-._~XYZ09", 1 },
        { "https://example.com/books/{id}", "https://example.com/books/", 1 },
        { "https://example.com/books/{id}", "https://example.com/books/a%2Fb", 1 },
        { "https://example.com/books/{id}", "https://example.com/books/%c3%A9", 1 },
        { "https://example.com/books/{id}", "https://example.com/books/1,2", 1 },
        { "https://example.com/books/{id}", "https://example.com/books/1/2", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/1?x", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/1#x", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/a b", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/a=b", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/caf\xc3\xa9", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/%zz", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/%4", 0 },
        { "https://example.com/books/{id}", "https://example.com/books/%", 0 },
        { "https://example.com/books/{id}", "https://example.com/book/1", 0 },
        { "https://example.com/books/{id}", "https://example.com/books", 0 },
        { "https://example.com/books/{id}", "http://example.com/books/1", 0 },
        { "https://example.com/books/{id}", "", 0 },
        { "{id}", "", 1 }, { "{id}", "x", 1 }, { "{id}", "/", 0 }, { "{id}", ":", 0 },
        { "/users/{id}/books/{book}", "/users/7/books/42", 1 },
        { "/users/{id}/books/{book}", "/users//books/", 1 },
        { "/users/{id}/books/{book}", "/users/7/books", 0 },
        { "/users/{id}/books/{book}", "/users/7/8/books/42", 0 },
        { "a{x}b", "ab", 1 }, { "a{x}b", "axyzb", 1 }, { "a{x}b", "axyz", 0 },
        { "{x}{y}", "anything-at.all", 1 }, { "{x}.{y}", "a.b.c", 1 }, { "{x}.{y}", "abc", 0 },
        { "{x}.json", "report.json", 1 }, { "{x}.json", "report.jso", 0 },
        { "{x}.json", ".json", 1 }, { "{x}.json", "json", 0 },
    };
    TOPIC_CASES(t);
}

/* ---- jwt (sse_jwt.c) ----
 *
 * Keys are generated here with libcrypto (EVP_RSA_gen, EVP_EC_gen) and
 * their public halves written as PEM files into a mkdtemp directory, which
 * is removed at the end; nothing is checked in. Valid tokens are made with
 * libjwt itself (jwt_encode_str with the private key); tokens libjwt would
 * not make (alg none, other headers, broken forms) are written by hand
 * with jt_craft, signed by HMAC where a signature is wanted. */

#define JT_NOW ((apr_int64_t)1800000000)

typedef struct {
    char *priv;         /* PEM of the private key (libjwt signs with it) */
    char *pub;          /* PEM of the public key */
    char path[256];     /* the public key's file */
} jt_pair;

static char jt_dir[64];

static char *jt_pem(EVP_PKEY *k, int private)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s;
    long n;

    if (private)
        PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    else
        PEM_write_bio_PUBKEY(b, k);
    n = BIO_get_mem_data(b, &data);
    s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static void jt_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void jt_pair_make(jt_pair *pr, EVP_PKEY *k, const char *name)
{
    pr->priv = jt_pem(k, 1);
    pr->pub = jt_pem(k, 0);
    snprintf(pr->path, sizeof pr->path, "%s/%s.pem", jt_dir, name);
    jt_write(pr->path, pr->pub);
    EVP_PKEY_free(k);
}

static void jt_pair_free(jt_pair *pr)
{
    unlink(pr->path);
    free(pr->priv);
    free(pr->pub);
}

/* A token made by libjwt: alg with key (a secret or a private PEM), the
 * claims given as JSON. Copied into p. */
static const char *jt_libjwt(apr_pool_t *p, jwt_alg_t alg, const char *key, size_t key_len,
                             const char *claims_json)
{
    jwt_t *j = NULL;
    char *s;
    const char *tok;

    if (jwt_new(&j) || jwt_add_grants_json(j, claims_json)
        || jwt_set_alg(j, alg, (const unsigned char *)key, (int)key_len)) {
        jwt_free(j);
        return "";
    }
    s = jwt_encode_str(j);
    tok = s ? apr_pstrdup(p, s) : "";
    free(s);
    jwt_free(j);
    return tok;
}

static char *jt_b64url(apr_pool_t *p, const unsigned char *d, size_t n)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = apr_palloc(p, n * 4 / 3 + 4), *o = out;
    size_t i;

    for (i = 0; i + 2 < n; i += 3) {
        *o++ = a[d[i] >> 2];
        *o++ = a[(d[i] & 3) << 4 | d[i + 1] >> 4];
        *o++ = a[(d[i + 1] & 15) << 2 | d[i + 2] >> 6];
        *o++ = a[d[i + 2] & 63];
    }
    if (n - i == 1) {
        *o++ = a[d[i] >> 2];
        *o++ = a[(d[i] & 3) << 4];
    }
    else if (n - i == 2) {
        *o++ = a[d[i] >> 2];
        *o++ = a[(d[i] & 3) << 4 | d[i + 1] >> 4];
        *o++ = a[(d[i + 1] & 15) << 2];
    }
    *o = '\0';
    return out;
}

/* header.payload.signature written by hand: the signature is the HMAC
 * (md) of the first two with secret, or sig_b64 as given when md is NULL. */
static const char *jt_craft(apr_pool_t *p, const char *head, const char *payload,
                            const EVP_MD *md, const char *secret, size_t secret_len,
                            const char *sig_b64)
{
    const char *input = apr_pstrcat(p, jt_b64url(p, (const unsigned char *)head, strlen(head)),
                                    ".", jt_b64url(p, (const unsigned char *)payload,
                                                   strlen(payload)), NULL);
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        HMAC(md, secret, (int)secret_len, (const unsigned char *)input, strlen(input), mac,
             &mac_len);
        sig_b64 = jt_b64url(p, mac, mac_len);
    }
    return apr_pstrcat(p, input, ".", sig_b64, NULL);
}

static const char *jt_verify(apr_pool_t *p, const sse_jwt_key *k, const char *tok,
                             sse_jwt_claims *c)
{
    return sse_jwt_verify(p, k, tok, strlen(tok), JT_NOW, c);
}

/* verify gives the reason want (NULL: accepted). */
static void jt_is(apr_pool_t *p, const sse_jwt_key *k, const char *tok, const char *want,
                  int line)
{
    sse_jwt_claims c;
    const char *got = jt_verify(p, k, tok, &c);
    int ok = want ? got && strcmp(got, want) == 0 : got == NULL;

    check(ok, want ? want : "accepted", __FILE__, line);
    if (!ok)
        printf("  got %s\n", got ? got : "(accepted)");
}
#define JT_IS(k, tok, want) jt_is(p, (k), (tok), (want), __LINE__)

static int jt_strs_are(const apr_array_header_t *a, int n, const char *const *want)
{
    int i;

    if (!a || a->nelts != n)
        return 0;
    for (i = 0; i < n; i++) {
        if (strcmp(APR_ARRAY_IDX(a, i, const char *), want[i]) != 0)
            return 0;
    }
    return 1;
}

static const char *const jt_reasons[] = {
    "token too large", "malformed token", "algorithm not allowed", "unsupported token type",
    "unsupported critical header", "bad signature", "malformed claims", "token expired",
    "token not yet valid",
};

/* Key making: every algorithm, and each kind of mistake named. */
static void test_jwt_keys(apr_pool_t *p, jt_pair *rsa, jt_pair *ec256, jt_pair *ec384,
                          jt_pair *rsa1024)
{
    sse_jwt_key *k = NULL;
    const char *why;
    char path[300];

    CHECK(sse_jwt_key_make(p, "s3cret", NULL, &k) == NULL && k
          && strcmp(sse_jwt_key_alg(k), "HS256") == 0);
    CHECK(sse_jwt_key_make(p, "s3cret", "HS384", &k) == NULL
          && strcmp(sse_jwt_key_alg(k), "HS384") == 0);
    CHECK(sse_jwt_key_make(p, "s3cret", "HS512", &k) == NULL);
    CHECK(sse_jwt_key_make(p, rsa->path, "RS256", &k) == NULL
          && strcmp(sse_jwt_key_alg(k), "RS256") == 0);
    CHECK(sse_jwt_key_make(p, rsa->path, "RS512", &k) == NULL);
    CHECK(sse_jwt_key_make(p, ec256->path, "ES256", &k) == NULL);
    CHECK(sse_jwt_key_make(p, ec384->path, "ES384", &k) == NULL);

    why = sse_jwt_key_make(p, "s", "RS384", &k);
    CHECK(why && strstr(why, "unknown JWT algorithm 'RS384'") && strstr(why, "ES384"));
    CHECK(sse_jwt_key_make(p, "s", "hs256", &k) != NULL);
    CHECK(sse_jwt_key_make(p, "s", "none", &k) != NULL);
    CHECK(sse_jwt_key_make(p, "s", "", &k) != NULL);
    why = sse_jwt_key_make(p, "", "HS256", &k);
    CHECK(why && strcmp(why, "the JWT secret is empty") == 0);
    why = sse_jwt_key_make(p, "", "RS256", &k);
    CHECK(why && strstr(why, "path") != NULL);
    snprintf(path, sizeof path, "%s/absent.pem", jt_dir);
    why = sse_jwt_key_make(p, path, "RS256", &k);
    CHECK(why && strstr(why, "cannot open") && strstr(why, path));
    /* A private key, even one with its public key beside it. */
    snprintf(path, sizeof path, "%s/private.pem", jt_dir);
    jt_write(path, apr_pstrcat(p, rsa->pub, rsa->priv, NULL));
    why = sse_jwt_key_make(p, path, "RS256", &k);
    CHECK(why && strstr(why, "private key") && strstr(why, "-pubout"));
    jt_write(path, "not a key\n");
    why = sse_jwt_key_make(p, path, "ES256", &k);
    CHECK(why && strstr(why, "no PEM public key") && strstr(why, path));
    unlink(path);
    why = sse_jwt_key_make(p, rsa->path, "ES256", &k);
    CHECK(why && strstr(why, "not an EC key"));
    why = sse_jwt_key_make(p, ec256->path, "RS256", &k);
    CHECK(why && strstr(why, "not an RSA key"));
    why = sse_jwt_key_make(p, ec384->path, "ES256", &k);
    CHECK(why && strstr(why, "P-256"));
    why = sse_jwt_key_make(p, ec256->path, "ES384", &k);
    CHECK(why && strstr(why, "P-384"));
    why = sse_jwt_key_make(p, rsa1024->path, "RS256", &k);
    CHECK(why && strstr(why, "1024 bits") && strstr(why, "2048"));
    /* A directory is not a key file. */
    CHECK(sse_jwt_key_make(p, jt_dir, "RS256", &k) != NULL);
}

/* Every algorithm: a token signed with the key passes with its claims;
 * one signed with another key of the same kind does not. */
static void test_jwt_algs(apr_pool_t *p, jt_pair *rsa, jt_pair *rsa_other, jt_pair *ec256,
                          jt_pair *ec256_other, jt_pair *ec384, jt_pair *ec384_other)
{
    static const char *const pub[] = { "https://example.com/books/{id}", "*" };
    static const char *const sub[] = { "https://example.com/users/dunglas/{?topic}" };
    const char *claims = apr_psprintf(p,
        "{\"exp\": %" APR_INT64_T_FMT ", \"mercure\": {\"publish\": "
        "[\"https://example.com/books/{id}\", \"*\"], \"subscribe\": "
        "[\"https://example.com/users/dunglas/{?topic}\"], \"payload\": "
        "{\"user\": \"https://example.com/users/dunglas\", \"n\": [1, 2.5, null]}}}",
        JT_NOW + 60);
    struct {
        const char *name;
        jwt_alg_t alg;
        const char *cfg, *sign, *other;
    } t[] = {
        { "HS256", JWT_ALG_HS256, "!ChangeThisMercureHubJWTSecretKey!",
          "!ChangeThisMercureHubJWTSecretKey!", "!ChangeThisMercureHubJWTSecretKey?" },
        { "HS384", JWT_ALG_HS384, "secret-384", "secret-384", "secret-385" },
        { "HS512", JWT_ALG_HS512, "secret-512", "secret-512", "Secret-512" },
        { "RS256", JWT_ALG_RS256, rsa->path, rsa->priv, rsa_other->priv },
        { "RS512", JWT_ALG_RS512, rsa->path, rsa->priv, rsa_other->priv },
        { "ES256", JWT_ALG_ES256, ec256->path, ec256->priv, ec256_other->priv },
        { "ES384", JWT_ALG_ES384, ec384->path, ec384->priv, ec384_other->priv },
    };
    size_t i;

    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        sse_jwt_key *k = NULL;
        sse_jwt_claims c;
        const char *tok;

        CHECK(sse_jwt_key_make(p, t[i].cfg, t[i].name, &k) == NULL);
        if (!k)
            continue;
        tok = jt_libjwt(p, t[i].alg, t[i].sign, strlen(t[i].sign), claims);
        memset(&c, 0xa5, sizeof c);
        CHECK(jt_verify(p, k, tok, &c) == NULL);
        if (c.publish == (void *)0xa5a5a5a5a5a5a5a5ull) {
            printf("  %s: token refused: %s\n", t[i].name, jt_verify(p, k, tok, &c));
            continue;
        }
        CHECK(jt_strs_are(c.publish, 2, pub));
        CHECK(jt_strs_are(c.subscribe, 1, sub));
        /* libjwt writes the claims with sorted keys; the order within
         * the payload is kept as signed (test_jwt_claims). */
        CHECK(c.payload && strcmp(c.payload, "{\"n\":[1,2.5,null],"
                                             "\"user\":\"https://example.com/users/dunglas\"}")
                           == 0);
        CHECK(c.exp == JT_NOW + 60);
        /* The length is what counts: the same token followed by a byte
         * that is not passed still verifies, and one byte short does not. */
        CHECK(sse_jwt_verify(p, k, apr_pstrcat(p, tok, "x", NULL), strlen(tok), JT_NOW, &c)
              == NULL);
        CHECK(sse_jwt_verify(p, k, tok, strlen(tok) - 1, JT_NOW, &c) != NULL);
        tok = jt_libjwt(p, t[i].alg, t[i].other, strlen(t[i].other), claims);
        CHECK(strlen(tok) > 0);
        JT_IS(k, tok, "bad signature");
    }
}

/* The header: alg none and any other alg than the configured one, key
 * confusion both ways, typ, crit. */
static void test_jwt_header(apr_pool_t *p, jt_pair *rsa)
{
    static const char secret[] = "!ChangeThisMercureHubJWTSecretKey!";
    const char *claims = "{\"mercure\": {\"publish\": [\"*\"]}}";
    sse_jwt_key *hs = NULL, *rs = NULL, *hs_pem = NULL;
    jwt_t *raw = NULL;
    const char *tok;
    const EVP_MD *sha256 = EVP_sha256();

    CHECK(sse_jwt_key_make(p, secret, "HS256", &hs) == NULL);
    CHECK(sse_jwt_key_make(p, rsa->path, "RS256", &rs) == NULL);
    /* An administrator who pastes the public PEM as an HS256 secret. */
    CHECK(sse_jwt_key_make(p, rsa->pub, "HS256", &hs_pem) == NULL);
    if (!hs || !rs || !hs_pem)
        return;
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, sha256, secret,
                       strlen(secret), NULL), NULL);

    /* alg none: unsigned, with an empty signature or any signature. */
    JT_IS(hs, jt_craft(p, "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL, NULL, 0, ""),
          "algorithm not allowed");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"none\"}", claims, NULL, NULL, 0, ""),
          "algorithm not allowed");
    JT_IS(rs, jt_craft(p, "{\"alg\":\"none\"}", claims, NULL, NULL, 0, ""),
          "algorithm not allowed");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"none\"}", claims, sha256, secret, strlen(secret), NULL),
          "algorithm not allowed");
    tok = jt_libjwt(p, JWT_ALG_NONE, NULL, 0, claims);
    CHECK(strlen(tok) > 0 && tok[strlen(tok) - 1] == '.');
    JT_IS(hs, tok, "algorithm not allowed");
    /* alg spelled otherwise, absent, not a string, another HMAC. */
    JT_IS(hs, jt_craft(p, "{\"alg\":\"hs256\"}", claims, sha256, secret, strlen(secret), NULL),
          "algorithm not allowed");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256 \"}", claims, sha256, secret, strlen(secret), NULL),
          "algorithm not allowed");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\\u0000\"}", claims, sha256, secret,
                       strlen(secret), NULL), "malformed token");
    JT_IS(hs, jt_craft(p, "{\"typ\":\"JWT\"}", claims, sha256, secret, strlen(secret), NULL),
          "algorithm not allowed");
    JT_IS(hs, jt_craft(p, "{\"alg\":256}", claims, sha256, secret, strlen(secret), NULL),
          "algorithm not allowed");
    JT_IS(hs, jt_craft(p, "{\"alg\":[\"HS256\"]}", claims, sha256, secret, strlen(secret),
                       NULL), "algorithm not allowed");
    JT_IS(hs, jt_libjwt(p, JWT_ALG_HS512, secret, strlen(secret), claims),
          "algorithm not allowed");
    JT_IS(rs, jt_libjwt(p, JWT_ALG_RS512, rsa->priv, strlen(rsa->priv), claims),
          "algorithm not allowed");

    /* Key confusion: an HS256 token whose HMAC secret is the RS256 key's
     * public PEM. libjwt alone, handed the PEM the way sse_jwt hands it,
     * accepts it (so this token is the attack) ... */
    tok = jt_libjwt(p, JWT_ALG_HS256, rsa->pub, strlen(rsa->pub), claims);
    CHECK(jwt_decode(&raw, tok, (const unsigned char *)rsa->pub, (int)strlen(rsa->pub)) == 0);
    jwt_free(raw);
    /* ... sse_jwt does not. */
    JT_IS(rs, tok, "algorithm not allowed");
    /* The other way: an RS256 header, "signed" by HMAC over the PEM, where
     * HS256 is configured with the PEM as its secret. */
    JT_IS(hs_pem, jt_craft(p, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, sha256, rsa->pub,
                           strlen(rsa->pub), NULL), "algorithm not allowed");
    JT_IS(hs_pem, tok, NULL);   /* the same token is fine where HS256 is meant */

    /* typ: JWT in any case, nothing else; crit refused. */
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\",\"typ\":\"jwt\"}", claims, sha256, secret,
                       strlen(secret), NULL), NULL);
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims, sha256, secret,
                       strlen(secret), NULL), "unsupported token type");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\",\"typ\":1}", claims, sha256, secret,
                       strlen(secret), NULL), "unsupported token type");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", claims, sha256,
                       secret, strlen(secret), NULL), "unsupported critical header");
    /* Other header members are ignored. */
    JT_IS(hs, jt_craft(p, "{\"kid\":\"k1\",\"alg\":\"HS256\",\"x\":{\"y\":[]}}", claims, sha256,
                       secret, strlen(secret), NULL), NULL);
    /* A header that is not an object, duplicate names. */
    JT_IS(hs, jt_craft(p, "[\"HS256\"]", claims, sha256, secret, strlen(secret), NULL),
          "malformed token");
    JT_IS(hs, jt_craft(p, "\"HS256\"", claims, sha256, secret, strlen(secret), NULL),
          "malformed token");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"none\",\"alg\":\"HS256\"}", claims, sha256, secret,
                       strlen(secret), NULL), "malformed token");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\"", claims, sha256, secret, strlen(secret), NULL),
          "malformed token");
}

/* The compact form: segments, base64url, size. */
static void test_jwt_form(apr_pool_t *p, jt_pair *rsa)
{
    static const char secret[] = "form-secret";
    const char *claims = "{\"sub\":\"x\"}", *good, *h, *b, *s, *tok;
    const EVP_MD *sha256 = EVP_sha256();
    sse_jwt_key *hs = NULL, *rs = NULL;
    sse_jwt_claims c;
    static const char *const bad[] = {
        "", ".", "..", "...", "abc", "a.b", "a..c", ".b.c", "a.b.c", "eyJ.eyJ.sig",
    };
    char *big;
    size_t i, pad;

    CHECK(sse_jwt_key_make(p, secret, NULL, &hs) == NULL);
    CHECK(sse_jwt_key_make(p, rsa->path, "RS256", &rs) == NULL);
    if (!hs || !rs)
        return;
    good = jt_craft(p, "{\"alg\":\"HS256\"}", claims, sha256, secret, strlen(secret), NULL);
    JT_IS(hs, good, NULL);
    h = apr_pstrndup(p, good, (size_t)(strchr(good, '.') - good));
    b = apr_pstrndup(p, good + strlen(h) + 1, (size_t)(strrchr(good, '.') - good)
                                              - strlen(h) - 1);
    s = strrchr(good, '.') + 1;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        JT_IS(hs, bad[i], "malformed token");
    /* Parts missing or extra around a good token. */
    JT_IS(hs, apr_pstrcat(p, h, ".", b, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, good, ".", NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, good, ".", s, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, ".", good, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, h, "..", s, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, " ", good, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, good, " ", NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, good, "\n", NULL), "malformed token");
    /* base64url only: padding, the standard alphabet's + and /, a byte
     * outside, a length no base64 has, unused bits set. */
    JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", s, "=", NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, h, "=.", b, ".", s, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", apr_pstrndup(p, s, strlen(s) - 1), "+", NULL),
          "malformed token");
    JT_IS(hs, apr_pstrcat(p, h, ".", b, "/.", s, NULL), "malformed token");
    JT_IS(hs, apr_pstrcat(p, h, ".", b, "!.", s, NULL), "malformed token");
    /* 44 characters are a well-formed 33-byte signature, 45 no base64. */
    JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", s, "A", NULL), "bad signature");
    JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", s, "AA", NULL), "malformed token");
    {
        /* s has 43 characters (32 bytes): its last one carries 2 unused
         * bits; the same bytes with those bits set is another text. */
        char *t = apr_pstrdup(p, s);
        CHECK(strlen(t) == 43);
        t[42] = (char)(t[42] == 'A' ? 'B' : t[42] == 'z' ? 'y' : t[42] + 1);
        JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", t, NULL), "malformed token");
        t[42] = 'B';    /* bits 01: never canonical */
        JT_IS(hs, apr_pstrcat(p, h, ".", b, ".", t, NULL), "malformed token");
    }
    /* A NUL inside the length. */
    tok = apr_pstrdup(p, good);
    ((char *)tok)[5] = '\0';
    CHECK(sse_jwt_verify(p, hs, tok, strlen(good), JT_NOW, &c) != NULL);
    /* Claims that are not a JSON object; not JSON at all. */
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\"}", "[1]", sha256, secret, strlen(secret), NULL),
          "malformed token");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\"}", "null", sha256, secret, strlen(secret), NULL),
          "malformed token");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\"}", "{\"a\":", sha256, secret, strlen(secret),
                       NULL), "malformed token");
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\"}", "", sha256, secret, strlen(secret), NULL),
          "malformed token");
    /* Two exp: which one would count is the question no one should ask. */
    JT_IS(hs, jt_craft(p, "{\"alg\":\"HS256\"}", "{\"exp\":1,\"exp\":9999999999}", sha256,
                       secret, strlen(secret), NULL), "malformed token");
    /* libjwt's base64 stops at the first byte outside its alphabet: a
     * good RS256 token with anything after a further dot would pass it. */
    tok = jt_libjwt(p, JWT_ALG_RS256, rsa->priv, strlen(rsa->priv), claims);
    JT_IS(rs, tok, NULL);
    JT_IS(rs, apr_pstrcat(p, tok, ".anything", NULL), "malformed token");
    JT_IS(rs, apr_pstrcat(p, tok, "!", NULL), "malformed token");

    /* Size: exactly SSE_JWT_MAX_LEN passes, one byte more is refused
     * before anything else, and a megabyte too. */
    for (pad = 6000; pad < 6200; pad++) {
        char *pl = apr_palloc(p, pad + 20);
        memcpy(pl, "{\"pad\":\"", 8);
        memset(pl + 8, 'x', pad);
        strcpy(pl + 8 + pad, "\"}");
        tok = jt_craft(p, "{\"alg\":\"HS256\"}", pl, sha256, secret, strlen(secret), NULL);
        if (strlen(tok) >= SSE_JWT_MAX_LEN - 3)
            break;
    }
    CHECK(strlen(tok) <= SSE_JWT_MAX_LEN && strlen(tok) >= SSE_JWT_MAX_LEN - 3);
    JT_IS(hs, tok, NULL);
    big = apr_palloc(p, SSE_JWT_MAX_LEN + 2);
    memcpy(big, tok, strlen(tok));
    memset(big + strlen(tok), 'A', SSE_JWT_MAX_LEN + 1 - strlen(tok));
    big[SSE_JWT_MAX_LEN + 1] = '\0';
    JT_IS(hs, big, "token too large");
    big = apr_palloc(p, 1 << 20);
    memset(big, 'A', 1 << 20);
    CHECK(sse_jwt_verify(p, hs, big, 1 << 20, JT_NOW, &c) != NULL
          && strcmp(sse_jwt_verify(p, hs, big, 1 << 20, JT_NOW, &c), "token too large") == 0);
}

/* The claims: absent, present, wrong types; exp and nbf against now. */
static void test_jwt_claims(apr_pool_t *p)
{
    static const char secret[] = "claims-secret";
    const EVP_MD *sha256 = EVP_sha256();
    static const char *const none[] = { NULL };
    sse_jwt_key *hs = NULL;
    sse_jwt_claims c;
    const char *tok;
    static const struct { const char *claims, *want; } bad[] = {
        { "{\"mercure\":\"x\"}", "malformed claims" },
        { "{\"mercure\":[]}", "malformed claims" },
        { "{\"mercure\":{\"publish\":\"*\"}}", "malformed claims" },
        { "{\"mercure\":{\"publish\":[\"*\",1]}}", "malformed claims" },
        { "{\"mercure\":{\"publish\":[null]}}", "malformed claims" },
        { "{\"mercure\":{\"publish\":{\"0\":\"*\"}}}", "malformed claims" },
        { "{\"mercure\":{\"subscribe\":true}}", "malformed claims" },
        { "{\"mercure\":{\"subscribe\":[[\"a\"]]}}", "malformed claims" },
        { "{\"exp\":\"1900000000\"}", "malformed claims" },
        { "{\"exp\":null}", "malformed claims" },
        { "{\"nbf\":true}", "malformed claims" },
        { "{\"mercure\":{\"publish\":[\"a\\u0000b\"]}}", "malformed token" },
        /* Types before time: an expired token with bad claims is malformed. */
        { "{\"exp\":1,\"mercure\":{\"publish\":7}}", "malformed claims" },
    };
    size_t i;

    CHECK(sse_jwt_key_make(p, secret, "HS256", &hs) == NULL);
    if (!hs)
        return;
#define TOK(cl) jt_craft(p, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", (cl), sha256, secret, \
                         strlen(secret), NULL)
    /* Absent, in every way. */
    memset(&c, 0xa5, sizeof c);
    CHECK(jt_verify(p, hs, TOK("{}"), &c) == NULL && !c.publish && !c.subscribe && !c.payload
          && c.exp == 0);
    memset(&c, 0xa5, sizeof c);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{}}"), &c) == NULL && !c.publish && !c.subscribe
          && !c.payload && c.exp == 0);
    memset(&c, 0xa5, sizeof c);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":null}"), &c) == NULL && !c.publish
          && !c.subscribe && !c.payload);
    memset(&c, 0xa5, sizeof c);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"publish\":null,\"subscribe\":null,"
                               "\"payload\":null}}"), &c) == NULL
          && !c.publish && !c.subscribe && !c.payload);
    /* The namespaced claim replaces "mercure" (the Go hub's fallback); a
     * null one counts as absent, a malformed one is malformed. */
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"publish\":[\"m\"]},"
                               "\"https://mercure.rocks/\":{\"publish\":[\"n\"],"
                               "\"payload\":1}}"), &c) == NULL
          && c.publish && c.publish->nelts == 1
          && strcmp(APR_ARRAY_IDX(c.publish, 0, const char *), "n") == 0
          && !c.subscribe && c.payload && strcmp(c.payload, "1") == 0);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"publish\":[\"m\"]},"
                               "\"https://mercure.rocks/\":null}"), &c) == NULL
          && c.publish && strcmp(APR_ARRAY_IDX(c.publish, 0, const char *), "m") == 0);
    CHECK(jt_verify(p, hs, TOK("{\"https://mercure.rocks/\":[1]}"), &c) != NULL
          && strcmp(jt_verify(p, hs, TOK("{\"https://mercure.rocks/\":[1]}"), &c),
                    "malformed claims") == 0);
    /* Empty is not absent: a token that may publish nothing. */
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"publish\":[],\"subscribe\":[\"\"]}}"), &c)
          == NULL && c.publish && c.publish->nelts == 0 && c.subscribe
          && c.subscribe->nelts == 1 && strcmp(APR_ARRAY_IDX(c.subscribe, 0, const char *), "")
          == 0);
    (void)none;
    /* Payloads of every JSON kind, given back compact. */
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"payload\":\"str \\\"q\\\" \\u00e9\"}}"), &c)
          == NULL && c.payload && strcmp(c.payload, "\"str \\\"q\\\" \xc3\xa9\"") == 0);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"payload\":42}}"), &c) == NULL && c.payload
          && strcmp(c.payload, "42") == 0);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"payload\":false}}"), &c) == NULL && c.payload
          && strcmp(c.payload, "false") == 0);
    CHECK(jt_verify(p, hs, TOK("{\"mercure\":{\"payload\": { \"b\" : [ ], \"a\" : {} } }}"), &c)
          == NULL && c.payload && strcmp(c.payload, "{\"b\":[],\"a\":{}}") == 0);
    /* Other claims are not looked at. */
    CHECK(jt_verify(p, hs, TOK("{\"iat\":\"yesterday\",\"aud\":7,\"sub\":null}"), &c) == NULL);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = jt_verify(p, hs, TOK(bad[i].claims), &c);
        int ok = why && strcmp(why, bad[i].want) == 0;
        CHECK(ok);
        if (!ok)
            printf("  %s: %s\n", bad[i].claims, why ? why : "(accepted)");
    }
    /* Wrong types, but a bad signature: the signature is told first. */
    tok = jt_craft(p, "{\"alg\":\"HS256\"}", "{\"mercure\":{\"publish\":7}}", sha256, "other",
                   5, NULL);
    JT_IS(hs, tok, "bad signature");

    /* exp: valid while now < exp. */
    tok = TOK(apr_psprintf(p, "{\"exp\":%" APR_INT64_T_FMT "}", JT_NOW + 1));
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW, &c) == NULL && c.exp == JT_NOW + 1);
    CHECK(strcmp(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW + 1, &c), "token expired")
          == 0);
    CHECK(strcmp(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW + 1000000, &c),
                 "token expired") == 0);
    JT_IS(hs, TOK("{\"exp\":0}"), "token expired");
    JT_IS(hs, TOK("{\"exp\":-5}"), "token expired");
    /* Fractional: 100.5 is valid at 100, not at 101. */
    tok = TOK("{\"exp\":100.5}");
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), 100, &c) == NULL && c.exp == 101);
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), 101, &c) != NULL);
    tok = TOK("{\"exp\":1e300}");
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW, &c) == NULL && c.exp == INT64_MAX);
    tok = TOK("{\"exp\":9223372036854775807}");
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW, &c) == NULL && c.exp == INT64_MAX);
    JT_IS(hs, TOK("{\"exp\":-1e300}"), "token expired");
    /* A number jansson cannot hold is no JSON it reads. */
    JT_IS(hs, TOK("{\"exp\":99999999999999999999}"), "malformed token");
    /* nbf: valid from nbf on. */
    tok = TOK(apr_psprintf(p, "{\"nbf\":%" APR_INT64_T_FMT "}", JT_NOW));
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW, &c) == NULL && c.exp == 0);
    CHECK(strcmp(sse_jwt_verify(p, hs, tok, strlen(tok), JT_NOW - 1, &c),
                 "token not yet valid") == 0);
    tok = TOK("{\"nbf\":99.5}");
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), 99, &c) != NULL);
    CHECK(sse_jwt_verify(p, hs, tok, strlen(tok), 100, &c) == NULL);
    /* Expired wins over not yet valid (an inverted window). */
    tok = TOK("{\"nbf\":200,\"exp\":100}");
    CHECK(strcmp(sse_jwt_verify(p, hs, tok, strlen(tok), 150, &c), "token expired") == 0);
#undef TOK
}

/* Every reason is one of the documented few, whatever the input: none
 * quotes the token. */
static void test_jwt_reasons(apr_pool_t *p)
{
    sse_jwt_key *hs = NULL;
    sse_jwt_claims c;
    const char *inputs[] = { "SECRET-TOKEN", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.SECRET",
                             "eyJhbGciOiJub25lIn0.e30.", "e30.e30.e30" };
    size_t i, j;

    CHECK(sse_jwt_key_make(p, "k", NULL, &hs) == NULL);
    if (!hs)
        return;
    for (i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const char *why = jt_verify(p, hs, inputs[i], &c);
        int known = 0;
        for (j = 0; why && j < sizeof jt_reasons / sizeof jt_reasons[0]; j++)
            known |= strcmp(why, jt_reasons[j]) == 0;
        CHECK(why && known && !strstr(why, "SECRET"));
    }
}

/* Verification from several threads at once with shared keys (run under
 * TSan by make unit-tsan): each thread gets its own answers right. */
typedef struct {
    const sse_jwt_key *hs, *es;
    const char *hs_tok, *es_tok, *bad_tok;
    int ok;
} jt_thread_arg;

static void *jt_thread(void *v)
{
    jt_thread_arg *a = v;
    apr_pool_t *p;
    sse_jwt_claims c;
    int i;

    apr_pool_create_unmanaged(&p);
    a->ok = 1;
    for (i = 0; i < 60; i++) {
        a->ok &= sse_jwt_verify(p, a->hs, a->hs_tok, strlen(a->hs_tok), JT_NOW, &c) == NULL
                 && c.publish && c.publish->nelts == 1;
        a->ok &= sse_jwt_verify(p, a->es, a->es_tok, strlen(a->es_tok), JT_NOW, &c) == NULL;
        a->ok &= sse_jwt_verify(p, a->hs, a->bad_tok, strlen(a->bad_tok), JT_NOW, &c) != NULL;
        a->ok &= sse_jwt_verify(p, a->es, a->hs_tok, strlen(a->hs_tok), JT_NOW, &c) != NULL;
        apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    return NULL;
}

static void test_jwt_threads(apr_pool_t *p, jt_pair *ec256)
{
    sse_jwt_key *hs = NULL, *es = NULL;
    const char *claims = "{\"mercure\":{\"publish\":[\"t\"]}}";
    jt_thread_arg a[4];
    pthread_t th[4];
    int i;

    CHECK(sse_jwt_key_make(p, "thread-secret", NULL, &hs) == NULL);
    CHECK(sse_jwt_key_make(p, ec256->path, "ES256", &es) == NULL);
    if (!hs || !es)
        return;
    for (i = 0; i < 4; i++) {
        a[i].hs = hs;
        a[i].es = es;
        a[i].hs_tok = jt_libjwt(p, JWT_ALG_HS256, "thread-secret", 13, claims);
        a[i].es_tok = jt_libjwt(p, JWT_ALG_ES256, ec256->priv, strlen(ec256->priv), claims);
        a[i].bad_tok = jt_libjwt(p, JWT_ALG_HS256, "thread-secreT", 13, claims);
        CHECK(pthread_create(&th[i], NULL, jt_thread, &a[i]) == 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].ok);
    }
}

static void test_jwt(apr_pool_t *p)
{
    jt_pair rsa, rsa_other, rsa1024, ec256, ec256_other, ec384, ec384_other;

    strcpy(jt_dir, "/tmp/sse-unit-jwt-XXXXXX");
    if (!mkdtemp(jt_dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    jt_pair_make(&rsa, EVP_RSA_gen(2048), "rsa");
    jt_pair_make(&rsa_other, EVP_RSA_gen(2048), "rsa-other");
    jt_pair_make(&rsa1024, EVP_RSA_gen(1024), "rsa1024");
    jt_pair_make(&ec256, EVP_EC_gen("P-256"), "ec256");
    jt_pair_make(&ec256_other, EVP_EC_gen("P-256"), "ec256-other");
    jt_pair_make(&ec384, EVP_EC_gen("P-384"), "ec384");
    jt_pair_make(&ec384_other, EVP_EC_gen("P-384"), "ec384-other");

    test_jwt_keys(p, &rsa, &ec256, &ec384, &rsa1024);
    test_jwt_algs(p, &rsa, &rsa_other, &ec256, &ec256_other, &ec384, &ec384_other);
    test_jwt_header(p, &rsa);
    test_jwt_form(p, &rsa);
    test_jwt_claims(p);
    test_jwt_reasons(p);
    test_jwt_threads(p, &ec256);
    /* Nothing is left in this thread's OpenSSL error queue. */
    CHECK(ERR_peek_error() == 0);

    jt_pair_free(&rsa);
    jt_pair_free(&rsa_other);
    jt_pair_free(&rsa1024);
    jt_pair_free(&ec256);
    jt_pair_free(&ec256_other);
    jt_pair_free(&ec384);
    jt_pair_free(&ec384_other);
    CHECK(rmdir(jt_dir) == 0);
}

/* RFC 6570's examples (section 3.2, levels 1 to 4, with its variables:
 * var "value", hello "Hello World!", half "50%", x "1024", y "768", who
 * "fred", path "/foo/bar", base "http://example.com/home/", dub "me/too",
 * dom ("example","com"), list ("red","green","blue"), keys [(semi,";"),
 * (dot,"."),(comma,",")], v "6", empty "", undef undefined): each
 * expansion is a topic its template matches. */
static void test_topic_rfc_examples(apr_pool_t *p)
{
    static const topic_case t[] = {
        /* Level 1 and simple (3.2.2) */
        { "{var}", "value", 1 }, { "{hello}", "Hello%20World%21", 1 }, { "{half}", "50%25", 1 },
        { "O{empty}X", "OX", 1 }, { "O{undef}X", "OX", 1 }, { "{x,y}", "1024,768", 1 },
        { "{x,hello,y}", "1024,Hello%20World%21,768", 1 }, { "?{x,empty}", "?1024,", 1 },
        { "?{x,undef}", "?1024", 1 }, { "?{undef,y}", "?768", 1 }, { "{var:3}", "val", 1 },
        { "{var:30}", "value", 1 }, { "{list}", "red,green,blue", 1 },
        { "{list*}", "red,green,blue", 1 }, { "{keys}", "semi,%3B,dot,.,comma,%2C", 1 },
        { "{keys*}", "semi=%3B,dot=.,comma=%2C", 1 },
        /* Reserved (3.2.3) */
        { "{+var}", "value", 1 }, { "{+hello}", "Hello%20World!", 1 }, { "{+half}", "50%25", 1 },
        { "{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex", 1 },
        { "{+base}index", "http://example.com/home/index", 1 }, { "O{+empty}X", "OX", 1 },
        { "{+path}/here", "/foo/bar/here", 1 }, { "here?ref={+path}", "here?ref=/foo/bar", 1 },
        { "up{+path}{var}/here", "up/foo/barvalue/here", 1 },
        { "{+x,hello,y}", "1024,Hello%20World!,768", 1 }, { "{+path,x}/here", "/foo/bar,1024/here", 1 },
        { "{+path:6}/here", "/foo/b/here", 1 }, { "{+list}", "red,green,blue", 1 },
        { "{+list*}", "red,green,blue", 1 }, { "{+keys}", "semi,;,dot,.,comma,,", 1 },
        { "{+keys*}", "semi=;,dot=.,comma=,", 1 },
        /* Fragment (3.2.4) */
        { "{#var}", "#value", 1 }, { "{#hello}", "#Hello%20World!", 1 }, { "{#half}", "#50%25", 1 },
        { "foo{#empty}", "foo#", 1 }, { "foo{#undef}", "foo", 1 },
        { "{#x,hello,y}", "#1024,Hello%20World!,768", 1 }, { "{#path,x}/here", "#/foo/bar,1024/here", 1 },
        { "{#path:6}/here", "#/foo/b/here", 1 }, { "{#list}", "#red,green,blue", 1 },
        { "{#list*}", "#red,green,blue", 1 }, { "{#keys}", "#semi,;,dot,.,comma,,", 1 },
        { "{#keys*}", "#semi=;,dot=.,comma=,", 1 },
        /* Label (3.2.5) */
        { "{.who}", ".fred", 1 }, { "{.who,who}", ".fred.fred", 1 }, { "{.half,who}", ".50%25.fred", 1 },
        { "www{.dom*}", "www.example.com", 1 }, { "X{.var}", "X.value", 1 }, { "X{.empty}", "X.", 1 },
        { "X{.undef}", "X", 1 }, { "X{.var:3}", "X.val", 1 }, { "X{.list}", "X.red,green,blue", 1 },
        { "X{.list*}", "X.red.green.blue", 1 }, { "X{.keys}", "X.semi,%3B,dot,.,comma,%2C", 1 },
        { "X{.keys*}", "X.semi=%3B.dot=..comma=%2C", 1 }, { "X{.empty_keys}", "X", 1 },
        { "X{.empty_keys*}", "X", 1 },
        /* Path segments (3.2.6) */
        { "{/who}", "/fred", 1 }, { "{/who,who}", "/fred/fred", 1 }, { "{/half,who}", "/50%25/fred", 1 },
        { "{/who,dub}", "/fred/me%2Ftoo", 1 }, { "{/var}", "/value", 1 }, { "{/var,empty}", "/value/", 1 },
        { "{/var,undef}", "/value", 1 }, { "{/var,x}/here", "/value/1024/here", 1 },
        { "{/var:1,var}", "/v/value", 1 }, { "{/list}", "/red,green,blue", 1 },
        { "{/list*}", "/red/green/blue", 1 }, { "{/list*,path:4}", "/red/green/blue/%2Ffoo", 1 },
        { "{/keys}", "/semi,%3B,dot,.,comma,%2C", 1 }, { "{/keys*}", "/semi=%3B/dot=./comma=%2C", 1 },
        /* Path parameters (3.2.7) */
        { "{;who}", ";who=fred", 1 }, { "{;half}", ";half=50%25", 1 }, { "{;empty}", ";empty", 1 },
        { "{;v,empty,who}", ";v=6;empty;who=fred", 1 }, { "{;v,bar,who}", ";v=6;who=fred", 1 },
        { "{;x,y}", ";x=1024;y=768", 1 }, { "{;x,y,empty}", ";x=1024;y=768;empty", 1 },
        { "{;x,y,undef}", ";x=1024;y=768", 1 }, { "{;hello:5}", ";hello=Hello", 1 },
        { "{;list}", ";list=red,green,blue", 1 }, { "{;list*}", ";list=red;list=green;list=blue", 1 },
        { "{;keys}", ";keys=semi,%3B,dot,.,comma,%2C", 1 }, { "{;keys*}", ";semi=%3B;dot=.;comma=%2C", 1 },
        /* Query (3.2.8) and continuation (3.2.9) */
        { "{?who}", "?who=fred", 1 }, { "{?half}", "?half=50%25", 1 }, { "{?x,y}", "?x=1024&y=768", 1 },
        { "{?x,y,empty}", "?x=1024&y=768&empty=", 1 }, { "{?x,y,undef}", "?x=1024&y=768", 1 },
        { "{?var:3}", "?var=val", 1 }, { "{?list}", "?list=red,green,blue", 1 },
        { "{?list*}", "?list=red&list=green&list=blue", 1 },
        { "{?keys}", "?keys=semi,%3B,dot,.,comma,%2C", 1 }, { "{?keys*}", "?semi=%3B&dot=.&comma=%2C", 1 },
        { "{&who}", "&who=fred", 1 }, { "{&half}", "&half=50%25", 1 }, { "?fixed=yes{&x}", "?fixed=yes&x=1024", 1 },
        { "{&x,y,empty}", "&x=1024&y=768&empty=", 1 }, { "{&var:3}", "&var=val", 1 },
        { "{&list}", "&list=red,green,blue", 1 }, { "{&list*}", "&list=red&list=green&list=blue", 1 },
        { "{&keys}", "&keys=semi,%3B,dot,.,comma,%2C", 1 }, { "{&keys*}", "&semi=%3B&dot=.&comma=%2C", 1 },
    };
    TOPIC_CASES(t);
}

/* Per operator: what a value may hold, the first character, the count of
 * values, explode, and the looser points of the reference hub (names not
 * checked, prefixes not bounding). */
static void test_topic_operators(apr_pool_t *p)
{
    static const topic_case t[] = {
        /* + : reserved characters pass, nothing outside U R %XX does. */
        { "https://example.com/{+path}", "https://example.com/a/b/c?x=1&y=2#f", 1 },
        { "https://example.com/{+path}", "https://example.com/a:b@c!$&'()*+,;=[]", 1 },
        { "https://example.com/{+path}", "https://example.com/", 1 },
        { "https://example.com/{+path}", "https://example.com/a b", 0 },
        { "https://example.com/{+path}", "https://example.com/a%zz", 0 },
        { "https://example.com/{+path}", "https://example.com/a%2", 0 },
        { "https://example.com/{+path}", "https://example.com/a{b", 0 },
        { "https://example.com/{+path}", "https://example.com/a}b", 0 },
        { "https://example.com/{+path}", "https://example.com/a|b", 0 },
        { "https://example.com/{+path}", "https://example.com/a\"b", 0 },
        { "https://example.com/{+path}", "https://example.com/<b>", 0 },
        { "https://example.com/{+path}", "https://example.com/a\\b", 0 },
        { "https://example.com/{+path}", "https://example.com/a^b", 0 },
        { "https://example.com/{+path}", "https://example.com/a`b", 0 },
        { "https://example.com/{+path}", "https://example.com/caf\xc3\xa9", 0 },
        { "https://example.com/{+path}", "https://example.com/a\tb", 0 },
        { "https://example.com/{+path}", "https://example.net/a", 0 },
        { "{+a}/{+b}", "x/y/z", 1 },
        /* # : the '#' first, then as + */
        { "/doc{#frag}", "/doc", 1 }, { "/doc{#frag}", "/doc#", 1 }, { "/doc{#frag}", "/doc#s1/a?b#c", 1 },
        { "/doc{#frag}", "/docs1", 0 }, { "/doc{#frag}", "/doc#a b", 0 }, { "/doc{#frag}", "/doc/", 0 },
        /* . : the '.' first; values of U and ',' */
        { "/file{.ext}", "/file.json", 1 }, { "/file{.ext}", "/file.tar.gz", 1 },
        { "/file{.ext}", "/file", 1 }, { "/file{.ext}", "/filejson", 0 }, { "/file{.ext}", "/file.a/b", 0 },
        { "/file{.ext}", "/file.a=b", 0 }, { "/file{.ext*}", "/file.a=b.c", 1 },
        /* / : one segment per variable, any number when exploded */
        { "/books{/id}", "/books/1", 1 }, { "/books{/id}", "/books", 1 }, { "/books{/id}", "/books/", 1 },
        { "/books{/id}", "/books/1/2", 0 }, { "/books{/id}", "/books1", 0 }, { "/books{/id}", "/books/a=b", 0 },
        { "/books{/a,b}", "/books/1/2", 1 }, { "/books{/a,b}", "/books/1/2/3", 0 },
        { "/books{/a,b,c}", "/books/1/2/3", 1 }, { "/books{/a,b,c}", "/books/1//", 1 },
        { "/books{/a,b,c}", "/books/1/2/3/4", 0 },
        { "/books{/id*}", "/books/1/2/3/4/5", 1 }, { "/books{/id*}", "/books/k=v/x", 1 },
        { "/books{/id*}", "/books/1/2 3", 0 }, { "/books{/id*}", "/books1", 0 },
        { "/books{/a,b*}", "/books/1/2/3", 1 }, { "/books{/a*,b}", "/books/1/2/3", 1 },
        { "/books{/a,b*}", "/books/k=v", 0 }, { "/books{/a,b*}", "/books/1/k=v", 1 },
        { "/books{/a*,b}", "/books/k=v", 1 },
        /* ; : names not checked, '=' allowed, count bounded */
        { "/m{;x,y}", "/m;x=1;y=2", 1 }, { "/m{;x,y}", "/m;a;b", 1 }, { "/m{;x,y}", "/m;a;b;c", 0 },
        { "/m{;x}", "/m;anything=goes", 1 }, { "/m{;x}", "/m", 1 }, { "/m{;x}", "/mx=1", 0 },
        { "/m{;x*}", "/m;a=1;b=2;c=3", 1 }, { "/m{;x}", "/m;a/b", 0 },
        /* ? : names not checked; one '&'-separated pair per variable */
        { "/s{?q}", "/s?q=1", 1 }, { "/s{?q}", "/s?zz", 1 }, { "/s{?q}", "/s?", 1 }, { "/s{?q}", "/s", 1 },
        { "/s{?q}", "/s?q=1&r=2", 0 }, { "/s{?q,r}", "/s?q=1&r=2", 1 }, { "/s{?q,r}", "/s?r=2&q=1", 1 },
        { "/s{?q,r}", "/s?q=1&r=2&t=3", 0 }, { "/s{?q*}", "/s?q=1&r=2&t=3", 1 },
        { "/s{?q}", "/sq=1", 0 }, { "/s{?q}", "/s?q=a b", 0 }, { "/s{?q}", "/s?q=a/b", 0 },
        { "/s{?q}", "/s?q=a%2Fb", 1 }, { "/s{?q}", "/s?q=1#x", 0 },
        /* & : as ? with '&' first */
        { "/s?a=1{&b}", "/s?a=1&b=2", 1 }, { "/s?a=1{&b}", "/s?a=1", 1 }, { "/s?a=1{&b}", "/s?a=1&b=2&c=3", 0 },
        { "/s?a=1{&b,c}", "/s?a=1&b=2&c=3", 1 }, { "/s?a=1{&b*}", "/s?a=1&b=2&c=3&d", 1 },
        { "/s?a=1{&b}", "/s?a=1?b=2", 0 },
        /* Simple with explode: '=' allowed; without, not. */
        { "{x*}", "a=b,c=d", 1 }, { "{x}", "a=b", 0 }, { "{x,y*}", "a,b=c", 1 }, { "{x,y*}", "a=b", 0 },
        { "{x*,y}", "a=b", 1 },
        /* Prefixes do not bound the length (as the reference hub). */
        { "{var:3}", "value", 1 }, { "{var:3}", "v", 1 }, { "/u/{id:2}", "/u/12345", 1 },
        { "/u/{id:2}", "/u/1/2", 0 }, { "{/var:1,x}", "/value/1024", 1 },
        { "{/var:1,x}", "/value/1024/3", 0 },
        /* The examples of sse_topic.h and of sse_topic.c's table. */
        { "/search{?q,page}", "/search", 1 }, { "/search{?q,page}", "/search?q=x&page=2", 1 },
        { "https://example.com/books{/id*}", "https://example.com/books", 1 },
        { "https://example.com/books{/id*}", "https://example.com/books/1/2/3", 1 },
        { "x{#f}", "x", 1 }, { "x{#f}", "x#a/b", 1 }, { "x{#f}", "xa", 0 }, { "x{#f}", "x#a b", 0 },
        { "f{.e}", "f.json", 1 }, { "f{.e}", "f.tar.gz", 1 }, { "f{.e}", "f.a/b", 0 },
        { "p{/a,b}", "p/x/y", 1 }, { "p{/a,b}", "p/x/y/z", 0 }, { "p{/a,b}", "p/x?", 0 },
        { "m{;x,y}", "m;x=1;y=2", 1 }, { "m{;x,y}", "m;a;b;c", 0 },
        { "s?a=1{&b}", "s?a=1&b=2", 1 }, { "s?a=1{&b}", "s?a=1&b&c", 0 },
        { "p{/s*}", "p/a/b/c/d", 1 }, { "p{/s*}", "p/k=v", 1 },
        /* The protocol's example of a claim granting one user's topics. */
        { "https://example.com/users/foo/{?topic}",
          "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1", 1 },
        { "https://example.com/users/foo/{?topic}",
          "https://example.com/users/foo/?topic=https://example.com/books/1", 0 },
        { "https://example.com/users/foo/{?topic}",
          "https://example.com/users/bar/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1", 0 },
        /* The stricter corner: an exploded array expanding first. */
        { "{x,keys*}", "semi=%3B,dot=.", 0 }, { "{x,keys*}", "1,semi=%3B,dot=.", 1 },
        { "{/x,keys*}", "/semi=%3B", 0 }, { "{/x,keys*}", "/1/semi=%3B", 1 },
        /* Several expressions and literals between them. */
        { "https://example.com/users/{uid}/books/{bid}{?format}",
          "https://example.com/users/u1/books/b2?format=json", 1 },
        { "https://example.com/users/{uid}/books/{bid}{?format}",
          "https://example.com/users/u1/books/b2", 1 },
        { "https://example.com/users/{uid}/books/{bid}{?format}",
          "https://example.com/users/u1/books/b2/x", 0 },
        { "https://example.com/users/{uid}/books/{bid}{?format}",
          "https://example.com/users/u1/x/books/b2", 0 },
        { "{/a}{/b}{/c}", "/1/2/3", 1 }, { "{/a}{/b}{/c}", "/1/2", 1 }, { "{/a}{/b}{/c}", "/1/2/3/4", 0 },
        { "{.a}{/b}", "./b", 1 }, { "{.a}{/b}", "/b/.", 0 }, { "{.a}{/b}", "/b.", 1 }, { "{x}/{x}", "a/b", 1 },
        /* Names with dots, pct-encoded names: accepted, not otherwise used. */
        { "/a/{x.y}", "/a/1", 1 }, { "/a/{x%41y}", "/a/1", 1 }, { "/a/{_1.b.c}", "/a/1", 1 },
        /* Literals: bytes, including pct-encoded ones and non-ASCII. */
        { "/caf\xc3\xa9/{x}", "/caf\xc3\xa9/1", 1 }, { "/caf\xc3\xa9/{x}", "/cafe/1", 0 },
        { "/%41/{x}", "/%41/1", 1 }, { "/%41/{x}", "/A/1", 0 }, { "/%41/{x}", "/%61/1", 0 },
        { "'{x}'", "'a'", 1 }, { "\xf0\x9f\x98\x80{x}", "\xf0\x9f\x98\x80" "1", 1 },
        /* The hex digits of %XX in a value: either case, exactly two. */
        { "{x}", "%aF%Af", 1 }, { "{x}", "%a", 0 }, { "{x}", "%ag", 0 }, { "{x}", "%%41", 0 },
    };
    TOPIC_CASES(t);
}

/* Malformed templates: refused, with a reason. */
static void test_topic_malformed(apr_pool_t *p)
{
    static const struct {
        const char *sel;
        size_t len;
        const char *why;    /* a part of the reason */
    } bad[] = {
#define B(s, w) { s, sizeof(s) - 1, w }
        B("{", "unclosed"), B("a{", "unclosed"), B("{x", "unclosed"), B("{x,", "unclosed"),
        B("{x:", "unclosed"), B("{x:3", "unclosed"), B("{x*", "unclosed"), B("{+", "unclosed"),
        B("{}", "empty variable name"), B("{+}", "empty variable name"),
        B("{x,}", "empty variable name"), B("a{}b", "empty variable name"),
        B("{=x}", "reserved operator"), B("{,x}", "reserved operator"), B("{!x}", "reserved operator"),
        B("{@x}", "reserved operator"), B("{|x}", "reserved operator"),
        B("{x:0}", "prefix"), B("{x:01}", "prefix"), B("{x:10000}", "prefix"),
        B("{x:123456}", "prefix"), B("{x:}", "prefix"), B("{x:a}", "prefix"),
        B("{x:3*}", "both a prefix"), B("{x*:3}", "expected ','"), B("{x**}", "expected ','"),
        B("{x y}", "invalid character"), B("{x-y}", "invalid character"), B("{x~}", "invalid character"),
        B("{x{y}}", "invalid character"), B("{$x}", "invalid character"),
        B("{x.}", "'.'"), B("{.x.}", "'.'"), B("{x..y}", "'.'"), B("{..x}", "'.'"),
        B("{%zz}", "'%'"), B("{%4}", "'%'"), B("{x%4}", "'%'"),
        B("a b{x}", "percent-encode"), B("{x} ", "percent-encode"), B("a\"{x}", "percent-encode"),
        B("{x}<", "percent-encode"), B("{x}>", "percent-encode"), B("{x}\\", "percent-encode"),
        B("{x}^", "percent-encode"), B("{x}`", "percent-encode"), B("{x}|", "percent-encode"),
        B("\x01{x}", "percent-encode"), B("\x7f{x}", "percent-encode"), B("a\0{x}", "percent-encode"),
        B("a}{x}", "'}' without '{'"), B("{x}}", "'}' without '{'"), B("{{x}}", "invalid character"),
        B("%zz{x}", "'%'"), B("%4{x}", "'%'"), B("{x}%", "'%'"), B("{x}%4", "'%'"),
        B("caf\xc3{x}", "UTF-8"), B("\xff{x}", "UTF-8"), B("\xc0\xaf{x}", "UTF-8"),
        B("\xe0\x80\xaf{x}", "UTF-8"), B("\xed\xa0\x80{x}", "UTF-8"), B("\xef\xb7\x90{x}", "UTF-8"),
        B("\xc2\x80{x}", "UTF-8"), B("\xf4\x90\x80\x80{x}", "UTF-8"), B("\xef\xbf\xbe{x}", "UTF-8"),
        B("\xf3\xa0\x80\x81{x}", "UTF-8"), B("{x}\xc3", "UTF-8"),
#undef B
    };
    static const char *good[] = {
        "{x}", "{x,y}", "{+x}", "{#x}", "{.x}", "{/x}", "{;x}", "{?x}", "{&x}", "{x:1}", "{x:9999}",
        "{x*}", "{x.y}", "{x%41}", "{_}", "{x:10,y*,z}", "'{x}'", "a!$&()*+,;=:@[]/?#~-._{x}",
        "\xc2\xa0{x}", "\xe2\x82\xac{x}", "\xef\xbf\xaf{x}", "\xf0\x9f\x98\x80{x}", "\xf3\xa1\x80\x80{x}",
        "\xf4\x8f\xbf\xbd{x}",
    };
    sse_topic_selector *s;
    const char *why;
    size_t i;
    char *big;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        s = sse_topic_compile(p, bad[i].sel, bad[i].len, &why);
        if (s || !why || !strstr(why, bad[i].why))
            printf("  malformed '%.*s': %s, why '%s', want '%s'\n", (int)bad[i].len, bad[i].sel,
                   s ? "accepted" : "refused", why ? why : "(null)", bad[i].why);
        CHECK(s == NULL && why != NULL && strstr(why, bad[i].why) != NULL);
    }
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        why = "unset";
        s = sse_topic_compile(p, good[i], strlen(good[i]), &why);
        if (!s)
            printf("  refused '%s': %s\n", good[i], why);
        CHECK(s != NULL && why == NULL);
    }
    /* The place of the mistake is given (bytes counted from 1). */
    sse_topic_compile(p, "/a/{x:0}", 8, &why);
    CHECK(why && strstr(why, "(at byte 7)") != NULL);
    sse_topic_compile(p, "/a/{x", 5, &why);
    CHECK(why && strstr(why, "(at byte 4)") != NULL);
    /* Length: a template of SSE_TOPIC_TEMPLATE_MAX bytes compiles, one
     * more byte does not; an exact selector has no such limit. */
    big = apr_palloc(p, SSE_TOPIC_TEMPLATE_MAX + 2);
    memset(big, 'a', SSE_TOPIC_TEMPLATE_MAX + 1);
    memcpy(big, "{x}", 3);
    s = sse_topic_compile(p, big, SSE_TOPIC_TEMPLATE_MAX, &why);
    CHECK(s != NULL && sse_topic_match(s, big + 3, SSE_TOPIC_TEMPLATE_MAX - 3) == 1);
    s = sse_topic_compile(p, big, SSE_TOPIC_TEMPLATE_MAX + 1, &why);
    CHECK(s == NULL && why && strstr(why, "longer than 4096 bytes") != NULL);
    s = sse_topic_compile(p, big + 3, SSE_TOPIC_TEMPLATE_MAX - 2, &why);
    CHECK(s != NULL && sse_topic_match(s, big + 3, SSE_TOPIC_TEMPLATE_MAX - 2) == 1);
}

/* Long and hostile inputs: the answers are right, and they come (the
 * matcher is linear in the topic for a given selector; no timing is
 * asserted, but a backtracking matcher would not finish these). */
static void test_topic_hostile(apr_pool_t *p)
{
    enum { TOPIC = 4096 };
    char *tmpl = apr_palloc(p, SSE_TOPIC_TEMPLATE_MAX + 1), *topic = apr_palloc(p, 2 * TOPIC + 2);
    sse_topic_selector *s;
    const char *why;
    size_t n, i, nvars;

    /* Many simple expressions in a row, then a literal: a 4 KiB topic of
     * value bytes, ending with and without the literal. */
    for (n = 0; n + 4 <= 2000; n += 3)
        memcpy(tmpl + n, "{x}", 3);
    memcpy(tmpl + n, "{/z}", 4);
    n += 4;
    s = sse_topic_compile(p, tmpl, n, &why);
    CHECK(s != NULL);
    /* Its cost is its program's size, hundreds of positions; ordinary
     * selectors cost 1 (sse_topic_cost: the hub's budget, per subscription). */
    CHECK(s && sse_topic_cost(s) > 600);
    CHECK(sse_topic_cost(sse_topic_compile(p, "*", 1, &why)) == 1);
    CHECK(sse_topic_cost(sse_topic_compile(p, "https://e.com/b", 15, &why)) == 1);
    CHECK(sse_topic_cost(sse_topic_compile(p, "https://e.com/b/{id}{?p}", 24, &why)) == 1);
    CHECK(sse_topic_cost(sse_topic_exact(p, "{x}", 3)) == 1);
    memset(topic, 'a', TOPIC);
    CHECK(s && sse_topic_match(s, topic, TOPIC) == 1);
    topic[TOPIC - 2] = '/';
    CHECK(s && sse_topic_match(s, topic, TOPIC) == 1);
    topic[TOPIC - 1] = '/';
    CHECK(s && sse_topic_match(s, topic, TOPIC) == 0);
    topic[TOPIC - 1] = '!';
    CHECK(s && sse_topic_match(s, topic, TOPIC) == 0);

    /* One path expression of as many variables as fit in the longest
     * template: that many segments match, one more does not. */
    memcpy(tmpl, "{/a", 3);
    for (n = 3, nvars = 1; n + 3 <= SSE_TOPIC_TEMPLATE_MAX; n += 2, nvars++)
        memcpy(tmpl + n, ",b", 2);
    tmpl[n++] = '}';
    s = sse_topic_compile(p, tmpl, n, &why);
    CHECK(s != NULL);
    for (i = 0; i < nvars; i++)
        memcpy(topic + 2 * i, "/s", 2);
    CHECK(s && sse_topic_match(s, topic, 2 * nvars) == 1);
    CHECK(s && sse_topic_match(s, topic, 2 * nvars - 1) == 1);
    memcpy(topic + 2 * nvars, "/s", 2);
    CHECK(s && sse_topic_match(s, topic, 2 * nvars + 2) == 0);

    /* Exploded expressions one after another (each can take any part of
     * the topic): a long topic matches; a bad byte near its end does not. */
    for (n = 0; n + 5 <= SSE_TOPIC_TEMPLATE_MAX; n += 5)
        memcpy(tmpl + n, "{/a*}", 5);
    s = sse_topic_compile(p, tmpl, n, &why);
    CHECK(s != NULL);
    for (i = 0; i < TOPIC; i += 2)
        memcpy(topic + i, "/a", 2);
    CHECK(s && sse_topic_match(s, topic, TOPIC) == 1);
    topic[TOPIC - 3] = ' ';
    CHECK(s && sse_topic_match(s, topic, TOPIC) == 0);

    /* Values of %XX: a topic of triplets with a lone '%' at the end. */
    s = sse_topic_compile(p, "{+a}{b}{#c}{+d}", 15, &why);
    CHECK(s != NULL);
    for (i = 0; i + 3 <= TOPIC; i += 3)
        memcpy(topic + i, "%2F", 3);
    CHECK(s && sse_topic_match(s, topic, i) == 1);
    topic[i] = '%';
    CHECK(s && sse_topic_match(s, topic, i + 1) == 0);

    /* A topic of 8 KiB against the largest literal template: the literal
     * prefix and suffix refuse it at once or accept it whole. */
    memset(tmpl, 'p', SSE_TOPIC_TEMPLATE_MAX);
    memcpy(tmpl + 2000, "{+x}", 4);
    s = sse_topic_compile(p, tmpl, SSE_TOPIC_TEMPLATE_MAX, &why);
    CHECK(s != NULL);
    memset(topic, 'p', 2 * TOPIC);
    CHECK(s && sse_topic_match(s, topic, 2 * TOPIC) == 1);
    topic[2 * TOPIC - 1] = 'q';
    CHECK(s && sse_topic_match(s, topic, 2 * TOPIC) == 0);
    CHECK(s && sse_topic_match(s, topic, SSE_TOPIC_TEMPLATE_MAX - 5) == 0);
    CHECK(s && sse_topic_match(s, topic, SSE_TOPIC_TEMPLATE_MAX - 4) == 1);
}

int main(void)
{
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    test_wire();
    test_expiry();
    test_ring_basic();
    test_hub_meta();
    test_ring_wrap_and_evict();
    test_ring_crash_safety();
    test_ring_channels();
    test_ring_publish_at();
    test_redis_url();
    test_ring_wake();
    test_body(p);
    test_parse(p);
    test_hardening();
    test_num();
    test_metrics_block();
    test_metrics_forms();
    test_ring_metrics();
    test_topic_exact(p);
    test_topic_simple(p);
    test_jwt(p);
    test_topic_rfc_examples(p);
    test_topic_operators(p);
    test_topic_malformed(p);
    test_topic_hostile(p);
    apr_pool_destroy(p);
    apr_terminate();
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
