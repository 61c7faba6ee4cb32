/* loadgen.c -- SSE pub/sub load generator for the mod_sse / Nchan benchmark.
 *
 * One process, one thread, epoll, nonblocking sockets. It opens N subscriber
 * streams (HTTP/1.1 GET, or HTTP/1.0 with --http10), decodes chunked
 * transfer-encoding, Content-Length and close-delimited bodies, parses SSE
 * (LF, CR and CRLF line endings, comments, multi-line data), and publishes
 * at a fixed rate (or as fast as possible) from separate keep-alive
 * connections. Each event's data is
 *
 *     "<seq> <send_ns> <channel> <publisher> <phase> xxxx..."   padded to --size bytes
 *
 * with seq counting from 1 per (channel, publisher connection), send_ns
 * from CLOCK_MONOTONIC taken right before the POST is written, and phase
 * 'w' (warm-up) or 'm' (measured). Order is only defined among the events
 * of one publisher connection (concurrent POSTs on different connections
 * may be sequenced either way by the server), so every subscriber keeps one
 * bitmap of the seqs it got per publisher connection: duplicates and
 * out-of-order deliveries are counted exactly.
 *
 * Phases: publisher connections open -> memory "before" -> subscribers
 * connect (paced) -> --idle seconds -> memory "after" -> warm-up publishing
 * -> measured publishing (--duration s; server CPU read before and after)
 * -> drain (until every expected delivery arrived or --drain s passed) ->
 * memory "end" -> one JSON line on stdout. Progress goes to stderr.
 *
 * Server CPU: utime+stime of the process trees under --server-pid (which may
 * be given several times: both servers and their Redis count as the
 * server), from /proc/PID/stat, summed and per tree. Memory: Rss and Pss of
 * the same trees from /proc/PID/smaps_rollup.
 *
 * Two servers (--port2): servers that share their channels (through Redis).
 * Subscriber i and publisher connection i talk to server i % 2, so the
 * subscribers split evenly; at a fixed rate the publishes alternate strictly
 * between the servers (the next one waits for an idle connection to the
 * other server rather than go to the same one twice), with --max-rate each
 * connection publishes to its own server as fast as that one answers. Every
 * event is expected by every subscriber of its channel on both servers.
 *
 * Several processes (--procs N, issue 11's 30,000 subscribers: each process
 * stays under RLIMIT_NOFILE): the first process (the one started) forks N-1
 * helpers before it opens anything. Subscriber i belongs to process i % N,
 * so the channels split evenly; only the first one publishes and measures
 * the server. A helper opens its subscribers, says so on its pipe, reads
 * until the first process sends it, once every measured publish has been
 * answered, how many were published on each channel; it then drains with
 * the same rules (all its expected deliveries, --drain-idle, --drain),
 * sends its counters and its whole latency histogram, and holds its streams
 * like the first one. The first process adds them up: loss, duplicates,
 * out-of-order and the percentiles are those of all subscribers (merged
 * histograms, not merged percentiles). A helper's expected count is its
 * connected subscribers per channel at the end of its drain times the
 * measured publishes of that channel.
 *
 * Build: cc -O2 -Wall -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------ */
/* options                                                            */

static struct {
    const char *host;
    int port, port2;        /* port2: a second server sharing the channels (0: none) */
    int nsrv;               /* servers: 1, or 2 with --port2 */
    const char *sub_path;   /* with %s for the channel name */
    const char *pub_path;   /* with %s for the channel name */
    const char *chan_prefix;
    int subs, channels, pub_conns;
    double rate;            /* events/s; 0 with --max-rate: as fast as possible */
    int max_rate;
    int size;
    double warmup, duration, idle, drain, drain_idle, connect_timeout, hold;
    int server_pid[8];      /* --server-pid, repeatable: trees measured together */
    int nserver_pid;
    int nsrc;               /* source addresses 127.0.0.2 .. */
    int inflight;           /* subscribers connecting at once */
    int http10;
    const char *scenario, *server;
    int quiet;
    /* --mercure-token: publish as a Mercure publisher (issue 13): a form
     * with topic (mercure_topic and the channel name) and data, and this
     * token as Bearer; the event's text is the same, so is the reading. */
    const char *mercure_token, *mercure_topic;
    int procs;              /* --procs: processes sharing the subscribers (1) */
} opt = {
    .host = "127.0.0.1", .port = 8080, .nsrv = 1,
    .sub_path = "/events?channel=%s", .pub_path = "/publish/%s",
    .chan_prefix = "c", .subs = 100, .channels = 1, .pub_conns = 1,
    .rate = 100, .size = 64, .warmup = 2, .duration = 10, .idle = 1,
    .drain = 30, .drain_idle = 3, .connect_timeout = 60, .nsrc = 8, .inflight = 200,
    .scenario = "", .server = "", .mercure_topic = "https://bench.example/", .procs = 1,
};

/* --procs: this process's index (0: the first one, which publishes) */
static int me;

/* ------------------------------------------------------------------ */
/* time, logging                                                      */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t t_start;

static void logf_(const char *fmt, ...)
{
    va_list ap;
    if (opt.quiet)
        return;
    if (opt.procs > 1)
        fprintf(stderr, "[loadgen.%d %6.2fs] ", me, (now_ns() - t_start) / 1e9);
    else
        fprintf(stderr, "[loadgen %6.2fs] ", (now_ns() - t_start) / 1e9);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "loadgen: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* ------------------------------------------------------------------ */
/* latency histogram (microseconds): 1 us steps below 10 ms, 10 us     */
/* below 1 s, 1 ms below 600 s                                        */

#define H0 10000
#define H1 99000
#define H2 599000
static uint64_t hist[H0 + H1 + H2];
static uint64_t hist_n, hist_max_us;

static void hist_add(uint64_t us)
{
    size_t b;
    if (us < 10000)
        b = us;
    else if (us < 1000000)
        b = H0 + (us - 10000) / 10;
    else if (us < 600000000)
        b = H0 + H1 + (us - 1000000) / 1000;
    else
        b = H0 + H1 + H2 - 1;
    hist[b]++;
    hist_n++;
    if (us > hist_max_us)
        hist_max_us = us;
}

static uint64_t bucket_us(size_t b)
{
    if (b < H0)
        return b;
    if (b < H0 + H1)
        return 10000 + (b - H0) * 10;
    return 1000000 + (b - H0 - H1) * 1000;
}

static double hist_pct(double p)
{
    uint64_t want, acc = 0;
    size_t b;
    if (!hist_n)
        return -1;
    want = (uint64_t)(p * hist_n + 0.999999);
    if (want < 1)
        want = 1;
    for (b = 0; b < H0 + H1 + H2; b++) {
        acc += hist[b];
        if (acc >= want)
            return (double)bucket_us(b);
    }
    return (double)hist_max_us;
}

/* ------------------------------------------------------------------ */
/* connections                                                        */

enum { K_SUB = 1, K_PUB = 2 };
enum { S_CONNECTING, S_HEADERS, S_BODY, S_CLOSED };
enum { F_CHUNKED, F_LENGTH, F_CLOSE };
enum { C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_DONE };

struct seen {
    uint64_t *bits;
    uint32_t words;
    uint64_t maxseq;
};

typedef struct conn {
    int fd;
    uint8_t kind, state, framing, cstate;
    uint8_t keepalive, prev_cr, has_data, busy;
    uint8_t srv;                    /* which server: idx % opt.nsrv */
    int idx, chan, tries;
    int status;
    /* response headers */
    char *hbuf;
    int hlen, hcap;
    /* body framing */
    uint64_t chunk_left;
    int64_t clen_left;
    int tr_linelen;
    /* SSE parsing */
    char *lbuf;
    int llen, lcap;
    char *dbuf;
    int dlen, dcap;
    /* subscriber: seqs seen, per publisher connection */
    struct seen *seen;
    /* publisher: pending request */
    char *out;
    int outlen, outoff, outcap;
    uint64_t cur_seq, send_ns;
    int cur_chan;
    char phase;
} conn;

static int ep;
static conn *subs, *pubs;
static char **chan_names;
static int *subs_on_chan;
static uint64_t *chan_seq;       /* [channel * pub_conns + publisher] */
static uint64_t *pub_m_chan;     /* measured publishes answered 2xx, per channel */

/* counters */
static struct {
    int sub_connected, sub_connecting, sub_failed, sub_closed, sub_bad_status;
    int sub_connected_srv[2];     /* streams open per server */
    uint64_t published_srv[2];    /* 2xx publishes per server, warm-up and measured */
    int sub_next;                 /* next subscriber index to start */
    uint64_t published_w, published_m, pub_errors, pub_reconnects, pub_missed_slots;
    uint64_t expected_m;
    uint64_t delivered_w, delivered_m, delivered_other;
    uint64_t dup, ooo, bad_data;
    uint64_t events_total;
    uint64_t bytes_in;
    uint64_t last_deliv_ns;
    int first_bad_status;
} st;

static char phase_now = 0;        /* 0: none, 'w', 'm' */
static int publishing_done;       /* after the drain: publishers are not reopened */

static struct sockaddr_in srv_addr[2];

static int srv_port(const conn *c)
{
    return c->srv ? opt.port2 : opt.port;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        die("out of memory");
    return p;
}

static void ep_set(conn *c, uint32_t events, int op)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(ep, op, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void conn_reset_parse(conn *c)
{
    c->hlen = 0;
    c->status = 0;
    c->framing = F_CLOSE;
    c->cstate = C_SIZE;
    c->chunk_left = 0;
    c->clen_left = -1;
    c->tr_linelen = 0;
    c->llen = 0;
    c->dlen = 0;
    c->prev_cr = 0;
    c->has_data = 0;
    c->keepalive = 1;
}

static int open_socket(int src_index, int srv)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src_index >= 0 && opt.nsrc > 0) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(src_index % opt.nsrc));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&srv_addr[srv], sizeof(srv_addr[srv])) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void conn_close(conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = S_CLOSED;
}

