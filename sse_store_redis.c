/* sse_store_redis.c -- the Redis store: every server that names the same
 * Redis and prefix (SSERedis, SSERedisPrefix) shares its channels.
 *
 * What goes where:
 *  - Redis holds one stream, <prefix>events, with every event of every
 *    channel in publish order (SSERedisRetention bounds its length, "MAXLEN
 *    ~": all channels together, so that one stream gives one order for
 *    every server). An entry's id IS the event's stamp on every server
 *    (Redis ids and mod_sse stamps are both "<ms>-<seq>"). Its fields: c
 *    (the channels, separated by spaces, which no channel name holds), i
 *    (the publisher's own id, if any), e (event type, if any), r (retry, if
 *    any), m (a Mercure hub's metadata, sse_wire.h, if any) and d (data). A DELETE is an entry of its own: c (the channel)
 *    and x "delete" (see redis_channel).
 *  - This server's ring stays what the dispatcher and replay read: it is a
 *    copy of the stream's recent entries, with the same stamps.
 *
 * Publishing: one Lua script (EVALSHA, EVAL when Redis has forgotten it)
 * XADDs every event of the batch and returns their ids (and the other
 * servers' subscribers of their channels, see below). A script runs
 * alone in Redis, so a batch is consecutive in the global order; the
 * publisher gets its 200 only once Redis has answered. When Redis cannot
 * be reached the answer is 503 with Retry-After (sse_store_retry_after)
 * and nothing was sent. Publishing children never write the ring
 * themselves: two writers could put events into it in another order than
 * Redis's.
 *
 * Delivery: one process per server, the follower, copies the stream into
 * the ring (sse_store_ring_append), so the ring's order is Redis's order.
 * Every child runs one thread that either follows or, every second, checks
 * whether the follower is gone: the follower's pid is in the ring's leader
 * word (sse_ring_leader_word) and a child takes it over by compare-and-swap
 * when it is 0 or names a dead process (kill(pid, 0), as sse_shm_monitor
 * reaps). The follower XREADs with BLOCK from the last id it copied
 * (first: the ring's last stamp) and appends each entry with its id as
 * stamp. It lets go of the word when its child stops.
 *
 * Subscriber counts across servers: the follower reports this server's
 * counts every second (REPORT_MS) into <prefix>subs:<server id>, a hash of
 * channel -> streams, and dates the report in <prefix>servers (a sorted
 * set scored by Redis's clock). A publish's answer and channel info add,
 * to this server's exact figure, those of the other servers that reported
 * within LIVE_MS: a figure at most a few seconds old. The server id is
 * random, made once per httpd and kept across graceful restarts.
 *
 * Connections, per child, whatever the number of subscribers: one publish
 * connection (opened on the first publish, DELETE or channel info, shared
 * by the child's request threads under a mutex, so a child talks to Redis
 * one request at a time), plus in the follower child only, the follower's
 * blocking connection. So at most 2 per child.
 *
 * Redis down: a publish that finds the connection broken drops it and
 * answers 503; for a second after a failed connection a publish answers
 * 503 at once rather than wait on another attempt (Retry-After: 1 says
 * so). The follower reconnects with a backoff (100 ms doubling up to 2 s)
 * and resumes after the last id it copied; it logs once that Redis was
 * lost and once that it is back (SSE01201, SSE01202), per outage.
 *
 * sse-status (sse_metrics.h): whoever talks to Redis last says whether it
 * answered (sse_redis_up, one word of the shared block, so any child's
 * answer shows it): a publish, DELETE, channel info or history read, the
 * follower, the filling of a new ring. An error reply is an answer (up)
 * but still an error. sse_redis_errors_total counts by op, one per request
 * for what requests do (so a refused publish is exactly one, whatever it
 * tried), one per failed attempt for the follower (connect, XREAD, report).
 *
 * Decisions left open by issue 15 and taken here:
 *  - Retention counts events in all (one stream), not per channel.
 *  - An entry whose id does not fit a stamp (22-bit sequence, see
 *    sse_wire.h), or that this ring cannot take (too large for its
 *    SSEBufferSize, channel table full, malformed), is skipped and logged
 *    by the follower; the others go on.
 *  - A connection lost after the script was sent may have published: the
 *    answer is 503 all the same (the publisher cannot tell; Redis can).
 *    A script that fails half-way (Redis out of memory) keeps the XADDs
 *    it made: Redis does not roll scripts back.
 *  - DELETE answers with this server's figures (taken before), and a
 *    channel this server does not know is deleted all the same (200, 0
 *    and 0): other servers may have it.
 *  - Channel info when Redis cannot be reached counts this server's
 *    streams alone (said at debug level), rather than failing.
 *
 * A new ring (a start, not a graceful restart) is filled in the parent at
 * post_config, before any child exists, from every entry Redis keeps
 * (sse_store_redis_fill): its birth moves back (sse_ring_rebirth) to just
 * below the oldest entry, so that a client coming from another server
 * with any id Redis still holds resumes here exactly, and an older one gets
 * sse-gap. A ring smaller than the stream keeps its newest part (what it
 * lost is read back from Redis, below). From an empty stream, the ring
 * starts at Redis's clock if that is behind this server's, so that the
 * follower does not skip the first ids Redis issues.
 *
 * History beyond the ring (redis_history): a stream that resumes from an
 * id this ring has overwritten on its channels (a ring smaller than the
 * stream Redis keeps) reads what it lost from Redis (XRANGE from the id to
 * the newest event the ring lost, filtered by channel, DELETE markers
 * applied), then the ring as usual; if Redis does not reach back that far
 * or cannot be reached, the stream gets sse-gap as before. One global
 * stream means the scan reads every channel's entries in that range, on
 * the child's publish connection: at most 32M of frames per stream.
 */
#include "sse_store.h"
#include "sse_config.h"
#include "sse_dispatch.h"
#include "sse_log.h"
#include "sse_redis_url.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <httpd.h>
#include <http_log.h>
#include <ap_mpm.h>

APLOG_USE_MODULE(sse);

#define CONNECT_TIMEOUT_MS  1000
#define COMMAND_TIMEOUT_MS  3000    /* a publish round trip; XREAD's block comes on top */
#define XREAD_BLOCK_MS      500     /* the follower notices a stop within this */
#define XREAD_COUNT         256
#define CANDIDATE_POLL_MS   1000    /* how often a child checks the follower is alive */
#define BACKOFF_MIN_MS      100
#define BACKOFF_MAX_MS      2000
#define PUBLISH_HOLDOFF     apr_time_from_sec(1)    /* after a failed connection */
#define RETRY_AFTER_S       1
#define JOIN_WAIT_S         1

