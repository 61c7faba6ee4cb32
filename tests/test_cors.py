"""Cross-origin streams and publishes (SSECorsOrigin, SSECorsCredentials):
in Chromium, a page on http://localhost:PORT talks to http://127.0.0.1:PORT
(another origin, same server); and the raw headers, with python and curl."""
import json
import subprocess
import time

import pytest

from browser import HDR_LOG, es_state, open_event_source, wait_es
from ssetest.channels import uniq
from ssetest.clients import SSEClient, basic_auth, request
from ssetest.publish import publish_ok, wait_subscribers

BLANK = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>t</title></head><body>t</body></html>\n"

CORS_CONF = """
<Location /cors/events>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSERetry 500
    SSECorsOrigin http://localhost:{port} https://app.example
    SSECorsCredentials on
</Location>
<Location /cors/pub>
    SetHandler sse-publish
    SSECorsOrigin http://localhost:{port}
    SSECorsCredentials on
</Location>
<Location /cors-nocred/events>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSECorsOrigin http://localhost:{port}
</Location>
<Location /cors-other/events>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSECorsOrigin http://allowed.example
    SSECorsCredentials on
</Location>
<Location /cors-any/events>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSECorsOrigin *
</Location>
<Location /cors-auth-all/events>
    SetHandler sse-stream
    SSECorsOrigin http://localhost:{port}
    SSECorsCredentials on
    AuthType Basic
    AuthName "sse"
    AuthBasicProvider file
    AuthUserFile "{htpasswd}"
    Require valid-user
</Location>
<Location /cors-auth/events>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSECorsOrigin http://localhost:{port}
    SSECorsCredentials on
    AuthType Basic
    AuthName "sse"
    AuthBasicProvider file
    AuthUserFile "{htpasswd}"
    # Preflights carry no credentials: let OPTIONS through.
    <LimitExcept OPTIONS>
        Require valid-user
    </LimitExcept>
</Location>
""" + HDR_LOG


@pytest.fixture
def cors_srv(server):
    h = server(name="cors", conf=CORS_CONF)
    (h.dir / "htdocs" / "blank.html").write_text(BLANK)
    return h


@pytest.fixture
def page(cors_srv, browser_factory):
    """Chromium on http://localhost:PORT/blank.html; streams go to 127.0.0.1."""
    b = browser_factory()
    assert b.goto(f"http://localhost:{cors_srv.port}/blank.html") == 200
    assert b.eval("location.origin") == f"http://localhost:{cors_srv.port}"
    return b


def vary(headers):
    return [v.strip().lower() for v in headers.get("vary", "").split(",")]


def cors_headers(headers):
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


def wait_log(h, pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [r for r in h.hdr_log() if pred(r)]
        if rows:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"no such request in the log: {h.hdr_log()}")


# --------------------------------------------------------------------------
# in the browser
# --------------------------------------------------------------------------

def test_browser_cross_origin_with_credentials(cors_srv, page):
    h, b = cors_srv, page
    chan = uniq("xo")
    url = f"http://127.0.0.1:{h.port}/cors/events?channel={chan}"
    assert open_event_source(b, "a", url, types=["greeting"], with_credentials=True) is True
    wait_es(b, "a", "s.opens === 1")
    wait_subscribers(h.port, chan, 1)
    i1 = publish_ok(h.port, chan, "cross-origin ✓")
    i2 = publish_ok(h.port, chan, "line 1\nline 2", event="greeting")
    wait_es(b, "a", "s.log.length === 2")
    st = es_state(b, "a")
    assert [(e["type"], e["data"], e["id"], e["origin"]) for e in st["log"]] == [
        ("message", "cross-origin ✓", i1, f"http://127.0.0.1:{h.port}"),
        ("greeting", "line 1\nline 2", i2, f"http://127.0.0.1:{h.port}"),
    ]
    assert st["errors"] == [] and st["readyState"] == 1
    # What the browser sent (logged when the stream ends): its page's origin.
    assert request(h.port, "DELETE", f"/pub?channel={chan}").status == 200
    got = wait_log(h, lambda r: r[0] == "GET" and r[1] == f"/cors/events?channel={chan}")
    assert (got[0][2], got[0][4]) == ("200", f"http://localhost:{h.port}"), got
    b.eval("window.sse.a.es.close()")
    # The same request from python shows the headers the browser accepted.
    with SSEClient(h.port, f"/cors/events?channel={chan}",
                   headers={"Origin": f"http://localhost:{h.port}"}) as s:
        assert s.status == 200
        assert s.headers["access-control-allow-origin"] == f"http://localhost:{h.port}"
        assert s.headers["access-control-allow-credentials"] == "true"
        assert "origin" in vary(s.headers)


