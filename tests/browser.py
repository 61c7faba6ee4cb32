"""Headless Chromium (and other transports' helpers) for the mod_sse tests.

Browser      Debian's /usr/bin/chromium through tests/node/browser.mjs
             (npm playwright-core), one JSON command per line. Its profile
             (--user-data-dir) lives in the test's temporary directory; the
             node driver and every Chromium process are stopped by pid.
make_cert()  a self-signed certificate for 127.0.0.1 and localhost (openssl).
CurlStream   `curl -N` as a subscriber over any transport (h2c, h2, TLS),
             with the arrival time of every byte.
artifact_dir()  where screenshots go (tests/artifacts/, git-ignored).
Server       an Httpd whose configuration may name its own ports.

The fixtures built on these (browser_factory, server) are in conftest.py.
"""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ssetest.httpd import Httpd
from ssetest.procs import child_pids, free_port, terminate

TESTS_DIR = Path(__file__).resolve().parent
NODE_DIR = TESTS_DIR / "node"
BROWSER_JS = NODE_DIR / "browser.mjs"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SSE_TEST_ARTIFACTS", TESTS_DIR / "artifacts"))


def artifact_dir():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _descendants(pid):
    """All live descendants of pid, children first."""
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class BrowserError(AssertionError):
    pass


class Browser:
    """One headless Chromium. Commands are synchronous; each has a timeout,
    and the driver itself dies after `timeout` seconds whatever happens."""

    def __init__(self, tmp_path, timeout=120, ignore_cert_errors=False):
        if not CHROMIUM.exists():
            pytest.fail("/usr/bin/chromium is missing: run scripts/deps.sh")
        if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
            pytest.fail("tests/node/node_modules/playwright-core is missing: run scripts/deps.sh")
        self.profile = Path(tmp_path) / f"chromium-profile-{os.getpid()}-{id(self)}"
        self.profile.mkdir(parents=True)
        args = ["node", str(BROWSER_JS), "--profile", str(self.profile),
                "--timeout", str(int(timeout * 1000))]
        if ignore_cert_errors:
            args.append("--ignore-cert-errors")
        self.stderr_path = Path(tmp_path) / f"browser-{id(self)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, cwd=str(NODE_DIR),
                                     start_new_session=True)
        self._q = queue.Queue()
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()
        self._next = 0
        self.pids = []
        try:
            first = self._get(45)
            if not first.get("ready"):
                raise BrowserError(f"browser did not start: {first}; {self.stderr()}")
            self.version = first.get("version")
            # Everything the driver started (Chromium and its helpers), so
            # that close() can make sure each is gone, by pid.
            self.pids = _descendants(self.proc.pid)
        except BaseException:
            self.close()
            raise

    def _reader(self):
        for raw in self.proc.stdout:
            try:
                self._q.put(json.loads(raw))
            except ValueError:
                self._q.put({"garbage": raw.decode(errors="replace")})
        self._q.put(None)

    def _get(self, timeout):
        try:
            m = self._q.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"browser driver silent for {timeout}s; stderr:\n{self.stderr()}")
        if m is None:
            raise BrowserError(f"browser driver exited ({self.proc.poll()}); stderr:\n{self.stderr()}")
        if "fatal" in m:
            raise BrowserError(f"browser driver: {m['fatal']}; stderr:\n{self.stderr()}")
        return m

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def cmd(self, op, timeout=15, **kw):
        self._next += 1
        msg = dict(kw, op=op, id=self._next)
        if "timeout" not in kw:
            msg["timeout"] = int(timeout * 1000)
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise BrowserError(f"browser driver gone; stderr:\n{self.stderr()}")
        deadline = time.monotonic() + timeout + 10
        while True:
            m = self._get(max(0.1, deadline - time.monotonic()))
            if m.get("id") == self._next:
                break
        if not m.get("ok"):
            raise BrowserError(f"{op} {kw}: {m.get('error')}\n(browser stderr:\n{self.stderr()})")
        return m.get("value")

    # ---- conveniences ----------------------------------------------------
    def goto(self, url, page=0, timeout=15):
        return self.cmd("goto", url=url, page=page, timeout=timeout)

    def eval(self, expr, page=0, timeout=15):
        return self.cmd("eval", expr=expr, page=page, timeout=timeout)

    def wait(self, expr, timeout=10, page=0):
        """Wait until the page expression is truthy; returns its value."""
        return self.cmd("wait", expr=expr, page=page, timeout=timeout)

    def click(self, selector, page=0):
        return self.cmd("click", selector=selector, page=page)

    def fill(self, selector, value, page=0):
        return self.cmd("fill", selector=selector, value=value, page=page)

    def screenshot(self, path, page=0):
        return self.cmd("screenshot", path=str(path), page=page, timeout=20)

    def new_page(self):
        return self.cmd("newpage")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op":"close","id":0}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Chromium processes that outlived the driver: by their recorded pid,
        # if that pid still runs a chromium.
        for pid in self.pids:
            if "chromium" in _cmdline(pid) or "chrome" in _cmdline(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# JavaScript that opens an EventSource in a page and records what it sees in
# window.sse[name]: {log: [{type, data, id}], opens, errors: [readyState at
# each error], lastIdAtError: [...]}. Events of type "message" and of every
# type in `types` are recorded, in arrival order.
ES_SETUP = """
((name, url, types, withCredentials) => {
  window.sse = window.sse || {};
  const st = window.sse[name] = {log: [], opens: 0, errors: [], lastIdAtError: [], es: null};
  const es = new EventSource(url, withCredentials ? {withCredentials: true} : undefined);
  st.es = es;
  let last = '';
  const rec = (e) => { last = e.lastEventId;
    st.log.push({type: e.type, data: e.data, id: e.lastEventId, origin: e.origin}); };
  es.onopen = () => { st.opens++; };
  es.onerror = () => { st.errors.push(es.readyState); st.lastIdAtError.push(last); };
  es.onmessage = rec;
  for (const t of types) es.addEventListener(t, rec);
  return es.withCredentials;
})
"""


def open_event_source(b, name, url, types=(), with_credentials=False, page=0):
    """Opens an EventSource in the page (see ES_SETUP)."""
    return b.eval(f"{ES_SETUP}({json.dumps(name)}, {json.dumps(url)}, "
                  f"{json.dumps(list(types))}, {json.dumps(bool(with_credentials))})", page=page)


def es_state(b, name, page=0):
    """{log, opens, errors, lastIdAtError, readyState} of window.sse[name]."""
    return b.eval(f"""(() => {{ const s = window.sse[{json.dumps(name)}];
        return {{log: s.log, opens: s.opens, errors: s.errors,
                 lastIdAtError: s.lastIdAtError, readyState: s.es.readyState}}; }})()""", page=page)


def wait_es(b, name, cond, timeout=10, page=0):
    """Waits until the JS condition on `s` (window.sse[name]) holds."""
    return b.wait(f"(() => {{ const s = window.sse[{json.dumps(name)}]; return s && ({cond}); }})()",
                  timeout=timeout, page=page)


# --------------------------------------------------------------------------
# servers whose configuration names their own ports
# --------------------------------------------------------------------------

class Server(Httpd):
    """An Httpd whose conf/server_conf may say {port} (its own port) and
    {<name>} for each extra port named in `extra_ports` (fresh free ports,
    chosen again if start-up has to retry on another port)."""

    def __init__(self, extra_ports=(), **kw):
        self.extra_names = tuple(extra_ports)
        self.ports = {}
        self._ports_for = None
        super().__init__(**kw)

    def write_config(self):
        if self.port is None:
            self.port = free_port()
        if self._ports_for != self.port:
            # Distinct ports: free_port() may hand out a port it just gave.
            taken = {self.port}
            self.ports = {}
            for n in self.extra_names:
                p = free_port()
                while p in taken:
                    p = free_port()
                taken.add(p)
                self.ports[n] = p
            self._ports_for = self.port
        return super().write_config()

    def config_text(self):
        text = super().config_text().replace("{port}", str(self.port))
        for n, p in self.ports.items():
            text = text.replace("{" + n + "}", str(p))
        return text

    def hdr_log(self):
        """The header log (see HDR_LOG): [(method, path, status, leid, origin)]."""
        try:
            text = (self.dir / "logs" / "hdrs.log").read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            m = _HDR_RE.match(line)
            if m:
                out.append(m.groups())
        return out


# Logs what the browser sent: method, path, status, Last-Event-ID, Origin.
HDR_LOG = """
LogFormat "%m %U%q %>s leid=[%{Last-Event-ID}i] origin=[%{Origin}i]" hdrs
CustomLog "{dir}/logs/hdrs.log" hdrs
"""
_HDR_RE = re.compile(r"^(\S+) (\S+) (\d+) leid=\[(.*)\] origin=\[(.*)\]$")


# --------------------------------------------------------------------------
# TLS and other transports
# --------------------------------------------------------------------------

def make_cert(directory):
    """Self-signed certificate for 127.0.0.1 and localhost: (cert, key)."""
    d = Path(directory)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:FALSE"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    os.chmod(key, 0o644)   # read by the www-data children
    os.chmod(cert, 0o644)
    return cert, key


class CurlStream:
    """`curl -sN` on a stream URL; records (monotonic time, bytes) as they
    arrive. args: extra curl options (--http2-prior-knowledge, -k, ...)."""

    def __init__(self, url, args=(), headers=None):
        cmd = ["curl", "-sS", "-N", "--no-buffer", "-D", "/dev/stderr", *args]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        cmd.append(url)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.chunks = []
        self.body = bytearray()
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()
        self._head = bytearray()
        self._te = threading.Thread(target=self._err_reader, daemon=True)
        self._te.start()

    def _reader(self):
        fd = self.proc.stdout.fileno()
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            with self._lock:
                self.chunks.append((time.monotonic(), b))
                self.body += b

    def _err_reader(self):
        fd = self.proc.stderr.fileno()
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            self._head += b

    def headers_text(self):
        return self._head.decode(errors="replace")

    def wait_for(self, pattern: bytes, timeout=5):
        """Monotonic time at which the chunk completing `pattern` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if pattern in self.body:
                    acc = bytearray()
                    for t, b in self.chunks:
                        acc += b
                        if pattern in acc:
                            return t
            if self.proc.poll() is not None and pattern not in self.body:
                break
            time.sleep(0.001)
        raise AssertionError(f"{pattern!r} not received in {timeout}s; body {bytes(self.body)[-500:]!r};"
                             f" curl rc={self.proc.poll()} stderr {self.headers_text()[-500:]}")

    def close(self):
        terminate(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