#define REPORT_MS           1000    /* how often the follower reports this server's counts */
#define LIVE_MS             "5000"  /* a server whose report is older is not counted */

/* The milliseconds of Redis's clock, in a script: every server's reports
 * are dated by the same clock. */
#define LUA_NOW \
    "local t = redis.call('TIME')\n" \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* The subscription hashes (<prefix>subs:<server>) of the servers other
 * than ARGV[2] that reported within LIVE_MS (KEYS[2]: <prefix>servers;
 * ARGV[3]: <prefix>subs:). */
#define LUA_OTHERS \
    LUA_NOW \
    "local others = {}\n" \
    "for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now - " LIVE_MS ", '+inf')) do\n" \
    "  if sid ~= ARGV[2] then others[#others + 1] = ARGV[3] .. sid end\n" \
    "end\n" \
    "local function count(chans)\n" \
    "  local sum = 0\n" \
    "  for ch in string.gmatch(chans, '%S+') do\n" \
    "    for _, k in ipairs(others) do\n" \
    "      sum = sum + (tonumber(redis.call('HGET', k, ch)) or 0)\n" \
    "    end\n" \
    "  end\n" \
    "  return sum\n" \
    "end\n"

/* KEYS[1]: the stream, KEYS[2]: <prefix>servers; ARGV[1]: MAXLEN, ARGV[2]:
 * this server's id, ARGV[3]: <prefix>subs:; then per event its field count
 * and its fields, c (the channels) first. Returns, per event in order, its
 * id and the subscribers of its channels on the other servers. */
static const char PUBLISH_SCRIPT[] =
    LUA_OTHERS
    "local n, i, out = #ARGV, 4, {}\n"
    "while i <= n do\n"
    "  local k = tonumber(ARGV[i])\n"
    "  local a = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}\n"
    "  for j = 1, k do a[6 + j] = ARGV[i + j] end\n"
    "  out[#out + 1] = redis.call(unpack(a))\n"
    "  out[#out + 1] = count(a[8])\n"
    "  i = i + k + 1\n"
    "end\n"
    "return out\n";

/* The subscribers of channel ARGV[4] on the other servers (KEYS, ARGV[2],
 * ARGV[3] as above; KEYS[1] and ARGV[1] unused). */
static const char COUNT_SCRIPT[] =
    LUA_OTHERS
    "return count(ARGV[4])\n";

/* The follower's report of this server's counts: KEYS[1] <prefix>servers,
 * KEYS[2] <prefix>subs:<this server>; ARGV[1] this server's id, then
 * channel and count pairs (HSET in slices: Lua's unpack has a limit). */
static const char REPORT_SCRIPT[] =
    LUA_NOW
    "redis.call('DEL', KEYS[2])\n"
    "for i = 2, #ARGV, 1000 do\n"
    "  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[2], " LIVE_MS ")\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - " LIVE_MS ")\n"
    "return 1\n";

typedef struct {
    sse_store        base;      /* the ring's fields: ring ops run on it */
    server_rec      *s;
    sse_redis_url    url;
    const char      *where;     /* the address without credentials, for messages */
    char            *key;       /* <prefix>events */
    char            *servers;   /* <prefix>servers: who reported when */
    char            *subs;      /* <prefix>subs: (+ a server's id: its counts) */
    char            *my_subs;   /* <prefix>subs:<sid> */
    const char      *sid;       /* this server's id (random, kept across generations) */
    char             maxlen[24];

    pthread_mutex_t  pub_lock;  /* the child's publish connection: */
    redisContext    *pub;
    char             sha[41];   /* the script's SHA1, "" until loaded */
    apr_time_t       pub_failed;    /* when a connection last failed, 0: not */

    pthread_t        thread;    /* the follower (or candidate) */
    int              started;
    int              stop;      /* atomic */
} redis_store;

static const sse_store_ops redis_ops;
static const redisReply *field(const redisReply *kv, const char *name);

/* ---- what sse-status says of Redis ---- */

/* A failure of op (one of the SSE_C_REDIS_ERR_* counters); unreachable:
 * Redis did not answer at all (rather than answer with an error), so
 * sse_redis_up goes to 0 for every process of the server. */
static void redis_failed(redis_store *rs, sse_counter op, int unreachable)
{
    sse_store_count(&rs->base, op, 1);
    if (unreachable)
        sse_metrics_set_redis_up(rs->base.metrics, 0);
}

/* Redis answered, whatever it answered. */
static void redis_answered(redis_store *rs)
{
    sse_metrics_set_redis_up(rs->base.metrics, 1);
}

/* ---- connections ---- */

