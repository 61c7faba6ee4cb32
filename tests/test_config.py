"""Configuration: bad directive values fail `apache2 -t` naming the
directive; good ones pass; the Mutex directive applies to the ring."""
import pytest

from ssetest.channels import uniq
from ssetest.clients import subscribe
from ssetest.httpd import Httpd
from ssetest.publish import publish_ok
from ssetest.wire import wire_event

BAD_SERVER = [
    ("SSEBufferSize", "SSEBufferSize 12Q"),
    ("SSEBufferSize", "SSEBufferSize abc"),
    ("SSEBufferSize", "SSEBufferSize -1M"),
    ("SSEBufferSize", "SSEBufferSize 16K"),          # below the 64K minimum
    ("SSEMaxChannels", "SSEMaxChannels many"),
]

BAD_LOCATION = [
    ("SSEHeartbeat", "SSEHeartbeat -1"),
    ("SSEHeartbeat", "SSEHeartbeat abc"),
    ("SSEHeartbeat", "SSEHeartbeat 1.5"),
    ("SSERetry", "SSERetry soon"),
    ("SSERetry", "SSERetry -100"),
    ("SSEInitialReplay", "SSEInitialReplay -3"),
    ("SSEInitialReplay", "SSEInitialReplay x"),
    ("SSEMaxMessageSize", "SSEMaxMessageSize 10Z"),
    ("SSEPublishKeepAliveWait", "SSEPublishKeepAliveWait -1"),
    ("SSEPublishKeepAliveWait", "SSEPublishKeepAliveWait soon"),
    ("SSEPublishKeepAliveWait", "SSEPublishKeepAliveWait 61s"),
    ("SSEMaxChannelSubscribers", "SSEMaxChannelSubscribers -1"),
    ("SSEMaxChannelSubscribers", "SSEMaxChannelSubscribers many"),
    ("SSEMaxChannelSubscribers", "SSEMaxChannelSubscribers 10000001"),
    ("SSEOverloadRetry", "SSEOverloadRetry 99"),
    ("SSEOverloadRetry", "SSEOverloadRetry 1717986917"),
    ("SSEOverloadRetry", "SSEOverloadRetry 10s"),
    ("SSEHistoryTTL", "SSEHistoryTTL -1"),
    ("SSEHistoryTTL", "SSEHistoryTTL 1.5"),
    ("SSEHistoryTTL", "SSEHistoryTTL 31536001"),
    ("SSEChannel", 'SSEChannel "%{unclosed"'),
    ("SSEChannel", 'SSEChannel "%{NO_SUCH_FUNCTION:x}"'),
]


def _check_fails(directive, conf, where):
    h = Httpd(conf=conf if where == "location" else "", server_conf=conf if where == "server" else "",
              name="conftest")
    try:
        rc, out = h.config_test()
    finally:
        h.cleanup()
    assert rc != 0, f"`{conf.strip()}` was accepted:\n{out}"
    assert directive in out, f"error does not name {directive}:\n{out}"
    return out


@pytest.mark.parametrize("directive,line", BAD_SERVER, ids=[l for _, l in BAD_SERVER])
def test_bad_server_directive_fails_startup(directive, line):
    _check_fails(directive, line + "\n", "server")


@pytest.mark.parametrize("directive,line", BAD_LOCATION, ids=[l for _, l in BAD_LOCATION])
def test_bad_location_directive_fails_startup(directive, line):
    conf = f"<Location /bad>\n    SetHandler sse-stream\n    {line}\n</Location>\n"
    _check_fails(directive, conf, "location")


@pytest.mark.parametrize("line,message", [
    ("SSEMaxChannelSubscribers -1",
     "SSEMaxChannelSubscribers: '-1' is not a whole number from 0 to 10000000"),
    # The jitter's +25 % of the largest stays within SSE_RETRY_MAX.
    ("SSEOverloadRetry 50", "SSEOverloadRetry: '50' is not a whole number from 100 to 1717986916"),
    ("SSEHistoryTTL 2d", "SSEHistoryTTL: '2d' is not a whole number from 0 to 31536000"),
])
def test_limit_directives_say_their_bounds(line, message):
    conf = f"<Location /bad>\n    SetHandler sse-stream\n    {line}\n</Location>\n"
    assert message in _check_fails(line.split()[0], conf, "location")


@pytest.mark.parametrize("line", ["SSEBufferSize 1M", "SSEMaxChannels 10"])
def test_server_wide_directive_not_allowed_in_location(line):
    conf = f"<Location /bad>\n    SetHandler sse-stream\n    {line}\n</Location>\n"
    _check_fails(line.split()[0], conf, "location")


def test_good_config_syntax_ok():
    h = Httpd(server_conf="SSEBufferSize 2M\nSSEMaxChannels 100\nMutex file:{dir}/run sse-ring\n",
              conf="""
<Location /ok>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSERetry 0
    SSEInitialReplay 10
    SSEChannel "a-%{QUERY_STRING} b"
    SSEMaxChannelSubscribers 10000000
    SSEOverloadRetry 1717986916
    SSEHistoryTTL 31536000
</Location>
<Location /ok-low>
    SetHandler sse-stream
    SSEMaxChannelSubscribers 0
    SSEOverloadRetry 100
    SSEHistoryTTL 0
</Location>
<Location /okpub>
    SetHandler sse-publish
    SSEMaxMessageSize 512K
    SSEPublishKeepAliveWait 2ms
</Location>
""", name="conftest")
    try:
        rc, out = h.config_test()
    finally:
        h.cleanup()
    assert rc == 0, out
    assert "Syntax OK" in out


@pytest.mark.parametrize("size", ["64K", "1M", "1G"])
def test_buffer_size_suffixes_accepted(size):
    h = Httpd(server_conf=f"SSEBufferSize {size}\n", name="conftest")
    try:
        rc, out = h.config_test()
    finally:
        h.cleanup()
    assert rc == 0, out


@pytest.mark.parametrize("mech", ["fcntl:{dir}/run", "flock:{dir}/run", "sysvsem", "pthread", "default"])
def test_mutex_directive_applies(httpd, mech):
    h = httpd(mpm="prefork", server_conf=f"Mutex {mech} sse-ring\n")
    chan = uniq("mx")
    subs = [subscribe(h.port, chan) for _ in range(3)]
    try:
        pids = {h.wait_pid_of_client(s.client_port) for s in subs}
        assert len(pids) == 3
        ids = [publish_ok(h.port, chan, f"m{i}") for i in range(5)]
        for s in subs:
            assert [e.raw for e in s.next_events(5)] == [wire_event(i, f"m{k}".encode())
                                                        for k, i in enumerate(ids)]
    finally:
        for s in subs:
            s.close()


def test_ring_mutex_is_registered():
    """`Mutex ... sse-ring` is known to httpd, unlike an unregistered name."""
    h = Httpd(server_conf="Mutex file:{dir}/run sse-ring\n", name="conftest")
    try:
        rc, out = h.config_test()
    finally:
        h.cleanup()
    assert rc == 0, out
    h = Httpd(server_conf="Mutex file:{dir}/run sse-no-such-mutex\n", name="conftest")
    try:
        rc, out = h.config_test()
    finally:
        h.cleanup()
    assert rc != 0, out
