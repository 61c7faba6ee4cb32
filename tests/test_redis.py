"""Several servers, one set of channels: SSERedis (issue 15).

Each test starts its own redis-server (tests/ssetest/redis.py) on a free
loopback port and httpd servers that name it with a prefix of their own;
everything is stopped by pid. Covered: a publish on A reaches B with the
same id and bytes (and is the Redis stream's entry), under every MPM and
through the optional function; concurrent publishers on A and B give
subscribers on A and B the identical sequence; one follower per server,
taken over when it is killed, and after a graceful restart; failover with
Last-Event-ID to a freshly started server, a full restart of every httpd
(and of Redis with persistence), resuming from an id the ring lost but
Redis keeps, sse-gap for an id Redis no longer keeps; Redis SIGKILLed
mid-stream (streams stay, publishes get 503 + Retry-After + JSON, delivery
resumes once Redis is back without restarting httpd, lost and back logged
once each); a key of another type; DELETE and subscriber counts across
servers; bad SSERedis values fail at start-up naming the directive;
sse_redis_up and sse_redis_errors_total (exact per refused request, absent
without SSERedis); HTTP/2 (h2c, TLS) and CORS streams on one server getting
events published on the other."""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from browser import CurlStream, make_cert
from ssetest.channels import chan_query, uniq
from ssetest.clients import request, subscribe
from ssetest.env import MPMS
from ssetest.httpd import BASE_MODULES
from ssetest.metrics import (REDIS_OPS, STATUS_LOCATION, parse_prometheus, status_json,
                             status_prometheus, wait_figure)
from ssetest.publish import pub_json, pub_raw, publish_ok, wait_subscribers
from ssetest.redis import RedisServer
from ssetest.wire import (HEARTBEAT, SERVER_ID_RE, assert_strictly_increasing, server_id_key,
                          wire_event)
from testmod import sse_testmod_conf


def redis_conf(r, prefix):
    return f"SSERedis {r.url}\nSSERedisPrefix {prefix}\n"


@pytest.fixture
def pair(httpd, redis):
    """Two event-MPM servers sharing redis under one prefix."""
    prefix = uniq("p") + ":"
    a = httpd(server_conf=redis_conf(redis, prefix), name="redis-a")
    b = httpd(server_conf=redis_conf(redis, prefix), name="redis-b")
    return a, b, prefix