static struct timeval tv_ms(long ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* Connects, authenticates and selects the database. NULL and *err (a
 * copy in buf) on failure. */
static redisContext *redis_connect(redis_store *rs, long timeout_ms, char *buf, size_t size)
{
    redisContext *c;
    redisReply *reply;

    if (rs->url.is_unix)
        c = redisConnectUnixWithTimeout(rs->url.path, tv_ms(CONNECT_TIMEOUT_MS));
    else
        c = redisConnectWithTimeout(rs->url.host, rs->url.port, tv_ms(CONNECT_TIMEOUT_MS));
    if (!c || c->err) {
        snprintf(buf, size, "%s", c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv_ms(timeout_ms));
    reply = NULL;
    if (rs->url.has_password) {
        reply = rs->url.user[0]
                ? redisCommand(c, "AUTH %s %s", rs->url.user, rs->url.password)
                : redisCommand(c, "AUTH %s", rs->url.password);
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(reply);
    }
    if (rs->url.db) {
        reply = redisCommand(c, "SELECT %d", rs->url.db);
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(reply);
    }
    return c;
fail:
    snprintf(buf, size, "%s", reply ? reply->str : c->errstr);
    if (reply)
        freeReplyObject(reply);
    redisFree(c);
    return NULL;
}

/* ---- publishing ---- */

/* The argv of EVALSHA/EVAL for a batch, in memory from one malloc'd block
 * (freed by the caller): the channels are joined, the counts printed. */
typedef struct {
    int          argc;
    const char **argv;
    size_t      *len;
    char        *text;      /* the joined channels and printed numbers */
} batch_args;

static int batch_build(redis_store *rs, const sse_body_event *ev, int n, batch_args *b)
{
    size_t text = 0, max_args = 8 + (size_t)n * 13, used = 0;
    int i, j;

    for (i = 0; i < n; i++) {
        const sse_bytes *c = (const sse_bytes *)ev[i].channels->elts;
        for (j = 0; j < ev[i].channels->nelts; j++)
            text += c[j].len + 1;
        text += 2 * 24;             /* field count, retry */
    }
    b->argv = malloc(max_args * sizeof(*b->argv));
    b->len = malloc(max_args * sizeof(*b->len));
    b->text = malloc(text + 1);
    if (!b->argv || !b->len || !b->text)
        return 0;
    b->argc = 0;
#define ARG(s, l) (b->argv[b->argc] = (s), b->len[b->argc++] = (l))
    ARG("EVALSHA", 7);
    ARG(rs->sha, strlen(rs->sha));
    ARG("2", 1);
    ARG(rs->key, strlen(rs->key));
    ARG(rs->servers, strlen(rs->servers));
    ARG(rs->maxlen, strlen(rs->maxlen));
    ARG(rs->sid, strlen(rs->sid));
    ARG(rs->subs, strlen(rs->subs));
    for (i = 0; i < n; i++) {
        const sse_bytes *c = (const sse_bytes *)ev[i].channels->elts;
        char *count = b->text + used, *chans;
        int fields = 4 + (ev[i].id.s ? 2 : 0) + (ev[i].event.s ? 2 : 0)
                     + (ev[i].retry >= 0 ? 2 : 0) + (ev[i].meta.s ? 2 : 0);

        used += (size_t)snprintf(count, 24, "%d", fields) + 1;
        ARG(count, strlen(count));
        chans = b->text + used;
        for (j = 0; j < ev[i].channels->nelts; j++) {
            if (j)
                b->text[used++] = ' ';
            memcpy(b->text + used, c[j].s, c[j].len);
            used += c[j].len;
        }
        ARG("c", 1);
        ARG(chans, (size_t)(b->text + used - chans));
        used++;
        if (ev[i].id.s) {
            ARG("i", 1);
            ARG(ev[i].id.s, ev[i].id.len);
        }
        if (ev[i].event.s) {
            ARG("e", 1);
            ARG(ev[i].event.s, ev[i].event.len);
        }
        if (ev[i].retry >= 0) {
            char *r = b->text + used;
            used += (size_t)snprintf(r, 24, "%ld", ev[i].retry) + 1;
            ARG("r", 1);
            ARG(r, strlen(r));
        }
        if (ev[i].meta.s) {
            ARG("m", 1);
            ARG(ev[i].meta.s, ev[i].meta.len);
        }
        ARG("d", 1);
        ARG(ev[i].data.s ? ev[i].data.s : "", ev[i].data.len);
    }
#undef ARG
    return 1;
}

static void batch_free(batch_args *b)
{
    free(b->argv);
    free(b->len);
    free(b->text);
}

static void pub_drop(redis_store *rs)
{
    if (rs->pub)
        redisFree(rs->pub);
    rs->pub = NULL;
}

/* Whether a connection idle since its last reply was closed by Redis (a
 * restart, a timeout, CLIENT KILL): it has something to read, or hung up.
 * Found before a command is sent, the connection is replaced with no doubt
 * about whether the command ran; found after, a publish would have to be
 * refused, since Redis may or may not have applied it. */
static int conn_closed(const redisContext *c)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

    return poll(&pfd, 1, 0) != 0;   /* readable, hung up, error; or poll failed */
}

/* The publish connection, opened (and the script loaded) if needed; the
 * caller holds pub_lock. */
static const char *pub_ready(redis_store *rs, char *buf, size_t size)
{
    redisReply *reply;

    if (rs->pub && conn_closed(rs->pub))
        pub_drop(rs);
    if (rs->pub)
        return NULL;
    if (rs->pub_failed && apr_time_now() - rs->pub_failed < PUBLISH_HOLDOFF) {
        snprintf(buf, size, "a connection failed less than a second ago");
        return buf;
    }
    if (!(rs->pub = redis_connect(rs, COMMAND_TIMEOUT_MS, buf, size))) {
        rs->pub_failed = apr_time_now();
        sse_metrics_set_redis_up(rs->base.metrics, 0);
        return buf;
    }
    rs->pub_failed = 0;
    redis_answered(rs);
    reply = redisCommand(rs->pub, "SCRIPT LOAD %s", PUBLISH_SCRIPT);
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(rs->sha, reply->str, 40);
        rs->sha[40] = '\0';
    }
    if (reply)
        freeReplyObject(reply);
    return NULL;
}

/* The subscribers of an event's channels on this server (the lock held). */
static apr_uint64_t local_subscribers(redis_store *rs, const sse_body_event *ev)
{
    const sse_bytes *c = (const sse_bytes *)ev->channels->elts;
    apr_uint64_t n = 0;
    int j, slot;

    for (j = 0; j < ev->channels->nelts; j++) {
        if ((slot = sse_ring_chan_find(rs->base.ring, c[j].s, c[j].len)) >= 0)
            n += sse_ring_subs_total(rs->base.ring, slot);
    }
    return n;
}

