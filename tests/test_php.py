"""Real PHP publishers: the scripts of examples/php/ (and a few made here)
under php-cgi through mod_cgid (event MPM, via mod_actions), PHP-FPM through
mod_proxy_fcgi (worker MPM; an FPM started here on a socket in the test
directory, stopped by pid) and mod_php (prefork). Subscribers must receive
exactly what each script publishes."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ssetest.channels import q, uniq
from ssetest.clients import request, subscribe
from ssetest.env import APACHE_PRELOAD, MODULES_DIR, REPO
from ssetest.httpd import BASE_MODULES, Httpd
from ssetest.procs import child_pids, kill_leftovers
from ssetest.publish import assert_no_publish_headers, assert_unpublished, channel_info, get, ids_of
from ssetest.servers import _track
from ssetest.wire import SERVER_ID_RE, wire_event

EXAMPLES = REPO / "examples" / "php"
PHP_CLI = shutil.which("php") or "/usr/bin/php"
PHP_CGI_BIN = Path("/usr/lib/cgi-bin/php")
PHP_FPM = next(iter(sorted(Path("/usr/sbin").glob("php-fpm*"))), None)
LIBPHP = next(iter(sorted(MODULES_DIR.glob("libphp*.so"))), None)

SAPIS = ("cgid", "fpm", "mod_php")

# Scripts of the tests themselves (the examples are copied next to them).
# Each first turns PHP's own output buffering off, so that flush() really
# sends partial output to httpd, in several brigades.
UNBUFFER = "<?php while (ob_get_level()) { ob_end_flush(); } ob_implicit_flush(true);\n"

TEST_SCRIPTS = {
    # Plain body written in pieces, with flushes and pauses between them.
    "chunks.php": UNBUFFER + """
header('X-SSE-Publish: ' . $_GET['channel']);
header('X-SSE-Event: parts');
header('Content-Type: text/plain; charset=utf-8');
foreach (['part 1', "\\npart 2\\r\\n", 'part 3'] as $p) {
    echo $p;
    flush();
    usleep(100000);
}
""",
    # An event stream cut in the middle of fields and between CR and LF.
    "split.php": UNBUFFER + """
header('X-SSE-Publish: ' . $_GET['channel'] . ', ' . $_GET['channel'] . '-b');
header('Content-Type: text/event-stream');
foreach (["ev", "ent: sp", "lit\\r", "\\nda", "ta: x\\r", "\\ndata: y\\n", "\\n", "data: tail\\n"] as $p) {
    echo $p;
    flush();
    usleep(50000);
}
""",
    # The second event is invalid (a server-form id): nothing may be published.
    "invalid.php": """<?php
header('Content-Type: text/event-stream');
header('X-SSE-Publish: ' . $_GET['channel']);
echo "data: fine\\n\\n";
echo "id: 17-3\\ndata: not fine\\n\\n";
""",
    # n bytes of plain body, flushed every 100 bytes.
    "big.php": UNBUFFER + """
header('X-SSE-Publish: ' . $_GET['channel']);
header('Content-Type: text/plain');
$n = (int) $_GET['n'];
for ($i = 0; $i < $n; $i += 100) {
    echo str_repeat('x', min(100, $n - $i));
    flush();
}
""",
    # A failed script: published nothing, passed through as it is.
    "fails.php": """<?php
header('X-SSE-Publish: ' . $_GET['channel']);
http_response_code(404);
echo "no such thing\\n";
""",
    "sapi.php": """<?php echo PHP_SAPI;
