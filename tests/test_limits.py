"""SSEMaxChannelSubscribers and SSEOverloadRetry: a stream that would make
one of its channels exceed the limit of its location (subscribers counted
in every child) is refused the way EventSource survives: 200, an event
stream of one comment saying why and a retry: of SSEOverloadRetry +/- 25 %,
then the end. Exact under concurrency: of N + 1 streams sent at once to
several children, exactly one is refused. A refused stream counts nowhere;
a stream that ends (or whose child is killed) frees its place.
"""
import os
import re
import signal
import time

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import NodeClient, SSEClient, read_all, subscribe
from ssetest.env import MPMS
from ssetest.httpd import SMALL_MPM
from ssetest.metrics import STATUS_LOCATION, status_json
from ssetest.publish import channel_info, publish_ok, wait_subscribers
from ssetest.wire import wire_event

N = 4                   # SSEMaxChannelSubscribers of /lim
RETRY = 800             # SSEOverloadRetry of /lim

LIMIT_CONF = f"""
<Location /lim>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSEMaxChannelSubscribers {N}
    SSEOverloadRetry {RETRY}
</Location>
<Location /lim-more>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSEMaxChannelSubscribers {N + 2}
</Location>
<Location /lim-six>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSEMaxChannelSubscribers 6
    SSEOverloadRetry {RETRY}
</Location>
<Location /lim-one>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSEMaxChannelSubscribers 1
    SSEOverloadRetry 500
</Location>
"""


def full(chan, n=N):
    return f"channel '{chan}' already has the {n} subscribers SSEMaxChannelSubscribers allows"


def assert_refused(c, why, retry=RETRY):
    """c (an SSEClient read to its end) was refused: 200, an event stream,
    the comment, a retry within +/- 25 % of retry, a clean end. Returns the
    retry."""
    assert c.status == 200, c.status_line
    assert c.headers["content-type"] == "text/event-stream; charset=utf-8", c.headers
    assert c.eof and c.clean_end, (bytes(c.body), c.eof, c.clean_end)
    m = re.fullmatch(rb": " + re.escape(why.encode()) + rb"\nretry: (\d+)\n\n", bytes(c.body))
    assert m, bytes(c.body)
    assert retry * 0.75 <= int(m.group(1)) <= retry * 1.25, m.group(1)
    return int(m.group(1))


def open_at_once(port, path, chan, n):
    """n streams whose requests are all sent before any answer is read."""
    clients = [SSEClient(port, path + chan_query(chan), wait_headers=False) for _ in range(n)]
    for c in clients:
        c.read_headers()
    return clients


def split_refused(clients, settle=0.7):
    """(served, refused): a refused stream ends at once; a served one stays
    open. Waits for a first end (up to 5 s), then settle seconds for more."""
    deadline = time.monotonic() + 5
    while not any(c.eof for c in clients) and time.monotonic() < deadline:
        read_all(clients, lambda c: c.eof, 0.1)
    read_all(clients, lambda c: c.eof, settle)
    return [c for c in clients if not c.eof], [c for c in clients if c.eof]


@pytest.mark.parametrize("mpm", MPMS)
def test_n_plus_one_across_children_exactly_one_refused(httpd, mpm):
    # Six streams cannot all be in one child: 4 threads each (SMALL_MPM),
    # or one stream each under prefork.
    n = 6
    h = httpd(mpm=mpm, mpm_conf=SMALL_MPM[mpm], conf=LIMIT_CONF + STATUS_LOCATION)
    chan = uniq("lim")
    clients = open_at_once(h.port, "/lim-six", chan, n + 1)
    try:
        served, refused = split_refused(clients)
        assert len(refused) == 1 and len(served) == n, [bytes(c.body) for c in clients]
        assert_refused(refused[0], full(chan, n))
        pids = {h.wait_pid_of_client(c.client_port) for c in served}
        assert None not in pids and len(pids) >= 2, pids
        # The refused stream counts nowhere.
        info = channel_info(h.port, chan)
        assert info.status == 200 and info.json["subscribers"] == n, info
        i = publish_ok(h.port, chan, "to the served")
        for c in served:
            assert c.next_event().raw == wire_event(i, b"to the served")
        # Still full: the next one is refused too.
        again = SSEClient(h.port, "/lim-six" + chan_query(chan))
        again.wait_eof(5)
        assert_refused(again, full(chan, n))
        again.close()
        # Both refusals are counted, in every child, like any overload.
        figures = status_json(h.port)
        assert figures["sse_overload_refusals_total"] == 2, figures
        assert figures["sse_subscribers"] == n, figures
        # A stream that ends frees its place (found by its next heartbeat),
        # and the place is taken again.
        served[0].close()
        wait_subscribers(h.port, chan, n - 1)
        with subscribe(h.port, chan, path="/lim-six") as s:
            wait_subscribers(h.port, chan, n)
            i = publish_ok(h.port, chan, "in the freed place")
            assert s.next_event().raw == wire_event(i, b"in the freed place")
            assert not s.eof
    finally:
        for c in clients:
            c.close()