static int redis_publish(sse_store *st, const sse_body_event *events, int n,
                         sse_store_receipt *out, const char **why)
{
    redis_store *rs = (redis_store *)st;
    batch_args b = { 0 };
    redisReply *reply = NULL;
    char err[256];
    int i, status = HTTP_SERVICE_UNAVAILABLE;

    pthread_mutex_lock(&rs->pub_lock);
    if (pub_ready(rs, err, sizeof(err))) {
        pthread_mutex_unlock(&rs->pub_lock);
        goto unreachable;
    }
    if (!batch_build(rs, events, n, &b)) {
        pthread_mutex_unlock(&rs->pub_lock);
        batch_free(&b);
        *why = "out of memory building the Redis command";
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rs->sha[0])
        reply = redisCommandArgv(rs->pub, b.argc, b.argv, b.len);
    if (!rs->sha[0] || (reply && reply->type == REDIS_REPLY_ERROR
                        && strncmp(reply->str, "NOSCRIPT", 8) == 0)) {
        /* Redis forgot the script (SCRIPT FLUSH, a restart): send it. */
        if (reply)
            freeReplyObject(reply);
        b.argv[0] = "EVAL";
        b.len[0] = 4;
        b.argv[1] = PUBLISH_SCRIPT;
        b.len[1] = sizeof(PUBLISH_SCRIPT) - 1;
        reply = redisCommandArgv(rs->pub, b.argc, b.argv, b.len);
    }
    batch_free(&b);
    if (!reply) {
        snprintf(err, sizeof(err), "%s", rs->pub->errstr);
        pub_drop(rs);
        pthread_mutex_unlock(&rs->pub_lock);
        goto unreachable;
    }
    pthread_mutex_unlock(&rs->pub_lock);
    redis_answered(rs);
    if (reply->type == REDIS_REPLY_ERROR || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2 * (size_t)n) {
        redis_failed(rs, SSE_C_REDIS_ERR_PUBLISH, 0);
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rs->s, SSE_LOGNO(01203)
                     "Redis at %s refused a publish to %s: %s", rs->where, rs->key,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
        freeReplyObject(reply);
        *why = "Redis refused the publish (see the error log); nothing was published";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (apr_global_mutex_lock(st->lock) == APR_SUCCESS) {
        for (i = 0; i < n; i++)
            out[i].subscribers = local_subscribers(rs, &events[i]);
        apr_global_mutex_unlock(st->lock);
    }
    for (i = 0; i < n; i++) {
        const redisReply *id = reply->element[2 * i], *others = reply->element[2 * i + 1];

        if (others->type == REDIS_REPLY_INTEGER && others->integer > 0)
            out[i].subscribers += (apr_uint64_t)others->integer;
        const char *text = events[i].id.s ? events[i].id.s : id->str;
        size_t len = events[i].id.s ? events[i].id.len : id->len;

        if (len > SSE_FIELD_MAX)
            len = SSE_FIELD_MAX;
        memcpy(out[i].id, text, len);
        out[i].id[len] = '\0';
    }
    freeReplyObject(reply);
    status = OK;
    return status;

unreachable:
    /* One per publish, however it failed (no connection, a broken one, or
     * within the second after a failed connection): what a publisher saw. */
    redis_failed(rs, SSE_C_REDIS_ERR_PUBLISH, 1);
    *why = "Redis cannot be reached; nothing was published (try again later)";
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, rs->s, SSE_LOGNO(01204)
                 "publish: Redis at %s cannot be reached: %s", rs->where, err);
    return HTTP_SERVICE_UNAVAILABLE;
}

/* The subscribers of a channel on the other servers, as they last
 * reported (at most LIVE_MS old); 0 when Redis cannot tell (then channel
 * info counts this server's alone, said at debug level). */
static apr_uint64_t subscribers_elsewhere(redis_store *rs, const sse_bytes *name)
{
    /* The publish script's numbering: KEYS[1] and ARGV[1] unused. */
    const char *argv[9] = { "EVAL", COUNT_SCRIPT, "2", rs->key, rs->servers, "", rs->sid,
                            rs->subs, name->s };
    size_t len[9];
    redisReply *reply;
    apr_uint64_t n = 0;
    char err[256];
    int i;

    for (i = 0; i < 8; i++)
        len[i] = strlen(argv[i]);
    len[8] = name->len;
    pthread_mutex_lock(&rs->pub_lock);
    if (pub_ready(rs, err, sizeof(err))) {
        pthread_mutex_unlock(&rs->pub_lock);
        redis_failed(rs, SSE_C_REDIS_ERR_READ, 1);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, rs->s, SSE_LOGNO(01213)
                     "channel info counts this server's subscribers only: %s", err);
        return 0;
    }
    reply = redisCommandArgv(rs->pub, 9, argv, len);
    if (!reply)
        pub_drop(rs);
    pthread_mutex_unlock(&rs->pub_lock);
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        redis_failed(rs, SSE_C_REDIS_ERR_READ, !reply);
    else
        redis_answered(rs);
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        n = (apr_uint64_t)reply->integer;
    if (reply)
        freeReplyObject(reply);
    return n;
}

/* Channel info is this server's ring's. A DELETE is a marker entry in the
 * stream ("x delete" on the channel): every server's follower, and the
 * filling of a new ring, applies it in the stream's order, so the history
 * before it is gone on every server (Redis keeps the entries until they
 * are trimmed, but no server reads them back past the marker), and the
 * channel's streams end everywhere. The answer carries this server's
 * figures, taken before; a channel this server does not know is deleted
 * all the same (other servers may have it), with 0 and 0. */