""",
}


# --------------------------------------------------------------------------
# PHP-FPM, started by the tests
# --------------------------------------------------------------------------

class Fpm:
    def __init__(self, dir):
        self.dir = Path(dir)
        self.sock = self.dir / "run" / "fpm.sock"
        self.conf = self.dir / "fpm.conf"
        self.log = self.dir / "logs" / "fpm.log"
        self.proc = None

    def start(self, timeout=20):
        user = "user = www-data\ngroup = www-data\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""[global]
pid = {self.dir}/run/fpm.pid
error_log = {self.log}
daemonize = no

[mod_sse_test]
{user}listen = {self.sock}
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = static
pm.max_children = 4
catch_workers_output = yes
clear_env = no
""")
        self.proc = subprocess.Popen([str(PHP_FPM), "-F", "-y", str(self.conf)],
                                     stdout=open(self.dir / "logs" / "fpm.out", "ab"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("php-fpm exited at start-up: " + self.output())
            if self.sock.exists() and len(child_pids(self.proc.pid)) >= 4:
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(self.sock))
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("php-fpm did not come up: " + self.output())

    def output(self):
        out = ""
        for p in (self.dir / "logs" / "fpm.out", self.log):
            if p.exists():
                out += p.read_text(errors="replace")
        return out

    def stop(self):
        if self.proc is None:
            return
        kids = child_pids(self.proc.pid)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGQUIT)      # graceful
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        kill_leftovers(kids)
        self.proc = None


# --------------------------------------------------------------------------
# httpd per SAPI
# --------------------------------------------------------------------------

# The PHP directory is reachable under three URLs with different settings.
LOCATIONS = """
SetEnv SSE_PUBLISH_URL /pub
Alias /php "{dir}/php"
Alias /php-off "{dir}/php"
Alias /php-small "{dir}/php"
<Location /php>
    SSEPublishResponses on
</Location>
<Location /php-off>
    SSEPublishResponses off
</Location>
<Location /php-small>
    SSEPublishResponses on
    SSEMaxMessageSize 1K
</Location>
"""

SAPI_CONF = {
    # php-cgi as a CGI program; mod_actions redirects *.php to it.
    "cgid": ("event", ["cgid", "actions", "alias"], """
ScriptSock "{dir}/run/cgid.sock"
ScriptAlias /php-cgi-bin/ "%s/"
Action php-script /php-cgi-bin/%s
<Directory "{dir}/php">
    AddHandler php-script .php
</Directory>
""" % (PHP_CGI_BIN.parent, PHP_CGI_BIN.name)),
    "fpm": ("worker", ["proxy", "proxy_fcgi", "alias"], """
<Directory "{dir}/php">
    <FilesMatch "\\.php$">
        SetHandler "proxy:unix:{dir}/run/fpm.sock|fcgi://localhost"
    </FilesMatch>
</Directory>
"""),
    "mod_php": ("prefork", ["alias"], """
LoadModule php_module "%s"
<Directory "{dir}/php">
    <FilesMatch "\\.php$">
        SetHandler application/x-httpd-php
    </FilesMatch>
</Directory>
""" % LIBPHP),
}

SAPI_NAME = {"cgid": "cgi-fcgi", "fpm": "fpm-fcgi", "mod_php": "apache2handler"}


def _missing(sapi):
    if sapi == "cgid" and not PHP_CGI_BIN.exists():
        return f"{PHP_CGI_BIN} (php-cgi) is not installed"
    if sapi == "fpm" and PHP_FPM is None:
        return "php-fpm is not installed"
    if sapi == "mod_php" and LIBPHP is None:
        return "libapache2-mod-php is not installed"
    return None


@pytest.fixture(scope="module", params=SAPIS)
def _php_server(request):
    sapi = request.param
    why = _missing(sapi)
    if why:
        pytest.fail(why + ": run scripts/deps.sh")
    mpm, modules, conf = SAPI_CONF[sapi]
    h = Httpd(mpm=mpm, modules=BASE_MODULES + modules, conf=conf + LOCATIONS, name=f"php-{sapi}")
    php_dir = h.dir / "php"
    php_dir.mkdir()
    for f in EXAMPLES.glob("*.php"):
        shutil.copy(f, php_dir)
    for name, text in TEST_SCRIPTS.items():
        (php_dir / name).write_text(text)
    for f in php_dir.iterdir():
        f.chmod(0o644)
    php_dir.chmod(0o755)
    fpm = None
    try:
        if sapi == "fpm":
            fpm = Fpm(h.dir).start()
        if sapi == "mod_php" and APACHE_PRELOAD:
            # Under the ASan runtime (make itest-asan), PHP's shared extensions
            # cannot load (PHP dlopens them with RTLD_DEEPBIND): scan no
            # conf.d, so that only what is built into libphp is there.
            os.environ["PHP_INI_SCAN_DIR"] = ""
            try:
                h.start()
            finally:
                del os.environ["PHP_INI_SCAN_DIR"]
        else:
            h.start()
        h.sapi = sapi
        yield h
    finally:
        h.stop()
        if fpm:
            fpm.stop()
        shutil.rmtree(h.dir, ignore_errors=True)