def test_jitter_spreads_retries_within_a_quarter(httpd):
    h = httpd(conf=LIMIT_CONF)
    chan = uniq("jit")
    held = [subscribe(h.port, chan, path="/lim") for _ in range(N)]
    try:
        retries = []
        for _ in range(12):
            with SSEClient(h.port, "/lim" + chan_query(chan)) as c:
                c.wait_eof(5)
                retries.append(assert_refused(c, full(chan)))
        # Random per refusal: not all the same.
        assert len(set(retries)) > 1, retries
    finally:
        for s in held:
            s.close()


LOG_LINE = re.compile(r"^\[\w+ (\w+ \d+ [\d:.]+ \d+)\] \[sse:warn\] \[pid (\d+):tid \d+\] "
                      r".*SSE00309: stream refused \(the client retries in (\d+) ms\): (.*)$")


def test_refusals_are_logged_at_most_once_a_second_per_child(httpd):
    h = httpd(conf=LIMIT_CONF)
    chan = uniq("log")
    mark = h.log_mark()
    with subscribe(h.port, chan, path="/lim-one"):
        for _ in range(30):
            with SSEClient(h.port, "/lim-one" + chan_query(chan)) as c:
                c.wait_eof(5)
                assert_refused(c, full(chan, 1), retry=500)
    time.sleep(0.2)
    logged = [LOG_LINE.match(line) for line in h.log_since(mark).splitlines()
              if "SSE00309" in line]
    assert logged and all(logged), logged
    by_pid = {}
    for m in logged:
        assert m.group(4).endswith(full(chan, 1)), m.group(0)
        assert 375 <= int(m.group(3)) <= 625, m.group(0)
        mon, day, hms, year = m.group(1).split()
        whole, frac = hms.split(".")
        t = time.mktime(time.strptime(f"{mon} {day} {whole} {year}", "%b %d %H:%M:%S %Y"))
        by_pid.setdefault(m.group(2), []).append(t + float("0." + frac))
    for pid, times in by_pid.items():
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= 1.0 for g in gaps), (pid, gaps)


@pytest.mark.parametrize("retry", [100, 1717986916], ids=["smallest", "largest"])
def test_retry_at_its_bounds_stays_within_a_quarter_and_valid(httpd, retry):
    """At the largest SSEOverloadRetry, +25 % is still a retry every client
    holds (at most 2147483647); at the smallest, -25 % is still 75 ms."""
    h = httpd(conf=f"""
<Location /edge>
    SetHandler sse-stream
    SSEMaxChannelSubscribers 1
    SSEOverloadRetry {retry}
</Location>""")
    chan = uniq("edge")
    with subscribe(h.port, chan, path="/edge"):
        got = []
        for _ in range(5):
            with SSEClient(h.port, "/edge" + chan_query(chan)) as c:
                c.wait_eof(5)
                got.append(assert_refused(c, full(chan, 1), retry=retry))
    assert all(r <= 2147483647 for r in got), got