def test_browser_credentials_need_allow_credentials(cors_srv, page):
    """Control: the origin is allowed but SSECorsCredentials is off, so a
    withCredentials EventSource fails (no Access-Control-Allow-Credentials)
    while one without credentials works."""
    h, b = cors_srv, page
    chan = uniq("nc")
    url = f"http://127.0.0.1:{h.port}/cors-nocred/events?channel={chan}"
    open_event_source(b, "plain", url)
    open_event_source(b, "cred", url, with_credentials=True)
    wait_es(b, "plain", "s.opens === 1")
    wait_es(b, "cred", "s.es.readyState === 2", timeout=10)
    i = publish_ok(h.port, chan, "only for plain")
    wait_es(b, "plain", "s.log.length === 1")
    time.sleep(0.5)
    cred = es_state(b, "cred")
    assert cred["opens"] == 0 and cred["log"] == [] and cred["errors"] == [2]
    assert es_state(b, "plain")["log"][0]["id"] == i


def test_browser_origin_not_listed_fails(cors_srv, page):
    h, b = cors_srv, page
    chan = uniq("no")
    url = f"http://127.0.0.1:{h.port}/cors-other/events?channel={chan}"
    open_event_source(b, "a", url, with_credentials=True)
    # The browser fails the connection for good: error, CLOSED, no open.
    wait_es(b, "a", "s.errors.length > 0")
    for n in range(3):
        publish_ok(h.port, chan, f"must not arrive {n}")
        time.sleep(0.2)
    time.sleep(0.5)
    st = es_state(b, "a")
    assert st["opens"] == 0 and st["log"] == [], st
    assert st["errors"] == [2] and st["readyState"] == 2, st
    # The server did answer the browser's request (200, logged once the
    # browser's closing is noticed): the browser is what refused it.
    got = wait_log(h, lambda r: r[0] == "GET" and r[1] == f"/cors-other/events?channel={chan}")
    assert [(r[2], r[4]) for r in got] == [("200", f"http://localhost:{h.port}")], got
    # The headers that made it fail: none of CORS, but Vary: Origin.
    with SSEClient(h.port, f"/cors-other/events?channel={chan}",
                   headers={"Origin": f"http://localhost:{h.port}"}) as s:
        assert s.status == 200
        assert cors_headers(s.headers) == {}, s.headers
        assert "origin" in vary(s.headers)


FETCH_STREAM = """
(async (url, lastEventId, until) => {
  // A fetch-based stream reader (as EventSource polyfills do): its own
  // Last-Event-ID header is not CORS-safelisted, so Chromium preflights it.
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 8000);
  let text = '';
  try {
    const r = await fetch(url, {credentials: 'include', signal: ctl.signal,
      headers: {'Last-Event-ID': lastEventId, 'Accept': 'text/event-stream'}});
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    while (!text.includes(until)) {
      const {value, done} = await reader.read();
      if (done) break;
      text += dec.decode(value, {stream: true});
    }
    return {status: r.status, type: r.headers.get('content-type'), text};
  } catch (e) {
    return {error: String(e), text};
  } finally {
    clearTimeout(timer);
    ctl.abort();
  }
})
"""