def wait_log(h, tag, n=1, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if h.error_log().count(tag) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{tag} not logged {n} time(s):\n" + h.error_log()[-4000:])


def wait_following(*servers):
    """Each server's follower has started (SSE01206): before it, a publish
    elsewhere is still copied (it reads from the ring's birth), but the
    tests want the steady state."""
    for h in servers:
        wait_log(h, "SSE01206")


# ---------------------------------------------------------------- delivery

def test_publish_on_a_reaches_subscribers_of_a_and_b(pair, redis):
    a, b, prefix = pair
    chan = uniq("x")
    wait_following(a, b)
    with subscribe(a.port, chan) as sa, subscribe(b.port, chan) as sb:
        r = pub_raw(a.port, chan, b"hello\nworld", event="greeting", retry=1500)
        assert r.status == 200, r
        id_ = r.json["id"]
        want = wire_event(id_, b"hello\nworld", event="greeting", retry=1500)
        assert sa.next_event(10).raw == want
        assert sb.next_event(10).raw == want
        # The id is the Redis stream entry's, with the fields as stored.
        assert redis.cli_json("XRANGE", prefix + "events", "-", "+") == [
            [id_, ["c", chan, "e", "greeting", "r", "1500", "d", "hello\nworld"]]]
        # A publisher's own id travels too; the stream orders it.
        mine = publish_ok(b.port, chan, "own id", id="mine-1")
        assert sa.next_event(10).raw == wire_event("mine-1", b"own id")
        assert sb.next_event(10).raw == wire_event("mine-1", b"own id")
        assert mine == "mine-1"
        sa.assert_no_event(0.3)
        sb.assert_no_event(0.3)
    # Every key the module wrote starts with the prefix: the stream, the
    # servers' reports and their subscriber counts.
    keys = redis.cli_json("KEYS", "*")
    assert prefix + "events" in keys and prefix + "servers" in keys, keys
    assert all(k.startswith(prefix) for k in keys), keys


@pytest.mark.parametrize("mpm", MPMS)
def test_every_mpm_delivers_across_servers(httpd, redis, mpm):
    prefix = uniq("mpm") + ":"
    a = httpd(mpm=mpm, server_conf=redis_conf(redis, prefix), name=f"redis-a-{mpm}")
    b = httpd(mpm=mpm, server_conf=redis_conf(redis, prefix), name=f"redis-b-{mpm}")
    wait_following(a, b)
    chan = uniq("mpm")
    with subscribe(a.port, chan) as sa, subscribe(b.port, chan) as sb:
        ids = [publish_ok([a, b][i % 2].port, chan, f"m{i}") for i in range(6)]
        for s in (sa, sb):
            evs = s.next_events(6, timeout=10)
            assert [e.raw for e in evs] == [wire_event(i, f"m{k}".encode())
                                            for k, i in enumerate(ids)]
    # One follower per server, whatever its number of children.
    for h in (a, b):
        assert h.error_log().count("SSE01206") == 1, h.error_log()


def follower_pid(h):
    """The pid in the last SSE01206 line (the server's follower)."""
    line = [l for l in h.error_log().splitlines() if "SSE01206" in l][-1]
    return int(line.split("(pid ")[1].split(")")[0])


def test_follower_killed_another_child_takes_over(pair):
    a, b, prefix = pair
    wait_following(a, b)
    dead = follower_pid(b)
    assert dead in b.children()
    os.kill(dead, signal.SIGKILL)
    # Within a second or so (CANDIDATE_POLL_MS), another child follows.
    wait_log(b, "SSE01206", n=2, timeout=15)
    assert follower_pid(b) != dead and follower_pid(b) in b.children()
    chan = uniq("to")
    with subscribe(b.port, chan) as sb:
        id_ = publish_ok(a.port, chan, "after takeover")
        assert sb.next_event(10).raw == wire_event(id_, b"after takeover")
        sb.assert_no_event(0.3)


def test_graceful_restart_keeps_delivering(pair):
    a, b, prefix = pair
    wait_following(a, b)
    chan = uniq("gr")
    before = publish_ok(a.port, chan, "before")
    b.graceful()
    # A child of the new generation becomes the follower.
    wait_log(b, "SSE01206", n=2, timeout=15)
    with subscribe(b.port, chan, headers={"Last-Event-ID": before}) as sb:
        id_ = publish_ok(a.port, chan, "after graceful")
        assert sb.next_event(10).raw == wire_event(id_, b"after graceful")
        sb.assert_no_event(0.3)


def test_optional_function_publishes_through_redis(httpd, redis, sse_testmod_so):
    """Another module's sse_publish() on A reaches B: the same store."""
    prefix = uniq("mod") + ":"
    a = httpd(server_conf=redis_conf(redis, prefix), name="redis-a",
              conf=sse_testmod_conf(sse_testmod_so,
                                    "<Location /t-publish>\n    SetHandler sse-test-publish\n"
                                    "</Location>\n"))
    b = httpd(server_conf=redis_conf(redis, prefix), name="redis-b")
    wait_following(a, b)
    chan = uniq("mod")
    with subscribe(b.port, chan) as sb:
        r = request(a.port, "GET", f"/t-publish?channel={chan}&data=from%20a%20module")
        assert r.status == 200, r
        id_ = r.body.decode().strip()
        assert sb.next_event(10).raw == wire_event(id_, b"from a module")
    assert redis.cli_json("XRANGE", prefix + "events", "-", "+")[0][0] == id_


def test_batch_is_consecutive_and_multi_channel(pair, redis):
    a, b, prefix = pair
    c1, c2 = uniq("m1"), uniq("m2")
    wait_following(a, b)
    with subscribe(b.port, [c1, c2]) as sb:
        r = pub_json(a.port, [{"channel": c1, "data": "one"},
                              {"channel": [c1, c2], "data": "two"}])
        assert r.status == 200, r
        ids = [e["id"] for e in r.json]
        evs = sb.next_events(2, timeout=10)
        assert [e.raw for e in evs] == [wire_event(ids[0], b"one"), wire_event(ids[1], b"two")]
        sb.assert_no_event(0.3)
    assert redis.cli_json("XRANGE", prefix + "events", "-", "+") == [
        [ids[0], ["c", c1, "d", "one"]], [ids[1], ["c", f"{c1} {c2}", "d", "two"]]]
    assert_strictly_increasing(ids)


def test_concurrent_publishers_on_a_and_b_identical_sequence(pair, redis):
    a, b, prefix = pair
    chan = uniq("cc")
    wait_following(a, b)
    answered, errors, lock = [], [], threading.Lock()

    def worker(h, tag):
        for i in range(25):
            r = pub_raw(h.port, chan, f"{tag}{i}")
            if r.status != 200:
                errors.append(r)
                return
            with lock:
                answered.append((r.json["id"], f"{tag}{i}".encode()))

    with subscribe(a.port, chan) as sa, subscribe(b.port, chan) as sb:
        ts = [threading.Thread(target=worker, args=(h, t)) for h, t in ((a, "a"), (b, "b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        ea = sa.next_events(50, timeout=20)
        eb = sb.next_events(50, timeout=20)
        sa.assert_no_event(0.3)
        sb.assert_no_event(0.3)
    seq_a = [(e.id, e.data) for e in ea]
    seq_b = [(e.id, e.data) for e in eb]
    assert seq_a == seq_b
    assert_strictly_increasing([i for i, _ in seq_a])
    assert sorted(answered, key=lambda p: server_id_key(p[0])) == seq_a
    # Redis's own order is that order.
    assert redis.cli("XLEN", prefix + "events") == "50"


def test_retention_bounds_the_stream(httpd, redis):
    prefix = uniq("ret") + ":"
    h = httpd(server_conf=redis_conf(redis, prefix) + "SSERedisRetention 5\n")
    chan = uniq("r")
    for i in range(300):
        publish_ok(h.port, chan, f"{i}")
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default): the
    # stream keeps at least 5 and far fewer than the 300 published.
    n = int(redis.cli("XLEN", prefix + "events"))
    assert 5 <= n < 300, n
    last = redis.cli_json("XREVRANGE", prefix + "events", "+", "-", "COUNT", "1")
    assert last[0][1] == ["c", chan, "d", "299"]


# ---------------------------------------------------------------- resuming on another server

def gap_event(asked, oldest):
    data = json.dumps({"last_event_id": asked, "oldest_id": oldest}, separators=(",", ":"))
    return b"id: " + asked.encode() + b"\nevent: sse-gap\ndata: " + data.encode() + b"\n\n"


def test_failover_to_a_freshly_started_server(httpd, redis):
    prefix = uniq("fo") + ":"
    chan, other = uniq("fo"), uniq("other")
    a = httpd(server_conf=redis_conf(redis, prefix), name="redis-a")
    wait_following(a)
    sent = []
    for i in range(6):
        sent.append((publish_ok(a.port, chan, f"e{i}"), f"e{i}".encode()))
        publish_ok(a.port, other, f"o{i}")          # interleaved, another channel
    # C starts after all of them, with an empty ring: filled from Redis.
    c = httpd(server_conf=redis_conf(redis, prefix), name="redis-c")
    wait_log(c, "SSE01209")
    assert "12 event(s)" in c.error_log(), c.error_log()
    wait_following(c)
    with subscribe(c.port, chan, headers={"Last-Event-ID": sent[2][0]}) as s:
        evs = s.next_events(3, timeout=10)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[3:]]
        s.assert_no_event(0.3)
        live = publish_ok(a.port, chan, "live")
        assert s.next_event(10).raw == wire_event(live, b"live")


def test_full_restart_of_every_httpd_loses_nothing_redis_holds(httpd, redis):
    prefix = uniq("rs") + ":"
    chan = uniq("rs")
    a = httpd(server_conf=redis_conf(redis, prefix), name="redis-a")
    b = httpd(server_conf=redis_conf(redis, prefix), name="redis-b")
    wait_following(a, b)
    sent = [(publish_ok([a, b][i % 2].port, chan, f"r{i}"), f"r{i}".encode()) for i in range(6)]
    a.stop()
    b.stop()
    a2 = httpd(server_conf=redis_conf(redis, prefix), name="redis-a2")
    wait_log(a2, "SSE01209")
    with subscribe(a2.port, chan, headers={"Last-Event-ID": sent[0][0]}) as s:
        evs = s.next_events(5, timeout=10)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[1:]]
        s.assert_no_event(0.3)


def test_redis_persistence_survives_a_stop_of_everything(httpd):
    r = RedisServer(appendonly=True)
    try:
        r.start()
        prefix = uniq("aof") + ":"
        chan = uniq("aof")
        a = httpd(server_conf=redis_conf(r, prefix), name="redis-a")
        wait_following(a)
        sent = [(publish_ok(a.port, chan, f"p{i}"), f"p{i}".encode()) for i in range(4)]
        a.stop()
        r.stop()                    # SIGTERM: Redis writes its append-only file
        r.start()
        a2 = httpd(server_conf=redis_conf(r, prefix), name="redis-a2")
        wait_log(a2, "SSE01209")
        with subscribe(a2.port, chan, headers={"Last-Event-ID": sent[0][0]}) as s:
            evs = s.next_events(3, timeout=10)
            assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[1:]]
            live = publish_ok(a2.port, chan, "live")
            assert s.next_event(10).raw == wire_event(live, b"live")
    finally:
        r.cleanup()


