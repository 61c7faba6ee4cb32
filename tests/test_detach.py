"""Detached streams (SSEDetach on): a plain HTTP/1.x stream is handed to its
child's detach thread once its headers and replay are out, and the worker
(or the prefork process) is free at once. What must hold: the stream goes on
after the handler returned and the access log line was written; one worker
holds any number of streams; heartbeats, DELETE, dead clients, the per-child
cap, graceful restart and a killed child behave as for thread streams; TLS
and HTTP/2 keep the thread path."""
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest

from browser import CurlStream, make_cert
from ssetest.channels import chan_query, uniq
from ssetest.clients import NodeClient, SSEClient, request, subscribe
from ssetest.httpd import BASE_MODULES
from ssetest.many import ManyStreams, raise_nofile
from ssetest.mercure import hmac_key, mint
from ssetest.metrics import STATUS_LOCATION, status_json, wait_figure
from ssetest.procs import child_pids, pid_alive
from ssetest.publish import pub_json, pub_raw
from ssetest.wire import HEARTBEAT, wire_event

DETACH_LOCATIONS = STATUS_LOCATION + """
<Location /det>
    SetHandler sse-stream
    SSEDetach on
    SSEHeartbeat 1
</Location>
<Location /det-nohb>
    SetHandler sse-stream
    SSEDetach on
    SSEHeartbeat 0
</Location>
<Location /det-hb5>
    SetHandler sse-stream
    SSEDetach on
    SSEHeartbeat 5
</Location>
<Location /det-replay>
    SetHandler sse-stream
    SSEDetach on
    SSEHeartbeat 1
    SSEInitialReplay 2
    SSERetry 1500
</Location>
<Location /thr>
    SetHandler sse-stream
    SSEDetach off
    SSEHeartbeat 1
</Location>
"""

# One prefork process and no spare: every stream it holds beyond the first
# would otherwise wait for a process that never comes.
ONE_PROCESS = """
StartServers 1
MinSpareServers 1
MaxSpareServers 1
ServerLimit 1
MaxRequestWorkers 1
MaxConnectionsPerChild 0
"""


def detached_server(httpd, mpm="event", mpm_conf=None, conf="", server_conf=""):
    return httpd(mpm=mpm, mpm_conf=mpm_conf, conf=DETACH_LOCATIONS + conf,
                 server_conf=server_conf, log_level="notice sse:debug")


def access_lines(h, needle):
    if not h.access_log_path.exists():
        return []
    return [l for l in h.access_log_path.read_text().splitlines() if needle in l]


