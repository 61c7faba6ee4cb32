"""Metrics: the sse-status location (JSON and Prometheus forms, negotiation,
methods), every counter exact after a scripted sequence under every MPM and
across a graceful restart, gauges that forget a child killed outright, the
access-log notes of each stream (direct writes and filtered alike),
SSEMaxSubscribers exact across children with a real EventSource that comes
back, the mod_status section, `promtool check metrics` and a real
Prometheus scraping the location."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import NodeClient, SSEClient, read_all, request, subscribe
from ssetest.env import DETACH_ALL, MPMS
from ssetest.httpd import SMALL_MPM
from ssetest.metrics import (METRICS, PROMETHEUS_TYPE, REASONS, REDIS_METRICS,
                             STATUS_LOCATION, status_json, status_prometheus, wait_figure)
from ssetest.procs import free_port, terminate
from ssetest.publish import pub_json, pub_raw, publish_ok
from ssetest.wire import HEARTBEAT

FILTERED = """
<Location /events-filtered>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSEDirectWrite off
</Location>
"""

NOTES_LOG = """
LogFormat "%q %>s %{sse-events}n %{sse-bytes}n %{sse-channels}n" ssenotes
CustomLog "{dir}/logs/notes.log" ssenotes
"""

GAUGES = ("sse_streams_detached", "sse_subscribers", "sse_slow_subscribers", "sse_ring_oldest_event_age_seconds")


def zero_figures():
    """The JSON form of a fresh server, apart from the ring's fixed size
    (without SSERedis: no Redis metrics at all)."""
    out = {name: 0 for name in METRICS if name not in REDIS_METRICS}
    out["sse_publish_rejected_total"] = {r: 0 for r in REASONS}
    out["top_channels"] = []
    return out


def record_size(event_id, data, nchan=1):
    """Bytes a published event takes in the ring (sse_ring.c: a 24-byte
    header, a 16-byte link per channel, the id, the frame; 8-aligned)."""
    frame = b"id: " + event_id.encode() + b"\ndata: " + data + b"\n\n"
    n = 24 + 16 * nchan + len(event_id) + len(frame)
    return (n + 7) & ~7


def read_to_end(c, timeout=10):
    c.read_until(lambda s: s.eof, timeout)
    assert c.eof and c.clean_end, (c.path, bytes(c.body))
    return bytes(c.body)


# ---- the location itself ---------------------------------------------------

def test_status_forms_negotiation_and_methods(httpd):
    h = httpd(conf=STATUS_LOCATION, server_conf="SSEBufferSize 256K\n")
    want = zero_figures()
    want["sse_ring_size_bytes"] = 256 * 1024
    got = status_json(h.port)
    assert got == want
    r = request(h.port, "GET", "/sse-status")
    assert r.headers["vary"] == "Accept" and r.headers["cache-control"] == "no-store", r
    prom = status_prometheus(h.port)
    flat = {k: v for k, v in want.items() if k != "top_channels"}
    flat["sse_publish_rejected_total"] = {r: 0.0 for r in REASONS}
    assert prom == flat
    # Accept decides when there is no format: Prometheus's own header, a
    # plain text/plain, and JSON preferred or tied.
    scraper = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    for accept, ctype in ((scraper, PROMETHEUS_TYPE), ("text/plain", PROMETHEUS_TYPE),
                          ("text/*;q=0.9, application/json;q=0.5", PROMETHEUS_TYPE),
                          ("application/json, text/plain;q=0.9", "application/json"),
                          ("*/*", "application/json"), ("text/html", "application/json"),
                          ("text/plain;q=0.5, application/*;q=0.6", "application/json")):
        r = request(h.port, "GET", "/sse-status", headers={"Accept": accept})
        assert r.status == 200 and r.headers["content-type"] == ctype, (accept, r)
    # An explicit format wins over Accept.
    r = request(h.port, "GET", "/sse-status?format=json", headers={"Accept": "text/plain"})
    assert r.headers["content-type"] == "application/json" and r.json == got, r
    r = request(h.port, "GET", "/sse-status?format=prometheus",
                headers={"Accept": "application/json"})
    assert r.headers["content-type"] == PROMETHEUS_TYPE, r
    # HEAD: the headers of GET, no body.
    r = request(h.port, "HEAD", "/sse-status?format=prometheus")
    assert r.status == 200 and r.body == b"" and r.headers["content-type"] == PROMETHEUS_TYPE
    # Bad input: a clear 4xx that says what is wrong.
    r = request(h.port, "GET", "/sse-status?format=xml")
    assert r.status == 400, r
    assert r.error_message() == ("unknown format 'xml': use format=json or "
                                 "format=prometheus")
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = request(h.port, method, "/sse-status", body=b"")
        assert r.status == 405 and r.headers["allow"] == "GET, HEAD", (method, r)
        assert r.error_message() == f"method {method} not allowed on a status location"


def test_status_location_obeys_require(httpd):
    h = httpd(conf="""
