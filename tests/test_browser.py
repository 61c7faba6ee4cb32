"""mod_sse in a real browser: Debian's Chromium, headless, through
playwright-core (tests/node/browser.mjs): the demo page of the README, and
the browser's own EventSource (event types, exact data, lastEventId,
automatic reconnection with Last-Event-ID across a graceful restart)."""
import json
import re
import subprocess
import threading
import time

import pytest

from browser import HDR_LOG, artifact_dir, es_state, open_event_source, wait_es
from ssetest.channels import uniq
from ssetest.clients import request
from ssetest.env import REPO
from ssetest.httpd import BASE_MODULES
from ssetest.publish import pub_json, publish_ok, wait_subscribers
from ssetest.wire import assert_strictly_increasing

DEMO_CONF = REPO / "conf" / "httpd-demo.conf.in"
DEMO_PAGE = REPO / "conf" / "demo" / "index.html"
BLANK = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>t</title></head><body>t</body></html>\n"


def demo_locations():
    """The <Location /events> and <Location /publish> blocks of the demo
    configuration, as `make run` serves them."""
    text = DEMO_CONF.read_text()
    blocks = []
    for loc in ("/events", "/publish"):
        m = re.search(r"^<Location %s>\n.*?^</Location>\n" % re.escape(loc), text, re.M | re.S)
        assert m, f"no <Location {loc}> in {DEMO_CONF}"
        blocks.append(m.group(0))
    return "".join(blocks)


def curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_demo_page(server, browser_factory):
    """The README's demo page, with the demo's own locations: it connects,
    shows what its form and what curl publish, and is photographed."""
    h = server(name="demo", std_locations=False, modules=BASE_MODULES + ["dir"],
               conf=demo_locations())
    (h.dir / "htdocs" / "index.html").write_bytes(DEMO_PAGE.read_bytes())
    base = f"http://127.0.0.1:{h.port}"
    b = browser_factory()
    assert b.goto(base + "/") == 200
    b.wait("document.getElementById('state').dataset.state === 'open'")
    assert b.eval("document.getElementById('stream-url').textContent") == "/events?channel=demo"
    wait_subscribers(h.port, "demo", 1, path="/publish")

    # The page's own form: a typed event, several lines, not only ASCII.
    text = "Hello from Chromium\nsecond line: héllo wörld ✓ Ωμέγα"
    b.fill("#event-type", "greeting")
    b.fill("#data", text)
    b.click("#publish-form button[type=submit]")
    li = b.wait("""(() => { const li = document.querySelector('#events li[data-type="greeting"]');
        return li && {id: li.dataset.id, data: li.querySelector('pre.data').textContent}; })()""")
    assert li["data"] == text
    result = b.wait("""(() => { const t = document.getElementById('publish-result').textContent;
        return t.startsWith('200') && t; })()""")
    assert json.loads(result.split("\n", 1)[1])["id"] == li["id"]
    assert json.loads(result.split("\n", 1)[1])["subscribers"] == 1

    # curl, exactly as in the README: a form publish and a JSON one.
    r1 = json.loads(curl("-d", "channel=demo", "-d", "event=news", "-d", "data=from curl",
                         base + "/publish"))
    r2 = json.loads(curl("-H", "Content-Type: application/json",
                         "-d", '{"channel":"demo","data":{"n":1}}', base + "/publish"))
    assert r1["subscribers"] == 1 and r2["subscribers"] == 1
    b.wait(f"document.querySelector('#events li[data-id=\"{r2['id']}\"]') !== null")
    shown = b.eval("""Array.from(document.querySelectorAll('#events li')).map(li =>
        ({id: li.dataset.id, type: li.dataset.type, data: li.querySelector('pre.data').textContent}))""")
    # Newest first, each event once.
    assert shown == [
        {"id": r2["id"], "type": "message", "data": '{"n":1}'},
        {"id": r1["id"], "type": "news", "data": "from curl"},
        {"id": li["id"], "type": "greeting", "data": text},
    ]
    assert b.eval("document.getElementById('last-id').textContent") == r2["id"]
    assert b.eval("document.getElementById('state').dataset.state") == "open"

    path = artifact_dir() / "demo-page.png"
    if path.exists():
        path.unlink()
    b.screenshot(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, len(data)
    print(f"\nscreenshot of the demo page: {path}")


ES_CONF = """
<Location /es>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSERetry 500
</Location>
""" + HDR_LOG


@pytest.fixture
def es_page(server, browser_factory):
    h = server(name="es", conf=ES_CONF)
    (h.dir / "htdocs" / "blank.html").write_text(BLANK)
    b = browser_factory()
    assert b.goto(f"http://127.0.0.1:{h.port}/blank.html") == 200
    return h, b


def test_native_eventsource_types_and_exact_data(es_page):
    h, b = es_page
    chan = uniq("es")
    open_event_source(b, "a", f"/es?channel={chan}", types=["greeting", "multi"])
    wait_es(b, "a", "s.opens === 1")
    wait_subscribers(h.port, chan, 1)

    cases = [
        # (published data, event type or None, expected e.data)
        (b"plain", None, "plain"),
        (b"hello", "greeting", "hello"),
        (b"line one\nline two\r\nline three\rline four", "multi", "line one\nline two\nline three\nline four"),
        ("héllo wörld — ✓ 日本語 🎉 Ωμέγα".encode(), None, "héllo wörld — ✓ 日本語 🎉 Ωμέγα"),
        (b"  leading spaces kept", None, "  leading spaces kept"),
        (b"trailing newline\n", None, "trailing newline\n"),
        (b"", None, ""),
        (b"not for this page", "unlistened", None),     # no listener: not delivered
        (json.dumps({"k": [1, "ü"]}, ensure_ascii=False).encode(), None, '{"k": [1, "ü"]}'),
    ]
    want = []
    for data, event, expected in cases:
        i = publish_ok(h.port, chan, data, event=event, content_type="text/plain; charset=utf-8")
        if expected is not None:
            want.append({"type": event or "message", "data": expected, "id": i})
    # A publisher-chosen id is the lastEventId too.
    r = pub_json(h.port, {"channel": chan, "event": "greeting", "id": "order-42", "data": "chosen"})
    assert r.status == 200, r
    want.append({"type": "greeting", "data": "chosen", "id": "order-42"})

    wait_es(b, "a", f"s.log.length >= {len(want)}")
    st = es_state(b, "a")
    got = [{k: e[k] for k in ("type", "data", "id")} for e in st["log"]]
    assert got == want
    assert {e["origin"] for e in st["log"]} == {f"http://127.0.0.1:{h.port}"}
    assert st["opens"] == 1 and st["errors"] == [] and st["readyState"] == 1
    assert b.eval("window.sse.a.es.url").endswith(f"/es?channel={chan}")


def test_native_eventsource_reconnects_after_graceful_restart(es_page):
    """A graceful restart ends the stream; Chromium reconnects by itself
    after `retry: 500` with Last-Event-ID, and gets every event published
    meanwhile exactly once."""
    h, b = es_page
    chan = uniq("gr")
    open_event_source(b, "a", f"/es?channel={chan}")
    wait_es(b, "a", "s.opens === 1")
    wait_subscribers(h.port, chan, 1)

    published = [publish_ok(h.port, chan, f"before {n}") for n in range(3)]
    wait_es(b, "a", "s.log.length === 3")

    # Publish steadily from before the restart until after the browser is
    # back; the restart happens in the middle of it.
    stop = threading.Event()
    errors = []

    def publisher():
        n = 0
        while not stop.is_set():
            try:
                published.append(publish_ok(h.port, chan, f"during {n}"))
            except Exception as e:      # noqa: BLE001 -- reported below
                errors.append(e)
                return
            n += 1
            time.sleep(0.03)

    t = threading.Thread(target=publisher)
    t.start()
    try:
        time.sleep(0.3)
        h.graceful(wait=True)
        wait_es(b, "a", "s.opens >= 2", timeout=15)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(20)
    assert not errors, errors
    published.append(publish_ok(h.port, chan, "after"))
    n = len(published)
    try:
        wait_es(b, "a", f"s.log.length >= {n}", timeout=10)
    finally:
        st = es_state(b, "a")
    ids = [e["id"] for e in st["log"]]
    assert ids == published, (len(ids), len(published))
    assert_strictly_increasing(ids)
    assert [e["data"] for e in st["log"]][-1] == "after"
    # Error events only while the browser was reconnecting (CONNECTING = 0),
    # never CLOSED. Normally one; a reconnection that reaches a child of the
    # old generation (on a connection it accepted just before the restart)
    # is answered and ended at once, and the browser reconnects again.
    assert st["errors"] and set(st["errors"]) == {0}, st["errors"]
    assert st["opens"] >= 2 and st["readyState"] == 1
    resumed_from = st["lastIdAtError"][0]
    assert resumed_from in published[3:-1]

    # The browser itself sent Last-Event-ID: end the stream (DELETE the
    # channel) so that the reconnected request is logged, then look.
    assert request(h.port, "DELETE", f"/pub?channel={chan}").status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gets = [r for r in h.hdr_log() if r[0] == "GET" and r[1] == f"/es?channel={chan}"]
        if len(gets) >= 2:
            break
        time.sleep(0.1)
    assert [g[3] for g in gets[:2]] == ["-", resumed_from], gets   # "-": no header
    assert all(g[2] == "200" for g in gets[:2]), gets