def test_limit_is_the_locations_and_any_full_channel_refuses(httpd):
    h = httpd(conf=LIMIT_CONF)
    chan, other = uniq("loc"), uniq("free")
    publish_ok(h.port, other, "a channel that exists")
    held = [subscribe(h.port, chan, path="/lim") for _ in range(N)]
    try:
        # /lim is full; /lim-more (N + 2) still takes two; /events has no limit.
        held += [subscribe(h.port, chan, path="/lim-more") for _ in range(2)]
        with SSEClient(h.port, "/lim-more" + chan_query(chan)) as c:
            c.wait_eof(5)
            assert_refused(c, full(chan, N + 2), retry=10000)   # the default retry
        held.append(subscribe(h.port, chan, path="/events"))
        wait_subscribers(h.port, chan, N + 3)
        # A stream on a free channel and a full one is refused, and counts
        # on neither.
        with SSEClient(h.port, "/lim" + chan_query([other, chan])) as c:
            c.wait_eof(5)
            assert_refused(c, full(chan))
        info = channel_info(h.port, other)
        assert info.status == 200 and info.json["subscribers"] == 0, info
        assert channel_info(h.port, chan).json["subscribers"] == N + 3
        # A channel named twice counts once.
        with subscribe(h.port, [other, other], path="/lim-one") as s:
            assert wait_subscribers(h.port, other, 1)
            s.assert_no_event(0.3)
            assert not s.eof
    finally:
        for s in held:
            s.close()


def test_killed_child_frees_its_places(httpd):
    h = httpd(mpm="prefork", mpm_conf=SMALL_MPM["prefork"], conf=LIMIT_CONF)
    chan = uniq("kill")
    held = [subscribe(h.port, chan, path="/lim") for _ in range(N)]
    try:
        pids = [h.wait_pid_of_client(s.client_port) for s in held]
        assert None not in pids and len(set(pids)) == N, pids
        with SSEClient(h.port, "/lim" + chan_query(chan)) as c:
            c.wait_eof(5)
            assert_refused(c, full(chan))
        # SIGKILL: no cleanup runs in the child; the parent's monitor reaps
        # its column of counts.
        os.kill(pids[0], signal.SIGKILL)
        wait_subscribers(h.port, chan, N - 1)
        with subscribe(h.port, chan, path="/lim") as s:
            assert not s.eof
            i = publish_ok(h.port, chan, "after the kill")
            assert s.next_event().raw == wire_event(i, b"after the kill")
    finally:
        for s in held:
            s.close()


def opens(node):
    return len([m for m in node.lines if m.get("kind") == "open"])


def wait_served(node, quiet=1.2, timeout=10):
    """Waits until the client's last connection opened and stayed open for
    quiet seconds: longer than a refusal and its retry (500 ms + 25 %)."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(node.lines)
        if n != seen:
            seen, since = n, time.monotonic()
        elif node.lines[-1].get("kind") == "open" and time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError(f"never served: {node.lines}")


def test_eventsource_comes_back_after_the_retry_and_is_served(httpd):
    h = httpd(mpm="event", mpm_conf=SMALL_MPM["event"], conf=LIMIT_CONF)
    chan = uniq("es")
    holder = subscribe(h.port, chan, path="/lim-one")
    node = NodeClient(h.url("/lim-one" + chan_query(chan)), 1, timeout=20)
    try:
        # Refused (open, then the end), it comes back after the retry, and
        # is refused again while the place is taken.
        node.wait_open(3)
        assert [m["kind"] for m in node.lines[:5]] == ["open", "error", "open", "error", "open"]
        assert channel_info(h.port, chan).json["subscribers"] == 1
        # The place is freed (the holder's next heartbeat finds it gone):
        # the client's next try is served and stays.
        holder.close()
        wait_served(node)
        before = opens(node)
        assert channel_info(h.port, chan).json["subscribers"] == 1
        i = publish_ok(h.port, chan, "served at last")
        final, events = node.result()
    finally:
        holder.close()
        node.close()
    assert final == "done", node.lines
    assert [(e["type"], e["data"], e["lastEventId"]) for e in events] == [
        ("message", "served at last", i)]
    assert opens(node) == before