static int redis_channel(sse_store *st, const sse_bytes *name, int drop, sse_store_info *out,
                         apr_uint32_t *dropped, const char **why)
{
    redis_store *rs = (redis_store *)st;
    redisReply *reply;
    char err[256];
    int status;

    status = sse_store_ring_ops.channel(st, name, 0, out, dropped, why);
    if (!drop) {
        apr_uint64_t others;

        if (status != OK && status != HTTP_NOT_FOUND)
            return status;
        others = subscribers_elsewhere(rs, name);
        if (status == HTTP_NOT_FOUND && others) {
            memset(out, 0, sizeof(*out));
            status = OK;
        }
        if (status == OK)
            out->subscribers += others;
        return status;
    }
    if (status != OK && status != HTTP_NOT_FOUND)
        return status;
    if (status == HTTP_NOT_FOUND)
        memset(out, 0, sizeof(*out));
    *dropped = out->retained;
    pthread_mutex_lock(&rs->pub_lock);
    if (pub_ready(rs, err, sizeof(err))) {
        pthread_mutex_unlock(&rs->pub_lock);
        redis_failed(rs, SSE_C_REDIS_ERR_DELETE, 1);
        *why = "Redis cannot be reached; the channel was not deleted (try again later)";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    reply = redisCommand(rs->pub, "XADD %s MAXLEN ~ %s * c %b x delete", rs->key, rs->maxlen,
                         name->s, (size_t)name->len);
    if (!reply) {
        pub_drop(rs);
        pthread_mutex_unlock(&rs->pub_lock);
        redis_failed(rs, SSE_C_REDIS_ERR_DELETE, 1);
        *why = "Redis cannot be reached; the channel was not deleted (try again later)";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    pthread_mutex_unlock(&rs->pub_lock);
    redis_answered(rs);
    status = reply->type == REDIS_REPLY_STRING ? OK : HTTP_SERVICE_UNAVAILABLE;
    if (status != OK) {
        redis_failed(rs, SSE_C_REDIS_ERR_DELETE, 0);
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rs->s, SSE_LOGNO(01212)
                     "Redis at %s refused a delete in %s: %s", rs->where, rs->key,
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
        *why = "Redis refused the delete (see the error log); the channel was not deleted";
    }
    freeReplyObject(reply);
    return status;
}

static int redis_subscribe(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                           apr_uint64_t max_subscribers, sse_store_channels *out,
                           const char **why)
{
    return sse_store_ring_ops.subscribe(st, p, names, max_subscribers, out, why);
}

static void redis_unsubscribe(sse_store *st, const sse_store_channels *chans)
{
    sse_store_ring_ops.unsubscribe(st, chans);
}

static int redis_stats(sse_store *st, sse_metrics_snapshot *out)
{
    out->redis_set = 1;
    out->redis_up = sse_metrics_redis_up(st->metrics);
    return sse_store_ring_ops.stats(st, out);
}

/* ---- history beyond the ring ---- */

#define HISTORY_BATCH     1000
#define HISTORY_MAX_BYTES (32 * 1024 * 1024)   /* what one stream may read at once */

typedef struct {
    sse_store_past past;
    apr_uint64_t   mask;       /* which of the stream's channels it is on */
} past_event;

/* Bit i for names[i] of each channel of list (space-separated) the stream has. */
static apr_uint64_t match(const apr_array_header_t *names, const char *list, size_t len)
{
    const sse_bytes *n = (const sse_bytes *)names->elts;
    const char *p = list, *end = list + len;
    apr_uint64_t mask = 0;
    int i;

    while (p < end) {
        const char *q = memchr(p, ' ', (size_t)(end - p));
        size_t l = q ? (size_t)(q - p) : (size_t)(end - p);

        for (i = 0; i < names->nelts && i < 64; i++) {
            if (n[i].len == l && memcmp(n[i].s, p, l) == 0)
                mask |= APR_UINT64_C(1) << i;
        }
        p += l + 1;
    }
    return mask;
}

static int redis_history(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                         apr_uint64_t from, apr_uint64_t upto, apr_array_header_t **out,
                         const char **why)
{
    redis_store *rs = (redis_store *)st;
    apr_array_header_t *got = apr_array_make(p, 64, sizeof(past_event));
    char start[SSE_ID_BUFSIZE + 1], end[SSE_ID_BUFSIZE], err[256];
    apr_uint64_t stamp, oldest = 0;
    apr_size_t bytes = 0;
    redisReply *reply;
    past_event *pe;
    int i, j, status = OK, done = 0;

    start[0] = '(';
    sse_wire_format_id(from, start + 1);
    sse_wire_format_id(upto, end);
    pthread_mutex_lock(&rs->pub_lock);
    if (pub_ready(rs, err, sizeof(err))) {
        pthread_mutex_unlock(&rs->pub_lock);
        redis_failed(rs, SSE_C_REDIS_ERR_READ, 1);
        *why = "Redis cannot be reached";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* Redis must reach back to from: its oldest entry at most just after. */
    reply = redisCommand(rs->pub, "XRANGE %s - + COUNT 1", rs->key);
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1
        && reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 1
        && reply->element[0]->element[0]->type == REDIS_REPLY_STRING)
        sse_wire_parse_server_id(reply->element[0]->element[0]->str,
                                 reply->element[0]->element[0]->len, &oldest);
    if (!reply) {
        pub_drop(rs);
        pthread_mutex_unlock(&rs->pub_lock);
        redis_failed(rs, SSE_C_REDIS_ERR_READ, 1);
        *why = "Redis cannot be reached";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    freeReplyObject(reply);
    if (!oldest || oldest - 1 > from) {
        pthread_mutex_unlock(&rs->pub_lock);
        redis_answered(rs);
        *why = "Redis does not keep events back to that id";
        return HTTP_NOT_FOUND;
    }
    while (!done && status == OK) {
        reply = redisCommand(rs->pub, "XRANGE %s %s %s COUNT %d", rs->key, start, end,
                             HISTORY_BATCH);
        if (!reply) {
            pub_drop(rs);
            redis_failed(rs, SSE_C_REDIS_ERR_READ, 1);
            *why = "Redis cannot be reached";
            status = HTTP_SERVICE_UNAVAILABLE;
            break;
        }
        redis_answered(rs);
        if (reply->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(reply);
            redis_failed(rs, SSE_C_REDIS_ERR_READ, 0);
            *why = "Redis refused to read the stream";
            status = HTTP_SERVICE_UNAVAILABLE;
            break;
        }
        done = reply->elements < HISTORY_BATCH;
        for (i = 0; i < (int)reply->elements && status == OK; i++) {
            const redisReply *ent = reply->element[i], *id, *kv, *c, *f;
            sse_wire_event ev;
            apr_uint64_t mask;
            char *frame;

            if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2
                || (id = ent->element[0])->type != REDIS_REPLY_STRING
                || (kv = ent->element[1])->type != REDIS_REPLY_ARRAY)
                continue;
            snprintf(start, sizeof(start), "(%.*s", (int)id->len, id->str);
            if (!sse_wire_parse_server_id(id->str, id->len, &stamp) || !(c = field(kv, "c")))
                continue;
            mask = match(names, c->str, c->len);
            if (!mask)
                continue;
            if ((f = field(kv, "x"))) {
                /* A DELETE: what came before on those channels is gone. */
                pe = (past_event *)got->elts;
                for (j = 0; j < got->nelts; j++)
                    pe[j].mask &= ~mask;
                continue;
            }
            if (!(f = field(kv, "d")))
                continue;
            memset(&ev, 0, sizeof(ev));
            ev.retry = -1;
            ev.data = f->str;
            ev.data_len = f->len;
            if ((f = field(kv, "e"))) {
                ev.event = f->str;
                ev.event_len = f->len;
            }
            if ((f = field(kv, "r")))
                ev.retry = strtol(f->str, NULL, 10);
            if ((f = field(kv, "m")) && !sse_wire_check_meta(f->str, f->len)) {
                ev.meta = f->str;
                ev.meta_len = f->len;
            }
            if ((f = field(kv, "i"))) {
                ev.id = apr_pstrmemdup(p, f->str, f->len);
                ev.id_len = f->len;
            }
            else {
                ev.id = apr_pstrmemdup(p, id->str, id->len);
                ev.id_len = id->len;
            }
            ev.id_len = ev.id_len > SSE_FIELD_MAX ? SSE_FIELD_MAX : ev.id_len;
            bytes += sse_wire_frame_size(&ev);
            if (bytes > HISTORY_MAX_BYTES) {
                *why = "more history than a stream reads at once (32M)";
                status = HTTP_REQUEST_ENTITY_TOO_LARGE;
                break;
            }
            frame = apr_palloc(p, sse_wire_frame_size(&ev));
            pe = apr_array_push(got);
            pe->mask = mask;
            pe->past.stamp = stamp;
            pe->past.id = ev.id;
            pe->past.id_len = ev.id_len;
            pe->past.frame = frame;
            pe->past.frame_len = sse_wire_frame(frame, &ev);
        }
        freeReplyObject(reply);
    }
    pthread_mutex_unlock(&rs->pub_lock);
    if (status != OK)
        return status;
    *out = apr_array_make(p, got->nelts ? got->nelts : 1, sizeof(sse_store_past));
    pe = (past_event *)got->elts;
    for (j = 0; j < got->nelts; j++) {
        if (pe[j].mask)
            *(sse_store_past *)apr_array_push(*out) = pe[j].past;
    }
    return OK;
}

static const sse_store_ops redis_ops = {
    "redis", redis_publish, redis_channel, redis_subscribe, redis_unsubscribe, redis_stats,
    redis_history
};

/* ---- the follower ---- */

static int stopping(redis_store *rs)
{
    int state = AP_MPMQ_RUNNING;

    if (__atomic_load_n(&rs->stop, __ATOMIC_ACQUIRE))
        return 1;
    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

/* Sleeps ms, in slices, unless the child stops. */
static void nap(redis_store *rs, long ms)
{
    while (ms > 0 && !stopping(rs)) {
        long slice = ms < 100 ? ms : 100;
        struct timespec ts = { 0, slice * 1000000L };
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

static int pid_alive(apr_uint32_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* Becomes the follower when there is none, or it died. */
static int take_lead(redis_store *rs, apr_uint32_t me)
{
    apr_uint32_t *word = sse_ring_leader_word(rs->base.ring);
    apr_uint32_t cur = __atomic_load_n(word, __ATOMIC_ACQUIRE);

    if (cur == me)
        return 1;
    if (cur != 0 && pid_alive(cur))
        return 0;
    return __atomic_compare_exchange_n(word, &cur, me, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void let_go(redis_store *rs, apr_uint32_t me)
{
    __atomic_compare_exchange_n(sse_ring_leader_word(rs->base.ring), &me, 0, 0,
                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static const redisReply *field(const redisReply *kv, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(name)
            && memcmp(k->str, name, k->len) == 0)
            return kv->element[i + 1]->type == REDIS_REPLY_STRING ? kv->element[i + 1] : NULL;
    }
    return NULL;
}

/* One entry [id, [field, value, ...]] into the ring; logs what it skips. */
static void copy_entry(redis_store *rs, const redisReply *ent)
{
    sse_bytes chans[SSE_STORE_MAX_CHANNELS];
    sse_store_entry e;
    const redisReply *id, *kv, *c, *f;
    const char *why = NULL, *p, *end;
    apr_uint64_t stamp;
    int rc;

    id = ent->element[0];
    kv = ent->element[1];
    if (!sse_wire_parse_server_id(id->str, id->len, &stamp)) {
        why = "its id does not fit a mod_sse stamp (a sequence above 4194303 in one "
              "millisecond, or not <ms>-<seq>)";
        goto skip;
    }
    if (kv->type == REDIS_REPLY_ARRAY && (f = field(kv, "x")) && (c = field(kv, "c"))) {
        sse_bytes name;
        apr_uint32_t dropped;

        if (f->len != 6 || memcmp(f->str, "delete", 6) != 0
            || sse_wire_check_channel(c->str, c->len)) {
            why = "it is a marker (x) this module does not know, or names no valid channel";
            goto skip;
        }
        name.s = c->str;
        name.len = c->len;
        if ((rc = sse_store_ring_delete_at(&rs->base, &name, stamp, &dropped, &why)) == OK)
            return;
        goto skip;
    }
    if (kv->type != REDIS_REPLY_ARRAY || !(c = field(kv, "c")) || !(f = field(kv, "d"))) {
        why = "it has no channels (c) or no data (d) field";
        goto skip;
    }
    memset(&e, 0, sizeof(e));
    e.channels = chans;
    for (p = c->str, end = c->str + c->len; p < end;) {
        const char *q = memchr(p, ' ', (size_t)(end - p));
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);

        /* A hub's channel only with metadata (checked below). */
        if (e.nchan == SSE_STORE_MAX_CHANNELS
            || (sse_wire_check_channel(p, len)
                && (!field(kv, "m") || sse_wire_check_hub_channel(p, len)))) {
            why = "its channel list is not valid";
            goto skip;
        }
        chans[e.nchan].s = p;
        chans[e.nchan++].len = len;
        p += len + 1;
    }
    e.data = f->str;
    e.data_len = f->len;
    e.retry = -1;
    if ((f = field(kv, "i"))) {
        e.id = f->str;
        e.id_len = f->len;
    }
    if ((f = field(kv, "e"))) {
        e.event = f->str;
        e.event_len = f->len;
    }
    if ((f = field(kv, "r")))
        e.retry = strtol(f->str, NULL, 10);
    if ((f = field(kv, "m"))) {
        e.meta = f->str;
        e.meta_len = f->len;
    }
    /* A hub's event (m) has its one hub channel, and a hub's channel only
     * such events, as sse_store_publish makes them. */
    if (e.meta && (e.nchan != 1 || sse_wire_check_hub_channel(chans[0].s, chans[0].len)
                   || sse_wire_check_meta(e.meta, e.meta_len))) {
        why = "its metadata (m) is not valid, or does not go to one hub channel";
        goto skip;
    }
    if ((rc = sse_store_ring_append(&rs->base, &e, stamp, &why)) == OK)
        return;
skip:
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rs->s, SSE_LOGNO(01205)
                 "Redis entry %.*s of %s skipped on this server: %s",
                 (int)id->len, id->str, rs->key, why);
}

/* XREAD's answer: [[key, [entry, ...]]]; returns the last id seen in it
 * (copied to after), all of them copied or skipped. */
static void copy_reply(redis_store *rs, const redisReply *reply, char *after, size_t size)
{
    const redisReply *entries;
    size_t i;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1
        || reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements < 2)
        return;
    entries = reply->element[0]->element[1];
    for (i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        const redisReply *ent = entries->element[i];

        if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2
            || ent->element[0]->type != REDIS_REPLY_STRING)
            continue;
        copy_entry(rs, ent);
        snprintf(after, size, "%.*s", (int)ent->element[0]->len, ent->element[0]->str);
    }
}

/* The follower's report of this server's subscriber counts (channels with
 * at least one stream). 0 when the connection broke (the caller drops it). */
static int report_counts(redis_store *rs, redisContext *c)
{
    sse_ring *ring = rs->base.ring;
    apr_uint32_t cap = sse_ring_chan_slots(ring), slot;
    size_t n = 0, k, argc;
    const char **argv;
    size_t *len;
    char (*names)[SSE_CHANNEL_MAX + 1], (*counts)[24];
    redisReply *reply;
    int ok = 1;

    for (slot = 0; slot < cap; slot++) {
        if (sse_ring_chan_is_live(ring, (int)slot) && sse_ring_subs_total(ring, (int)slot))
            n++;
    }
    argv = malloc((6 + 2 * n) * sizeof(*argv));
    len = malloc((6 + 2 * n) * sizeof(*len));
    names = malloc((n ? n : 1) * sizeof(*names));
    counts = malloc((n ? n : 1) * sizeof(*counts));
    if (!argv || !len || !names || !counts)
        goto out;
    argv[0] = "EVAL";
    argv[1] = REPORT_SCRIPT;
    argv[2] = "2";
    argv[3] = rs->servers;
    argv[4] = rs->my_subs;
    argv[5] = rs->sid;
    argc = 6;
    /* Names are read under the lock (a slot may be reused meanwhile). */
    if (n && apr_global_mutex_lock(rs->base.lock) == APR_SUCCESS) {
        for (slot = 0, k = 0; slot < cap && k < n; slot++) {
            sse_ring_chan_info info;

            if (!sse_ring_chan_is_live(ring, (int)slot) || !sse_ring_subs_total(ring, (int)slot))
                continue;
            sse_ring_chan_get(ring, (int)slot, &info);
            memcpy(names[k], info.name, sizeof(names[k]));
            snprintf(counts[k], sizeof(counts[k]), "%" APR_UINT64_T_FMT, info.subscribers);
            argv[argc++] = names[k];
            argv[argc++] = counts[k];
            k++;
        }
        apr_global_mutex_unlock(rs->base.lock);
    }
    for (k = 0; k < argc; k++)
        len[k] = strlen(argv[k]);
    reply = redisCommandArgv(c, (int)argc, argv, len);
    ok = reply != NULL;
    if (reply)
        freeReplyObject(reply);
out:
    free(argv);
    free(len);
    free(names);
    free(counts);
    return ok;
}

/* Once per outage, by the follower: one line per server, not per request. */
static void note_lost(redis_store *rs, int *lost, const char *err)
{
    redis_failed(rs, SSE_C_REDIS_ERR_FOLLOW, 1);
    if (*lost)
        return;
    *lost = 1;
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, rs->s, SSE_LOGNO(01201)
                 "Redis at %s lost: %s; publishes are refused (503) and "
                 "delivery waits until it is back", rs->where, err);
}

static void *follower(void *arg)
{
    redis_store *rs = arg;
    apr_uint32_t me = (apr_uint32_t)getpid();
    redisContext *c = NULL;
    char after[SSE_ID_BUFSIZE], err[256];
    long backoff = BACKOFF_MIN_MS;
    int leading = 0, lost = 0, refusing = 0;
    apr_time_t reported = 0;

    while (!stopping(rs)) {
        redisReply *reply;

        if (!leading) {
            if (!(leading = take_lead(rs, me))) {
                nap(rs, CANDIDATE_POLL_MS);
                continue;
            }
            /* From what the ring holds: it is this server's copy. */
            sse_wire_format_id(sse_ring_last_stamp(sse_store_ring(&rs->base)), after);
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, rs->s, SSE_LOGNO(01206)
                         "this child (pid %u) follows %s at Redis %s, after id %s",
                         me, rs->key, rs->where, after);
        }
        if (!c) {
            if (!(c = redis_connect(rs, XREAD_BLOCK_MS + COMMAND_TIMEOUT_MS, err,
                                    sizeof(err)))) {
                note_lost(rs, &lost, err);
                nap(rs, backoff);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            redis_answered(rs);
            if (lost) {
                lost = 0;
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, rs->s, SSE_LOGNO(01202)
                             "Redis at %s is back: delivery resumes after id %s",
                             rs->where, after);
            }
            backoff = BACKOFF_MIN_MS;
        }
        if (apr_time_now() - reported >= apr_time_from_msec(REPORT_MS)) {
            reported = apr_time_now();
            if (!report_counts(rs, c)) {
                snprintf(err, sizeof(err), "%s", c->errstr);
                redisFree(c);
                c = NULL;
                note_lost(rs, &lost, err);
                continue;
            }
        }
        reply = redisCommand(c, "XREAD COUNT %d BLOCK %d STREAMS %s %s", XREAD_COUNT,
                             XREAD_BLOCK_MS, rs->key, after);
        if (!reply) {
            snprintf(err, sizeof(err), "%s", c->errstr);
            redisFree(c);
            c = NULL;
            note_lost(rs, &lost, err);
            nap(rs, backoff);
            continue;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            /* Reachable but refusing (the key holds something else, an ACL,
             * loading): not "lost", and said once until it reads again. */
            redis_failed(rs, SSE_C_REDIS_ERR_FOLLOW, 0);
            if (!refusing)
                ap_log_error(APLOG_MARK, APLOG_ERR, 0, rs->s, SSE_LOGNO(01211)
                             "Redis at %s refuses to read %s: %s; retrying every second",
                             rs->where, rs->key, reply->str);
            refusing = 1;
            freeReplyObject(reply);
            nap(rs, 1000);
            continue;
        }
        refusing = 0;
        if (reply->type == REDIS_REPLY_ARRAY)
            copy_reply(rs, reply, after, sizeof(after));
        freeReplyObject(reply);
    }
    if (c)
        redisFree(c);
    if (leading)
        let_go(rs, me);
    return NULL;
}

/* ---- filling a new ring ---- */

#define FILL_BATCH 1000

int sse_store_redis_fill(sse_store *st)
{
    redis_store *rs = (redis_store *)st;
    redisContext *c;
    redisReply *reply;
    char err[256], after[SSE_ID_BUFSIZE + 1] = "-", first[SSE_ID_BUFSIZE] = "";
    apr_uint64_t stamp, floor, copied = 0;
    const redisReply *ent;
    int rc;

    if (!st || st->ops != &redis_ops)
        return 0;
    if (!(c = redis_connect(rs, COMMAND_TIMEOUT_MS, err, sizeof(err)))) {
        redis_failed(rs, SSE_C_REDIS_ERR_FOLLOW, 1);
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rs->s, SSE_LOGNO(01208)
                     "cannot fill the new event ring from Redis at %s (%s): it starts "
                     "empty, and ids from before now get sse-gap here", rs->where, err);
        return 0;
    }
    redis_answered(rs);
    /* Ids from just below the oldest entry Redis keeps on are positions:
     * nothing lies between the two. (Not XINFO's max-deleted-entry-id:
     * Redis 7.0 moves it on XDEL but not when it trims.) */
    floor = 0;
    reply = redisCommand(c, "XRANGE %s - + COUNT 1", rs->key);
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1
        && (ent = reply->element[0])->type == REDIS_REPLY_ARRAY && ent->elements >= 1
        && ent->element[0]->type == REDIS_REPLY_STRING
        && sse_wire_parse_server_id(ent->element[0]->str, ent->element[0]->len, &stamp))
        floor = stamp - 1;
    if (reply)
        freeReplyObject(reply);
    reply = NULL;
    /* An empty stream: start from Redis's clock if it is behind ours, or
     * the follower would skip the first events it stamps. */
    if (!floor && (reply = redisCommand(c, "TIME")) && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[1]->type == REDIS_REPLY_STRING)
        floor = SSE_STAMP(strtoull(reply->element[0]->str, NULL, 10) * 1000
                          + strtoull(reply->element[1]->str, NULL, 10) / 1000, 0);
    if (reply)
        freeReplyObject(reply);
    if (floor && floor < sse_ring_born(st->ring)
        && apr_global_mutex_lock(st->lock) == APR_SUCCESS) {
        rc = sse_ring_rebirth(st->ring, floor);
        apr_global_mutex_unlock(st->lock);
        if (rc != 0)
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rs->s, SSE_LOGNO(01210)
                         "the event ring was written to before it was filled from Redis: "
                         "ids from before its start get sse-gap here");
    }
    for (;;) {
        size_t i;

        reply = redisCommand(c, "XRANGE %s %s + COUNT %d", rs->key, after, FILL_BATCH);
        if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
            break;
        for (i = 0; i < reply->elements; i++) {
            ent = reply->element[i];
            if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2
                || ent->element[0]->type != REDIS_REPLY_STRING)
                continue;
            copy_entry(rs, ent);
            /* "(" : XRANGE after this id, exclusive (Redis 6.2). */
            snprintf(after, sizeof(after), "(%.*s", (int)ent->element[0]->len,
                     ent->element[0]->str);
            if (!first[0])
                snprintf(first, sizeof(first), "%s", after + 1);
            copied++;
        }
        freeReplyObject(reply);
    }
    if (reply)
        freeReplyObject(reply);
    redisFree(c);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, rs->s, SSE_LOGNO(01209)
                 "new event ring filled from Redis at %s: %" APR_UINT64_T_FMT
                 " event(s)%s%s%s%s", rs->where, copied, copied ? ", ids " : "",
                 first, copied ? " to " : "", copied ? after + 1 : "");
    return 1;
}