@pytest.fixture
def php(_php_server, request):
    _track(request, f"php {_php_server.sapi}", _php_server, _php_server.log_mark())
    return _php_server


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_sapi_is_the_one_meant(php):
    r = get(php, "/php/sapi.php")
    assert r.status == 200 and r.body.decode() == SAPI_NAME[php.sapi], r


def test_plain_body_by_header(php):
    """examples/php/publish-header.php: the body is one event's data, of the
    type X-SSE-Event; the caller gets the body and X-SSE-Published."""
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php/publish-header.php?channel={q(chan)}&text=h%C3%A9llo%20there")
        assert r.status == 200, r
        assert_no_publish_headers(r)
        assert r.body == b'{"text":"h\\u00e9llo there","length":12}'
        [i] = ids_of(r)
        assert SERVER_ID_RE.match(i)
        assert s.next_event().raw == wire_event(i, r.body, event="chat")
        s.assert_no_event(0.3)


def test_event_stream_body_by_header(php):
    """examples/php/publish-stream.php, a classic event-stream script that
    flush()es: every event, in order, exactly."""
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php/publish-stream.php?channel={q(chan)}")
        assert r.status == 200, r
        assert_no_publish_headers(r)
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.body == (b"event: foo\ndata: first\n\n"
                          b"id: order-42\nevent: order\ndata: {\"order\":42}\ndata: second line\n\n"
                          b": a comment, not published\nretry: 2500\ndata: last\n\n")
        i1, i2, i3 = ids_of(r)
        assert SERVER_ID_RE.match(i1) and i2 == "order-42" and SERVER_ID_RE.match(i3)
        assert [e.raw for e in s.next_events(3)] == [
            wire_event(i1, b"first", event="foo"),
            wire_event("order-42", b'{"order":42}\nsecond line', event="order"),
            wire_event(i3, b"last", retry=2500)]
        s.assert_no_event(0.3)


def test_plain_body_flushed_in_pieces(php):
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php/chunks.php?channel={q(chan)}")
        assert r.status == 200 and r.body == b"part 1\npart 2\r\npart 3", r
        [i] = ids_of(r)
        assert s.next_event().raw == wire_event(i, b"part 1\npart 2\r\npart 3", event="parts")


def test_event_stream_split_across_flushes_two_channels(php):
    """Fields and a CR LF cut across flushes; the unfinished last event is
    dropped, as a browser would drop it; two channels."""
    chan = uniq("php")
    mark = php.log_mark()
    with subscribe(php.port, chan) as s1, subscribe(php.port, chan + "-b") as s2:
        r = get(php, f"/php/split.php?channel={q(chan)}")
        assert r.status == 200, r
        [i] = ids_of(r)
        want = wire_event(i, b"x\ny", event="split")
        assert s1.next_event().raw == want and s2.next_event().raw == want
        s1.assert_no_event(0.3)
    assert "SSE00503:" in php.log_since(mark)     # an event not followed by a blank line


def test_post_publisher_from_the_web(php):
    """examples/php/publish-post.php as a page: a POST with file_get_contents
    to the publish location."""
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php/publish-post.php?channel={q(chan)}&event=note&data=by%20post%0Atwo")
        assert r.status == 200, r
        ans = json.loads(r.body)
        assert SERVER_ID_RE.match(ans["id"]) and ans["subscribers"] == 1, r
        assert "x-sse-published" not in r.headers
        assert s.next_event().raw == wire_event(ans["id"], b"by post\ntwo", event="note")


