"""Several child processes: subscribers spread over them, publishes from any
child reach all; vanished clients free their slots; many subscribers."""
import http.client
import json
import os
import sys
import time

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import SSEClient, subscribe
from ssetest.env import MPMS
from ssetest.httpd import SMALL_MPM
from ssetest.publish import channel_info, pub_raw, publish_ok, wait_subscribers
from ssetest.wire import wire_event


@pytest.mark.parametrize("mpm", MPMS)
def test_cross_process_delivery(httpd, mpm):
    h = httpd(mpm=mpm, mpm_conf=SMALL_MPM[mpm])
    chan = uniq("xp")
    n = 8 if mpm == "prefork" else 10
    subs = []
    try:
        for _ in range(n):
            subs.append(subscribe(h.port, chan))
        pids = [h.wait_pid_of_client(s.client_port) for s in subs]
        assert None not in pids, pids
        distinct = len(set(pids))
        if mpm == "prefork":
            assert distinct == n, pids
        else:
            # 4 threads per child: 10 streams need at least 3 processes.
            assert distinct >= 3, pids
        for k in range(3):
            r = pub_raw(h.port, chan, f"from another connection {k}".encode(), event="x")
            assert r.status == 200 and r.json["subscribers"] == n, r
            for s in subs:
                assert s.next_event(10).raw == wire_event(
                    r.json["id"], f"from another connection {k}".encode(), "x")
        info = channel_info(h.port, chan)
        assert info.json["subscribers"] == n and info.json["messages"] == 3, info
    finally:
        for s in subs:
            s.close()


def post_reusing(conns, k, port, path, data):
    """POSTs on the kept-alive connection conns[k], once more on a new one
    if the server had closed it unused: the event MPM closes a child's idle
    keep-alive connections when all its workers are busy ("kill'em all" in
    server/mpm/event/event.c), and clients then resend on a new connection.
    Were the first request published after all, its event would come twice
    and the exact comparison of the caller would fail."""
    for attempt in (1, 2):
        try:
            conns[k].request("POST", path, body=data, headers={"Content-Type": "text/plain"})
            return conns[k].getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if attempt == 2:
                raise
            conns[k].close()
            conns[k] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


@pytest.mark.parametrize("mpm", MPMS)
def test_publish_from_every_child(httpd, mpm):
    """Publishes accepted by different children interleave into one order."""
    h = httpd(mpm=mpm, mpm_conf=SMALL_MPM[mpm])
    chan = uniq("every")
    with subscribe(h.port, chan) as s:
        sent = []
        conns = []
        try:
            # Several keep-alive publisher connections, each held by a child.
            for k in range(4):
                c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
                conns.append(c)
            for rnd in range(5):
                for k in range(len(conns)):
                    data = f"c{k}-r{rnd}".encode()
                    resp = post_reusing(conns, k, h.port, "/pub" + chan_query(chan), data)
                    body = resp.read()
                    assert resp.status == 200, body
                    sent.append((json.loads(body)["id"], data))
        finally:
            for c in conns:
                c.close()
        evs = s.next_events(len(sent), timeout=15)
        assert [(e.id, e.data) for e in evs] == sent


@pytest.mark.parametrize("mpm", MPMS)
def test_vanished_clients_free_their_slots(httpd, mpm):
    tuning = {
        "event": "StartServers 1\nServerLimit 1\nThreadLimit 8\nThreadsPerChild 8\n"
                 "MinSpareThreads 1\nMaxSpareThreads 8\nMaxRequestWorkers 8\n",
        "worker": "StartServers 1\nServerLimit 1\nThreadLimit 8\nThreadsPerChild 8\n"
                  "MinSpareThreads 1\nMaxSpareThreads 8\nMaxRequestWorkers 8\n",
        "prefork": "StartServers 8\nMinSpareServers 1\nMaxSpareServers 8\nServerLimit 8\n"
                   "MaxRequestWorkers 8\n",
    }[mpm]
    h = httpd(mpm=mpm, mpm_conf=tuning, conf="""
<Location /hb>
    SetHandler sse-stream
    SSEHeartbeat 1
</Location>""")
    chan = uniq("gone")
    for round_ in range(3):
        subs = [subscribe(h.port, chan, path="/hb") for _ in range(6)]
        r = pub_raw(h.port, chan, f"round {round_}".encode())
        assert r.status == 200 and r.json["subscribers"] == 6, r
        for s in subs:
            assert s.next_event().data == f"round {round_}".encode()
        # Half vanish with a RST, half with a normal close.
        for k, s in enumerate(subs):
            if k % 2:
                s.abort()
            else:
                s.close()
        deadline = time.monotonic() + 15
        n = None
        while time.monotonic() < deadline:
            info = channel_info(h.port, chan)
            n = info.json["subscribers"]
            if n == 0:
                break
            time.sleep(0.2)
        assert n == 0, f"round {round_}: {n} subscribers still counted after their clients left"
    # Only 8 workers: without freed slots the rounds above would have hung.


@pytest.mark.parametrize("mpm", ["event", "worker"])
def test_many_subscribers_per_child(httpd, mpm):
    h = httpd(mpm=mpm, mpm_conf="""
StartServers 2
ServerLimit 2
ThreadLimit 200
ThreadsPerChild 200
MinSpareThreads 10
MaxSpareThreads 400
MaxRequestWorkers 400
""")
    chans = [uniq("many") for _ in range(100)]
    subs = []
    try:
        for ch in chans:
            for _ in range(3):
                subs.append((ch, subscribe(h.port, ch)))
        ids = {}
        for ch in chans:
            r = pub_raw(h.port, ch, ("only " + ch).encode())
            assert r.status == 200 and r.json["subscribers"] == 3, r
            ids[ch] = r.json["id"]
        for ch, s in subs:
            assert s.next_event(15).raw == wire_event(ids[ch], ("only " + ch).encode())
        for ch, s in subs:
            s.assert_no_event(0.01)
    finally:
        for _, s in subs:
            s.close()


def _kernel_has_private_futex_hash():
    release = os.uname().release.split("-")[0].split(".")
    return sys.platform == "linux" and tuple(int(x) for x in release[:2]) >= (6, 16)


@pytest.mark.parametrize("mpm,threads,slots", [("event", 200, 1024), ("worker", 33, 256)])
def test_futex_hash_sized_for_the_childs_threads(httpd, mpm, threads, slots):
    # Linux 6.16+ would give each child 16 futex buckets on a small machine
    # whatever ThreadsPerChild says; each child asks for 4 per thread.
    h = httpd(mpm=mpm, server_conf="LogLevel sse:debug", mpm_conf=f"""
StartServers 2
ServerLimit 2
ThreadLimit {threads}
ThreadsPerChild {threads}
MinSpareThreads 1
MaxSpareThreads {2 * threads}
MaxRequestWorkers {2 * threads}
""")
    want = f"SSE00203: futex hash of this child: {slots} slots for {threads} threads"
    deadline = time.time() + 10
    while time.time() < deadline and h.error_log().count(want) < 2:
        time.sleep(0.1)
    lines = [l for l in h.error_log().splitlines() if "SSE00203:" in l]
    assert len(lines) == 2 and all(want in l for l in lines), lines
    if _kernel_has_private_futex_hash():
        assert not any("not set" in l for l in lines), lines