<Location /sse-status>
    SetHandler sse-status
    Require ip 10.255.255.1
</Location>
""")
    r = request(h.port, "GET", "/sse-status")
    assert r.status == 403, r


def test_promtool_accepts_the_exposition(httpd):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool is missing: run scripts/deps.sh (Debian package prometheus)")
    h = httpd(conf=STATUS_LOCATION)
    chan = uniq("prom")
    with subscribe(h.port, chan, path="/events-nohb") as s:
        publish_ok(h.port, chan, "x")
        s.next_event()
        assert pub_raw(h.port, None, b"no channel").status == 400
        body = request(h.port, "GET", "/sse-status?format=prometheus").body
    p = subprocess.run([promtool, "check", "metrics"], input=body, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0 and p.stdout == b"", p.stdout.decode(errors="replace")


# ---- every counter, exactly --------------------------------------------------

@pytest.mark.parametrize("mpm", MPMS)
def test_counters_exact_and_kept_across_graceful_restart(httpd, mpm):
    """A scripted sequence: streams written directly and through the
    filters, live events, a replay, a gap, a refusal, one publish refused
    for each reason the handler has; every figure, the busiest channels and
    the access-log notes of every stream are then exact, and a graceful
    restart keeps every counter."""
    h = httpd(mpm=mpm, conf=STATUS_LOCATION + FILTERED,
              server_conf="SSEBufferSize 1M\nSSEMaxChannels 4\nSSEMaxSubscribers 5\n"
                          + NOTES_LOG)
    a, b = uniq("a"), uniq("b")
    s1 = subscribe(h.port, a, path="/events-nohb", extra_query="n=s1")
    s2 = subscribe(h.port, a, path="/events-filtered", extra_query="n=s2")
    s3 = subscribe(h.port, [a, b], path="/events-nohb", extra_query="n=s3")
    streams = [s1, s2, s3]
    try:
        wait_figure(h.port, "sse_subscribers", 3)
        ids = [publish_ok(h.port, a, f"a{k}") for k in range(3)]
        ids.append(publish_ok(h.port, b, "b0"))
        r = pub_json(h.port, {"channel": [a, b], "data": "ab"})
        assert r.status == 200 and r.json["subscribers"] == 4, r
        ids.append(r.json["id"])
        for s, n in ((s1, 4), (s2, 4), (s3, 5)):
            s.next_events(n)
        # Resuming from the first event replays the three after it; an id
        # older than the ring is a gap, then everything b retains.
        s4 = subscribe(h.port, a, path="/events-nohb", extra_query="n=s4",
                       headers={"Last-Event-ID": ids[0]})
        streams.append(s4)
        assert [e.id for e in s4.next_events(3)] == [ids[1], ids[2], ids[4]]
        s5 = subscribe(h.port, b, path="/events-nohb", extra_query="n=s5",
                       headers={"Last-Event-ID": "1000-0"})
        streams.append(s5)
        evs = s5.next_events(3)
        assert evs[0].event == "sse-gap" and [e.id for e in evs[1:]] == [ids[3], ids[4]]
        # The sixth stream is one too many: refused as EventSource survives.
        s6 = SSEClient(h.port, "/events-nohb" + chan_query(a, "n=s6"))
        refusal = read_to_end(s6)
        assert s6.status == 200 and re.fullmatch(
            rb": too many streams open \(SSEMaxSubscribers\)\nretry: \d+\n\n", refusal), refusal
        # Two more channels fill the table (SSEMaxChannels 4) ...
        ids.append(publish_ok(h.port, "c-" + a, "c"))
        ids.append(publish_ok(h.port, "d-" + a, "d"))
        # ... and one publish refused for each reason.
        assert pub_raw(h.port, "e-" + a, b"e").status == 503
        assert pub_raw(h.port, None, b"no channel").status == 400
        assert pub_raw(h.port, a, b"x" * 2048, path="/pub-small").status == 413
        assert pub_json(h.port, {"channel": [a], "data": "x"}, path="/pub-fixed",
                        headers={"X-Room": "r"}).status == 403
        assert request(h.port, "PUT", "/pub" + chan_query(a), body=b"x").status == 405
        # Reading and deleting channels are not publishing.
        assert request(h.port, "GET", "/pub" + chan_query(a)).status == 200

        delivered = 4 + 4 + 5 + 3 + 2
        got = wait_figure(h.port, "sse_events_delivered_total", delivered)
        sent = sum(len(bytes(s.body)) for s in streams) + len(refusal)
        used = sum(record_size(i, d) for i, d in zip(ids[:4], (b"a0", b"a1", b"a2", b"b0")))
        used += record_size(ids[4], b"ab", 2) + record_size(ids[5], b"c") \
            + record_size(ids[6], b"d")
        want = {
            "sse_subscribers": 5, "sse_slow_subscribers": 0, "sse_max_subscribers": 5,
            "sse_streams_detached": 4 if DETACH_ALL else 0,   # the filtered one keeps its thread
            "sse_channels": 4, "sse_ring_size_bytes": 1024 * 1024, "sse_ring_used_bytes": used,
            "sse_streams_opened_total": 5, "sse_overload_refusals_total": 1,
            "sse_events_published_total": 7, "sse_publish_requests_total": 12,
            "sse_publish_rejected_total": {"bad_request": 1, "forbidden": 1,
                                           "method_not_allowed": 1, "too_large": 1,
                                           "unavailable": 1, "internal": 0,
                                           "failed_response": 0},
            "sse_events_delivered_total": delivered, "sse_replayed_events_total": 5,
            "sse_gaps_total": 1, "sse_heartbeats_total": 0, "sse_bytes_sent_total": sent,
            "sse_stream_catchups_total": 0, "sse_ring_evicted_events_total": 0,
            "top_channels": [
                {"name": a, "subscribers": 4, "retained": 4, "last_id": ids[4]},
                {"name": b, "subscribers": 2, "retained": 2, "last_id": ids[4]},
                {"name": "c-" + a, "subscribers": 0, "retained": 1, "last_id": ids[5]},
                {"name": "d-" + a, "subscribers": 0, "retained": 1, "last_id": ids[6]},
            ],
        }
        age = got.pop("sse_ring_oldest_event_age_seconds")
        assert 0 <= age < 60, age
        assert got == want
        prom = status_prometheus(h.port)
        for name, value in want.items():
            if name != "top_channels":
                assert prom[name] == value, name

        # Deleting the channels ends every stream, cleanly: the clients
        # then hold every byte the server counted.
        for ch in (a, b):
            assert request(h.port, "DELETE", "/pub" + chan_query(ch)).status == 200
        bodies = {s.path.rsplit("n=", 1)[1]: read_to_end(s) for s in streams}
    finally:
        for s in streams:
            s.close()
    after = wait_figure(h.port, "sse_subscribers", 0)
    assert after["sse_bytes_sent_total"] == sent
    assert after["sse_events_delivered_total"] == delivered

    # The access log: what each stream delivered, written directly or not.
    deadline = time.monotonic() + 10
    notes = {}
    while time.monotonic() < deadline and len(notes) < 6:
        text = (h.dir / "logs" / "notes.log").read_text() if \
            (h.dir / "logs" / "notes.log").exists() else ""
        notes = {m.group(1): m.groups()[1:] for m in re.finditer(
            r"^\?channel=[^ ]*&n=(s\d) (\d+) (\S+) (\S+) (\S+)$", text, re.M)}
        time.sleep(0.1)
    events = {"s1": 4, "s2": 4, "s3": 5, "s4": 3, "s5": 2}
    for n, body in bodies.items():
        chans = f"{a},{b}" if n == "s3" else (b if n == "s5" else a)
        assert notes[n] == ("200", str(events[n]), str(len(body)), chans), (n, notes)
    assert notes["s6"] == ("200", "0", str(len(refusal)), a), notes

    # A graceful restart keeps every counter (they live beside the ring).
    before = {k: v for k, v in after.items() if k not in GAUGES}
    h.graceful()
    kept = status_json(h.port)
    assert {k: v for k, v in kept.items() if k not in GAUGES} == before
    with subscribe(h.port, "c-" + a, path="/events-nohb") as s:
        wait_figure(h.port, "sse_subscribers", 1)
        i = publish_ok(h.port, "c-" + a, "after")
        assert s.next_event().id == i
        got = wait_figure(h.port, "sse_events_delivered_total", delivered + 1)
    assert got["sse_streams_opened_total"] == 6
    assert got["sse_events_published_total"] == 8
    assert got["sse_publish_requests_total"] == 13


def test_ring_figures_eviction_and_age(httpd):
    """A ring that wraps: every event published is either retained or
    counted as evicted; used bytes stay within the ring; the oldest
    record's age grows with time."""
    h = httpd(conf=STATUS_LOCATION, server_conf="SSEBufferSize 64K\n")
    chan = uniq("wrap")
    first = publish_ok(h.port, chan, "first")
    time.sleep(1.2)
    got = status_json(h.port)
    assert 1.2 <= got["sse_ring_oldest_event_age_seconds"] < 30, got
    assert got["sse_ring_used_bytes"] == record_size(first, b"first")
    assert got["sse_ring_evicted_events_total"] == 0
    t0 = time.monotonic()
    for k in range(400):
        pub_json(h.port, {"channel": chan, "data": f"{k:04d}" + "y" * 300})
    got = status_json(h.port)
    elapsed = time.monotonic() - t0
    info = request(h.port, "GET", "/pub" + chan_query(chan)).json
    assert got["sse_events_published_total"] == 401
    assert got["sse_ring_evicted_events_total"] + info["messages"] == 401, (got, info)
    assert 0 < got["sse_ring_evicted_events_total"] < 401
    assert 0 < got["sse_ring_used_bytes"] <= got["sse_ring_size_bytes"] == 64 * 1024
    # The oldest retained event is one of the 400: the first one was evicted.
    assert got["sse_ring_oldest_event_age_seconds"] <= elapsed + 0.05, (got, elapsed)
    assert got["top_channels"] == [{"name": chan, "subscribers": 0,
                                    "retained": info["messages"],
                                    "last_id": info["last_id"]}]