def test_subscribe_page(php):
    """examples/php/subscribe.php: the stream it opens and the form it posts
    work together (what the page's script does, done here by hand)."""
    chan = uniq("page")
    r = get(php, f"/php/subscribe.php?channel={q(chan)}")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    page = r.body.decode()
    m = re.search(r"new EventSource\((\"[^\"]*\")\)", page)
    assert m, page
    stream = json.loads(m.group(1))
    assert stream == f"/events?channel={chan}"
    action = re.search(r'<form id="say" method="post" action="([^"]*)"', page).group(1)
    action = action.replace("&amp;", "&")
    with subscribe(php.port, path=stream) as s:
        r = request(php.port, "POST", "/php/" + action, body=b"text=hi+there",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200, r
        [i] = ids_of(r)
        ev = s.next_event()
        assert ev.raw == wire_event(i, b'{"text":"hi there","length":8}', event="chat")


def test_off_publishes_nothing_and_headers_pass(php):
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php-off/publish-header.php?channel={q(chan)}&text=x")
        assert r.status == 200 and r.body == b'{"text":"x","length":1}', r
        assert r.headers.get("x-sse-publish") == chan and r.headers.get("x-sse-event") == "chat", r
        assert "x-sse-published" not in r.headers
        assert_unpublished(php, chan, s, 0.7)


def test_invalid_event_publishes_nothing(php):
    chan = uniq("php")
    mark = php.log_mark()
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php/invalid.php?channel={q(chan)}")
        assert r.status == 500, r
        assert "response not published" in r.error_message() and "event 1" in r.error_message()
        assert_no_publish_headers(r)
        assert "x-sse-published" not in r.headers
        assert_unpublished(php, chan, s, 0.7)
    log = php.log_since(mark)
    assert "SSE00501:" in log and chan in log, log


def test_body_over_limit_is_an_error(php):
    chan = uniq("php")
    mark = php.log_mark()
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php-small/big.php?channel={q(chan)}&n=1024")
        assert r.status == 200 and r.body == b"x" * 1024, r      # the limit itself is fine
        [i] = ids_of(r)
        assert s.next_event().raw == wire_event(i, b"x" * 1024)
        r = get(php, f"/php-small/big.php?channel={q(chan)}&n=5000")
        assert r.status == 500, r
        assert "SSEMaxMessageSize" in r.error_message()
        assert_no_publish_headers(r)
        s.assert_no_event(0.7)
    info = channel_info(php.port, chan)
    assert info.json["messages"] == 1, info
    log = php.log_since(mark)
    assert "SSE00501:" in log and "over the limit" in log, log


def test_failed_script_passes_through(php):
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        r = get(php, f"/php/fails.php?channel={q(chan)}")
        assert r.status == 404 and r.body == b"no such thing\n", r
        assert_no_publish_headers(r)
        assert_unpublished(php, chan, s, 0.7)


def test_many_in_a_row(php):
    """Several publishing requests on one connection after another, and
    ordinary pages between them: every one published once, in order."""
    chan = uniq("php")
    with subscribe(php.port, chan) as s:
        ids = []
        for k in range(5):
            r = get(php, f"/php/publish-header.php?channel={q(chan)}&text=n{k}")
            assert r.status == 200, r
            ids += ids_of(r)
            assert get(php, "/php/sapi.php").status == 200
        evs = s.next_events(5)
        assert [e.id for e in evs] == ids
        assert [json.loads(e.data)["text"] for e in evs] == [f"n{k}" for k in range(5)]


def test_post_publisher_from_the_command_line(srv):
    """examples/php/publish-post.php with php-cli (as from cron)."""
    chan = uniq("cli")
    with subscribe(srv.port, chan) as s:
        p = subprocess.run([PHP_CLI, str(EXAMPLES / "publish-post.php"), srv.url("/pub"), chan,
                            "tick", "from the command line"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert p.returncode == 0, p
        ans = json.loads(p.stdout)
        assert ans["subscribers"] == 1
        assert s.next_event().raw == wire_event(ans["id"], b"from the command line", event="tick")
        p = subprocess.run([PHP_CLI, str(EXAMPLES / "publish-post.php"), srv.url("/pub"),
                            "bad channel", "tick", "x"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert p.returncode == 1 and b"publish refused (400)" in p.stdout, p