def test_resume_older_than_the_ring_reads_redis(httpd, redis):
    """A 64K ring keeps about 30 of these 2K events; Redis keeps them all:
    a stream resuming from the first reads the rest from Redis, then the
    ring, then live, exactly once each and in order, without sse-gap."""
    prefix = uniq("hist") + ":"
    chan, other = uniq("hist"), uniq("noise")
    a = httpd(server_conf=redis_conf(redis, prefix) + "SSEBufferSize 64K\n", name="redis-a")
    wait_following(a)
    payload = lambda k: (f"{k:04d}-" + "w" * 2000).encode()
    first = publish_ok(a.port, chan, "first")
    sent = []
    for k in range(120):
        sent.append((publish_ok(a.port, chan, payload(k)), payload(k)))
        if k % 10 == 0:
            publish_ok(a.port, other, "elsewhere")
    # The ring has wrapped: the first event is gone from it, not from Redis.
    deadline = time.monotonic() + 10
    while request(a.port, "GET", "/pub?channel=" + chan).json["messages"] >= 121:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert request(a.port, "GET", "/pub?channel=" + chan).json["messages"] < 60
    with subscribe(a.port, chan, headers={"Last-Event-ID": first}) as s:
        evs = s.next_events(120, timeout=20)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent]
        s.assert_no_event(0.5)
        live = publish_ok(a.port, chan, "live")
        assert s.next_event(10).raw == wire_event(live, b"live")
    # Redis trimmed below the id: sse-gap as before, then what the ring has.
    redis.cli("XTRIM", prefix + "events", "MAXLEN", "20")
    with subscribe(a.port, chan, headers={"Last-Event-ID": first}) as s:
        gap = s.next_event(10)
        assert gap.event == "sse-gap" and json.loads(gap.data)["last_event_id"] == first