/* ---- subscribers ---- */

static void sub_start(conn *c)
{
    c->fd = open_socket(c->idx, c->srv);
    c->tries++;
    if (c->fd < 0) {
        st.sub_failed++;
        c->state = S_CLOSED;
        return;
    }
    conn_reset_parse(c);
    c->state = S_CONNECTING;
    st.sub_connecting++;
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void sub_send_request(conn *c)
{
    char path[1024], req[1400];
    int n, w;
    snprintf(path, sizeof(path), opt.sub_path, chan_names[c->chan]);
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/%s\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                 "Cache-Control: no-cache\r\nUser-Agent: mod_sse-bench-loadgen\r\n\r\n",
                 path, opt.http10 ? "1.0" : "1.1", opt.host, srv_port(c));
    w = write(c->fd, req, n);
    if (w != n) {
        /* a fresh socket takes a few hundred bytes at once */
        st.sub_failed++;
        st.sub_connecting--;
        conn_close(c);
        return;
    }
    c->state = S_HEADERS;
    ep_set(c, EPOLLIN | EPOLLRDHUP | EPOLLET, EPOLL_CTL_MOD);
}

static void seen_mark(conn *c, int pub, uint64_t seq, int measured, uint64_t lat_us)
{
    uint64_t w = seq >> 6, bit = 1ull << (seq & 63);
    struct seen *sn;
    if (!c->seen)
        c->seen = calloc(opt.pub_conns, sizeof(struct seen));
    sn = &c->seen[pub];
    if (w >= sn->words) {
        uint32_t nw = sn->words ? sn->words : 4;
        while (nw <= w)
            nw *= 2;
        sn->bits = xrealloc(sn->bits, nw * sizeof(uint64_t));
        memset(sn->bits + sn->words, 0, (nw - sn->words) * sizeof(uint64_t));
        sn->words = nw;
    }
    if (sn->bits[w] & bit) {
        st.dup++;
        return;
    }
    sn->bits[w] |= bit;
    if (seq < sn->maxseq)
        st.ooo++;
    else
        sn->maxseq = seq;
    if (measured) {
        st.delivered_m++;
        hist_add(lat_us);
    }
    else
        st.delivered_w++;
}

static void sse_dispatch(conn *c, uint64_t rnow)
{
    char *p, *e;
    uint64_t seq, ts;
    unsigned long ch, pub;
    char phase;

    st.events_total++;
    if (c->dlen >= c->dcap)
        c->dbuf = xrealloc(c->dbuf, (c->dcap = c->dlen + 1));
    c->dbuf[c->dlen] = 0;
    p = c->dbuf;
    seq = strtoull(p, &e, 10);
    if (e == p || *e != ' ')
        goto bad;
    p = e + 1;
    ts = strtoull(p, &e, 10);
    if (e == p || *e != ' ')
        goto bad;
    p = e + 1;
    ch = strtoul(p, &e, 10);
    if (e == p || *e != ' ' || (int)ch != c->chan)
        goto bad;
    p = e + 1;
    pub = strtoul(p, &e, 10);
    if (e == p || *e != ' ' || pub >= (unsigned long)opt.pub_conns)
        goto bad;
    phase = e[1];
    if (phase != 'w' && phase != 'm')
        goto bad;
    st.last_deliv_ns = rnow;
    seen_mark(c, (int)pub, seq, phase == 'm', rnow > ts ? (rnow - ts) / 1000 : 0);
    return;
bad:
    st.bad_data++;
    if (st.bad_data <= 3)       /* e.g. a server's own event (sse-gap): show it */
        logf_("subscriber %d: event data not from this load generator: %.200s", c->idx, c->dbuf);
}

static void sse_line(conn *c, const char *l, int n, uint64_t rnow)
{
    const char *v;
    int vn;
    if (n == 0) {
        if (c->has_data)
            sse_dispatch(c, rnow);
        c->dlen = 0;
        c->has_data = 0;
        return;
    }
    if (l[0] == ':')
        return;                             /* comment */
    if (n >= 4 && memcmp(l, "data", 4) == 0 && (n == 4 || l[4] == ':')) {
        v = l + 5;
        vn = n - 5;
        if (n == 4)
            vn = 0;
        else if (vn > 0 && *v == ' ')
            v++, vn--;
        if (c->dlen + vn + 2 > c->dcap) {
            c->dcap = (c->dlen + vn + 2) * 2;
            c->dbuf = xrealloc(c->dbuf, c->dcap);
        }
        if (c->has_data)
            c->dbuf[c->dlen++] = '\n';
        memcpy(c->dbuf + c->dlen, v, vn);
        c->dlen += vn;
        c->has_data = 1;
    }
    /* id:, event:, retry: and unknown fields are not needed here */
}

/* Decoded body bytes of a subscriber stream. */
static void sse_feed(conn *c, const char *p, size_t n, uint64_t rnow)
{
    while (n) {
        size_t i = 0;
        if (c->prev_cr) {
            c->prev_cr = 0;
            if (*p == '\n') {
                p++, n--;
                continue;
            }
        }
        while (i < n && p[i] != '\n' && p[i] != '\r')
            i++;
        if (i == n) {                       /* partial line: keep it */
            if (c->llen + (int)n > c->lcap) {
                c->lcap = (c->llen + n) * 2;
                c->lbuf = xrealloc(c->lbuf, c->lcap);
            }
            memcpy(c->lbuf + c->llen, p, n);
            c->llen += n;
            return;
        }
        if (c->llen) {
            if (c->llen + (int)i > c->lcap) {
                c->lcap = (c->llen + i) * 2;
                c->lbuf = xrealloc(c->lbuf, c->lcap);
            }
            memcpy(c->lbuf + c->llen, p, i);
            sse_line(c, c->lbuf, c->llen + i, rnow);
            c->llen = 0;
        }
        else
            sse_line(c, p, i, rnow);
        c->prev_cr = p[i] == '\r';
        p += i + 1;
        n -= i + 1;
    }
}

