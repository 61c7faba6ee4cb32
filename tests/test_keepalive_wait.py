"""SSEPublishKeepAliveWait: under the event MPM, the worker that answered a
publish stays with its keep-alive connection, for at most the wait, to serve
the next request itself instead of handing the connection back to the
listener thread.

What shows it: the access log line of a request is written when its handler
returns, i.e. after the wait. While a worker waits, the client already has
its answer but the request is not logged yet; requests that follow within
the wait are served by the same thread (%{tid}P). The wait ends when the
client sends or closes, or when the child stops; it never applies to sync
MPMs, to HTTP/2 streams, or to connections that are not kept alive."""
import json
import socket
import ssl
import subprocess
import time

import pytest

from browser import make_cert
from ssetest.clients import subscribe
from ssetest.httpd import BASE_MODULES
from ssetest.wire import SERVER_ID_RE, wire_event

WAIT_CONF = """
<Location /pubwait>
    SetHandler sse-publish
    SSEPublishKeepAliveWait 30s
</Location>
"""
# One log line per request: thread, keep-alive count, method, URL, status.
SERVER_CONF = """KeepAliveTimeout 60
LogFormat "%{tid}P %k %m %U%q %>s" kawait
CustomLog "{dir}/logs/kawait.log" kawait
"""


class Conn:
    """One HTTP/1.1 connection, requests sent one at a time."""

    def __init__(self, port, timeout=10, tls=False):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.s = ctx.wrap_socket(self.s, server_hostname="127.0.0.1")
        self.buf = b""

    def post(self, path, body, headers="", method="POST"):
        self.s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                       f"{headers}\r\n".encode() + body)
        return self.response()

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = int(headers["content-length"])
        while len(self.buf) < n:
            self._more()
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(lines[0].split()[1]), headers, body

    def _more(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def at_eof(self):
        """True when the server closes with nothing more sent (within the
        socket timeout)."""
        return self.s.recv(1) == b""

    def close(self):
        self.s.close()


def logged(h, chan):
    """The log lines of requests about chan, split into fields."""
    path = h.dir / "logs" / "kawait.log"
    if not path.exists():
        return []
    return [l.split() for l in path.read_text().splitlines() if chan in l]


def wait_logged(h, chan, n, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = logged(h, chan)
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{n} request(s) about {chan} not logged within {timeout} s: "
                         f"{logged(h, chan)}")


def assert_published(status, headers, body, subscribers):
    assert status == 200, (status, body)
    assert headers["content-type"] == "application/json", headers
    j = json.loads(body)
    assert set(j) == {"id", "subscribers"} and j["subscribers"] == subscribers, j
    assert SERVER_ID_RE.match(j["id"]), j
    return j["id"]


TLS_CONF = """SSLEngine on
SSLCertificateFile "{dir}/cert.pem"
SSLCertificateKeyFile "{dir}/key.pem"
"""


def test_publisher_keeps_its_worker_between_requests(httpd, chan):
    h = httpd(conf=WAIT_CONF, server_conf=SERVER_CONF)
    with subscribe(h.port, chan) as s:
        c = Conn(h.port)
        ids = []
        for k in range(3):
            ids.append(assert_published(*c.post(f"/pubwait?channel={chan}", f"e{k}".encode()), 1))
            # Answered, and the worker is still waiting: this request is not
            # logged yet (the ones before it are, once the next one came).
            time.sleep(0.5)
            assert len(logged(h, chan)) == k, logged(h, chan)
        c.close()
        lines = wait_logged(h, chan, 3)
        assert [l[1:] for l in lines] == [["0", "POST", "/pubwait?channel=" + chan, "200"],
                                         ["1", "POST", "/pubwait?channel=" + chan, "200"],
                                         ["2", "POST", "/pubwait?channel=" + chan, "200"]]
        assert len({l[0] for l in lines}) == 1, f"served by several threads: {lines}"
        assert [s.next_event().raw for _ in range(3)] == \
            [wire_event(ids[k], f"e{k}".encode()) for k in range(3)]


def test_tls_publisher_keeps_its_worker_between_requests(httpd, chan):
    # Over TLS the next request is read through mod_ssl's filter: the same
    # worker serves it, after the wait saw the encrypted bytes arrive.
    h = httpd(conf=WAIT_CONF, server_conf=SERVER_CONF + TLS_CONF, start=False,
              modules=BASE_MODULES + ["ssl", "socache_shmcb"])
    make_cert(h.dir)
    h.start()
    c = Conn(h.port, tls=True)
    for k in range(3):
        assert_published(*c.post(f"/pubwait?channel={chan}", f"e{k}".encode()), 0)
        time.sleep(0.5)
        assert len(logged(h, chan)) == k, logged(h, chan)
    c.close()
    lines = wait_logged(h, chan, 3)
    assert [l[1] for l in lines] == ["0", "1", "2"]
    assert len({l[0] for l in lines}) == 1, f"served by several threads: {lines}"


def test_only_back_to_back_requests_are_waited_for(httpd, chan):
    conf = WAIT_CONF.replace("SSEPublishKeepAliveWait 30s", "SSEPublishKeepAliveWait 8s")
    h = httpd(conf=conf, server_conf=SERVER_CONF + "LogLevel notice sse:trace1\n")
    c = Conn(h.port)
    url = f"/pubwait?channel={chan}"
    assert_published(*c.post(url, b"first"), 0)     # a connection's first request waits
    wait_logged(h, chan, 1, timeout=20)             # ... until the wait runs out
    # This one comes more than the wait after the answer before it: not
    # held, it is logged while the connection stays idle (well before 8 s).
    assert_published(*c.post(url, b"second"), 0)
    wait_logged(h, chan, 2, timeout=4)
    assert "SSE00403:" in h.error_log()      # "... not waiting"
    # Back to back again: the third request is waited after.
    assert_published(*c.post(url, b"third"), 0)
    time.sleep(0.5)
    assert len(logged(h, chan)) == 2
    c.close()
    lines = wait_logged(h, chan, 3)
    assert [l[1] for l in lines] == ["0", "1", "2"]
    assert h.error_log().count("SSE00403:") == 1, h.error_log()


@pytest.mark.parametrize("mpm,path", [("event", "/pub"), ("worker", "/pubwait"),
                                      ("prefork", "/pubwait")],
                         ids=["event-default-off", "worker", "prefork"])
def test_no_wait_by_default_or_under_sync_mpms(httpd, chan, mpm, path):
    h = httpd(mpm=mpm, conf=WAIT_CONF, server_conf=SERVER_CONF)
    c = Conn(h.port)
    assert_published(*c.post(f"{path}?channel={chan}", b"one"), 0)
    # logged while the connection stays open and idle
    assert [l[1:] for l in wait_logged(h, chan, 1)] == \
        [["0", "POST", f"{path}?channel={chan}", "200"]]
    assert_published(*c.post(f"{path}?channel={chan}", b"two"), 0)
    assert [l[1] for l in wait_logged(h, chan, 2)] == ["0", "1"]
    c.close()


def test_no_wait_when_the_connection_closes(httpd, chan):
    h = httpd(conf=WAIT_CONF, server_conf=SERVER_CONF)
    c = Conn(h.port)
    status, headers, body = c.post(f"/pubwait?channel={chan}", b"x", "Connection: close\r\n")
    assert_published(status, headers, body, 0)
    assert headers["connection"] == "close", headers
    assert c.at_eof()
    assert [l[1:] for l in wait_logged(h, chan, 1)] == \
        [["0", "POST", f"/pubwait?channel={chan}", "200"]]
    c.close()


def test_a_refused_publish_waits_too_and_the_next_request_is_served(httpd, chan):
    h = httpd(conf=WAIT_CONF, server_conf=SERVER_CONF)
    c = Conn(h.port)
    # 405 keeps the connection (a 400 would close it)
    status, _, body = c.post(f"/pubwait?channel={chan}", b"x", method="PUT")
    assert status == 405, body
    assert json.loads(body) == {"error": "method PUT not allowed on a publish location"}
    assert_published(*c.post(f"/pubwait?channel={chan}", b"y"), 0)
    c.close()
    lines = wait_logged(h, chan, 2)
    assert [(l[1], l[2], l[4]) for l in lines] == [("0", "PUT", "405"), ("1", "POST", "200")]
    assert lines[0][0] == lines[1][0], lines


def test_graceful_restart_ends_the_wait(httpd, chan):
    h = httpd(conf=WAIT_CONF, server_conf=SERVER_CONF)
    c = Conn(h.port)
    assert_published(*c.post(f"/pubwait?channel={chan}", b"x"), 0)
    time.sleep(0.3)
    assert logged(h, chan) == []
    h.graceful()
    # the old child stops waiting and closes the idle connection, long
    # before the 30 s wait or the 60 s KeepAliveTimeout
    assert c.at_eof()
    assert len(wait_logged(h, chan, 1)) == 1
    c.close()


def test_http2_streams_do_not_wait(httpd, chan):
    h = httpd(conf=WAIT_CONF, server_conf=SERVER_CONF + "Protocols h2c http/1.1\n",
              modules=BASE_MODULES + ["http2"])
    # An HTTP/2 stream ends when its handler returns: had it waited 30 s,
    # curl would give up after 20.
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-m", "20",
                        "-H", "Content-Type: text/plain", "-d", "a",
                        f"http://127.0.0.1:{h.port}/pubwait?channel={chan}",
                        "-w", "\n%{http_version} %{response_code}\n"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    body, _, version = p.stdout.decode().splitlines()
    assert version == "2 200", p.stdout
    j = json.loads(body)
    assert set(j) == {"id", "subscribers"} and j["subscribers"] == 0, body
    assert [l[2:] for l in wait_logged(h, chan, 1)] == [["POST", f"/pubwait?channel={chan}", "200"]]