static apr_status_t follower_cleanup(void *data)
{
    redis_store *rs = data;

    __atomic_store_n(&rs->stop, 1, __ATOMIC_RELEASE);
    if (!rs->started || pthread_equal(rs->thread, pthread_self()))
        return APR_SUCCESS;
    /* Bounded, as the dispatcher's (sse_dispatch.c): the process exits
     * right after, and the word is then taken over as a dead pid's. */
    if (sse_dispatch_thread_join(rs->thread, JOIN_WAIT_S))
        rs->started = 0;
    /* Under prefork this runs in a signal handler that may have interrupted
     * this very thread inside a publish: never wait for the lock. */
    if (pthread_mutex_trylock(&rs->pub_lock) == 0) {
        pub_drop(rs);
        pthread_mutex_unlock(&rs->pub_lock);
    }
    return APR_SUCCESS;
}

void sse_store_redis_child_init(sse_store *st, apr_pool_t *pchild, server_rec *s)
{
    redis_store *rs = (redis_store *)st;
    int rv;

    if (!st || st->ops != &redis_ops)
        return;
    rs->s = s;
    rv = sse_dispatch_thread_start(&rs->thread, follower, rs);
    if (rv != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(01207)
                     "cannot start the Redis follower thread: this child will never "
                     "copy Redis's events into the ring");
        return;
    }
    rs->started = 1;
    apr_pool_pre_cleanup_register(pchild, rs, follower_cleanup);
}