def test_gauges_forget_a_killed_child_and_counters_stay(httpd):
    h = httpd(conf=STATUS_LOCATION, mpm="prefork", mpm_conf=SMALL_MPM["prefork"])
    chan = uniq("kill")
    s1 = subscribe(h.port, chan, path="/events-nohb")
    s2 = subscribe(h.port, chan, path="/events-nohb")
    try:
        wait_figure(h.port, "sse_subscribers", 2)
        publish_ok(h.port, chan, "x")
        s1.next_event()
        s2.next_event()
        wait_figure(h.port, "sse_events_delivered_total", 2)
        victim = h.wait_pid_of_client(s1.client_port)
        assert victim and victim != h.wait_pid_of_client(s2.client_port)
        os.kill(victim, signal.SIGKILL)
        # The parent's monitor reaps the slot: its open stream goes, what
        # it counted stays.
        got = wait_figure(h.port, "sse_subscribers", 1)
        assert got["sse_streams_opened_total"] == 2
        assert got["sse_events_delivered_total"] == 2
        assert got["top_channels"][0]["subscribers"] == 1
    finally:
        s1.close()
        s2.close()


def test_heartbeats_counted_whichever_way_they_are_written(httpd):
    h = httpd(conf=STATUS_LOCATION + NOTES_LOG + """
<Location /events-hb-filtered>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSEDirectWrite off
</Location>
""")
    chan = uniq("hb")
    d = subscribe(h.port, chan, path="/events-hb", extra_query="n=d")
    f = subscribe(h.port, chan, path="/events-hb-filtered", extra_query="n=f")
    try:
        assert not read_all([d, f], lambda c: len(c.blocks()) >= 2, 10)
        assert request(h.port, "DELETE", "/pub" + chan_query(chan)).status == 200
        bodies = {"d": read_to_end(d), "f": read_to_end(f)}
    finally:
        d.close()
        f.close()
    beats = 0
    for body in bodies.values():
        k = len(body) // len(HEARTBEAT)
        assert k >= 2 and body == HEARTBEAT * k, body
        beats += k
    got = wait_figure(h.port, "sse_subscribers", 0)
    assert got["sse_heartbeats_total"] == beats
    assert got["sse_bytes_sent_total"] == sum(len(b) for b in bodies.values())
    assert got["sse_events_delivered_total"] == 0
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline and text.count("\n") < 2:
        p = h.dir / "logs" / "notes.log"
        text = p.read_text() if p.exists() else ""
        time.sleep(0.1)
    for n, body in bodies.items():
        assert f"n={n} 200 0 {len(body)} {chan}\n" in text, text


