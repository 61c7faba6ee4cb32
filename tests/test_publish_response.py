"""Publishing responses by their X-SSE-Publish header (SSEPublishResponses),
independently of PHP: shell CGI scripts under mod_cgid, a module's handler
(tests/modules/mod_sse_test.c, headers_out or err_headers_out, FLUSH
buckets), a backend behind mod_proxy_http, mod_deflate after the filter."""
import gzip
import http.server
import os
import threading

import pytest

from ssetest.channels import q, uniq
from ssetest.clients import SSEClient, subscribe
from ssetest.httpd import BASE_MODULES
from ssetest.publish import (assert_no_publish_headers, assert_unpublished, channel_info, get,
                             ids_of, pub_raw)
from ssetest.wire import SERVER_ID_RE, wire_event
from testmod import sse_testmod_conf

CGI_SCRIPTS = {
    # $QUERY_STRING is the channel.
    "plain": r"""printf 'X-SSE-Publish: %s\r\nX-SSE-Event: upd\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'hello\nworld'
""",
    "slow-plain": r"""printf 'X-SSE-Publish: %s\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'first\n'
sleep 1
printf 'second'
""",
    "slow-none": r"""printf 'Content-Type: text/plain\r\n\r\n'
printf 'first\n'
sleep 1
printf 'second'
""",
    "stream": r"""printf 'X-SSE-Publish: %s\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n' "$QUERY_STRING"
printf 'event: a\r\ndata: 1\r\n\r\n'
sleep 0.2
printf 'data: 2\r'
sleep 0.2
printf '\ndata: 3\r\r'
""",
    "long": r"""printf 'X-SSE-Publish: %s\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
i=0
while [ $i -lt 100 ]; do printf 'line %03d of text\n' $i; i=$((i+1)); done
""",
    "two-headers": r"""printf 'X-SSE-Publish: %s-a\r\nX-SSE-Publish: %s-b\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING" "$QUERY_STRING"
printf 'to both'
""",
    "created": r"""printf 'Status: 201 Created\r\nX-SSE-Publish: %s\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'made'
""",
    "gzip": r"""printf 'X-SSE-Publish: %s\r\nContent-Encoding: gzip\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'not really gzip'
""",
    "nochannel": r"""printf 'X-SSE-Publish: ,\r\nContent-Type: text/plain\r\n\r\n'
printf 'x'
""",
    "badchannel": r"""printf 'X-SSE-Publish: %s a<b\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'x'
""",
    "noevent": r"""printf 'X-SSE-Publish: %s\r\nContent-Type: text/event-stream\r\n\r\n' "$QUERY_STRING"
printf ': only a comment\n\nevent: x\n\ndata: not ended'
""",
    "reserved": r"""printf 'X-SSE-Publish: %s\r\nX-SSE-Event: sse-mine\r\nContent-Type: text/plain\r\n\r\n' "$QUERY_STRING"
printf 'x'
""",
}

CONF = """
ScriptSock "{dir}/run/cgid.sock"
ScriptAlias /cgi/ "{dir}/cgi/"
ScriptAlias /cgi-off/ "{dir}/cgi/"
<Location /cgi/>
    SSEPublishResponses on
</Location>
<Location /respond>
    SetHandler sse-test-respond
    SSEPublishResponses on
</Location>
<Location /respond-off>
    SetHandler sse-test-respond
</Location>
"""


def make_server(httpd, so, mpm="event", conf="", server_conf="", modules=()):
    h = httpd(start=False, mpm=mpm, modules=BASE_MODULES + ["cgid", "alias"] + list(modules),
              conf=sse_testmod_conf(so, CONF) + conf, server_conf=server_conf)
    d = h.dir / "cgi"
    d.mkdir()
    for name, text in CGI_SCRIPTS.items():
        (d / name).write_text("#!/bin/sh\n" + text)
        os.chmod(d / name, 0o755)
    os.chmod(d, 0o755)
    h.start()
    return h


@pytest.fixture
def h(httpd, sse_testmod_so):
    return make_server(httpd, sse_testmod_so)