/* ---- body framing shared by subscribers and publishers ---- */

typedef void (*feed_fn)(conn *, const char *, size_t, uint64_t);

static void discard_feed(conn *c, const char *p, size_t n, uint64_t rnow) {}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Returns bytes consumed; sets *done when the body ended, -1 on a framing
 * error. */
static long body_feed(conn *c, const char *p, size_t n, feed_fn feed, uint64_t rnow, int *done)
{
    size_t i = 0;
    *done = 0;
    if (c->framing == F_CLOSE) {
        feed(c, p, n, rnow);
        return n;
    }
    if (c->framing == F_LENGTH) {
        size_t k = (int64_t)n < c->clen_left ? n : (size_t)c->clen_left;
        feed(c, p, k, rnow);
        c->clen_left -= k;
        if (c->clen_left == 0)
            *done = 1;
        return k;
    }
    while (i < n) {
        int ch = (unsigned char)p[i];
        switch (c->cstate) {
        case C_SIZE: {
            int h = hexval(ch);
            if (h >= 0) {
                if (c->chunk_left >> 56)
                    return -1;
                c->chunk_left = c->chunk_left * 16 + h;
            }
            else if (ch == ';' || ch == ' ' || ch == '\t')
                c->cstate = C_EXT;
            else if (ch == '\r')
                c->cstate = C_SIZE_LF;
            else if (ch == '\n')
                goto size_done;
            else
                return -1;
            i++;
            break;
        }
        case C_EXT:
            if (ch == '\r')
                c->cstate = C_SIZE_LF;
            else if (ch == '\n')
                goto size_done;
            i++;
            break;
        case C_SIZE_LF:
            if (ch != '\n')
                return -1;
        size_done:
            i++;
            if (c->chunk_left == 0) {
                c->cstate = C_TRAILER;
                c->tr_linelen = 0;
            }
            else
                c->cstate = C_DATA;
            break;
        case C_DATA: {
            size_t k = n - i;
            if (k > c->chunk_left)
                k = c->chunk_left;
            feed(c, p + i, k, rnow);
            c->chunk_left -= k;
            i += k;
            if (c->chunk_left == 0)
                c->cstate = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (ch == '\r')
                c->cstate = C_DATA_LF;
            else if (ch == '\n')
                c->cstate = C_SIZE;
            else
                return -1;
            i++;
            break;
        case C_DATA_LF:
            if (ch != '\n')
                return -1;
            c->cstate = C_SIZE;
            c->chunk_left = 0;
            i++;
            break;
        case C_TRAILER:
            i++;
            if (ch == '\n') {
                if (c->tr_linelen == 0) {
                    c->cstate = C_DONE;
                    *done = 1;
                    return i;
                }
                c->tr_linelen = 0;
            }
            else if (ch != '\r')
                c->tr_linelen++;
            break;
        case C_DONE:
            *done = 1;
            return i;
        }
    }
    return i;
}

/* Appends to the header buffer; returns the offset just past the header
 * block in (p, n), or -1 when more is needed. Parses status and framing. */
static long headers_feed(conn *c, const char *p, size_t n)
{
    int start, i, end = -1;
    char *line, *next;
    int v10;

    if (c->hlen + (int)n + 1 > c->hcap) {
        c->hcap = c->hlen + n + 1 + 256;
        c->hbuf = xrealloc(c->hbuf, c->hcap);
    }
    start = c->hlen > 3 ? c->hlen - 3 : 0;
    memcpy(c->hbuf + c->hlen, p, n);
    c->hlen += n;
    for (i = start; i + 3 < c->hlen; i++)
        if (c->hbuf[i] == '\r' && c->hbuf[i + 1] == '\n' && c->hbuf[i + 2] == '\r' &&
            c->hbuf[i + 3] == '\n') {
            end = i + 4;
            break;
        }
    if (end < 0) {
        if (c->hlen > 65536)
            return -2;
        return -1;
    }
    c->hbuf[end - 2] = 0;
    /* status line */
    if (strncmp(c->hbuf, "HTTP/1.", 7) != 0)
        return -2;
    v10 = c->hbuf[7] == '0';
    c->status = atoi(c->hbuf + 9);
    c->keepalive = !v10;
    c->framing = F_CLOSE;
    line = strstr(c->hbuf, "\r\n");
    while (line && line[2]) {
        line += 2;
        next = strstr(line, "\r\n");
        if (next)
            *next = 0;
        if (!strncasecmp(line, "transfer-encoding:", 18)) {
            if (strcasestr(line + 18, "chunked"))
                c->framing = F_CHUNKED;
        }
        else if (!strncasecmp(line, "content-length:", 15)) {
            if (c->framing != F_CHUNKED) {
                c->framing = F_LENGTH;
                c->clen_left = strtoll(line + 15, NULL, 10);
            }
        }
        else if (!strncasecmp(line, "connection:", 11)) {
            if (strcasestr(line + 11, "close"))
                c->keepalive = 0;
            else if (strcasestr(line + 11, "keep-alive"))
                c->keepalive = 1;
        }
        if (!next)
            break;
        *next = '\r';
        line = next;
    }
    if (c->framing == F_CLOSE)
        c->keepalive = 0;
    /* the bytes of p past the header block */
    return (long)n - (c->hlen - end);
}

/* ---- publishers ---- */

static void pub_connect(conn *c)
{
    if (publishing_done) {
        c->state = S_CLOSED;
        c->fd = -1;
        return;
    }
    c->fd = open_socket(-1, c->srv);
    if (c->fd < 0)
        die("publisher connect: %s", strerror(errno));
    conn_reset_parse(c);
    c->state = S_CONNECTING;
    c->busy = 0;
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static int pub_ready(conn *c)
{
    return c->state == S_HEADERS && !c->busy;
}

static void pub_write(conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w < 0) {
            if (errno == EAGAIN) {
                ep_set(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return;
            }
            st.pub_errors++;
            conn_close(c);
            st.pub_reconnects++;
            pub_connect(c);
            return;
        }
        c->outoff += w;
    }
}

static void pub_send(conn *c, int chan, char phase)
{
    char body[65536 + 128], path[1024];
    uint64_t seq = ++chan_seq[(size_t)chan * opt.pub_conns + c->idx];
    int hl, bl, need;

    c->send_ns = now_ns();
    bl = snprintf(body, sizeof(body), "%llu %llu %d %d %c ", (unsigned long long)seq,
                  (unsigned long long)c->send_ns, chan, c->idx, phase);
    while (bl < opt.size)
        body[bl++] = 'x';
    snprintf(path, sizeof(path), opt.pub_path, chan_names[chan]);
    need = bl + 1400 + (opt.mercure_token ? (int)strlen(opt.mercure_token) + 3 * 256 : 0);
    if (need > c->outcap)
        c->out = xrealloc(c->out, (c->outcap = need));
    if (opt.mercure_token) {
        /* topic=<topic><channel>&data=<text>: the text is digits, spaces and
         * x, so a space is its only byte to encode ('+'); the topic's ':'
         * and '/' go as they are (allowed in a form value). */
        char form[65536 + 512];
        int fl = snprintf(form, sizeof(form), "topic=%s%s&data=", opt.mercure_topic,
                          chan_names[chan]), i;
        for (i = 0; i < bl; i++)
            form[fl++] = body[i] == ' ' ? '+' : body[i];
        hl = snprintf(c->out, c->outcap,
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n"
                      "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
                      path, opt.host, srv_port(c), opt.mercure_token, fl);
        memcpy(c->out + hl, form, fl);
        c->outlen = hl + fl;
    }
    else {
        hl = snprintf(c->out, c->outcap,
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %d\r\n\r\n", path, opt.host, srv_port(c), bl);
        memcpy(c->out + hl, body, bl);
        c->outlen = hl + bl;
    }
    c->outoff = 0;
    c->cur_seq = seq;
    c->cur_chan = chan;
    c->phase = phase;
    c->busy = 1;
    conn_reset_parse(c);
    c->state = S_HEADERS;
    /* counted as expected now: every connected subscriber of the channel
     * should get it (a failed publish is taken back below) */
    if (phase == 'm') {
        st.published_m++;
        pub_m_chan[chan]++;
        st.expected_m += subs_on_chan[chan];
    }
    else
        st.published_w++;
    pub_write(c);
}

static void pub_response_done(conn *c)
{
    if (c->status < 200 || c->status > 299) {
        st.pub_errors++;
        if (c->phase == 'm') {
            st.published_m--;
            pub_m_chan[c->cur_chan]--;
            st.expected_m -= subs_on_chan[c->cur_chan];
        }
        else
            st.published_w--;
        if (st.pub_errors <= 5)
            logf_("publish answered %d", c->status);
    }
    else
        st.published_srv[c->srv]++;
    c->busy = 0;
    if (!c->keepalive) {
        conn_close(c);
        st.pub_reconnects++;
        pub_connect(c);
        return;
    }
    conn_reset_parse(c);
    c->state = S_HEADERS;
    ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* ---- reading ---- */

static char rbuf[256 * 1024];

static void sub_lost(conn *c, const char *why)
{
    if (c->state == S_BODY) {
        st.sub_connected--;
        st.sub_connected_srv[c->srv]--;
        st.sub_closed++;
        subs_on_chan[c->chan]--;
        if (st.sub_closed <= 5)
            logf_("subscriber %d closed (%s)", c->idx, why);
    }
    else if (c->state == S_HEADERS || c->state == S_CONNECTING) {
        st.sub_connecting--;
        st.sub_failed++;
    }
    conn_close(c);
}

static ssize_t last_read;   /* what the last read_once read */

static void read_once(conn *c)
{
    ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
    uint64_t rnow = now_ns();
    const char *p = rbuf;
    long used;
    int done;

    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        if (c->kind == K_SUB) {
            sub_lost(c, n == 0 ? "EOF" : strerror(errno));
        }
        else {
            if (c->busy && c->state == S_BODY && c->framing == F_CLOSE) {
                pub_response_done(c);
                return;
            }
            if (c->busy) {
                st.pub_errors++;
                if (c->phase == 'm') {
                    st.published_m--;
                    pub_m_chan[c->cur_chan]--;
                    st.expected_m -= subs_on_chan[c->cur_chan];
                }
            }
            conn_close(c);
            st.pub_reconnects++;
            pub_connect(c);
        }
        return;
    }
    last_read = n;
    st.bytes_in += n;
    while (n > 0) {
        if (c->state == S_HEADERS) {
            used = headers_feed(c, p, n);
            if (used == -1)
                return;
            if (used < 0) {
                if (c->kind == K_SUB)
                    sub_lost(c, "bad response header");
                else
                    die("bad publisher response header");
                return;
            }
            p += used;
            n -= used;
            c->state = S_BODY;
            if (c->kind == K_SUB) {
                st.sub_connecting--;
                if (c->status != 200) {
                    st.sub_bad_status++;
                    if (!st.first_bad_status)
                        st.first_bad_status = c->status;
                    st.sub_failed++;
                    conn_close(c);
                    return;
                }
                st.sub_connected++;
                st.sub_connected_srv[c->srv]++;
                subs_on_chan[c->chan]++;
                free(c->hbuf);
                c->hbuf = NULL;
                c->hcap = c->hlen = 0;
            }
            else if (c->framing == F_LENGTH && c->clen_left == 0) {
                pub_response_done(c);
                continue;
            }
            continue;
        }
        if (c->state != S_BODY)
            return;
        used = body_feed(c, p, n, c->kind == K_SUB ? sse_feed : discard_feed, rnow, &done);
        if (used < 0) {
            if (c->kind == K_SUB)
                sub_lost(c, "chunked framing error");
            else
                die("publisher: chunked framing error");
            return;
        }
        p += used;
        n -= used;
        if (done) {
            if (c->kind == K_SUB) {
                sub_lost(c, "end of body");
                return;
            }
            pub_response_done(c);
            if (c->state != S_HEADERS)
                return;
        }
    }
}

/* Subscribers are edge-triggered: read until a read comes back short (the
 * receive queue was emptied; data arriving later raises a new edge), which
 * spares the kernel re-polling every ready socket on each epoll_wait.
 * Publishers are level-triggered. */
static void on_readable(conn *c, uint32_t events)
{
    /* a FIN that came with the last data raises no further edge: after
     * EPOLLRDHUP/HUP/ERR read on until EOF or EAGAIN */
    int to_eof = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    do {
        last_read = -1;
        read_once(c);
    } while (c->kind == K_SUB && c->fd >= 0 &&
             (last_read == (ssize_t)sizeof(rbuf) || (to_eof && last_read > 0)));
}

static void on_writable(conn *c)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (c->state == S_CONNECTING) {
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            if (c->kind == K_SUB) {
                st.sub_connecting--;
                st.sub_failed++;
                conn_close(c);
                if (c->tries < 3) {
                    st.sub_failed--;
                    sub_start(c);
                }
            }
            else
                die("publisher connect: %s", strerror(err));
            return;
        }
        if (c->kind == K_SUB)
            sub_send_request(c);
        else {
            c->state = S_HEADERS;
            ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        }
        return;
    }
    if (c->kind == K_PUB && c->busy) {
        pub_write(c);
        if (c->fd >= 0 && c->outoff == c->outlen)
            ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
    }
}