RESPONSE_SCRIPTS = {
    "plain": r"""printf 'X-SSE-Publish: %s\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'hello'
""",
    "gzip": r"""printf 'X-SSE-Publish: %s\r\nContent-Encoding: gzip\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'not really gzip'
""",
    "failed": r"""printf 'Status: 502 Bad Gateway\r\nX-SSE-Publish: %s\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'upstream down'
""",
    "big": r"""printf 'X-SSE-Publish: %s\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
head -c 3000 /dev/zero | tr '\0' x
""",
}


def test_publishing_responses_and_the_optional_function_are_counted(httpd, sse_testmod_so):
    """Responses carrying X-SSE-Publish and sse_publish() calls count as
    publish attempts, and each refusal under its reason."""
    from ssetest.httpd import BASE_MODULES
    from testmod import sse_testmod_conf
    h = httpd(start=False, modules=BASE_MODULES + ["cgid", "alias"],
              conf=sse_testmod_conf(sse_testmod_so, STATUS_LOCATION + """
ScriptSock "{dir}/run/cgid.sock"
ScriptAlias /cgi/ "{dir}/cgi/"
<Location /cgi/>
    SSEPublishResponses on
    SSEMaxMessageSize 2K
</Location>
<Location /t-publish>
    SetHandler sse-test-publish
</Location>
"""))
    d = h.dir / "cgi"
    d.mkdir()
    for name, text in RESPONSE_SCRIPTS.items():
        (d / name).write_text("#!/bin/sh\n" + text)
        os.chmod(d / name, 0o755)
    os.chmod(d, 0o755)
    h.start()
    chan = uniq("resp")
    with subscribe(h.port, chan, path="/events-nohb") as s:
        assert request(h.port, "GET", f"/cgi/plain?{chan}").status == 200
        assert request(h.port, "GET", f"/cgi/gzip?{chan}").status == 500
        assert request(h.port, "GET", f"/cgi/failed?{chan}").status == 502
        assert request(h.port, "GET", f"/cgi/big?{chan}").status == 500
        assert request(h.port, "GET", f"/t-publish?channel={chan}&data=fn").status == 200
        assert request(h.port, "GET", "/t-publish?channel=a%3Cb&data=fn").status == 400
        assert [e.data for e in s.next_events(2)] == [b"hello", b"fn"]
        got = wait_figure(h.port, "sse_events_delivered_total", 2)
    assert got["sse_publish_requests_total"] == 6
    assert got["sse_events_published_total"] == 2
    assert got["sse_publish_rejected_total"] == {
        "bad_request": 2, "forbidden": 0, "method_not_allowed": 0, "too_large": 1,
        "unavailable": 0, "internal": 0, "failed_response": 1}