@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_cgi_plain_and_stream(httpd, sse_testmod_so, mpm):
    h = make_server(httpd, sse_testmod_so, mpm=mpm)
    chan = uniq("cgi")
    with subscribe(h.port, chan) as s:
        r = get(h, f"/cgi/plain?{chan}")
        assert r.status == 200 and r.body == b"hello\nworld", r
        assert_no_publish_headers(r)
        [i1] = ids_of(r)
        assert SERVER_ID_RE.match(i1)
        r = get(h, f"/cgi/stream?{chan}")
        assert r.status == 200 and r.body == b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\ndata: 3\r\r", r
        i2, i3 = ids_of(r)
        assert [e.raw for e in s.next_events(3)] == [
            wire_event(i1, b"hello\nworld", event="upd"),
            wire_event(i2, b"1", event="a"),
            wire_event(i3, b"2\n3")]


def test_unmarked_response_is_not_held(h):
    """Without X-SSE-Publish the filter steps aside at the first brigade:
    the first line arrives a second before the rest."""
    c = SSEClient(h.port, "/cgi/slow-none", accept=None)
    with c:
        assert c.status == 200
        assert c.wait_eof(timeout=10) and c.clean_end
        assert bytes(c.body) == b"first\nsecond"
        # (arrival time, bytes) of each piece: "first" came alone, early.
        assert c.chunks[0][1] == b"first\n", c.chunks
        assert c.chunks[-1][0] - c.chunks[0][0] > 0.5, c.chunks
        assert "x-sse-published" not in c.headers


def test_marked_response_is_held_until_complete(h):
    chan = uniq("cgi")
    with subscribe(h.port, chan) as s:
        c = SSEClient(h.port, f"/cgi/slow-plain?{chan}", accept=None)
        with c:
            assert c.t_headers - c.t_sent > 0.8     # nothing before the script ended
            assert c.wait_eof(timeout=5) and bytes(c.body) == b"first\nsecond"
            [i] = [x.strip() for x in c.headers["x-sse-published"].split(",")]
            assert c.headers["content-length"] == "12"
        assert s.next_event().raw == wire_event(i, b"first\nsecond")


def test_several_headers_several_channels(h):
    chan = uniq("cgi")
    with subscribe(h.port, chan + "-a") as a, subscribe(h.port, chan + "-b") as b:
        r = get(h, f"/cgi/two-headers?{chan}")
        assert r.status == 200 and r.body == b"to both", r
        [i] = ids_of(r)
        assert a.next_event().raw == b.next_event().raw == wire_event(i, b"to both")


def test_status_other_than_200(h):
    chan = uniq("cgi")
    with subscribe(h.port, chan) as s:
        r = get(h, f"/cgi/created?{chan}")
        assert r.status == 201 and r.body == b"made", r
        [i] = ids_of(r)
        assert s.next_event().raw == wire_event(i, b"made")


@pytest.mark.parametrize("script,status,why", [
    ("gzip", 500, "compressed"),
    ("nochannel", 500, "names no channel"),
    ("badchannel", 500, "invalid channel name 'a<b'"),
    ("noevent", 500, "no complete event"),
    ("reserved", 500, "reserved"),
])
def test_refused_response(h, script, status, why):
    chan = uniq("cgi")
    mark = h.log_mark()
    with subscribe(h.port, chan) as s:
        r = get(h, f"/cgi/{script}?{chan}")
        assert r.status == status, r
        msg = r.error_message()
        assert msg.startswith("response not published: ") and why in msg, msg
        assert_no_publish_headers(r)
        assert "content-encoding" not in r.headers
        assert_unpublished(h, chan, s, 0.5)
    log = h.log_since(mark)
    assert "SSE00501:" in log and why in log, log


def test_off_by_default(h):
    chan = uniq("cgi")
    with subscribe(h.port, chan) as s:
        r = get(h, f"/cgi-off/plain?{chan}")
        assert r.status == 200 and r.body == b"hello\nworld", r
        assert r.headers["x-sse-publish"] == chan and r.headers["x-sse-event"] == "upd"
        assert "x-sse-published" not in r.headers
        r = get(h, f"/respond-off?channel={q(chan)}&part=x")
        assert r.status == 200 and r.headers["x-sse-publish"] == chan, r
        assert_unpublished(h, chan, s, 0.5)