static void poll_once(uint64_t until_ns)
{
    static struct epoll_event evs[1024];
    struct timespec ts;
    uint64_t now = now_ns();
    int n, i;
    uint64_t wait = until_ns > now ? until_ns - now : 0;
    ts.tv_sec = wait / 1000000000ull;
    ts.tv_nsec = wait % 1000000000ull;
    n = epoll_pwait2(ep, evs, 1024, &ts, NULL);
    if (n < 0) {
        if (errno == EINTR)
            return;
        die("epoll_pwait2: %s", strerror(errno));
    }
    for (i = 0; i < n; i++) {
        conn *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (c->fd < 0)
            continue;
        if (e & EPOLLOUT)
            on_writable(c);
        if (c->fd >= 0 && (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
            on_readable(c, e);
    }
}

/* ------------------------------------------------------------------ */
/* /proc: the server's process tree                                   */

typedef struct { int pid, ppid; } pp;

static int tree_pids(int root, int *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pp *all = NULL;
    int nall = 0, cap = 0, n = 0, i, changed;
    if (!d)
        return 0;
    while ((de = readdir(d))) {
        char path[64], buf[512], *rp;
        FILE *f;
        int pid = atoi(de->d_name), ppid;
        if (pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        if (!(f = fopen(path, "r")))
            continue;
        if (!fgets(buf, sizeof(buf), f)) {
            fclose(f);
            continue;
        }
        fclose(f);
        rp = strrchr(buf, ')');
        if (!rp || sscanf(rp + 2, "%*c %d", &ppid) != 1)
            continue;
        if (nall == cap)
            all = xrealloc(all, (cap = cap ? cap * 2 : 1024) * sizeof(pp));
        all[nall].pid = pid;
        all[nall].ppid = ppid;
        nall++;
    }
    closedir(d);
    out[n++] = root;
    do {
        changed = 0;
        for (i = 0; i < nall; i++) {
            int j, in = 0, parent = 0;
            for (j = 0; j < n; j++) {
                if (out[j] == all[i].pid)
                    in = 1;
                if (out[j] == all[i].ppid)
                    parent = 1;
            }
            if (!in && parent && n < max) {
                out[n++] = all[i].pid;
                changed = 1;
            }
        }
    } while (changed);
    free(all);
    return n;
}

/* utime+stime of the tree, in seconds */
static double tree_cpu(int root)
{
    static int pids[4096];
    int n = tree_pids(root, pids, 4096), i;
    long hz = sysconf(_SC_CLK_TCK);
    double total = 0;
    for (i = 0; i < n; i++) {
        char path[64], buf[2048], *rp;
        unsigned long ut, stime;
        FILE *f;
        snprintf(path, sizeof(path), "/proc/%d/stat", pids[i]);
        if (!(f = fopen(path, "r")))
            continue;
        if (fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')) &&
            sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) == 2)
            total += (double)(ut + stime) / hz;
        fclose(f);
    }
    return total;
}

typedef struct { long rss_kb, pss_kb; int nproc; } memv;

static memv tree_mem(int root)
{
    static int pids[4096];
    int n = tree_pids(root, pids, 4096), i;
    memv m = { 0, 0, 0 };
    for (i = 0; i < n; i++) {
        char path[64], line[256];
        FILE *f;
        long v;
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pids[i]);
        if (!(f = fopen(path, "r")))
            continue;
        m.nproc++;
        while (fgets(line, sizeof(line), f)) {
            if (sscanf(line, "Rss: %ld", &v) == 1)
                m.rss_kb += v;
            else if (sscanf(line, "Pss: %ld", &v) == 1)
                m.pss_kb += v;
        }
        fclose(f);
    }
    return m;
}

/* CPU seconds of every --server-pid tree, summed; parts[i] gets tree i's */
static double servers_cpu(double *parts)
{
    double total = 0;
    int i;
    for (i = 0; i < opt.nserver_pid; i++)
        total += parts[i] = tree_cpu(opt.server_pid[i]);
    return total;
}

static memv servers_mem(void)
{
    memv m = { 0, 0, 0 };
    int i;
    for (i = 0; i < opt.nserver_pid; i++) {
        memv t = tree_mem(opt.server_pid[i]);
        m.rss_kb += t.rss_kb;
        m.pss_kb += t.pss_kb;
        m.nproc += t.nproc;
    }
    return m;
}

/* ------------------------------------------------------------------ */

/* busy seconds of the whole machine (all CPUs), from /proc/stat; *irq gets
 * the part spent in hard and soft interrupts. With tick-based accounting
 * (CONFIG_IRQ_TIME_ACCOUNTING unset, as here) that time is also charged to
 * whichever task was interrupted: it overlaps the processes' times. */
static double machine_busy(double *irq)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    double hz = sysconf(_SC_CLK_TCK);
    if (!f)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8) {
        fclose(f);
        return 0;
    }
    fclose(f);
    /* user nice system [idle iowait] irq softirq steal */
    *irq = (v[5] + v[6]) / hz;
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen [options]\n"
        "  --host H --port P          server (127.0.0.1:8080)\n"
        "  --port2 P                  a second server on H sharing the channels: subscribers and\n"
        "                             publisher connections split between the two (i %% 2),\n"
        "                             fixed-rate publishes alternate between them\n"
        "  --sub-path T --pub-path T  templates, %%s = channel (/events?channel=%%s, /publish/%%s)\n"
        "  --subs N --channels C      subscribers, spread round-robin over C channels\n"
        "  --rate R | --max-rate      events/s over all channels, or as fast as possible\n"
        "  --pub-conns K              keep-alive publisher connections (1)\n"
        "  --size B                   event data bytes (64)\n"
        "  --mercure-token T          publish to a Mercure hub (form: topic, data) with this token\n"
        "  --mercure-topic U          the topics' prefix, + channel name (https://bench.example/)\n"
        "  --warmup S --duration S    warm-up and measured publishing seconds (2, 10); duration 0: none\n"
        "  --idle S                   seconds between subscribers connected and memory 'after' (1)\n"
        "  --drain S                  max seconds to wait for deliveries after publishing (30)\n"
        "  --drain-idle S             ... or until nothing was delivered for S seconds (3)\n"
        "  --hold S                   after the JSON line, keep the subscribers open S seconds\n"
        "                             (or until the server closes them all)\n"
        "  --server-pid PID           process tree to measure (CPU, memory); repeatable (up to 8):\n"
        "                             the trees are summed, and each one's CPU reported\n"
        "  --nsrc K                   source addresses 127.0.0.2..(2+K-1) for subscribers (8; 0: none)\n"
        "  --inflight K               subscribers connecting at once (200)\n"
        "  --http10                   subscribe with HTTP/1.0 (close-delimited body)\n"
        "  --scenario S --server S    labels for the JSON line\n"
        "  --chan-prefix P            channel names P0, P1, ... (c)\n"
        "  --procs N                  N processes share the subscribers (i %% N), each under\n"
        "                             RLIMIT_NOFILE; the first publishes, results merged (1)\n"
        "  --quiet\n");
    exit(2);
}