def test_slow_subscriber_gauge_and_catchups(httpd):
    """A client that stops reading: its stream falls behind (its socket
    full, its queue overflowing), shows in sse_slow_subscribers while its
    thread is stuck writing, and is counted in sse_stream_catchups_total;
    once the client is gone, the gauge is back to 0."""
    h = httpd(conf=STATUS_LOCATION, server_conf="SSEBufferSize 8M\n")
    chan = uniq("slow")
    sock = socket.create_connection(("127.0.0.1", h.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /events-nohb{chan_query(chan)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        wait_figure(h.port, "sse_subscribers", 1)
        data = "x" * 16000
        deadline = time.monotonic() + 30
        got = status_json(h.port)
        while time.monotonic() < deadline and got["sse_slow_subscribers"] != 1:
            for _ in range(20):
                publish_ok(h.port, chan, data)
            got = status_json(h.port)
        assert got["sse_slow_subscribers"] == 1, got
        assert got["sse_stream_catchups_total"] >= 1, got
    finally:
        sock.close()
    got = wait_figure(h.port, "sse_subscribers", 0, timeout=90)
    assert got["sse_slow_subscribers"] == 0, got


# ---- SSEMaxSubscribers -----------------------------------------------------

def open_raw(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                 .encode())
    return sock


@pytest.mark.parametrize("mpm", MPMS)
def test_max_subscribers_exact_across_children_and_eventsource_comes_back(httpd, mpm):
    # Four threads a child (SMALL_MPM): six streams need two children at least.
    n = 6
    h = httpd(mpm=mpm, mpm_conf=SMALL_MPM[mpm], conf=STATUS_LOCATION,
              server_conf=f"SSEMaxSubscribers {n}\n")
    chan = uniq("max")
    # Heartbeats: a stream whose client left ends within seconds.
    path = "/events-hb" + chan_query(chan)
    # N + 1 streams at once: exactly one is refused.
    socks = [open_raw(h.port, path) for _ in range(n + 1)]
    clients = []
    try:
        got = {}
        deadline = time.monotonic() + 10
        for i, sock in enumerate(socks):
            sock.settimeout(0.2)
            data = b""
            while time.monotonic() < deadline and b"\r\n\r\n" not in data:
                try:
                    data += sock.recv(65536)
                except socket.timeout:
                    pass
            got[i] = data
        time.sleep(0.5)
        for i, sock in enumerate(socks):
            try:
                while True:
                    more = sock.recv(65536)
                    if not more:
                        break
                    got[i] += more
                    if got[i].endswith(b"0\r\n\r\n"):
                        break
            except socket.timeout:
                pass
        refused = [i for i, d in got.items() if b"SSEMaxSubscribers" in d]
        assert len(refused) == 1, got
        data = got[refused[0]]
        assert data.startswith(b"HTTP/1.1 200 "), data
        body = re.sub(rb"\r\n[0-9a-f]+\r\n", b"", b"\r\n" + data.partition(b"\r\n\r\n")[2])
        m = re.fullmatch(rb": too many streams open \(SSEMaxSubscribers\)\nretry: (\d+)\n\n",
                         body.replace(b"\r\n", b""))
        assert m and 7500 <= int(m.group(1)) <= 12500, body
        for i, d in got.items():
            if i not in refused:
                assert d.startswith(b"HTTP/1.1 200 ") and not d.endswith(b"\r\n0\r\n\r\n"), d
        socks[refused[0]].close()
        kept = [s for i, s in enumerate(socks) if i not in refused]
        pids = {h.wait_pid_of_client(s.getsockname()[1]) for s in kept}
        assert None not in pids and len(pids) >= 2, pids
        got = wait_figure(h.port, "sse_subscribers", n)
        assert got["sse_overload_refusals_total"] == 1 and got["sse_streams_opened_total"] == n

        # A real EventSource is refused too, and comes back after the retry
        # to be served once a slot is free.
        node = NodeClient(h.url(path), count=1, timeout=40)
        clients.append(node)
        wait_figure(h.port, "sse_overload_refusals_total", 2, timeout=15)
        kept[0].close()
        wait_figure(h.port, "sse_subscribers", n - 1)
        node.wait_open(2, timeout=20)
        wait_figure(h.port, "sse_subscribers", n)
        i = publish_ok(h.port, chan, "served")
        kind, events = node.result(timeout=15)
        assert kind == "done" and [(e["data"], e["lastEventId"]) for e in events] == \
            [("served", i)], node.lines
        got = status_json(h.port)
        assert got["sse_overload_refusals_total"] == 2
        assert got["sse_streams_opened_total"] == n + 1
    finally:
        for s in socks:
            s.close()
        for c in clients:
            c.close()


@pytest.mark.parametrize("value, message", [
    ("-1", "SSEMaxSubscribers: '-1' is not a whole number from 0 to 100000000"),
    ("lots", "SSEMaxSubscribers: 'lots' is not a whole number from 0 to 100000000"),
])
def test_max_subscribers_bad_values(httpd, value, message):
    h = httpd(server_conf=f"SSEMaxSubscribers {value}\n", start=False)
    rc, out = h.config_test()
    assert rc != 0 and message in out, out


@pytest.mark.parametrize("section, message", [
    ("<Location /x>\nSSEMaxSubscribers 3\n</Location>",
     "SSEMaxSubscribers not allowed in <Location> context"),
    ("<VirtualHost 127.0.0.1:1>\nSSEMaxSubscribers 3\n</VirtualHost>",
     "SSEMaxSubscribers cannot occur within <VirtualHost> section"),
])
def test_max_subscribers_is_server_wide_only(httpd, section, message):
    h = httpd(conf=section + "\n", start=False)
    rc, out = h.config_test()
    assert rc != 0 and message in out, out


# ---- mod_status --------------------------------------------------------------

def test_mod_status_section(httpd):
    from ssetest.httpd import BASE_MODULES
    h = httpd(modules=BASE_MODULES + ["status"], conf=STATUS_LOCATION + """
<Location /server-status>
    SetHandler server-status
</Location>
""")
    chan = uniq("st")
    with subscribe(h.port, chan, path="/events-nohb") as s:
        publish_ok(h.port, chan, "x")
        s.next_event()
        wait_figure(h.port, "sse_events_delivered_total", 1)
        auto = request(h.port, "GET", "/server-status?auto").body.decode()
        lines = dict(line.split(": ", 1) for line in auto.splitlines() if line.startswith("SSE"))
        age = float(lines.pop("SSERingOldestEventAge"))
        assert 0 <= age < 60
        assert lines == {
            "SSESubscribers": "1", "SSESlowSubscribers": "0", "SSEMaxSubscribers": "0",
            "SSEChannels": "1", "SSEStreamsOpened": "1", "SSEOverloadRefusals": "0",
            "SSEEventsPublished": "1", "SSEPublishRejected": "0", "SSEEventsDelivered": "1",
            "SSEBytesSent": str(len(bytes(s.body))),
            "SSERingSizeBytes": str(16 * 1024 * 1024),
            "SSERingUsedBytes": str(status_json(h.port)["sse_ring_used_bytes"]),
        }, auto
        html = request(h.port, "GET", "/server-status").body.decode()
        assert "<h2>mod_sse</h2>" in html, html
        assert re.search(r'<th align="left">open streams</th><td id="SSESubscribers">1</td>',
                         html), html
        notable = request(h.port, "GET", "/server-status?notable").body.decode()
        assert "<dt>open streams: 1</dt>" in notable, notable


# ---- a real Prometheus -------------------------------------------------------

def test_prometheus_scrapes_the_status_location(httpd, tmp_path):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.fail("prometheus is missing: run scripts/deps.sh (Debian package prometheus)")
    h = httpd(conf=STATUS_LOCATION)
    chan = uniq("scraped")
    for k in range(3):
        publish_ok(h.port, chan, f"e{k}")
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    # The metrics path has no format: Prometheus's own Accept header gets
    # the text format.
    conf.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: mod_sse
    metrics_path: /sse-status
    static_configs:
      - targets: ['127.0.0.1:{h.port}']
""")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([prometheus, f"--config.file={conf}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        result = None
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": "sse_events_published_total"})
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    answer = json.load(r)
                if answer["status"] == "success" and answer["data"]["result"]:
                    result = answer["data"]["result"]
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert result, (tmp_path / "prometheus.log").read_text()[-3000:]
        assert len(result) == 1
        assert result[0]["metric"] == {"__name__": "sse_events_published_total",
                                       "instance": f"127.0.0.1:{h.port}", "job": "mod_sse"}
        assert result[0]["value"][1] == "3"
        # The scrape itself is healthy: up is 1.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query=up",
                                    timeout=5) as r:
            up = json.load(r)["data"]["result"]
        assert [x["value"][1] for x in up] == ["1"], up
    finally:
        terminate(proc)
        log.close()


def test_shipped_logformat_shows_what_a_stream_delivered(httpd):
    """The LogFormat and CustomLog of conf/mod_sse.conf, as shipped, on a
    stream the dispatcher writes directly: its events, body bytes and
    channels, and only streams in that log."""
    from ssetest.env import REPO
    lines = (REPO / "conf" / "mod_sse.conf").read_text().splitlines()
    fmt = next(x.strip() for x in lines
               if x.strip().startswith("LogFormat ") and x.strip().endswith(" sse_stream"))
    log_line = next(x.strip().lstrip("#") for x in lines
                    if x.strip().startswith("#CustomLog ") and " sse_stream " in x)
    log_line = log_line.replace("${APACHE_LOG_DIR}/sse-access.log", "{dir}/logs/streams.log")
    assert "{dir}" in log_line, log_line
    h = httpd(conf=STATUS_LOCATION, server_conf=fmt + "\n" + log_line + "\n")
    a, b = uniq("la"), uniq("lb")
    s = subscribe(h.port, [a, b], path="/events-nohb")
    try:
        wait_figure(h.port, "sse_subscribers", 1)
        for k in range(3):
            publish_ok(h.port, a if k % 2 else b, f"event {k}")
        s.next_events(3)
        assert request(h.port, "DELETE", "/pub" + chan_query(a)).status == 200
        body = read_to_end(s)
    finally:
        s.close()
    log = h.dir / "logs" / "streams.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "GET /events-nohb" not in (
            log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    entry = log.read_text().splitlines()
    assert len(entry) == 1 and "GET /events-nohb" in entry[0], log.read_text()
    assert entry[0].endswith(f" events=3 bytes={len(body)} channels={a},{b}"), entry


def test_readme_documents_every_metric():
    """README "Metrics" lists every metric the module exports, with its type."""
    from ssetest.env import REPO
    text = (REPO / "README.md").read_text()
    section = text.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(sse_[a-z_]+)(?:\{(?:reason|op)\})?` \| (gauge|counter) \|",
                           section, re.M))
    assert rows == METRICS