def test_browser_long_last_event_id_and_preflight(cors_srv, page):
    """A 200-byte Last-Event-ID across origins. Chromium's EventSource
    reconnects with it (Chromium sends Last-Event-ID without a preflight,
    whatever its length); a fetch-based reader that sets it is preflighted:
    the OPTIONS gets 204 with the allow headers and the stream resumes."""
    h, b = cors_srv, page
    origin = f"http://localhost:{h.port}"
    chan, other = uniq("pf"), uniq("pf-end")
    long_id = "order-" + "x" * 194          # 200 bytes, publisher-chosen
    path = f"/cors/events?channel={chan}&channel={other}"
    url = f"http://127.0.0.1:{h.port}{path}"
    open_event_source(b, "a", url, with_credentials=True)
    wait_es(b, "a", "s.opens === 1")
    wait_subscribers(h.port, chan, 1)
    publish_ok(h.port, chan, "long id", id=long_id)
    wait_es(b, "a", "s.log.length === 1")
    assert es_state(b, "a")["log"][0]["id"] == long_id
    # End the stream (deleting one of its channels); once the browser has
    # seen it end, publish while it waits its retry delay (500 ms).
    assert request(h.port, "DELETE", f"/pub?channel={other}").status == 200
    wait_es(b, "a", "s.errors.length === 1")
    assert es_state(b, "a")["lastIdAtError"] == [long_id]
    missed = publish_ok(h.port, chan, "published while away")
    wait_es(b, "a", "s.opens === 2", timeout=10)
    wait_es(b, "a", "s.log.length === 2")
    after = publish_ok(h.port, chan, "live again")
    wait_es(b, "a", "s.log.length === 3")
    st = es_state(b, "a")
    assert [(e["id"], e["data"]) for e in st["log"]] == [
        (long_id, "long id"), (missed, "published while away"), (after, "live again")]

    # The fetch-based reader, from the same long id: preflight, then replay.
    got = b.eval(f"{FETCH_STREAM}({json.dumps(url)}, {json.dumps(long_id)}, 'live again')")
    assert got.get("status") == 200, got
    assert got["type"] == "text/event-stream; charset=utf-8"
    assert got["text"] == (f"retry: 500\n\nid: {missed}\ndata: published while away\n\n"
                           f"id: {after}\ndata: live again\n\n"), got
    pre = wait_log(h, lambda r: r[0] == "OPTIONS" and r[1] == path)
    assert [(r[2], r[4]) for r in pre] == [("204", origin)], pre

    # End every stream so that they are logged, and check what was sent.
    assert request(h.port, "DELETE", f"/pub?channel={chan}").status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gets = [r for r in h.hdr_log() if r[0] == "GET" and r[1] == path]
        if len(gets) >= 3:
            break
        time.sleep(0.1)
    # first EventSource request, its reconnection, the fetch reader
    assert sorted((r[2], r[3], r[4]) for r in gets[:3]) == sorted([
        ("200", "-", origin), ("200", long_id, origin), ("200", long_id, origin)]), gets
    b.eval("window.sse.a.es.close()")

    # The same preflight, by hand: what Chromium got.
    r = request(h.port, "OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})
    assert r.status == 204, r
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "GET" in [m.strip() for m in r.headers["access-control-allow-methods"].split(",")]
    assert r.headers["access-control-allow-headers"].lower() == "last-event-id"
    assert r.headers["access-control-max-age"] == "600"
    assert "origin" in vary(r.headers)


def test_browser_json_publish_from_page(cors_srv, page):
    """A page publishes JSON with fetch to the other origin: Chromium
    preflights it, then POSTs, and reads the reply."""
    h, b = cors_srv, page
    chan = uniq("pj")
    open_event_source(b, "a", f"http://127.0.0.1:{h.port}/cors/events?channel={chan}",
                      types=["chat"], with_credentials=True)
    wait_es(b, "a", "s.opens === 1")
    wait_subscribers(h.port, chan, 1)
    reply = b.eval(f"""fetch('http://127.0.0.1:{h.port}/cors/pub', {{
        method: 'POST', credentials: 'include',
        headers: {{'Content-Type': 'application/json'}},
        body: JSON.stringify({{channel: {json.dumps(chan)}, event: 'chat', data: {{text: 'hé', n: 1}}}})
      }}).then(r => r.json().then(j => ({{status: r.status, body: j}})))""")
    assert reply["status"] == 200 and reply["body"]["subscribers"] == 1, reply
    wait_es(b, "a", "s.log.length === 1")
    ev = es_state(b, "a")["log"][0]
    assert (ev["type"], ev["id"], json.loads(ev["data"])) == ("chat", reply["body"]["id"],
                                                               {"text": "hé", "n": 1})
    # An error is readable by the page too (headers on error responses).
    err = b.eval(f"""fetch('http://127.0.0.1:{h.port}/cors/pub', {{
        method: 'POST', credentials: 'include',
        headers: {{'Content-Type': 'application/json'}}, body: '{{"channel": "bad name!"}}'
      }}).then(r => r.json().then(j => ({{status: r.status, body: j}})))""")
    assert err["status"] == 400 and "error" in err["body"], err
    origin = f"http://localhost:{h.port}"
    pre = wait_log(h, lambda r: r[0] == "OPTIONS" and r[1] == "/cors/pub")
    assert pre[0][2] == "204" and pre[0][4] == origin, pre
    posts = wait_log(h, lambda r: r[0] == "POST" and r[1] == "/cors/pub")
    assert [p[2] for p in posts] == ["200", "400"] and posts[0][4] == origin, posts


# --------------------------------------------------------------------------
# raw headers
# --------------------------------------------------------------------------

def test_headers_stream_allowed_origin(cors_srv):
    h = cors_srv
    for origin in (f"http://localhost:{h.port}", "https://app.example"):
        with SSEClient(h.port, f"/cors/events?channel={uniq('hd')}", headers={"Origin": origin}) as s:
            assert s.status == 200
            assert s.headers["access-control-allow-origin"] == origin
            assert s.headers["access-control-allow-credentials"] == "true"
            assert "origin" in vary(s.headers)
    # No Origin (same-origin or not a browser): no CORS headers, Vary all the same.
    with SSEClient(h.port, f"/cors/events?channel={uniq('hd')}") as s:
        assert s.status == 200 and cors_headers(s.headers) == {}
        assert "origin" in vary(s.headers)


def test_headers_origin_not_listed(cors_srv):
    h = cors_srv
    for origin in ("http://evil.example", f"http://localhost:{h.port + 1}",
                   f"https://localhost:{h.port}", "null"):
        with SSEClient(h.port, f"/cors/events?channel={uniq('hd')}", headers={"Origin": origin}) as s:
            assert s.status == 200
            assert cors_headers(s.headers) == {}, (origin, s.headers)
            assert "origin" in vary(s.headers)
        r = request(h.port, "OPTIONS", "/cors/pub", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert r.status == 204 and cors_headers(r.headers) == {}, (origin, r)
        assert "origin" in vary(r.headers)


def test_headers_preflights(cors_srv):
    h = cors_srv
    origin = f"http://localhost:{h.port}"
    r = request(h.port, "OPTIONS", "/cors/pub", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, sse-event"})
    assert r.status == 204 and r.body == b"", r
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true"
    methods = [m.strip() for m in r.headers["access-control-allow-methods"].split(",")]
    assert methods == ["GET", "POST", "DELETE"], methods     # a publish location's
    assert r.headers["access-control-allow-headers"].lower() == "content-type, sse-event"
    assert r.headers["access-control-max-age"] == "600"
    # Without Access-Control-Request-Headers: the module's own list.
    r = request(h.port, "OPTIONS", "/cors/events", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET"})
    assert r.status == 204, r
    allowed = [x.strip().lower() for x in r.headers["access-control-allow-headers"].split(",")]
    assert allowed == ["last-event-id", "content-type", "sse-event", "sse-id", "sse-retry"], allowed
    # A plain OPTIONS (not a preflight) is not given the preflight headers.
    r = request(h.port, "OPTIONS", "/cors/events", headers={"Origin": origin})
    assert r.status == 204 and "access-control-allow-methods" not in r.headers, r
    assert r.headers["access-control-allow-origin"] == origin


def test_headers_with_curl(cors_srv):
    """The same, as an operator would check it."""
    h = cors_srv
    origin = f"http://localhost:{h.port}"
    p = subprocess.run(
        ["curl", "-sS", "-i", "-X", "OPTIONS", "--max-time", "10",
         "-H", f"Origin: {origin}", "-H", "Access-Control-Request-Method: GET",
         "-H", "Access-Control-Request-Headers: last-event-id",
         f"http://127.0.0.1:{h.port}/cors/events?channel=x"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    head = p.stdout.decode("latin-1").split("\r\n\r\n", 1)[0].split("\r\n")
    assert head[0].startswith("HTTP/1.1 204"), head
    lines = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip() for ln in head[1:]}
    assert lines["access-control-allow-origin"] == origin
    assert lines["access-control-allow-credentials"] == "true"
    assert lines["access-control-allow-headers"].lower() == "last-event-id"
    assert lines["access-control-max-age"] == "600"
    assert "origin" in [v.strip().lower() for v in lines["vary"].split(",")]


def test_headers_any_origin(cors_srv):
    h = cors_srv
    with SSEClient(h.port, f"/cors-any/events?channel={uniq('any')}",
                   headers={"Origin": "http://whoever.example"}) as s:
        assert s.status == 200
        assert s.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in s.headers


def test_headers_auth_location_lets_preflight_through(cors_srv):
    """With <LimitExcept OPTIONS>, the preflight (which never carries
    credentials) is answered 204; the GET still needs them."""
    h = cors_srv
    origin = f"http://localhost:{h.port}"
    chan = uniq("au")
    r = request(h.port, "OPTIONS", f"/cors-auth/events?channel={chan}", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})
    assert r.status == 204, r
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true"
    s = SSEClient(h.port, f"/cors-auth/events?channel={chan}", headers={"Origin": origin})
    with s:
        assert s.status == 401
    # Without <LimitExcept OPTIONS>, the preflight itself is refused.
    r = request(h.port, "OPTIONS", f"/cors-auth-all/events?channel={chan}", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})
    assert r.status == 401 and cors_headers(r.headers) == {}, r
    with SSEClient(h.port, f"/cors-auth/events?channel={chan}",
                   headers=dict(basic_auth("alice"), Origin=origin)) as s:
        assert s.status == 200
        assert s.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("lines", [
    ["SSECorsOrigin *", "SSECorsCredentials on"],
    ["SSECorsCredentials on", "SSECorsOrigin *"],
    ["SSECorsOrigin http://app.example/path"],
    ["SSECorsOrigin app.example"],
], ids=["any-then-credentials", "credentials-then-any", "path", "no-scheme"])
def test_config_refused(server, lines):
    """`*` with credentials, or something that is not an origin: httpd does
    not start, and says which directive."""
    body = "\n".join("    " + ln for ln in lines)
    h = server(start=False, name="corsconf",
               conf=f"<Location /bad>\n    SetHandler sse-stream\n{body}\n</Location>\n")
    rc, out = h.config_test()
    assert rc != 0, out
    assert "SSECors" in out, out