def test_id_older_than_redis_keeps_gets_sse_gap(httpd, redis):
    prefix = uniq("gap") + ":"
    chan = uniq("gap")
    a = httpd(server_conf=redis_conf(redis, prefix), name="redis-a")
    sent = [(publish_ok(a.port, chan, f"g{i}"), f"g{i}".encode()) for i in range(5)]
    # Redis drops the two oldest (exactly, unlike MAXLEN ~).
    assert redis.cli("XTRIM", prefix + "events", "MAXLEN", "3") == "2"
    c = httpd(server_conf=redis_conf(redis, prefix), name="redis-c")
    wait_log(c, "SSE01209")
    with subscribe(c.port, chan, headers={"Last-Event-ID": sent[0][0]}) as s:
        gap = s.next_event(10)
        assert gap.raw == gap_event(sent[0][0], sent[2][0])
        evs = s.next_events(3, timeout=10)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[2:]]
    # The newest trimmed one too: Redis does not say where it trimmed.
    with subscribe(c.port, chan, headers={"Last-Event-ID": sent[1][0]}) as s:
        assert s.next_event(10).raw == gap_event(sent[1][0], sent[2][0])
    # The oldest kept is a position: exactly what follows, no gap.
    with subscribe(c.port, chan, headers={"Last-Event-ID": sent[2][0]}) as s:
        evs = s.next_events(2, timeout=10)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[3:]]
        s.assert_no_event(0.3)


def test_fill_with_redis_down_starts_empty(httpd, redis):
    port = redis.port
    redis.kill()
    h = httpd(server_conf=f"SSERedis redis://127.0.0.1:{port}\nSSERedisPrefix {uniq('e')}:\n")
    log = h.error_log()
    assert log.count("SSE01208") == 1 and "SSE01209" not in log, log


# ---------------------------------------------------------------- Redis down

def test_redis_killed_and_restarted_mid_stream(pair, redis):
    a, b, prefix = pair
    chan = uniq("k")
    wait_following(a, b)
    with subscribe(a.port, chan) as sa, subscribe(b.port, chan) as sb:
        first = publish_ok(a.port, chan, "before")
        assert sa.next_event(10).id == first and sb.next_event(10).id == first
        redis.kill()
        wait_log(a, "SSE01201")
        wait_log(b, "SSE01201")
        for h in (a, b):
            r = pub_raw(h.port, chan, b"while down")
            assert r.status == 503, r
            assert r.headers.get("retry-after") == "1", r
            assert "Redis cannot be reached" in r.error_message()
        # The streams stay: heartbeats go on (SSEHeartbeat 2 on /events).
        for s in (sa, sb):
            mark = len(s.body)
            s.read_until(lambda c: bytes(c.body[mark:]).count(HEARTBEAT) >= 1, timeout=6)
            assert bytes(s.body[mark:]).count(HEARTBEAT) >= 1
            assert not s.eof
        redis.start()
        wait_log(a, "SSE01202")
        wait_log(b, "SSE01202")
        deadline = time.monotonic() + 15
        while True:
            r = pub_raw(b.port, chan, b"after")
            if r.status == 200 or time.monotonic() > deadline:
                break
            assert r.status == 503, r
            time.sleep(0.2)
        assert r.status == 200, r
        after = r.json["id"]
        assert server_id_key(after) > server_id_key(first)
        # Exactly that: nothing refused during the outage was delivered.
        assert sa.next_event(10).raw == wire_event(after, b"after")
        assert sb.next_event(10).raw == wire_event(after, b"after")
        sa.assert_no_event(0.3)
        sb.assert_no_event(0.3)
    for h in (a, b):
        log = h.error_log()
        assert log.count("SSE01201") == 1, log[-4000:]
        assert log.count("SSE01202") == 1, log[-4000:]
        # The refused requests themselves are not errors of the log.
        assert "SSE00101" in log
        assert not [l for l in log.splitlines() if "SSE00101" in l and "[sse:error]" in l]


def _publish_pids(h):
    """The pid of the child that served each publish, in order (the access
    log's last field)."""
    return [int(l.split()[-1]) for l in h.access_log_path.read_text().splitlines()
            if '"POST /pub?' in l]