static void print_mem(const char *name, memv m, int comma)
{
    printf("\"%s\":{\"rss_kb\":%ld,\"pss_kb\":%ld,\"nproc\":%d}%s", name, m.rss_kb, m.pss_kb,
           m.nproc, comma ? "," : "");
}

/* ------------------------------------------------------------------ */
/* --procs: helper processes holding part of the subscribers          */

/* What a helper sends up when its drain is over (then its histogram). */
struct helper_report {
    int sub_connected, sub_failed, sub_closed, sub_bad_status, first_bad_status;
    int sub_connected_srv[2];
    uint64_t expected_m, delivered_w, delivered_m, delivered_other, dup, ooo, bad_data;
    uint64_t events_total, bytes_in, last_deliv_ns, hist_n, hist_max_us;
};

static int up_fd[64], down_fd[64];    /* [helper]: helper -> first, first -> helper */
static int helper_pid[64];

static void xwrite(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("pipe write: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

static int xread(int fd, void *p, size_t n)
{
    char *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Subscribers of this process (i % procs == me), opened --inflight at a
 * time; returns when all are connected or failed, or at the timeout. */
static int my_subs_count(void)
{
    return opt.subs / opt.procs + (me < opt.subs % opt.procs);
}

static void open_subscribers(void)
{
    int i, mine = my_subs_count();
    uint64_t t_conn0 = now_ns(), last_log = t_conn0;
    for (i = 0; i < opt.subs; i++) {
        subs[i].kind = K_SUB;
        subs[i].idx = i;
        subs[i].chan = i % opt.channels;
        subs[i].srv = i % opt.nsrv;
        subs[i].fd = -1;
        subs[i].state = S_CLOSED;
    }
    while (st.sub_connected + st.sub_failed + st.sub_closed < mine) {
        uint64_t n = now_ns();
        while (st.sub_next < opt.subs && st.sub_connecting < opt.inflight) {
            if (st.sub_next % opt.procs == me)
                sub_start(&subs[st.sub_next]);
            st.sub_next++;
        }
        if (n - t_conn0 > (uint64_t)(opt.connect_timeout * 1e9)) {
            logf_("connect timeout: %d of %d subscribers connected", st.sub_connected, mine);
            break;
        }
        if (n - last_log > 2000000000ull) {
            logf_("%d/%d subscribers connected (%d connecting, %d failed)", st.sub_connected,
                  mine, st.sub_connecting, st.sub_failed);
            last_log = n;
        }
        poll_once(n + 50000000ull);
    }
}

static void hold_streams(void)
{
    uint64_t until = now_ns() + (uint64_t)(opt.hold * 1e9);
    int open_at_start = st.sub_connected;
    while (now_ns() < until && st.sub_connected > 0)
        poll_once(now_ns() + 50000000ull);
    logf_("hold: %d of %d streams ended by the server", open_at_start - st.sub_connected,
          open_at_start);
}

/* A helper's life: subscribers, "connected", wait for the publish counts,
 * drain, report, hold. Never returns. */
static void helper_main(int k)
{
    uint64_t *counts = calloc(opt.channels, sizeof(uint64_t));
    struct helper_report r;
    int c, got = 0;
    uint64_t until, last_n, last_t;
    open_subscribers();
    xwrite(up_fd[k], &st.sub_connected, sizeof(int));
    fcntl(down_fd[k], F_SETFL, O_NONBLOCK);
    while (!got) {
        ssize_t n;
        poll_once(now_ns() + 20000000ull);
        n = read(down_fd[k], counts, opt.channels * sizeof(uint64_t));
        if (n == 0)
            die("helper %d: the first process is gone", k);
        if (n > 0) {
            fcntl(down_fd[k], F_SETFL, 0);
            if ((size_t)n < opt.channels * sizeof(uint64_t) &&
                xread(down_fd[k], (char *)counts + n, opt.channels * sizeof(uint64_t) - n) < 0)
                die("helper %d: short publish counts", k);
            got = 1;
        }
    }
    /* the drain, with the first process's rules, on this helper's share */
    until = now_ns() + (uint64_t)(opt.drain * 1e9);
    last_n = st.delivered_m + st.delivered_w;
    last_t = now_ns();
    for (;;) {
        uint64_t n = now_ns();
        st.expected_m = 0;
        for (c = 0; c < opt.channels; c++)
            st.expected_m += (uint64_t)subs_on_chan[c] * counts[c];
        if (st.delivered_m >= st.expected_m || n >= until)
            break;
        if (st.delivered_m + st.delivered_w != last_n) {
            last_n = st.delivered_m + st.delivered_w;
            last_t = n;
        }
        else if (n - last_t > (uint64_t)(opt.drain_idle * 1e9))
            break;
        poll_once(n + 5000000ull);
    }
    memset(&r, 0, sizeof(r));
    r.sub_connected = st.sub_connected; r.sub_failed = st.sub_failed;
    r.sub_closed = st.sub_closed; r.sub_bad_status = st.sub_bad_status;
    r.first_bad_status = st.first_bad_status; r.expected_m = st.expected_m;
    r.sub_connected_srv[0] = st.sub_connected_srv[0];
    r.sub_connected_srv[1] = st.sub_connected_srv[1];
    r.delivered_w = st.delivered_w; r.delivered_m = st.delivered_m;
    r.delivered_other = st.delivered_other; r.dup = st.dup; r.ooo = st.ooo;
    r.bad_data = st.bad_data; r.events_total = st.events_total; r.bytes_in = st.bytes_in;
    r.last_deliv_ns = st.last_deliv_ns; r.hist_n = hist_n; r.hist_max_us = hist_max_us;
    xwrite(up_fd[k], &r, sizeof(r));
    xwrite(up_fd[k], hist, sizeof(hist));
    if (opt.hold > 0)
        hold_streams();
    exit(0);
}

/* The first process: every helper's counters added to its own. */
static uint64_t helpers_hist[H0 + H1 + H2];
static int helpers_open;        /* the helpers' streams open when they reported */

static void helpers_collect(void)
{
    static int done;
    int k;
    size_t b;
    if (done)
        return;
    done = 1;
    for (k = 1; k < opt.procs; k++) {
        struct helper_report r;
        if (xread(up_fd[k], &r, sizeof(r)) < 0 || xread(up_fd[k], helpers_hist, sizeof(hist)) < 0)
            die("helper %d sent no report", k);
        st.sub_connected += r.sub_connected; st.sub_failed += r.sub_failed;
        helpers_open += r.sub_connected;
        st.sub_connected_srv[0] += r.sub_connected_srv[0];
        st.sub_connected_srv[1] += r.sub_connected_srv[1];
        st.sub_closed += r.sub_closed; st.sub_bad_status += r.sub_bad_status;
        if (!st.first_bad_status)
            st.first_bad_status = r.first_bad_status;
        st.expected_m += r.expected_m; st.delivered_w += r.delivered_w;
        st.delivered_m += r.delivered_m; st.delivered_other += r.delivered_other;
        st.dup += r.dup; st.ooo += r.ooo; st.bad_data += r.bad_data;
        st.events_total += r.events_total; st.bytes_in += r.bytes_in;
        if (r.last_deliv_ns > st.last_deliv_ns)
            st.last_deliv_ns = r.last_deliv_ns;
        for (b = 0; b < H0 + H1 + H2; b++)
            hist[b] += helpers_hist[b];
        hist_n += r.hist_n;
        if (r.hist_max_us > hist_max_us)
            hist_max_us = r.hist_max_us;
    }
}

/* The first process: every measured publish answered; the helpers drain. */
static void helpers_release(void)
{
    static int done;
    int k;
    if (done)
        return;
    done = 1;
    for (k = 1; k < opt.procs; k++)
        xwrite(down_fd[k], pub_m_chan, opt.channels * sizeof(uint64_t));
}

int main(int argc, char **argv)
{
    static struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"port2", 1, 0, '2'}, {"sub-path", 1, 0, 'S'},
        {"pub-path", 1, 0, 'P'}, {"subs", 1, 0, 'n'}, {"channels", 1, 0, 'c'},
        {"rate", 1, 0, 'r'}, {"max-rate", 0, 0, 'M'}, {"pub-conns", 1, 0, 'k'},
        {"size", 1, 0, 's'}, {"warmup", 1, 0, 'w'}, {"duration", 1, 0, 'd'},
        {"idle", 1, 0, 'i'}, {"drain", 1, 0, 'D'}, {"server-pid", 1, 0, 'x'},
        {"nsrc", 1, 0, 'a'}, {"inflight", 1, 0, 'f'}, {"http10", 0, 0, '0'},
        {"scenario", 1, 0, 'N'}, {"server", 1, 0, 'V'}, {"chan-prefix", 1, 0, 'C'},
        {"connect-timeout", 1, 0, 'T'}, {"drain-idle", 1, 0, 'I'}, {"hold", 1, 0, 'H'}, {"quiet", 0, 0, 'q'},
        {"mercure-token", 1, 0, 'J'}, {"mercure-topic", 1, 0, 'U'}, {"procs", 1, 0, 'Q'},
        {0, 0, 0, 0}};
    int ch, i;
    struct rlimit rl;
    memv mem_before = {0}, mem_after = {0}, mem_end = {0};
    double cpu0 = 0, cpu1 = 0, cpu0_parts[8] = {0}, cpu1_parts[8] = {0}, lg_cpu, busy0 = 0, busy1 = 0, self0 = 0, self1 = 0, irq0 = 0, irq1 = 0;
    uint64_t tw0 = 0, tw1 = 0;
    uint64_t t0, t_meas, t_meas_end, t_end, next_ns, period_ns = 0, rr = 0, t_conn0, t_conn;
    int helpers_connected = 0;      /* --procs: the helpers' subscribers, once connected */
    int next_srv = 0;               /* --port2, fixed rate: the server of the next publish */
    struct rusage ru;
    unsigned seed = 12345;

    t_start = now_ns();
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case '2': opt.port2 = atoi(optarg); break;
        case 'S': opt.sub_path = optarg; break;
        case 'P': opt.pub_path = optarg; break;
        case 'n': opt.subs = atoi(optarg); break;
        case 'c': opt.channels = atoi(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'M': opt.max_rate = 1; break;
        case 'k': opt.pub_conns = atoi(optarg); break;
        case 's': opt.size = atoi(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'i': opt.idle = atof(optarg); break;
        case 'D': opt.drain = atof(optarg); break;
        case 'x':
            if (opt.nserver_pid == 8)
                die("at most 8 --server-pid");
            opt.server_pid[opt.nserver_pid++] = atoi(optarg);
            break;
        case 'a': opt.nsrc = atoi(optarg); break;
        case 'f': opt.inflight = atoi(optarg); break;
        case '0': opt.http10 = 1; break;
        case 'N': opt.scenario = optarg; break;
        case 'V': opt.server = optarg; break;
        case 'C': opt.chan_prefix = optarg; break;
        case 'T': opt.connect_timeout = atof(optarg); break;
        case 'I': opt.drain_idle = atof(optarg); break;
        case 'H': opt.hold = atof(optarg); break;
        case 'q': opt.quiet = 1; break;
        case 'J': opt.mercure_token = optarg; break;
        case 'U': opt.mercure_topic = optarg; break;
        case 'Q': opt.procs = atoi(optarg); break;
        default: usage();
        }
    }
    if (opt.channels < 1 || opt.subs < 0 || opt.pub_conns < 1 || opt.size < 40 || opt.size > 65536)
        usage();
    if (opt.procs < 1 || opt.procs > 64)
        die("--procs: 1 to 64");
    if (opt.port2 > 0 && opt.pub_conns < 2)
        die("--port2 needs --pub-conns 2 or more: one publisher connection per server at least");
    signal(SIGPIPE, SIG_IGN);

    /* file descriptors: as many as the hard limit allows */
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)(opt.subs / opt.procs + 1) + opt.pub_conns + 64 > rl.rlim_cur)
        die("%d subscribers need more file descriptors than RLIMIT_NOFILE (%lu)", opt.subs,
            (unsigned long)rl.rlim_cur);

    if (opt.port2 > 0)
        opt.nsrv = 2;
    for (i = 0; i < opt.nsrv; i++) {
        srv_addr[i].sin_family = AF_INET;
        srv_addr[i].sin_port = htons(i ? opt.port2 : opt.port);
        if (inet_pton(AF_INET, opt.host, &srv_addr[i].sin_addr) != 1)
            die("bad --host");
    }
    /* helpers first, before any socket: each gets only its subscribers */
    for (i = 1; i < opt.procs; i++) {
        int u[2], d[2];
        if (pipe(u) < 0 || pipe(d) < 0)
            die("pipe: %s", strerror(errno));
        fflush(NULL);
        helper_pid[i] = fork();
        if (helper_pid[i] < 0)
            die("fork: %s", strerror(errno));
        if (helper_pid[i] == 0) {
            me = i;
            up_fd[i] = u[1];
            down_fd[i] = d[0];
            close(u[0]);
            close(d[1]);
            break;
        }
        up_fd[i] = u[0];
        down_fd[i] = d[1];
        close(u[1]);
        close(d[0]);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);

    chan_names = calloc(opt.channels, sizeof(char *));
    subs_on_chan = calloc(opt.channels, sizeof(int));
    chan_seq = calloc((size_t)opt.channels * opt.pub_conns, sizeof(uint64_t));
    pub_m_chan = calloc(opt.channels, sizeof(uint64_t));
    for (i = 0; i < opt.channels; i++)
        if (asprintf(&chan_names[i], "%s%d", opt.chan_prefix, i) < 0)
            die("oom");
    subs = calloc(opt.subs ? opt.subs : 1, sizeof(conn));
    pubs = calloc(opt.pub_conns, sizeof(conn));
    if (me > 0)
        helper_main(me);

    /* publishers first: they are keep-alive and idle until publishing */
    for (i = 0; i < opt.pub_conns; i++) {
        pubs[i].kind = K_PUB;
        pubs[i].idx = i;
        pubs[i].srv = i % opt.nsrv;
        pub_connect(&pubs[i]);
    }
    t0 = now_ns();
    while (now_ns() - t0 < 500000000ull)
        poll_once(t0 + 500000000ull);
    for (i = 0; i < opt.pub_conns; i++)
        if (pubs[i].state != S_HEADERS)
            die("publisher connection %d did not open", i);

    if (opt.nserver_pid)
        mem_before = servers_mem();

    /* subscribers, paced; then the helpers' (they connected meanwhile) */
    t_conn0 = now_ns();
    open_subscribers();
    for (i = 1; i < opt.procs; i++) {
        int n;
        if (xread(up_fd[i], &n, sizeof(n)) < 0)
            die("helper %d did not open its subscribers", i);
        helpers_connected += n;
    }
    t_conn = now_ns();
    logf_("%d/%d subscribers connected in %.2f s (%d failed, %d bad status %d)",
          st.sub_connected + helpers_connected, opt.subs, (t_conn - t_conn0) / 1e9, st.sub_failed, st.sub_bad_status, st.first_bad_status);

    /* idle, then memory "after" */
    {
        uint64_t until = now_ns() + (uint64_t)(opt.idle * 1e9);
        while (now_ns() < until)
            poll_once(until);
    }
    if (opt.nserver_pid)
        mem_after = servers_mem();

    /* publishing: warm-up, then measured */
    if (!opt.max_rate && opt.rate > 0)
        period_ns = (uint64_t)(1e9 / opt.rate);
    t_meas = now_ns() + (uint64_t)(opt.warmup * 1e9);
    t_meas_end = t_meas + (uint64_t)(opt.duration * 1e9);
    next_ns = now_ns();
    if (opt.duration > 0) {
        int cpu_taken = 0;
        logf_("publishing: warm-up %.1f s, measured %.1f s, %s", opt.warmup, opt.duration,
              opt.max_rate ? "as fast as possible" : "fixed rate");
        for (;;) {
            uint64_t n = now_ns();
            if (n >= t_meas && !cpu_taken) {
                if (opt.nserver_pid)
                    cpu0 = servers_cpu(cpu0_parts);
                busy0 = machine_busy(&irq0);
                self0 = self_cpu();
                tw0 = now_ns();
                cpu_taken = 1;
                n = now_ns();
            }
            if (n >= t_meas_end)
                break;
            phase_now = n < t_meas ? 'w' : 'm';
            if (opt.max_rate) {
                for (i = 0; i < opt.pub_conns; i++)
                    if (pub_ready(&pubs[i]) && pubs[i].fd >= 0)
                        pub_send(&pubs[i], (int)(rand_r(&seed) % opt.channels), phase_now);
                poll_once(t_meas_end < n + 10000000ull ? t_meas_end : n + 10000000ull);
            }
            else {
                if (n > next_ns + 100000000ull) {       /* >100 ms behind: skip slots */
                    uint64_t skip = (n - next_ns) / period_ns;
                    st.pub_missed_slots += skip;
                    next_ns += skip * period_ns;
                }
                while (n >= next_ns) {
                    conn *c = NULL;
                    for (i = 0; i < opt.pub_conns; i++) {
                        conn *q = &pubs[(rr + i) % opt.pub_conns];
                        if (pub_ready(q) && q->fd >= 0 && q->srv == next_srv) {
                            c = q;
                            rr = (rr + i + 1) % opt.pub_conns;
                            break;
                        }
                    }
                    if (!c)
                        break;                          /* all busy: wait for a response */
                    pub_send(c, opt.channels == 1 ? 0 : (int)(rand_r(&seed) % opt.channels), phase_now);
                    next_srv = (next_srv + 1) % opt.nsrv;
                    next_ns += period_ns;
                    n = now_ns();
                }
                poll_once(next_ns < t_meas_end ? next_ns : t_meas_end);
            }
        }
        phase_now = 0;
        /* drain: outstanding publishes answered, deliveries in */
        {
            uint64_t until = now_ns() + (uint64_t)(opt.drain * 1e9);
            uint64_t last_n = st.delivered_m + st.delivered_w, last_t = now_ns();
            for (;;) {
                int busy = 0;
                uint64_t n = now_ns();
                for (i = 0; i < opt.pub_conns; i++)
                    busy |= pubs[i].busy;
                if (!busy)
                    helpers_release();
                if (!busy && st.delivered_m >= st.expected_m)
                    break;
                if (n >= until)
                    break;
                if (st.delivered_m + st.delivered_w != last_n) {
                    last_n = st.delivered_m + st.delivered_w;
                    last_t = n;
                }
                else if (!busy && n - last_t > (uint64_t)(opt.drain_idle * 1e9))
                    break;
                poll_once(now_ns() + 5000000ull);
            }
        }
        helpers_release();
        helpers_collect();
        if (opt.nserver_pid)
            cpu1 = servers_cpu(cpu1_parts);
        busy1 = machine_busy(&irq1);
        self1 = self_cpu();
        tw1 = now_ns();
    }
    else {
        /* idle scenario: hold the subscribers for the measured time */
        uint64_t until = now_ns() + (uint64_t)(opt.warmup * 1e9);
        while (now_ns() < until)
            poll_once(until);
        helpers_release();
        helpers_collect();
    }
    t_end = now_ns();
    publishing_done = 1;
    if (opt.nserver_pid)
        mem_end = servers_mem();
    if (st.expected_m > st.delivered_m && opt.duration > 0) {
        /* which sequence numbers are missing, for the first few subscribers */
        int shown = 0;
        for (i = 0; i < opt.subs && shown < 5; i++) {
            conn *c = &subs[i];
            int pc;
            if (c->state != S_BODY)
                continue;
            for (pc = 0; pc < opt.pub_conns; pc++) {
                uint64_t last = chan_seq[(size_t)c->chan * opt.pub_conns + pc], q, miss = 0;
                char ranges[512];
                int rl = 0;
                uint64_t start = 0;
                ranges[0] = 0;
                for (q = 1; q <= last + 1; q++) {
                    int have = q > last || (c->seen && (q >> 6) < c->seen[pc].words &&
                                            (c->seen[pc].bits[q >> 6] >> (q & 63) & 1));
                    if (!have && !start)
                        start = q;
                    if (have && start) {
                        miss += q - start;
                        if (rl < 400)
                            rl += snprintf(ranges + rl, sizeof(ranges) - rl, " %llu-%llu",
                                           (unsigned long long)start, (unsigned long long)q - 1);
                        start = 0;
                    }
                }
                if (miss) {
                    logf_("subscriber %d, publisher %d: %llu of %llu seqs missing:%s", i, pc,
                          (unsigned long long)miss, (unsigned long long)last, ranges);
                    shown++;
                }
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru);
    lg_cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;

    {
        double meas_s = opt.duration;
        double deliv_s = st.last_deliv_ns > t_meas ? (st.last_deliv_ns - t_meas) / 1e9 : meas_s;
        int64_t loss = (int64_t)st.expected_m - (int64_t)st.delivered_m;
        double cpu = cpu1 - cpu0;
        int nconn = st.sub_connected + st.sub_closed;
        char rate_s[32];
        if (opt.max_rate)
            snprintf(rate_s, sizeof(rate_s), "\"max\"");
        else
            snprintf(rate_s, sizeof(rate_s), "%g", opt.duration > 0 ? opt.rate : 0.0);
        printf("{\"scenario\":\"%s\",\"server\":\"%s\",\"subs_target\":%d,\"subs_connected\":%d,"
               "\"subs_failed\":%d,\"subs_bad_status\":%d,\"first_bad_status\":%d,"
               "\"subs_closed_during_run\":%d,\"connect_s\":%.3f,"
               "\"channels\":%d,\"size\":%d,\"rate_asked\":%s,\"pub_conns\":%d,"
               "\"warmup_s\":%.1f,\"duration_s\":%.1f,"
               "\"published\":%llu,\"published_warmup\":%llu,\"published_per_s\":%.1f,"
               "\"missed_slots\":%llu,\"pub_errors\":%llu,\"pub_reconnects\":%llu,"
               "\"expected\":%llu,\"delivered\":%llu,\"delivered_per_s\":%.1f,\"loss\":%lld,"
               "\"out_of_order\":%llu,\"duplicates\":%llu,\"bad_events\":%llu,"
               "\"lat_us\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"max\":%llu,\"n\":%llu},"
               "\"server_cpu_s\":%.2f,\"cpu_us_per_delivered\":%.3f,",
               opt.scenario, opt.server, opt.subs, nconn, st.sub_failed, st.sub_bad_status,
               st.first_bad_status, st.sub_closed, (t_conn - t_conn0) / 1e9, opt.channels,
               opt.size, rate_s, opt.pub_conns, opt.warmup,
               opt.duration, (unsigned long long)st.published_m,
               (unsigned long long)st.published_w, meas_s > 0 ? st.published_m / meas_s : 0,
               (unsigned long long)st.pub_missed_slots, (unsigned long long)st.pub_errors,
               (unsigned long long)st.pub_reconnects, (unsigned long long)st.expected_m,
               (unsigned long long)st.delivered_m, deliv_s > 0 ? st.delivered_m / deliv_s : 0,
               (long long)loss, (unsigned long long)st.ooo, (unsigned long long)st.dup,
               (unsigned long long)st.bad_data, hist_pct(0.50), hist_pct(0.90), hist_pct(0.99),
               (unsigned long long)hist_max_us, (unsigned long long)hist_n, cpu,
               st.delivered_m ? cpu * 1e6 / st.delivered_m : 0);
        print_mem("mem_before", mem_before, 1);
        print_mem("mem_after", mem_after, 1);
        print_mem("mem_end", mem_end, 1);
        printf("\"pss_per_sub_kb\":%.2f,\"rss_per_sub_kb\":%.2f,\"pss_after_per_sub_kb\":%.2f,",
               nconn ? (double)(mem_after.pss_kb - mem_before.pss_kb) / nconn : 0,
               nconn ? (double)(mem_after.rss_kb - mem_before.rss_kb) / nconn : 0,
               nconn ? (double)mem_after.pss_kb / nconn : 0);
        printf("\"window_s\":%.2f,\"window_machine_busy_s\":%.2f,\"window_loadgen_cpu_s\":%.2f,"
               "\"window_irq_s\":%.2f,\"window_other_cpu_s\":%.2f,",
               (tw1 - tw0) / 1e9, busy1 - busy0, self1 - self0, irq1 - irq0,
               (busy1 - busy0) - (self1 - self0) - (cpu1 - cpu0));
        printf("\"servers\":%d,\"subs_per_server\":[%d,%d],\"published_per_server\":[%llu,%llu],"
               "\"server_cpu_parts_s\":[", opt.nsrv, st.sub_connected_srv[0], st.sub_connected_srv[1],
               (unsigned long long)st.published_srv[0], (unsigned long long)st.published_srv[1]);
        for (i = 0; i < opt.nserver_pid; i++)
            printf("%s%.2f", i ? "," : "", cpu1_parts[i] - cpu0_parts[i]);
        printf("],");
        printf("\"loadgen_cpu_s\":%.2f,\"loadgen_wall_s\":%.2f,\"bytes_in\":%llu,\"events_parsed\":%llu}\n",
               lg_cpu, (t_end - t_start) / 1e9, (unsigned long long)st.bytes_in,
               (unsigned long long)st.events_total);
        fflush(stdout);
    }
    st.sub_connected -= helpers_open;   /* the helpers hold theirs themselves */
    if (opt.hold > 0)
        hold_streams();     /* the driver stops the server now: see whether streams end */
    for (i = 1; i < opt.procs; i++)
        waitpid(helper_pid[i], NULL, 0);
    for (i = 0; i < opt.subs; i++)
        if (subs[i].fd >= 0)
            close(subs[i].fd);
    for (i = 0; i < opt.pub_conns; i++)
        if (pubs[i].fd >= 0)
            close(pubs[i].fd);
    return 0;
}
