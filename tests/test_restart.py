"""Restarts and crashes: graceful restart (SIGUSR1) mid-stream, stop, full
restart, children killed with SIGKILL while publishing."""
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import NodeClient, SSEClient, request, subscribe
from ssetest.env import MODULE_SO, MPMS, REPO
from ssetest.httpd import SMALL_MPM
from ssetest.procs import pid_alive
from ssetest.publish import channel_info, pub_raw, publish_ok, wait_subscribers
from ssetest.wire import assert_strictly_increasing, server_id_key, wire_event



def publish_retry(port, chan, data, timeout=20, **kw):
    """Publish, retrying while the server is between generations."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = pub_raw(port, chan, data, timeout=5, **kw)
            if r.status == 200:
                return r.json["id"]
            last = r
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"publish did not succeed within {timeout}s: {last}")


@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_restart_mid_stream_no_event_lost(httpd, mpm):
    h = httpd(mpm=mpm, mpm_conf=SMALL_MPM[mpm])
    chan = uniq("gr")
    subs = [subscribe(h.port, chan) for _ in range(3)]
    try:
        before = [(publish_ok(h.port, chan, f"before{i}"), f"before{i}".encode()) for i in range(2)]
        for s in subs:
            assert [(e.id, e.data) for e in s.next_events(2)] == before
        old_children = h.children()
        # Streams end at once (not at the clients' leisure): 10 s is a guard
        # against a hang for all of them together, not a speed.
        deadline = time.monotonic() + 10
        h.graceful(wait=False)
        for s in subs:
            assert s.wait_eof(max(0, deadline - time.monotonic())), "stream still open 10s after SIGUSR1"
            assert s.clean_end, "stream should end cleanly (last chunk), not be cut"
        # The old generation goes away instead of lingering with streams.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(pid_alive(p) for p in old_children):
            time.sleep(0.1)
        assert not [p for p in old_children if pid_alive(p)], "old-generation children still alive"
        during = [(publish_retry(h.port, chan, f"during{i}"), f"during{i}".encode()) for i in range(3)]
        assert_strictly_increasing([i for i, _ in before + during])
        # Everything any client received before the restart is known; it
        # resumes from its last id and gets exactly what it missed.
        for s in subs:
            last = s.events()[-1].id
            assert last == before[-1][0]
            with subscribe(h.port, chan, headers={"Last-Event-ID": last}) as r:
                assert [(e.id, e.data) for e in r.next_events(3)] == during
                r.assert_no_event(0.3)
        # The ring outlived the restart: older events are still there.
        info = channel_info(h.port, chan)
        assert info.json["messages"] == 5 and info.json["last_id"] == during[-1][0], info
        with subscribe(h.port, chan, headers={"Last-Event-ID": before[0][0]}) as r:
            assert [(e.id, e.data) for e in r.next_events(4)] == before[1:] + during
    finally:
        for s in subs:
            s.close()
    h.graceful()
    assert "resuming normal operations" in h.error_log()


def test_graceful_restart_twice_ring_kept(httpd):
    h = httpd()
    chan = uniq("twice")
    sent = []
    for round_ in range(3):
        sent += [(publish_retry(h.port, chan, f"r{round_}-{i}"), f"r{round_}-{i}".encode())
                 for i in range(2)]
        if round_ < 2:
            h.graceful()
    assert_strictly_increasing([i for i, _ in sent])
    with subscribe(h.port, chan, headers={"Last-Event-ID": sent[0][0]}) as s:
        assert [(e.id, e.data) for e in s.next_events(5)] == sent[1:]


def test_graceful_restart_into_another_ring_layout(httpd, tmp_path):
    """An upgrade reloads Apache gracefully into a build whose ring is laid
    out differently: the new generation cannot read the kept ring, so it
    starts a new one beside it (SSE00007) and serves from that; resuming
    from an id of the old ring is a gap. Back to the first build, again."""
    variant = tmp_path / "variant"
    subprocess.run(["make", "-s", "-C", str(REPO), "variant", f"VARIANT_DIR={variant}",
                    "CFLAGS_EXTRA=-Wc,-DSSE_RING_LAYOUT=999u"],
                   check=True, stdout=subprocess.DEVNULL)
    loaded = tmp_path / "mod_sse.so"
    shutil.copy(MODULE_SO, loaded)

    def switch_to(build):
        # A new file renamed over the old, as dpkg does: the running
        # processes keep the old mapping.
        shutil.copy(build, tmp_path / "next.so")
        os.rename(tmp_path / "next.so", loaded)

    h = httpd(sse_module=loaded)
    chan = uniq("layout")
    with subscribe(h.port, chan) as s:
        first = publish_ok(h.port, chan, "first")
        assert s.next_event().raw == wire_event(first, b"first")
        switch_to(variant / ".libs" / "mod_sse.so")
        old_children = h.children()
        h.graceful(wait=False)
        assert s.wait_eof(10), "stream still open 10s after SIGUSR1"
        assert s.clean_end
    # Until the old generation is gone, one of its children may still take
    # a publish, into the old ring.
    deadline = time.monotonic() + 15
    while any(pid_alive(p) for p in old_children):
        assert time.monotonic() < deadline, "old-generation children still alive"
        time.sleep(0.1)
    second = publish_retry(h.port, chan, "second")
    assert h.error_log().count("SSE00007") == 1, h.error_log()
    with subscribe(h.port, chan, headers={"Last-Event-ID": first}) as s:
        gap = s.next_event()
        assert gap.event == "sse-gap"
        assert json.loads(gap.data) == {"last_event_id": first, "oldest_id": second}
        assert s.next_event().raw == wire_event(second, b"second")
        third = publish_ok(h.port, chan, "third")
        assert s.next_event().raw == wire_event(third, b"third")
    info = channel_info(h.port, chan)
    assert (info.json["messages"], info.json["last_id"]) == (2, third), info
    switch_to(MODULE_SO)
    old_children = h.children()
    h.graceful()
    assert h.error_log().count("SSE00007") == 2
    deadline = time.monotonic() + 15
    while any(pid_alive(p) for p in old_children):
        assert time.monotonic() < deadline, "old-generation children still alive"
        time.sleep(0.1)
    fourth = publish_retry(h.port, chan, "fourth")
    with subscribe(h.port, chan, headers={"Last-Event-ID": third}) as s:
        assert s.next_event().event == "sse-gap"
        assert s.next_event().raw == wire_event(fourth, b"fourth")
    log = h.error_log()
    assert "Segmentation fault" not in log and "exit signal" not in log, log


def test_node_eventsource_reconnects_across_graceful_restart(httpd):
    h = httpd(conf="""