def test_every_child_publishes_at_once_when_redis_is_back(httpd, redis):
    """Redis restarted closes every child's publish connection. A child
    finds that before it sends (the idle connection is readable), so its
    first publish after Redis is back reconnects and succeeds: no 503 for
    a connection that died while idle."""
    prefork = """
StartServers 3
MinSpareServers 3
MaxSpareServers 3
ServerLimit 3
MaxRequestWorkers 3
MaxConnectionsPerChild 0
"""
    h = httpd(mpm="prefork", mpm_conf=prefork, server_conf=redis_conf(redis, uniq("bk") + ":"))
    chan = uniq("bk")
    deadline = time.monotonic() + 30
    while len(set(_publish_pids(h)) & set(h.children())) < 3:
        assert time.monotonic() < deadline, (h.children(), _publish_pids(h))
        publish_ok(h.port, chan, "warm")
    children = set(h.children())
    assert len(children) == 3
    redis.kill()
    redis.start()
    wait_log(h, "SSE01202")
    before = len(_publish_pids(h))
    sent = []
    # No stream meanwhile: under prefork it would hold one of the three.
    while not children <= set(_publish_pids(h)[before:]):
        assert time.monotonic() < deadline + 30, _publish_pids(h)[before:]
        r = pub_raw(h.port, chan, f"back{len(sent)}")
        assert r.status == 200, r
        sent.append((r.json["id"], f"back{len(sent)}".encode()))
    with subscribe(h.port, chan, headers={"Last-Event-ID": sent[0][0]}) as s:
        assert [(e.id, e.data) for e in s.next_events(len(sent) - 1)] == sent[1:]
    assert "a connection failed" not in h.error_log()


def test_detached_streams_get_every_servers_publishes(httpd, redis):
    """SSEDetach on with SSERedis: each server's follower writes its ring
    and its dispatcher writes the detached streams, whichever server took
    the publish."""
    conf = redis_conf(redis, uniq("dt") + ":") + "SSEDetach on\n"
    a = httpd(server_conf=conf, conf=STATUS_LOCATION, name="redis-a")
    b = httpd(server_conf=conf, conf=STATUS_LOCATION, name="redis-b")
    chan = uniq("dt")
    wait_following(a, b)
    with subscribe(a.port, chan) as sa, subscribe(b.port, chan) as sb:
        for h in (a, b):
            wait_figure(h.port, "sse_streams_detached", 1)
        sent = []
        for i, h in enumerate((a, b, a)):
            r = pub_raw(h.port, chan, f"d{i}")
            assert r.status == 200, r
            sent.append(wire_event(r.json["id"], f"d{i}".encode()))
        assert [e.raw for e in sa.next_events(3)] == sent
        assert [e.raw for e in sb.next_events(3)] == sent
        sa.assert_no_event(0.3)
        sb.assert_no_event(0.3)


def test_publish_with_redis_never_up_is_503(httpd, redis):
    port = redis.port
    redis.kill()
    h = httpd(server_conf=f"SSERedis redis://127.0.0.1:{port}\nSSERedisPrefix {uniq('d')}:\n")
    chan = uniq("n")
    with subscribe(h.port, chan) as s:
        r = pub_raw(h.port, chan, b"x")
        assert r.status == 503 and r.headers.get("retry-after") == "1", r
        assert "nothing was published" in r.error_message()
        s.assert_no_event(0.5)
    wait_log(h, "SSE01201")
    assert h.error_log().count("SSE01201") == 1


def test_stream_key_of_another_type_is_refused_then_recovers(httpd, redis):
    prefix = uniq("wt") + ":"
    redis.cli("SET", prefix + "events", "not a stream")
    h = httpd(server_conf=redis_conf(redis, prefix))
    wait_log(h, "SSE01211")
    chan = uniq("wt")
    with subscribe(h.port, chan) as s:
        r = pub_raw(h.port, chan, b"x")
        assert r.status == 503 and r.headers.get("retry-after") == "1", r
        assert "Redis refused the publish" in r.error_message()
        assert "WRONGTYPE" in h.error_log()
        assert redis.cli("GET", prefix + "events") == "not a stream"
        redis.cli("DEL", prefix + "events")
        id_ = publish_ok(h.port, chan, "now")
        assert s.next_event(10).raw == wire_event(id_, b"now")
    log = h.error_log()
    assert log.count("SSE01211") == 1 and "SSE01201" not in log, log


def test_delete_ends_streams_and_history_on_every_server(pair, redis, httpd):
    a, b, prefix = pair
    chan, kept = uniq("del"), uniq("kept")
    wait_following(a, b)
    with subscribe(a.port, chan) as sa, subscribe(b.port, chan) as sb:
        wait_subscribers(b.port, chan, 1)
        old = [publish_ok(a.port, chan, f"old{i}") for i in range(3)]
        publish_ok(a.port, kept, "other channel")
        for s in (sa, sb):
            assert [e.id for e in s.next_events(3, timeout=10)] == old
        r = request(b.port, "DELETE", "/pub?channel=" + chan)
        assert r.status == 200, r
        # This server's figures, taken before: 3 events, 1 stream here.
        assert r.json == {"channel": chan, "messages": 3, "subscribers": 1}
        # The streams end on both servers.
        sa.wait_eof(10)
        sb.wait_eof(10)
        assert sa.eof and sb.eof
    # Gone everywhere, once the other server's report is current.
    for h in (a, b):
        wait_gone(h, chan)
    # The marker is in the stream, after the events.
    entries = redis.cli_json("XRANGE", prefix + "events", "-", "+")
    assert entries[-1][1] == ["c", chan, "x", "delete"]
    # A server started now fills its ring past the marker: no history.
    c = httpd(server_conf=redis_conf(redis, prefix), name="redis-c")
    wait_log(c, "SSE01209")
    assert request(c.port, "GET", "/pub?channel=" + chan).status == 404
    assert request(c.port, "GET", "/pub?channel=" + kept).json["messages"] == 1
    with subscribe(c.port, chan, headers={"Last-Event-ID": old[0]}) as s:
        live = publish_ok(a.port, chan, "new life")
        assert s.next_event(10).raw == wire_event(live, b"new life")