def wait_for(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def end_records(h):
    """The detach thread's record of each stream's end (SSE01701)."""
    return re.findall(r"SSE01701: detached stream of (\S+) ended \(([^)]*)\): (\d+) events, "
                      r"(\d+) bytes, [0-9.]+ s, channels (\S*)", h.error_log())


# ---------------------------------------------------------------- the hand-over

@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_stream_goes_on_after_the_handler_returned(httpd, mpm):
    """The access log line is written when the handler returns: with the
    line there, the stream still receives events and heartbeats."""
    h = detached_server(httpd, mpm)
    ch = uniq("det")
    with subscribe(h.port, ch, path="/det") as s:
        assert s.headers.get("transfer-encoding") == "chunked"
        line = wait_for(lambda: access_lines(h, f"GET /det?channel={ch}"), what="access log")
        assert len(line) == 1 and " 200 " in line[0], line
        assert "SSE00311" in h.error_log()
        wait_figure(h.port, "sse_streams_detached", 1)
        ids = []
        for i in range(3):
            r = pub_raw(h.port, ch, b"after %d" % i)
            assert r.status == 200 and r.json["subscribers"] == 1, r
            ids.append(r.json["id"])
        got = s.next_events(3, timeout=10)
        assert [e.raw for e in got] == [wire_event(ids[i], b"after %d" % i) for i in range(3)]
        # Heartbeats every second from the detach thread.
        s.wait_bytes(HEARTBEAT, timeout=5)
        assert not s.eof
        figures = status_json(h.port)
        assert figures["sse_subscribers"] == 1 and figures["sse_streams_detached"] == 1
    wait_figure(h.port, "sse_streams_detached", 0)
    wait_figure(h.port, "sse_subscribers", 0)


def test_one_prefork_process_holds_many_streams(httpd):
    """With a thread per stream, one prefork process holds one stream and
    nothing else is served; detached, it holds them all and still answers."""
    h = detached_server(httpd, "prefork", mpm_conf=ONE_PROCESS)
    ch = uniq("one")
    subs = [subscribe(h.port, ch, path="/det") for _ in range(20)]
    try:
        assert len(child_pids(h.pid)) == 1
        r = pub_raw(h.port, ch, b"to all")
        assert r.status == 200 and r.json["subscribers"] == 20, r
        for s in subs:
            assert s.next_event(10).raw == wire_event(r.json["id"], b"to all")
        assert status_json(h.port)["sse_streams_detached"] == 20
    finally:
        for s in subs:
            s.close()
    wait_figure(h.port, "sse_subscribers", 0)


def test_replay_and_retry_go_out_before_the_hand_over(httpd):
    h = detached_server(httpd)
    ch = uniq("rep")
    old = [pub_raw(h.port, ch, b"old %d" % i).json["id"] for i in range(3)]
    with subscribe(h.port, ch, path="/det-replay") as s:
        got = s.next_events(2, timeout=5)
        assert [e.raw for e in got] == [wire_event(old[1], b"old 1"),
                                        wire_event(old[2], b"old 2")]
        assert bytes(s.body).startswith(b"retry: 1500\n\n")
        r = pub_raw(h.port, ch, b"live")
        assert s.next_event(5).raw == wire_event(r.json["id"], b"live")
        wait_figure(h.port, "sse_streams_detached", 1)


def test_resume_with_last_event_id(httpd):
    h = detached_server(httpd)
    ch = uniq("res")
    ids = [pub_raw(h.port, ch, b"e%d" % i).json["id"] for i in range(4)]
    with subscribe(h.port, ch, path="/det", headers={"Last-Event-ID": ids[1]}) as s:
        got = s.next_events(2, timeout=5)
        assert [e.raw for e in got] == [wire_event(ids[2], b"e2"), wire_event(ids[3], b"e3")]
        r = pub_raw(h.port, ch, b"e4")
        assert s.next_event(5).raw == wire_event(r.json["id"], b"e4")


def test_http10_stream_is_close_delimited(httpd):
    h = detached_server(httpd)
    ch = uniq("h10")
    with SSEClient(h.port, "/det" + chan_query(ch), http_version="1.0") as s:
        assert s.status == 200
        assert "transfer-encoding" not in s.headers
        wait_figure(h.port, "sse_streams_detached", 1)
        r = pub_raw(h.port, ch, b"old client")
        assert s.next_event(5).raw == wire_event(r.json["id"], b"old client")
        # DELETE ends it: close-delimited, the end is the server's FIN.
        assert request(h.port, "DELETE", "/pub" + chan_query(ch)).status == 200
        s.wait_eof(5)
        assert s.clean_end and bytes(s.body).count(b"old client") == 1


# ---------------------------------------------------------------- ending

def test_delete_ends_detached_streams_with_the_terminal_chunk(httpd):
    h = detached_server(httpd)
    ch = uniq("del")
    subs = [subscribe(h.port, ch, path="/det") for _ in range(3)]
    try:
        wait_figure(h.port, "sse_streams_detached", 3)
        r = pub_raw(h.port, ch, b"last words")
        assert request(h.port, "DELETE", "/pub" + chan_query(ch)).status == 200
        for s in subs:
            s.wait_eof(5)
            assert s.clean_end and not s.reset
            assert s.body_without_heartbeats() == wire_event(r.json["id"], b"last words")
        wait_figure(h.port, "sse_subscribers", 0)
        recs = wait_for(lambda: [x for x in end_records(h) if x[1] == "channel deleted"]
                        if len([x for x in end_records(h) if x[1] == "channel deleted"]) == 3
                        else None, what="three end records")
        for client, why, events, nbytes, chans in recs:
            assert (events, chans) == ("1", ch)
            assert int(nbytes) >= len(wire_event(r.json["id"], b"last words"))
    finally:
        for s in subs:
            s.close()


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_vanished_clients_are_released_within_the_heartbeat(httpd, how):
    """No write is needed: the detach thread sees the FIN or the RST on the
    socket (epoll) and the open-streams figures go back to exactly what is
    left before the first heartbeat would have been written."""
    h = detached_server(httpd)
    ch = uniq("gone")
    subs = [subscribe(h.port, ch, path="/det-hb5") for _ in range(10)]
    keep = subs[:4]
    try:
        wait_figure(h.port, "sse_streams_detached", 10)
        for s in subs[4:]:
            if how == "rst":
                s.abort()
            else:
                s.sock.shutdown(socket.SHUT_WR)
        figures = wait_figure(h.port, "sse_subscribers", 4, timeout=5)
        # Released without a write: no heartbeat has been due yet.
        assert figures["sse_streams_detached"] == 4
        assert figures["sse_heartbeats_total"] == 0
        r = pub_raw(h.port, ch, b"to the rest")
        assert r.json["subscribers"] == 4
        for s in keep:
            assert s.next_event(5).raw == wire_event(r.json["id"], b"to the rest")
        recs = [x for x in end_records(h) if x[1] == "client gone"]
        assert len(recs) == 6, recs
    finally:
        for s in subs:
            s.close()


def test_per_child_cap_refuses_like_overload(httpd):
    h = detached_server(httpd, "prefork", mpm_conf=ONE_PROCESS,
                        server_conf="SSEMaxStreamsPerChild 3",
                        conf="<Location /det>\nSSEOverloadRetry 4000\n</Location>\n")
    ch = uniq("cap")
    subs = [subscribe(h.port, ch, path="/det") for _ in range(3)]
    try:
        wait_figure(h.port, "sse_streams_detached", 3)
        with SSEClient(h.port, "/det" + chan_query(ch)) as s:
            assert s.status == 200
            s.wait_eof(5)
            assert s.clean_end
            m = re.fullmatch(rb": this process holds its maximum of 3 streams "
                             rb"\(SSEMaxStreamsPerChild\)\nretry: (\d+)\n\n", bytes(s.body))
            assert m, bytes(s.body)
            assert 3000 <= int(m.group(1)) <= 5000
        assert status_json(h.port)["sse_overload_refusals_total"] == 1
        subs.pop().close()
        wait_figure(h.port, "sse_subscribers", 2)
        with subscribe(h.port, ch, path="/det") as s:
            r = pub_raw(h.port, ch, b"room again")
            assert s.next_event(5).raw == wire_event(r.json["id"], b"room again")
    finally:
        for s in subs:
            s.close()


def test_default_cap_never_below_threads_per_child(httpd):
    """With few descriptors for many threads (256 against a margin of
    128 + 4 x 64), the default cap is the child's 64 threads, not less: a
    configuration without SSEDetach serves as many streams as it has
    threads, as it always did."""
    one_child = """
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MinSpareThreads 1
MaxSpareThreads 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0
"""
    h = httpd(mpm="event", mpm_conf=one_child, nofile=256, conf=STATUS_LOCATION)
    line = "SSE01702: this child holds at most 64 streams (from the descriptor limit)"
    # The child logs it in child_init, which may come after the port answers.
    wait_for(lambda: "SSE01702" in h.error_log(), what="SSE01702 logged")
    assert h.error_log().count(line) == 1, h.error_log()
    ch = uniq("least")
    subs = [subscribe(h.port, ch) for _ in range(40)]
    try:
        wait_figure(h.port, "sse_subscribers", 40)
        r = pub_raw(h.port, ch, b"to all forty")
        for s in subs:
            assert s.next_event(10).raw == wire_event(r.json["id"], b"to all forty")
        assert status_json(h.port)["sse_overload_refusals_total"] == 0
    finally:
        for s in subs:
            s.close()


def test_max_streams_per_child_bounds(httpd):
    for bad in ("0", "-1", "10000001", "many"):
        h = httpd(server_conf=f"SSEMaxStreamsPerChild {bad}", start=False)
        rc, out = h.config_test()
        assert rc != 0
        assert (f"SSEMaxStreamsPerChild: '{bad}' is not a whole number from 1 to 10000000"
                in out), out


# ---------------------------------------------------------------- many streams

EVENT_2x25 = """
StartServers 2
ServerLimit 2
ThreadLimit 25
ThreadsPerChild 25
MinSpareThreads 25
MaxSpareThreads 50
MaxRequestWorkers 50
MaxConnectionsPerChild 0
"""

PREFORK_4 = """
StartServers 4
MinSpareServers 4
MaxSpareServers 4
ServerLimit 4
MaxRequestWorkers 4
MaxConnectionsPerChild 0
"""


def many_streams_case(h, n, children):
    assert raise_nofile(n + 500), "cannot open enough descriptors for the client side"
    ch = uniq("many")
    many = ManyStreams(h.port, "/det", ch, n)
    try:
        wait_figure(h.port, "sse_streams_detached", n, timeout=30)
        assert status_json(h.port)["sse_subscribers"] == n
        # Every stream is in one of the configured children: no more
        # processes than the MPM was given, all of them busy with none.
        assert len(child_pids(h.pid)) == children
        sent = []
        for i in range(5):
            r = pub_raw(h.port, ch, b"to every one %d" % i)
            assert r.status == 200 and r.json["subscribers"] == n, r
            sent.append(wire_event(r.json["id"], b"to every one %d" % i))
        many.wait_ids(5, timeout=120)
        many.pump(0.3)
        wrong = [st for st in many.streams if st.events() != sent]
        assert not wrong, (f"{len(wrong)} of {n} streams differ; one: "
                           f"{wrong[0].events()!r}")
        assert not any(st.eof for st in many.streams)
    finally:
        many.close()
    wait_figure(h.port, "sse_subscribers", 0, timeout=30)
    assert status_json(h.port)["sse_streams_detached"] == 0


def test_4000_streams_on_two_event_children_of_25_threads(httpd):
    h = detached_server(httpd, "event", mpm_conf=EVENT_2x25)
    many_streams_case(h, 4000, 2)


def test_1000_streams_on_four_prefork_processes(httpd):
    h = detached_server(httpd, "prefork", mpm_conf=PREFORK_4)
    many_streams_case(h, 1000, 4)


# ---------------------------------------------------------------- children going

ES_LOCATION = """
<Location /det-es>
    SetHandler sse-stream
    SSEDetach on
    SSEHeartbeat 2
    SSERetry 1000
</Location>
"""


def publish_retry(port, chan, data, timeout=20):
    """Publishes, retrying while the server restarts; returns the id."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = pub_raw(port, chan, data.encode())
            if r.status == 200:
                return r.json["id"]
        except OSError:
            pass
        assert time.monotonic() < deadline, "no publish accepted"
        time.sleep(0.1)


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_graceful_restart_ends_each_with_the_terminal_chunk(httpd, mpm):
    h = detached_server(httpd, mpm, conf=ES_LOCATION)
    ch = uniq("gr")
    subs = [subscribe(h.port, ch, path="/det-es") for _ in range(4)]
    node = NodeClient(h.url("/det-es" + chan_query(ch)), 6, timeout=40)
    try:
        node.wait_open(1)
        wait_figure(h.port, "sse_streams_detached", 5)
        sent = [(publish_retry(h.port, ch, f"a{i}"), f"a{i}") for i in range(3)]
        node.wait_for(lambda m: m.get("kind") == "event" and m.get("data") == "a2", 10)
        want = b"retry: 1000\n\n" + b"".join(wire_event(i, d.encode()) for i, d in sent)
        for s in subs:
            s.read_until(lambda c: c.body_without_heartbeats() == want, 10)
        h.graceful(wait=False)
        for s in subs:
            assert s.wait_eof(10)
            assert s.clean_end and not s.reset, "no terminal chunk"
            assert s.body_without_heartbeats() == want
        node.wait_for(lambda m: m.get("kind") == "error", 10)
        sent += [(publish_retry(h.port, ch, f"b{i}"), f"b{i}") for i in range(3)]
        final, events = node.result(45)
    finally:
        node.close()
        for s in subs:
            s.close()
    assert final == "done", node.lines
    assert [(e["lastEventId"], e["data"]) for e in events] == sent
    assert [m for m in node.lines if m.get("kind") == "open"][-1]["n"] == 2
    assert len([x for x in end_records(h) if x[1] == "child stopping"]) == 5


def test_killed_child_others_go_on_and_its_clients_resume(httpd):
    h = detached_server(httpd, "prefork", mpm_conf=PREFORK_4)
    ch = uniq("kill")
    subs, pids = [], {}
    try:
        # Prefork hands consecutive connections mostly to one process:
        # open streams until two processes hold some.
        while len(set(pids.values())) < 2:
            assert len(subs) < 60, f"all streams in one process: {set(pids.values())}"
            s = subscribe(h.port, ch, path="/det")
            subs.append(s)
            pids[s] = h.wait_pid_of_client(s.client_port)
            assert pids[s] is not None
        r = pub_raw(h.port, ch, b"before")
        first = wire_event(r.json["id"], b"before")
        for s in subs:
            assert s.next_event(5).raw == first
        victim = pids[subs[0]]
        killed = [s for s in subs if pids[s] == victim]
        others = [s for s in subs if pids[s] != victim]
        os.kill(victim, signal.SIGKILL)
        for s in killed:
            assert s.wait_eof(5)
            assert not s.clean_end, "a killed child cannot end its streams cleanly"
        wait_figure(h.port, "sse_subscribers", len(others), timeout=15)
        ids = [pub_raw(h.port, ch, b"after %d" % i).json["id"] for i in range(2)]
        after = [wire_event(ids[i], b"after %d" % i) for i in range(2)]
        for s in others:
            assert [e.raw for e in s.next_events(2, timeout=5)] == after
            assert not s.eof
        # The killed child's clients come back with their Last-Event-ID and
        # miss nothing.
        for _ in killed:
            with subscribe(h.port, ch, path="/det",
                           headers={"Last-Event-ID": r.json["id"]}) as back:
                assert [e.raw for e in back.next_events(2, timeout=5)] == after
    finally:
        for s in subs:
            s.close()


REAPING_PREFORK = """
StartServers 4
MinSpareServers 1
MaxSpareServers 2
ServerLimit 4
MaxRequestWorkers 4
MaxConnectionsPerChild 0
"""


def test_idle_child_reaped_ends_its_streams_cleanly(httpd):
    """The MPM sees a child holding only detached streams as idle and may
    retire it (the README says how to size against that): its streams end
    with the terminal chunk, the survivors' go on."""
    h = detached_server(httpd, "prefork", mpm_conf=REAPING_PREFORK)
    ch = uniq("reap")
    subs, pins, pids = [], [], {}
    try:
        # One detached stream in each process: with the other three held by
        # thread-path streams, a new connection can only go to the fourth.
        # A pin's process is free again within /thr's 1 s heartbeat of its
        # client closing.
        pins = [subscribe(h.port, uniq("pin"), path="/thr") for _ in range(3)]
        for k in range(4):
            s = subscribe(h.port, ch, path="/det", timeout=20)
            subs.append(s)
            pids[s] = h.wait_pid_of_client(s.client_port)
            if k < 3:
                pins.append(subscribe(h.port, uniq("pin"), path="/thr", timeout=20))
                pins.pop(0).close()
        assert len(set(pids.values())) == 4, pids
        for p in pins:
            p.close()
        # MaxSpareServers 2: maintenance retires the idle processes beyond.
        wait_for(lambda: len(child_pids(h.pid)) == 2, timeout=20, what="reaping")
        survivors = set(child_pids(h.pid))
        r = pub_raw(h.port, ch, b"after reaping")
        kept = [s for s in subs if pids[s] in survivors]
        ended = [s for s in subs if pids[s] not in survivors]
        assert len(ended) >= 2, (pids, survivors)
        for s in ended:
            assert s.wait_eof(10)
            assert s.clean_end and not s.reset, "no terminal chunk"
        for s in kept:
            assert s.next_event(5).raw == wire_event(r.json["id"], b"after reaping")
        assert len([x for x in end_records(h) if x[1] == "child stopping"]) == len(ended)
    finally:
        for s in subs + pins:
            s.close()


# ---------------------------------------------------------------- what is not detached

TLS_H2_CONF = """
SSEDetach on
Protocols h2c http/1.1
Listen 127.0.0.1:{tls}
<VirtualHost 127.0.0.1:{tls}>
    ServerName 127.0.0.1
    Protocols http/1.1
    SSLEngine on
    SSLCertificateFile "{dir}/cert.pem"
    SSLCertificateKeyFile "{dir}/key.pem"
</VirtualHost>
"""


@pytest.fixture
def tls_h2_srv(server):
    h = server(name="detach-tls", start=False, extra_ports=("tls",),
               modules=BASE_MODULES + ["http2", "ssl", "socache_shmcb"],
               server_conf=TLS_H2_CONF + STATUS_LOCATION)
    make_cert(h.dir)
    h.start()
    return h


@pytest.mark.parametrize("scheme,port_key,args", [
    ("https", "tls", ["-k", "--http1.1"]),
    ("http", "port", ["--http2-prior-knowledge"]),
], ids=["tls", "h2c"])
def test_tls_and_http2_streams_keep_their_thread(tls_h2_srv, scheme, port_key, args):
    h = tls_h2_srv
    port = h.port if port_key == "port" else h.ports[port_key]
    ch = uniq("keep")
    mark = h.log_mark()
    with CurlStream(f"{scheme}://127.0.0.1:{port}/events{chan_query(ch)}", args,
                    headers={"Accept": "text/event-stream"}) as s:
        wait_figure(h.port, "sse_subscribers", 1)
        ids = []
        for i in range(3):
            ids.append(publish_retry(h.port, ch, f"kept {i}"))
            s.wait_for(wire_event(ids[-1], f"kept {i}".encode()), timeout=5)
        assert status_json(h.port)["sse_streams_detached"] == 0
        want = b"".join(wire_event(ids[i], f"kept {i}".encode()) for i in range(3))
        assert bytes(s.body).replace(HEARTBEAT, b"") == want
    log = h.log_since(mark)
    assert "SSE00308" in log and "SSE00311" not in log, log


# ---------------------------------------------------------------- slow clients

SLOW_EVENTS = 2400     # x 4 KiB = 10 MB: more than the socket buffers and
SLOW_BATCH = 12        # the 256-event queue hold (as tests/test_slow_client.py)


def test_stalled_detached_client_gets_everything_later(httpd):
    """The detach thread keeps what the client cannot take, then catches
    up from the ring once the queue overflowed: every event, in order, once,
    and the stream goes on live afterwards."""
    h = httpd(conf=DETACH_LOCATIONS, server_conf="SSEBufferSize 64M")
    ch = uniq("slow")
    stalled = SSEClient(h.port, "/det-nohb" + chan_query(ch), timeout=60)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    fast = SSEClient(h.port, "/det-nohb" + chan_query(ch), timeout=60)
    try:
        wait_figure(h.port, "sse_streams_detached", 2)
        expected = []
        for b in range(SLOW_EVENTS // SLOW_BATCH):
            batch = [{"channel": ch, "event": "bulk",
                      "data": f"{b * SLOW_BATCH + k:06d} " + "x" * 4089}
                     for k in range(SLOW_BATCH)]
            r = pub_json(h.port, batch)
            assert r.status == 200, r
            expected += [wire_event(item["id"], ev["data"].encode(), "bulk")
                         for item, ev in zip(r.json, batch)]
            got = fast.next_events(SLOW_BATCH, timeout=30)
            assert [e.raw for e in got] == expected[-SLOW_BATCH:]
        assert status_json(h.port)["sse_slow_subscribers"] == 1
        got = stalled.next_events(SLOW_EVENTS, timeout=120)
        assert [e.raw for e in got] == expected
        r = pub_json(h.port, {"channel": ch, "data": "after"})
        assert stalled.next_event(10).raw == wire_event(r.json["id"], b"after")
        assert fast.next_event(10).raw == wire_event(r.json["id"], b"after")
        figures = wait_figure(h.port, "sse_slow_subscribers", 0)
        assert figures["sse_stream_catchups_total"] >= 1
        assert figures["sse_streams_detached"] == 2
        assert not stalled.eof and not fast.eof
        assert "SSE01706" in h.error_log()      # the catch-up from the ring was taken
    finally:
        stalled.close()
        fast.close()


# ---------------------------------------------------------------- a Mercure hub

HUB_KEY = "detach-hub-key-of-the-tests-0123456789"


def test_a_mercure_hubs_stream_keeps_its_thread(httpd):
    """A hub's stream filters what it is sent with a filter in its request's
    pool and is ended by its own thread (sse_stream.h): under SSEDetach on
    it is not detached, and a private update still reaches only the
    subscriber whose token allows it."""
    h = httpd(conf=STATUS_LOCATION + f"""
<Location /.well-known/mercure>
    SetHandler sse-mercure
    SSEDetach on
    SSEMercurePublisherJWT {HUB_KEY}
    SSEMercureAnonymous on
</Location>
""", log_level="notice sse:debug")
    key = hmac_key(HUB_KEY)
    topic = "https://example.com/detach/" + uniq("hub")
    path = "/.well-known/mercure?" + urllib.parse.urlencode([("topic", topic)])
    allowed = {"Authorization": "Bearer " + mint(key, {"mercure": {"subscribe": [topic]}})}
    with SSEClient(h.port, path, headers=allowed) as s, SSEClient(h.port, path) as anon:
        assert s.status == 200 and anon.status == 200
        wait_figure(h.port, "sse_subscribers", 2)
        assert status_json(h.port)["sse_streams_detached"] == 0
        r = request(h.port, "POST", "/.well-known/mercure",
                    body=urllib.parse.urlencode([("topic", topic), ("data", "for one"),
                                                 ("private", "on")]).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded",
                             "Authorization": "Bearer " + mint(key, {"mercure": {"publish": ["*"]}})})
        assert r.status == 200, r
        assert s.next_event().raw == wire_event(r.body.decode(), b"for one")
        anon.assert_no_event(0.5)
        assert status_json(h.port)["sse_streams_detached"] == 0