<Location /es>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSERetry 1000
</Location>""")
    chan = uniq("node")
    node = NodeClient(h.url("/es" + chan_query(chan)), 6, timeout=40)
    try:
        node.wait_open(1)
        wait_subscribers(h.port, chan, 1)
        sent = [(publish_ok(h.port, chan, f"a{i}"), f"a{i}") for i in range(3)]
        node.wait_for(lambda m: m.get("kind") == "event" and m.get("data") == "a2", 10)
        h.graceful(wait=False)
        node.wait_for(lambda m: m.get("kind") == "error", 10)    # the guard against a hang
        # Published while the client is between connections.
        sent += [(publish_retry(h.port, chan, f"b{i}"), f"b{i}") for i in range(3)]
        final, events = node.result(45)
    finally:
        node.close()
    assert final == "done", node.lines
    assert [(e["lastEventId"], e["data"]) for e in events] == sent
    assert [m for m in node.lines if m.get("kind") == "open"][-1]["n"] == 2


@pytest.mark.parametrize("mpm", MPMS)
def test_stop_ends_streams_promptly(httpd, mpm):
    h = httpd(mpm=mpm)
    chan = uniq("stop")
    subs = [subscribe(h.port, chan) for _ in range(3)]
    try:
        i = publish_ok(h.port, chan, "x")
        for s in subs:
            assert s.next_event().id == i
        # httpd stops by itself with open streams (no SIGKILL needed): a
        # 10 s guard against a hang, not a speed.
        os.kill(h.pid, signal.SIGTERM)
        h.proc.wait(10)
        h.stop()
        for s in subs:
            assert s.wait_eof(5)
    finally:
        for s in subs:
            s.close()


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_graceful_stop_ends_streams_promptly(httpd, mpm):
    """SIGWINCH (apachectl -k graceful-stop) with no GracefulShutdownTimeout:
    httpd waits for its children, so streams must end by themselves."""
    h = httpd(mpm=mpm)
    chan = uniq("gstop")
    subs = [subscribe(h.port, chan) for _ in range(3)]
    try:
        i = publish_ok(h.port, chan, "x")
        for s in subs:
            assert s.next_event().id == i
        # Guards against a hang, not speeds: 10 s for the streams to end,
        # 15 s in all for httpd to exit.
        deadline = time.monotonic() + 15
        os.kill(h.pid, signal.SIGWINCH)
        for s in subs:
            assert s.wait_eof(10), "stream still open 10s after graceful-stop"
            assert s.clean_end
        h.proc.wait(max(0, deadline - time.monotonic()))
    finally:
        for s in subs:
            s.close()


def test_full_restart_ids_increase_and_old_id_gaps(httpd):
    h = httpd()
    chan = uniq("full")
    old = [publish_ok(h.port, chan, f"o{i}") for i in range(3)]
    h.stop()
    h.start()
    with subscribe(h.port, chan, headers={"Last-Event-ID": old[1]}) as s:
        gap = s.next_event()
        assert gap.event == "sse-gap"
        assert json.loads(gap.data) == {"last_event_id": old[1], "oldest_id": None}
        assert gap.id == old[1]
        new = publish_ok(h.port, chan, "new")
        assert s.next_event().raw == wire_event(new, b"new")
    assert server_id_key(new) > server_id_key(old[-1])


def _kill_test(h, sub_path="/events", rounds=3.0):
    """Publish from several threads while children are SIGKILLed; then the
    ring must still work, and be consistent.

    What a publish can get while children die (sse_publish.c, sse_store.c):
    the one channel exists, every event fits and the lock recovers from its
    holder's death (robust pthread mutex, or fcntl: released by the kernel),
    so every answer is 200. A publish whose own child is killed gets no
    answer: the connection is reset or closed before a status line
    (ConnectionResetError, http.client.RemoteDisconnected being one, or
    BrokenPipeError while sending); nothing else. Its event may or may not
    have been published. The subscriber gets every acknowledged event exactly
    once, in order, and besides them only events whose publish got no
    answer, each once."""
    port = h.port
    chan = uniq("kill")
    watcher = subscribe(port, chan, path=sub_path)
    watcher_pid = h.wait_pid_of_client(watcher.client_port)
    assert watcher_pid, "could not find the watcher's child"
    ok = []            # (id, data) of publishes answered 200
    unanswered = set() # data of publishes whose connection was cut
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def publisher(n):
        k = 0
        while not stop.is_set():
            data = f"k{n}-{k}".encode()
            k += 1
            try:
                r = pub_raw(port, chan, data, timeout=10)
            except (ConnectionResetError, BrokenPipeError):
                with lock:
                    unanswered.add(data)    # our child was killed under us
                continue
            except Exception as e:          # a timeout would mean a stuck lock
                errors.append(f"{data!r}: {e!r}")
                return
            if r.status == 200:
                with lock:
                    ok.append((r.json["id"], data))
            else:
                errors.append(r)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    kills = 0
    try:
        deadline = time.monotonic() + rounds
        while time.monotonic() < deadline:
            victims = [p for p in h.children() if p != watcher_pid]
            if victims:
                v = random.choice(victims)
                try:
                    os.kill(v, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(random.uniform(0.01, 0.08))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads), "publishers hung: ring left locked?"
    assert not errors, errors[:3]
    # How many kills and publishes fit in the time depends on the machine's
    # speed: lower bounds only, that the test did what it is about.
    assert kills > 5
    assert len(ok) > 20, f"only {len(ok)} publishes succeeded while killing"

    # After the massacre: publishing still works, promptly, and is delivered.
    after = [(publish_retry(port, chan, f"after{i}", timeout=15), f"after{i}".encode())
             for i in range(10)]
    assert pid_alive(watcher_pid)
    all_ok = ok + after
    last = after[-1][0]
    watcher.read_until(lambda s: any(e.id == last for e in s.events()), 20)
    got = [(e.id, e.data) for e in watcher.events()]
    watcher.close()
    assert got and got[-1][0] == last, f"watcher did not get the last event; got {got[-3:]}"
    ids = [i for i, _ in got]
    assert_strictly_increasing(ids)
    datas = [d for _, d in got]
    assert len(set(datas)) == len(datas), "an event was delivered twice"
    # Every acknowledged event, with the id its publish was given, exactly
    # once; the rest are events whose publish got no answer.
    got_set = set(got)
    missing = [x for x in all_ok if x not in got_set]
    assert not missing, f"acknowledged publishes not delivered: {missing[:5]}"
    acked = {d for _, d in all_ok}
    extra = [d for d in datas if d not in acked and d not in unanswered]
    assert not extra, f"events delivered that no publish sent or that were answered otherwise: {extra[:5]}"
    assert [x for x in got if x[1] in acked] == sorted(all_ok, key=lambda x: server_id_key(x[0]))
    # The ring is consistent: a replay from the first event returns exactly
    # what the live watcher saw.
    with subscribe(port, chan, headers={"Last-Event-ID": got[0][0]}) as r:
        evs = r.next_events(len(got) - 1, timeout=20)
        assert [(e.id, e.data) for e in evs] == got[1:]
        r.assert_no_event(0.3)
    return kills


@pytest.mark.parametrize("mpm,mutex", [("prefork", None), ("event", None), ("worker", None),
                                       ("prefork", "pthread"), ("event", "fcntl:{dir}/run")])
def test_sigkill_children_while_publishing(httpd, mpm, mutex):
    server_conf = f"Mutex {mutex} sse-ring\n" if mutex else ""
    h = httpd(mpm=mpm, mpm_conf=SMALL_MPM[mpm], server_conf=server_conf)
    _kill_test(h)


def test_killed_subscriber_child_frees_its_subscriptions(httpd):
    h = httpd(mpm="prefork", mpm_conf=SMALL_MPM["prefork"])
    chan = uniq("ks")
    subs = [subscribe(h.port, chan) for _ in range(3)]
    try:
        pids = [h.wait_pid_of_client(s.client_port) for s in subs]
        assert len(set(pids)) == 3 and None not in pids
        r = pub_raw(h.port, chan, b"three")
        assert r.json["subscribers"] == 3
        os.kill(pids[0], signal.SIGKILL)
        assert subs[0].wait_eof(5)
        deadline = time.monotonic() + 15
        n = None
        while time.monotonic() < deadline:
            n = channel_info(h.port, chan).json["subscribers"]
            if n == 2:
                break
            time.sleep(0.2)
        assert n == 2, f"subscriber count stuck at {n} after its child was killed"
        i = publish_ok(h.port, chan, "survivors")
        for s in subs[1:]:
            evs = s.next_events(2)
            assert (evs[-1].id, evs[-1].data) == (i, b"survivors")
    finally:
        for s in subs:
            s.close()