/* This server's id among those sharing the Redis: random, made once per
 * httpd (kept in the process pool, so graceful restarts keep it). */
static const char *server_id(server_rec *s)
{
    apr_pool_t *pproc = s->process->pool;
    unsigned char raw[8];
    char *sid = NULL;
    int i;

    apr_pool_userdata_get((void **)&sid, "mod_sse.redis.sid", pproc);
    if (sid)
        return sid;
    if (apr_generate_random_bytes(raw, sizeof(raw)) != APR_SUCCESS) {
        apr_uint64_t t = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 40);
        memcpy(raw, &t, sizeof(raw));
    }
    sid = apr_palloc(pproc, 2 * sizeof(raw) + 1);
    for (i = 0; i < (int)sizeof(raw); i++)
        snprintf(sid + 2 * i, 3, "%02x", raw[i]);
    apr_pool_userdata_set(sid, "mod_sse.redis.sid", apr_pool_cleanup_null, pproc);
    return sid;
}

sse_store *sse_store_redis_open(apr_pool_t *p, sse_store *ring, server_rec *s)
{
    const sse_server_conf *sc = sse_config_server(s);
    redis_store *rs = apr_pcalloc(p, sizeof(*rs));

    rs->base = *ring;
    rs->base.ops = &redis_ops;
    rs->base.retry_after = RETRY_AFTER_S;
    rs->s = s;
    rs->url = *sc->redis;
    rs->where = rs->url.is_unix
                ? apr_psprintf(p, "unix:%s?db=%d", rs->url.path, rs->url.db)
                : apr_psprintf(p, strchr(rs->url.host, ':') ? "redis://[%s]:%d/%d"
                                                            : "redis://%s:%d/%d",
                               rs->url.host, rs->url.port, rs->url.db);
    rs->key = apr_pstrcat(p, sc->redis_prefix, "events", NULL);
    rs->servers = apr_pstrcat(p, sc->redis_prefix, "servers", NULL);
    rs->subs = apr_pstrcat(p, sc->redis_prefix, "subs:", NULL);
    rs->sid = server_id(s);
    rs->my_subs = apr_pstrcat(p, rs->subs, rs->sid, NULL);
    snprintf(rs->maxlen, sizeof(rs->maxlen), "%" APR_INT64_T_FMT, sc->redis_retention);
    pthread_mutex_init(&rs->pub_lock, NULL);
    return &rs->base;
}