def test_module_response_headers_out_and_err_headers_out(h):
    chan = uniq("mod")
    with subscribe(h.port, chan) as s:
        r = get(h, f"/respond?channel={q(chan)}&part=one%0A&part=two")
        assert r.status == 200 and r.body == b"one\ntwo", r
        [i1] = ids_of(r)
        r = get(h, f"/respond?channel={q(chan)}&err=1&part=three&part=%20four")
        assert r.status == 200 and r.body == b"three four", r
        assert_no_publish_headers(r)
        [i2] = ids_of(r)
        assert [e.raw for e in s.next_events(2)] == [wire_event(i1, b"one\ntwo"),
                                                    wire_event(i2, b"three four")]


def test_module_event_stream_across_flushes(h):
    """CR in one brigade, LF in the next: one line end, as for a client."""
    chan = uniq("mod")
    parts = ["data:%20x%0D", "%0Adata:%20y%0D", "%0A%0D", "%0Aid:%20k%0Adata:%20z%0A", "%0A"]
    with subscribe(h.port, chan) as s:
        r = get(h, f"/respond?channel={q(chan)}&type=text/event-stream&"
                   + "&".join("part=" + p for p in parts))
        assert r.status == 200, r
        i1, i2 = ids_of(r)
        assert i2 == "k"
        assert [e.raw for e in s.next_events(2)] == [wire_event(i1, b"x\ny"),
                                                    wire_event("k", b"z")]


def test_header_set_after_the_first_brigade_is_too_late(h):
    """The decision is taken at the first brigade: a header set later
    publishes nothing (and the response streams on, unheld)."""
    chan = uniq("mod")
    with subscribe(h.port, chan) as s:
        r = get(h, f"/respond?channel={q(chan)}&late=1&part=a&part=b")
        assert r.status == 200 and r.body == b"ab", r
        assert "x-sse-published" not in r.headers
        assert_unpublished(h, chan, s, 0.5)


def test_channel_table_full_is_503(httpd, sse_testmod_so):
    h = make_server(httpd, sse_testmod_so, server_conf="SSEMaxChannels 2\n")
    for c in ("full-1", "full-2"):
        assert pub_raw(h.port, c, "x").status == 200
    r = get(h, "/respond?channel=full-3&part=x")
    assert r.status == 503, r
    assert "response not published" in r.error_message()
    assert channel_info(h.port, "full-3").status == 404


def test_deflate_runs_after_publishing(httpd, sse_testmod_so):
    """With compression on the location, subscribers get the body as the
    script wrote it, the caller gets it compressed."""
    h = make_server(httpd, sse_testmod_so, conf="""
<Location /cgi/>
    AddOutputFilterByType DEFLATE text/plain
</Location>
""")
    chan = uniq("gz")
    text = b"".join(b"line %03d of text\n" % i for i in range(100))
    with subscribe(h.port, chan) as s:
        r = get(h, f"/cgi/long?{chan}", headers={"Accept-Encoding": "gzip"})
        assert r.status == 200 and r.headers.get("content-encoding") == "gzip", r
        assert gzip.decompress(r.body) == text
        [i] = ids_of(r)
        assert s.next_event().raw == wire_event(i, text)


class _Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        chan = self.path.split("?", 1)[1]
        body = b"event: proxied\ndata: via\ndata: proxy\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("X-SSE-Publish", chan)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_proxied_backend(httpd, sse_testmod_so):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    t = threading.Thread(target=backend.serve_forever, daemon=True)
    t.start()
    try:
        h = make_server(httpd, sse_testmod_so, modules=["proxy", "proxy_http"], conf=f"""
<Location /proxied/>
    ProxyPass http://127.0.0.1:{backend.server_address[1]}/
    SSEPublishResponses on
</Location>
""")
        chan = uniq("px")
        with subscribe(h.port, chan) as s:
            r = get(h, f"/proxied/x?{chan}")
            assert r.status == 200, r
            assert_no_publish_headers(r)
            [i] = ids_of(r)
            assert s.next_event().raw == wire_event(i, b"via\nproxy", event="proxied")
    finally:
        backend.shutdown()
        backend.server_close()


def test_directive_takes_on_or_off(httpd):
    h = httpd(start=False, conf="<Location /x>\n    SSEPublishResponses maybe\n</Location>\n")
    rc, out = h.config_test()
    assert rc != 0 and "SSEPublishResponses" in out, out