def test_delete_of_a_channel_unknown_here_still_reaches_the_others(pair):
    a, b, prefix = pair
    chan = uniq("far")
    wait_following(a, b)
    with subscribe(a.port, chan) as sa:
        wait_subscribers(a.port, chan, 1)
        r = request(b.port, "DELETE", "/pub?channel=" + chan)
        assert r.status == 200 and r.json == {"channel": chan, "messages": 0,
                                              "subscribers": 0}, r
        sa.wait_eof(10)
        assert sa.eof


def test_delete_with_redis_down_is_503(pair, redis):
    a, b, prefix = pair
    chan = uniq("dd")
    wait_following(a, b)
    with subscribe(a.port, chan) as sa:
        publish_ok(a.port, chan, "x")
        sa.next_event(10)
        redis.kill()
        r = request(a.port, "DELETE", "/pub?channel=" + chan)
        assert r.status == 503 and r.headers.get("retry-after") == "1", r
        assert "not deleted" in r.error_message()
        sa.assert_no_event(0.5)
        assert not sa.eof


def wait_gone(h, chan, timeout=10):
    """Channel info says 404 (no events, no subscribers anywhere) within a
    few seconds: the other servers' reports are at most a second old."""
    deadline = time.monotonic() + timeout
    while True:
        r = request(h.port, "GET", "/pub?channel=" + chan)
        if r.status == 404:
            return
        assert r.status == 200 and time.monotonic() < deadline, r
        time.sleep(0.1)


def wait_info(h, chan, subscribers, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        r = request(h.port, "GET", "/pub?channel=" + chan)
        if (r.status == 200 and r.json["subscribers"] == subscribers) \
                or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_subscribers_are_counted_on_every_server(pair, redis):
    a, b, prefix = pair
    chan = uniq("cnt")
    wait_following(a, b)
    with subscribe(a.port, chan), subscribe(a.port, chan), subscribe(b.port, chan):
        # Each server reports every second; a figure a few seconds old is fine.
        for h in (a, b):
            r = wait_info(h, chan, 3)
            assert r.status == 200 and r.json["subscribers"] == 3, r
        r = pub_raw(b.port, chan, b"x")
        assert r.status == 200 and r.json["subscribers"] == 3, r
        # Redis holds one hash per server, with its own streams only.
        hashes = sorted(redis.cli_json("HGET", k, chan)
                        for k in redis.cli_json("KEYS", prefix + "subs:*"))
        assert hashes == ["1", "2"], hashes
    # Closed: the reports say so within a few seconds.
    for h in (a, b):
        r = wait_info(h, chan, 0)
        assert r.status == 200 and r.json["subscribers"] == 0, r


def test_channel_known_only_elsewhere_has_info_here(pair):
    a, b, prefix = pair
    chan = uniq("far")
    wait_following(a, b)
    with subscribe(b.port, chan):
        r = wait_info(a, chan, 1)
        assert r.status == 200, r
        assert r.json == {"channel": chan, "subscribers": 1, "messages": 0, "last_id": None}
    wait_gone(a, chan)


def test_channel_info_counts_local_subscribers(pair):
    a, b, prefix = pair
    chan = uniq("ci")
    wait_following(a, b)
    with subscribe(b.port, chan) as sb:
        wait_subscribers(b.port, chan, 1)
        r = pub_raw(b.port, chan, b"x")
        assert r.status == 200 and r.json["subscribers"] == 1, r
        sb.next_event(10)


# ---------------------------------------------------------------- configuration

BAD = [
    ("SSERedis", "SSERedis http://127.0.0.1:6379", "not redis://"),
    ("SSERedis", "SSERedis redis://127.0.0.1:99999", "port"),
    ("SSERedis", "SSERedis redis://127.0.0.1/db", "database"),
    ("SSERedis", "SSERedis redis://user@127.0.0.1", "password"),
    ("SSERedis", "SSERedis unix:run/redis.sock", "absolute"),
    ("SSERedis", "SSERedis unix:/run/redis.sock?database=1", "?db=N"),
    ("SSERedisPrefix", 'SSERedisPrefix ""', "takes one argument"),   # httpd's own check
    ("SSERedisPrefix", 'SSERedisPrefix "a b"', "space"),
    ("SSERedisRetention", "SSERedisRetention 0", "from 1 to 100000000"),
    ("SSERedisRetention", "SSERedisRetention many", "whole number"),
]


@pytest.mark.parametrize("directive,line,why", BAD, ids=[l for _, l, _ in BAD])
def test_bad_redis_values_fail_startup(httpd, directive, line, why):
    rc, out = httpd(server_conf=line + "\n", start=False).config_test()
    assert rc != 0, f"`{line}` was accepted:\n{out}"
    assert directive in out and why in out, out


def test_redis_password_is_not_echoed(httpd):
    rc, out = httpd(server_conf="SSERedis redis://app:s3cretpw@127.0.0.1:0\n",
                    start=False).config_test()
    assert rc != 0 and "SSERedis: the port" in out, out
    assert "s3cretpw" not in out, out


def test_redis_directives_only_server_wide(httpd):
    rc, out = httpd(conf="<Location /x>\nSSERedis redis://127.0.0.1\n</Location>\n",
                    start=False).config_test()
    assert rc != 0 and "SSERedis" in out, out


# ---------------------------------------------------------------- metrics

def redis_errors(figures):
    return figures["sse_redis_errors_total"]


def test_metrics_without_redis_leave_redis_out(httpd):
    """Without SSERedis the Redis metrics are absent from both forms (an
    sse_redis_up of 0 there would fire the alert on every server)."""
    h = httpd(conf=STATUS_LOCATION)
    got = status_json(h.port)
    assert not [k for k in got if k.startswith("sse_redis")], got
    status_prometheus(h.port)       # asserts the exact set of metrics, Redis's left out
    text = request(h.port, "GET", "/sse-status?format=prometheus").body.decode()
    assert "sse_redis" not in text


def test_metrics_redis_up_errors_and_back(httpd, redis):
    prefix = uniq("met") + ":"
    h = httpd(conf=STATUS_LOCATION, server_conf=redis_conf(redis, prefix))
    wait_following(h)
    chan = uniq("met")
    zero = {op: 0 for op in REDIS_OPS}
    with subscribe(h.port, chan, path="/events-nohb") as s:
        first = publish_ok(h.port, chan, "up")
        assert s.next_event(10).id == first
        got = status_json(h.port)
        assert got["sse_redis_up"] == 1 and redis_errors(got) == zero, got
        prom = status_prometheus(h.port, redis=True)
        assert prom["sse_redis_up"] == 1.0
        assert prom["sse_redis_errors_total"] == {op: 0.0 for op in REDIS_OPS}

        redis.kill()
        # One publish refused: exactly one publish error, and Redis is down.
        r = pub_raw(h.port, chan, b"down")
        assert r.status == 503, r
        got = status_json(h.port)
        assert got["sse_redis_up"] == 0, got
        assert redis_errors(got)["publish"] == 1, got
        assert got["sse_publish_rejected_total"]["unavailable"] == 1, got
        # The follower counts each failed attempt (it retries every 2 s at most).
        wait_log(h, "SSE01201")
        got = status_json(h.port)
        assert redis_errors(got)["follow"] >= 1, got
        # A second publish (within the second after a failed connection:
        # refused at once), a DELETE and a channel info: one each.
        assert pub_raw(h.port, chan, b"down again").status == 503
        r = request(h.port, "DELETE", "/pub?channel=" + chan)
        assert r.status == 503, r
        r = request(h.port, "GET", "/pub?channel=" + chan)
        assert r.status == 200 and r.json["subscribers"] == 1, r   # this server's alone
        got = status_json(h.port)
        assert got["sse_redis_up"] == 0, got
        errs = redis_errors(got)
        assert (errs["publish"], errs["delete"], errs["read"]) == (2, 1, 1), got
        # The Prometheus form says the same, and promtool accepts it.
        body = request(h.port, "GET", "/sse-status?format=prometheus").body
        prom = parse_prometheus(body.decode(), redis=True)
        assert prom["sse_redis_up"] == 0.0
        assert prom["sse_redis_errors_total"]["publish"] == 2.0
        assert prom["sse_redis_errors_total"]["delete"] == 1.0
        promtool = shutil.which("promtool")
        if not promtool:
            pytest.fail("promtool is missing: run scripts/deps.sh (Debian package prometheus)")
        p = subprocess.run([promtool, "check", "metrics"], input=body, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        assert p.returncode == 0 and p.stdout == b"", p.stdout.decode(errors="replace")

        redis.start()
        # The follower reconnects within its 2 s backoff: up again, by itself.
        wait_figure(h.port, "sse_redis_up", 1, timeout=15)
        wait_log(h, "SSE01202")
        follow = redis_errors(status_json(h.port))["follow"]
        # A child whose connection failed less than a second ago still
        # answers 503 at once (README "Redis down"): let that second pass.
        time.sleep(1.1)
        after = publish_ok(h.port, chan, "back")
        assert s.next_event(10).raw == wire_event(after, b"back")
        got = status_json(h.port)
        assert got["sse_redis_up"] == 1, got
        assert redis_errors(got) == {"publish": 2, "delete": 1, "read": 1, "follow": follow}, got


# ---------------------------------------------------------------- HTTP/2 and CORS

H2_TLS_CONF = """
Protocols h2c http/1.1
Listen 127.0.0.1:{tls}
<VirtualHost 127.0.0.1:{tls}>
    ServerName 127.0.0.1
    Protocols h2 http/1.1
    SSLEngine on
    SSLCertificateFile "{dir}/cert.pem"
    SSLCertificateKeyFile "{dir}/key.pem"
</VirtualHost>
"""


def curl_h2_publish(port, chan, data, event):
    """A publish over HTTP/2 (h2c, prior knowledge) with curl: (status line, JSON)."""
    p = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "--max-time", "10",
         "-X", "POST", "-H", "Content-Type: application/octet-stream",
         "-H", f"SSE-Event: {event}", "--data-binary", "@-",
         f"http://127.0.0.1:{port}/pub{chan_query(chan)}"],
        input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    head, body = p.stdout.split(b"\r\n\r\n", 1)
    return head.decode("latin-1").split("\r\n")[0].rstrip(), json.loads(body)


def test_http2_subscribers_on_b_get_a_publish_over_http2(server, redis):
    """Two servers on one Redis, both speaking HTTP/2: streams on B over
    h2c and h2 (TLS) get, exactly, an event published on A over h2c."""
    prefix = uniq("h2") + ":"
    a = server(name="redis-h2-a", modules=BASE_MODULES + ["http2"],
               server_conf="Protocols h2c http/1.1\n" + redis_conf(redis, prefix))
    b = server(name="redis-h2-b", start=False, extra_ports=("tls",),
               modules=BASE_MODULES + ["http2", "ssl", "socache_shmcb"],
               server_conf=H2_TLS_CONF + redis_conf(redis, prefix))
    make_cert(b.dir)
    b.start()
    wait_following(a, b)
    chan = uniq("h2")
    path = f"/events-nohb{chan_query(chan)}"
    with CurlStream(f"http://127.0.0.1:{b.port}{path}", ["--http2-prior-knowledge"]) as h2c, \
            CurlStream(f"https://127.0.0.1:{b.ports['tls']}{path}", ["-k", "--http2"]) as h2:
        wait_subscribers(b.port, chan, 2)
        # A counts B's streams once B's follower has reported them.
        assert wait_info(a, chan, 2).json["subscribers"] == 2
        data = "over h2 ✓\nsecond line".encode()
        status, answer = curl_h2_publish(a.port, chan, data, "h2ev")
        assert status == "HTTP/2 200", status
        assert SERVER_ID_RE.match(answer["id"]) and answer["subscribers"] == 2, answer
        want = wire_event(answer["id"], data, event="h2ev")
        for s in (h2c, h2):
            s.wait_for(want, timeout=10)
            assert bytes(s.body) == want
            assert re.search(r"^HTTP/2 200 ?\r?$", s.headers_text(), re.M), s.headers_text()
            assert re.search(r"^content-type: text/event-stream; charset=utf-8\r?$",
                             s.headers_text(), re.M | re.I), s.headers_text()
        # And the other way: B publishes over HTTP/1.1, its own h2 streams get it.
        second = publish_ok(b.port, chan, "from b")
        for s in (h2c, h2):
            s.wait_for(want + wire_event(second, b"from b"), timeout=10)
            assert bytes(s.body) == want + wire_event(second, b"from b")


CORS_REDIS_CONF = """
<Location /cors/events>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSECorsOrigin https://app.example
    SSECorsCredentials on
</Location>
"""


def test_cors_stream_on_b_gets_a_publish(httpd, redis):
    """CORS with SSERedis: B's preflight and credentialed stream get the
    exact headers, and the stream the event published on A."""
    prefix = uniq("cors") + ":"
    a = httpd(server_conf=redis_conf(redis, prefix), name="redis-cors-a")
    b = httpd(conf=CORS_REDIS_CONF, server_conf=redis_conf(redis, prefix), name="redis-cors-b")
    wait_following(a, b)
    chan = uniq("cors")
    origin = "https://app.example"
    r = request(b.port, "OPTIONS", "/cors/events?channel=" + chan, headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})
    assert r.status == 204 and r.body == b"", r
    assert {k: v for k, v in r.headers.items() if k.startswith("access-control-")} == {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "last-event-id",
        "access-control-max-age": "600"}, r.headers
    assert "origin" in [v.strip().lower() for v in r.headers["vary"].split(",")], r.headers
    with subscribe(b.port, chan, path="/cors/events",
                   headers={"Origin": origin, "Cookie": "session=1"}) as s:
        assert {k: v for k, v in s.headers.items() if k.startswith("access-control-")} == {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true"}, s.headers
        assert "origin" in [v.strip().lower() for v in s.headers["vary"].split(",")]
        wait_subscribers(b.port, chan, 1)
        id_ = publish_ok(a.port, chan, "cross-origin, cross-server", event="c")
        assert s.next_event(10).raw == wire_event(id_, b"cross-origin, cross-server", event="c")
        s.assert_no_event(0.3)
    # An origin not listed: the stream still flows (CORS is the browser's
    # business), without the headers.
    with subscribe(b.port, chan, path="/cors/events",
                   headers={"Origin": "https://evil.example"}) as s:
        assert not [k for k in s.headers if k.startswith("access-control-")], s.headers
