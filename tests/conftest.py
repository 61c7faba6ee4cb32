"""Integration test harness for mod_sse.

Everything here talks to a real Apache httpd (Debian's /usr/sbin/apache2)
started from a generated configuration in a private temporary directory, on a
free 127.0.0.1 port, with the freshly built .libs/mod_sse.so.

Pieces:
  Httpd          one httpd: config generation, start/stop/graceful by pid,
                 error log access, config test (-t), child pids, which child
                 holds a given client connection.
  SSEClient      raw-socket subscriber: exact bytes, incremental chunked
                 decoding, read until N events / a byte pattern / EOF.
  request()/pub_raw()/pub_form()/pub_json()/channel_info()
                 publishers and other plain requests (http.client).
  NodeClient     the npm `eventsource` package (tests/node/sse-client.mjs).
  fixtures       httpd (factory, per test), srv (shared event server),
                 mpm_srv (shared server per MPM), chan (unique channel name).

Tests import the helpers with `from conftest import ...`.
"""
import base64
import errno
import hashlib
import http.client
import itertools
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
MODULE_SO = Path(os.environ.get("SSE_TEST_MODULE", REPO / ".libs" / "mod_sse.so"))
# For sanitizer runs: preloaded into httpd only (see README, Testing).
APACHE_PRELOAD = os.environ.get("SSE_TEST_APACHE_PRELOAD")


def apache_env():
    """The environment of every apache2 the tests run."""
    env = dict(os.environ)
    if APACHE_PRELOAD:
        env["LD_PRELOAD"] = APACHE_PRELOAD
    return env
APACHE_BIN = os.environ.get("SSE_TEST_APACHE", "/usr/sbin/apache2")
MODULES_DIR = Path(os.environ.get("SSE_TEST_MODULES_DIR", "/usr/lib/apache2/modules"))
NODE_DIR = TESTS_DIR / "node"
NODE_CLIENT = NODE_DIR / "sse-client.mjs"
MPMS = ("event", "worker", "prefork")

# pytest must not wander into node_modules or the C unit tests.
collect_ignore = ["node", "unit"]

SERVER_ID_RE = re.compile(r"^([0-9]+)-([0-9]+)$")
HEARTBEAT = b": heartbeat\n\n"

# Credentials for the locations protected by Basic auth in the shared config.
AUTH_USERS = {"alice": "wonderland", "bob": "builder"}


def basic_auth(user, password=None):
    if password is None:
        password = AUTH_USERS[user]
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": "Basic " + tok}


def server_id_key(i):
    """Sort key of a server-form id ('<ms>-<seq>'), compared numerically."""
    m = SERVER_ID_RE.match(i)
    assert m, f"not a server-form id: {i!r}"
    return (int(m.group(1)), int(m.group(2)))


def assert_strictly_increasing(ids):
    keys = [server_id_key(i) for i in ids]
    for a, b, ia, ib in zip(keys, keys[1:], ids, ids[1:]):
        assert a < b, f"ids not strictly increasing: {ia} then {ib} (all: {ids})"


_uniq = itertools.count(1)


def uniq(prefix="ch"):
    """A channel name no other test uses."""
    return f"{prefix}-{next(_uniq)}-{uuid.uuid4().hex[:8]}"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def expected_client_data(data):
    """What a conforming client receives for published data (str)."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


def wire_data_lines(data: bytes) -> bytes:
    """The `data:` lines mod_sse writes for `data` (see decisions: split on
    CRLF, LF, lone CR; every line 'data: <line>\\n')."""
    lines = re.split(rb"\r\n|\n|\r", data)
    return b"".join(b"data: " + ln + b"\n" for ln in lines)


def wire_event(id, data: bytes, event=None, retry=None) -> bytes:
    out = b"id: " + id.encode() + b"\n"
    if event is not None:
        out += b"event: " + event.encode() + b"\n"
    if retry is not None:
        out += b"retry: " + str(retry).encode() + b"\n"
    return out + wire_data_lines(data) + b"\n"


# --------------------------------------------------------------------------
# process helpers (by pid only; never by name)
# --------------------------------------------------------------------------

def child_pids(ppid):
    """Direct children of ppid."""
    pids = set()
    try:
        for task in os.listdir(f"/proc/{ppid}/task"):
            try:
                with open(f"/proc/{ppid}/task/{task}/children") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass
        return sorted(pids)
    except OSError:
        pass
    # Fallback: scan /proc for processes whose ppid matches.
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == ppid:
                pids.add(int(d))
        except (OSError, ValueError):
            pass
    return sorted(pids)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        state = st[st.rindex(")") + 2:].split()[0]
        return state != "Z"
    except OSError:
        return False


def _tcp_table():
    """[(local_port, remote_port, state, inode)] from /proc/net/tcp{,6}."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rport = int(parts[2].rsplit(":", 1)[1], 16)
                    rows.append((lport, rport, parts[3], int(parts[9])))
        except OSError:
            pass
    return rows


def socket_owner_pids(pids, inodes):
    """{inode: pid} for those socket inodes held open by one of pids."""
    want = set(inodes)
    owners = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in want:
                    owners[ino] = pid
    return owners


# --------------------------------------------------------------------------
# httpd
# --------------------------------------------------------------------------

BASE_MODULES = [
    "authz_core", "authz_host", "authz_user", "authn_core", "authn_file",
    "auth_basic", "unixd", "log_config", "mime", "reqtimeout", "env",
    "setenvif", "headers", "filter", "deflate", "brotli",
]

MPM_TUNING = {
    "event": """
StartServers 2
ServerLimit 8
ThreadLimit 32
ThreadsPerChild 32
MinSpareThreads 16
MaxSpareThreads 256
MaxRequestWorkers 256
MaxConnectionsPerChild 0
""",
    "worker": """
StartServers 2
ServerLimit 8
ThreadLimit 32
ThreadsPerChild 32
MinSpareThreads 16
MaxSpareThreads 256
MaxRequestWorkers 256
MaxConnectionsPerChild 0
""",
    "prefork": """
StartServers 4
MinSpareServers 4
MaxSpareServers 16
ServerLimit 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0
""",
}

# Few threads/processes, so that a handful of streams spread over children.
SMALL_MPM = {
    "event": """
StartServers 3
ServerLimit 6
ThreadLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 24
MaxRequestWorkers 24
""",
    "worker": """
StartServers 3
ServerLimit 6
ThreadLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 24
MaxRequestWorkers 24
""",
    "prefork": """
StartServers 4
MinSpareServers 4
MaxSpareServers 12
ServerLimit 24
MaxRequestWorkers 24
""",
}

# Locations that most tests use; {htpasswd} is filled in per server.
STD_LOCATIONS = """
<Location /events>
    SetHandler sse-stream
    SSEHeartbeat 2
</Location>
<Location /events-nohb>
    SetHandler sse-stream
    SSEHeartbeat 0
</Location>
<Location /events-hb>
    SetHandler sse-stream
    SSEHeartbeat 1
</Location>
<Location /events-retry>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSERetry 2500
</Location>
<Location /events-replay>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSEInitialReplay 3
</Location>
<Location /events-qs>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSEChannel "qs-%{QUERY_STRING}"
</Location>
<Location /events-env>
    SetHandler sse-stream
    SSEHeartbeat 2
    SetEnv SSE_ROOM lobby
    SSEChannel "env-%{ENV:SSE_ROOM}"
</Location>
<Location /events-hdr>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSEChannel "room-%{HTTP:X-Room} all-rooms-%{HTTP:X-Site}"
</Location>
<Location /events-user>
    SetHandler sse-stream
    SSEHeartbeat 2
    AuthType Basic
    AuthName "sse"
    AuthBasicProvider file
    AuthUserFile "{htpasswd}"
    Require valid-user
    SSEChannel "user-%{REMOTE_USER}"
</Location>
<Location /pub>
    SetHandler sse-publish
</Location>
<Location /pub-small>
    SetHandler sse-publish
    SSEMaxMessageSize 1K
</Location>
<Location /pub-fixed>
    SetHandler sse-publish
    SSEChannel "fixed-%{HTTP:X-Room}"
</Location>
<Location /pub-auth>
    SetHandler sse-publish
    AuthType Basic
    AuthName "sse publishers"
    AuthBasicProvider file
    AuthUserFile "{htpasswd}"
    Require user alice
</Location>
<Location /pub-denied>
    SetHandler sse-publish
    Require all denied
</Location>
"""


class StartError(RuntimeError):
    pass


class Httpd:
    """One Apache httpd with mod_sse, in its own temporary directory."""

    def __init__(self, mpm="event", conf="", server_conf="", std_locations=True,
                 modules=None, mpm_conf=None, log_level="notice sse:debug",
                 load_sse=True, name="httpd"):
        assert mpm in MPMS, mpm
        self.mpm = mpm
        self.conf_extra = conf
        self.server_conf = server_conf
        self.std_locations = std_locations
        self.modules = list(BASE_MODULES if modules is None else modules)
        self.mpm_conf = MPM_TUNING[mpm] if mpm_conf is None else mpm_conf
        if not load_sse:
            log_level = " ".join(w for w in log_level.split() if not w.startswith("sse:"))
        self.log_level = log_level
        self.load_sse = load_sse
        self.dir = Path(tempfile.mkdtemp(prefix=f"mod_sse-{name}-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        for sub in ("htdocs", "run", "logs"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        (self.dir / "htdocs" / "index.html").write_text("ok\n")
        self.htpasswd = self.dir / "htpasswd"
        self.htpasswd.write_text("".join(
            f"{u}:{{SHA}}{base64.b64encode(hashlib.sha1(p.encode()).digest()).decode()}\n"
            for u, p in AUTH_USERS.items()))
        os.chmod(self.htpasswd, 0o644)
        self.conf_path = self.dir / "httpd.conf"
        self.error_log_path = self.dir / "logs" / "error.log"
        self.access_log_path = self.dir / "logs" / "access.log"
        self.pid_path = self.dir / "run" / "httpd.pid"
        self.port = None
        self.proc = None
        self._stdout = None

    # ---- configuration -------------------------------------------------
    def config_text(self):
        user = ""
        if os.geteuid() == 0:
            user = "User www-data\nGroup www-data\n"
        lines = [f"# generated by tests/conftest.py for {self.mpm}",
                 f'ServerRoot "{self.dir}"',
                 f"Listen 127.0.0.1:{self.port}",
                 "ServerName 127.0.0.1",
                 f'LoadModule mpm_{self.mpm}_module "{MODULES_DIR}/mod_mpm_{self.mpm}.so"']
        for m in self.modules:
            # Debian builds unixd, log_config, ... into the binary: no .so.
            if not (MODULES_DIR / f"mod_{m}.so").exists():
                continue
            lines.append(f'LoadModule {m}_module "{MODULES_DIR}/mod_{m}.so"')
        if self.load_sse:
            lines.append(f'LoadModule sse_module "{MODULE_SO}"')
        lines.append(f"""{user}
PidFile "{self.pid_path}"
DefaultRuntimeDir "{self.dir / 'run'}"
ErrorLog "{self.error_log_path}"
LogLevel {self.log_level}
LogFormat "%h %l %u %t \\"%r\\" %>s %b %{{pid}}P" sse
CustomLog "{self.access_log_path}" sse
DocumentRoot "{self.dir / 'htdocs'}"
TypesConfig /etc/mime.types
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
Timeout 60
<Directory />
    AllowOverride None
    Require all granted
</Directory>
{self.mpm_conf}
{self.server_conf.replace("{dir}", str(self.dir))}
""")
        if self.std_locations:
            lines.append(STD_LOCATIONS.replace("{htpasswd}", str(self.htpasswd)))
        lines.append(self.conf_extra.replace("{dir}", str(self.dir))
                     .replace("{htpasswd}", str(self.htpasswd)))
        return "\n".join(lines) + "\n"

    def write_config(self):
        if self.port is None:
            self.port = free_port()
        self.conf_path.write_text(self.config_text())
        os.chmod(self.conf_path, 0o644)
        return self.conf_path

    def config_test(self):
        """`apache2 -t -f conf`: (returncode, combined output)."""
        self.write_config()
        p = subprocess.run([APACHE_BIN, "-t", "-f", str(self.conf_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60, env=apache_env())
        return p.returncode, p.stdout.decode(errors="replace")

    # ---- lifecycle -------------------------------------------------------
    def start(self, timeout=30):
        if not MODULE_SO.exists() and self.load_sse:
            pytest.fail(f"{MODULE_SO} is missing: run `make` first")
        last_err = None
        for attempt in range(3):
            if attempt:
                self.port = free_port()
            self.write_config()
            try:
                self._start_once(timeout)
                return self
            except StartError as e:
                last_err = e
                if "Address already in use" not in str(e):
                    break
        raise last_err

    def _start_once(self, timeout):
        self._stdout = open(self.dir / "logs" / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            [APACHE_BIN, "-f", str(self.conf_path), "-DFOREGROUND"],
            stdout=self._stdout, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=apache_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"httpd exited with {self.proc.returncode} at start-up:\n"
                                 + self.startup_output())
            if self.pid_path.exists() and self._port_answers() and child_pids(self.proc.pid):
                return
            time.sleep(0.05)
        self.stop()
        raise StartError("httpd did not come up in time:\n" + self.startup_output())

    def _port_answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def startup_output(self):
        out = ""
        p = self.dir / "logs" / "stdout.log"
        if p.exists():
            out += p.read_text(errors="replace")
        return out + self.error_log()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def children(self):
        return child_pids(self.proc.pid) if self.running() else []

    def stop(self, timeout=20):
        """SIGTERM to the parent (by pid), wait; SIGKILL fallback.
        Returns the seconds the shutdown took."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        kids = self.children()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kids = sorted(set(kids) | set(self.children()))
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        took = time.monotonic() - t0
        # Children of a SIGKILLed parent may linger: only those we recorded.
        for k in kids:
            if pid_alive(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._stdout:
            self._stdout.close()
            self._stdout = None
        self.proc = None
        return took

    def graceful(self, wait=True, timeout=30):
        """Graceful restart: SIGUSR1 to the parent. With wait, returns when
        the new generation logged 'resuming normal operations'."""
        before = self.error_log().count("resuming normal operations")
        os.kill(self.proc.pid, signal.SIGUSR1)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error_log().count("resuming normal operations") > before:
                return
            assert self.running(), "httpd died during graceful restart:\n" + self.error_log()
            time.sleep(0.05)
        raise AssertionError("graceful restart did not complete:\n" + self.error_log())

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- logs ------------------------------------------------------------
    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_mark(self):
        try:
            return self.error_log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.error_log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- connections -----------------------------------------------------
    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def pid_of_client(self, client_port):
        """The child pid holding the server side of the connection whose
        client end is bound to client_port (None if not found)."""
        rows = [r for r in _tcp_table()
                if r[0] == self.port and r[1] == client_port and r[2] == "01"]
        if not rows:
            return None
        owners = socket_owner_pids(self.children(), [r[3] for r in rows])
        for r in rows:
            if r[3] in owners:
                return owners[r[3]]
        return None

    def wait_pid_of_client(self, client_port, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid_of_client(client_port)
            if pid:
                return pid
            time.sleep(0.05)
        return None


# --------------------------------------------------------------------------
# plain HTTP requests and publishers
# --------------------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body
        self.json = None
        ctype = self.headers.get("content-type", "")
        if ctype.split(";")[0].strip() == "application/json" and body:
            try:
                self.json = json.loads(body)
            except ValueError:
                self.json = None

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:300]!r}>"

    def error_message(self):
        """The message of a mod_sse error response, checking its form."""
        assert self.headers.get("content-type", "").split(";")[0].strip() == "application/json", self
        assert isinstance(self.json, dict) and set(self.json) == {"error"}, self
        msg = self.json["error"]
        assert isinstance(msg, str) and msg.strip(), self
        return msg


def request(port, method, path, body=None, headers=None, timeout=15, chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if chunked:
            data = body if body is not None else b""
            chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)] or [b""]
            conn.request(method, path, body=iter(chunks), headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.getheaders(), data)
    finally:
        conn.close()


def q(name):
    return urllib.parse.quote(name, safe="")


def chan_query(channels, extra=None):
    if isinstance(channels, str):
        channels = [channels]
    parts = [f"channel={q(c)}" for c in channels]
    if extra:
        parts.append(extra)
    return "?" + "&".join(parts)


def get(h, path, **kw):
    return request(h.port, "GET", path, **kw)


# Responses published through X-SSE-Publish (SSEPublishResponses): PHP
# scripts, CGI, proxied and module-made responses alike.

def ids_of(r):
    """The ids a response published, from its X-SSE-Published header."""
    v = r.headers.get("x-sse-published")
    assert v, f"no X-SSE-Published header: {r}"
    return [i.strip() for i in v.split(",")]


def assert_no_publish_headers(r):
    assert "x-sse-publish" not in r.headers and "x-sse-event" not in r.headers, r


def assert_unpublished(h, chan, s, idle):
    """Stream s got nothing for idle seconds and chan holds no event."""
    s.assert_no_event(idle)
    info = channel_info(h.port, chan)
    assert info.status == 200 and info.json["messages"] == 0, info


def pub_raw(port, channel, data=b"", event=None, id=None, retry=None, path="/pub",
            content_type="application/octet-stream", headers=None, **kw):
    """Raw-body publish; channel (str or list) goes in the query string
    (None: path is used as is)."""
    if isinstance(data, str):
        data = data.encode()
    hdrs = {"Content-Type": content_type}
    if event is not None:
        hdrs["SSE-Event"] = event
    if id is not None:
        hdrs["SSE-Id"] = id
    if retry is not None:
        hdrs["SSE-Retry"] = str(retry)
    hdrs.update(headers or {})
    target = path + (chan_query(channel) if channel is not None else "")
    return request(port, "POST", target, body=data, headers=hdrs, **kw)


def pub_form(port, fields, path="/pub", headers=None, **kw):
    """fields: list of (name, value) pairs (or a preformatted body str/bytes)."""
    if isinstance(fields, (str, bytes)):
        body = fields.encode() if isinstance(fields, str) else fields
    else:
        body = urllib.parse.urlencode(fields, quote_via=urllib.parse.quote).encode()
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
    hdrs.update(headers or {})
    return request(port, "POST", path, body=body, headers=hdrs, **kw)


def pub_json(port, obj, path="/pub", headers=None, raw=None, **kw):
    body = raw if raw is not None else json.dumps(obj).encode()
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return request(port, "POST", path, body=body, headers=hdrs, **kw)


def publish_ok(port, channel, data=b"", **kw):
    """Raw publish that must succeed; returns the new id."""
    r = pub_raw(port, channel, data, **kw)
    assert r.status == 200, r
    assert isinstance(r.json, dict) and isinstance(r.json.get("id"), str), r
    if kw.get("id") is None:
        assert SERVER_ID_RE.match(r.json["id"]), r
    else:
        assert r.json["id"] == kw["id"], r
    return r.json["id"]


def channel_info(port, channel, path="/pub"):
    return request(port, "GET", path + chan_query(channel))


def wait_subscribers(port, channel, n, timeout=10, path="/pub"):
    """Poll the channel info until it reports n subscribers."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = channel_info(port, channel, path)
        if last.status == 200 and last.json and last.json.get("subscribers") == n:
            return last
        time.sleep(0.05)
    raise AssertionError(f"channel {channel} never had {n} subscribers; last info {last}")


# --------------------------------------------------------------------------
# raw SSE subscriber
# --------------------------------------------------------------------------

class Event:
    """One block of the stream (between blank lines), parsed the way the
    WHATWG parser reads our LF-only output."""

    def __init__(self, raw: bytes):
        self.raw = raw  # including the terminating b"\n\n"
        self.id = None
        self.event = None
        self.retry = None
        self.comments = []
        data_lines = []
        self.fields = []
        for line in raw[:-2].split(b"\n"):
            if line.startswith(b":"):
                self.comments.append(line[1:])
                continue
            name, sep, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            self.fields.append((name, value))
            if name == b"data":
                data_lines.append(value)
            elif name == b"id":
                self.id = value.decode()
            elif name == b"event":
                self.event = value.decode()
            elif name == b"retry":
                self.retry = value.decode()
        self.data = b"\n".join(data_lines) if data_lines else None

    @property
    def is_comment(self):
        return not self.fields

    @property
    def is_retry_only(self):
        return [n for n, _ in self.fields] == [b"retry"]

    def __repr__(self):
        return f"<Event {self.raw!r}>"


class SSEClient:
    """A raw-socket HTTP/1.1 client for one stream: exact bytes."""

    def __init__(self, port, path, headers=None, method="GET", timeout=10,
                 wait_headers=True, http_version="1.1", accept="text/event-stream"):
        self.port = port
        self.path = path
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.client_port = self.sock.getsockname()[1]
        hdrs = {"Host": f"127.0.0.1:{port}"}
        if accept:
            hdrs["Accept"] = accept
        hdrs["Cache-Control"] = "no-cache"
        hdrs.update(headers or {})
        req = f"{method} {path} HTTP/{http_version}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.sock.sendall(req.encode("latin-1"))
        self.method = method
        self.t_sent = time.monotonic()
        self.t_headers = None
        self.t_eof = None
        self.status = None
        self.header_list = []
        self.headers = {}
        self._buf = bytearray()          # received, not yet decoded
        self.body = bytearray()          # decoded body
        self.chunks = []                 # (monotonic time, decoded bytes)
        self.eof = False                 # body ended (cleanly or not)
        self.clean_end = False           # chunked terminator / full length seen
        self.reset = False               # connection closed without a clean end
        self._chunked = False
        self._remaining = None           # content-length left, None = until close
        self._chunk_left = 0
        self._state = "size"
        self._consumed = 0               # events handed out by next_events()
        if wait_headers:
            self.read_headers(timeout)

    # ---- low level -------------------------------------------------------
    def _recv(self, timeout):
        """Receive once; returns False on timeout."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        except socket.timeout:
            return False
        if not data:
            self._closed()
            return True
        self._buf += data
        if self.status is not None:
            self._decode()
        return True

    def _closed(self):
        if self.status is not None and self._remaining is None and not self._chunked:
            self.clean_end = True   # body delimited by close
        if not self.clean_end:
            self.reset = True
        self.eof = True
        self.t_eof = time.monotonic()

    def read_headers(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buf:
            if self.eof:
                raise AssertionError(f"connection closed before headers: {bytes(self._buf)!r}")
            if not self._recv(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AssertionError(f"no response headers within {timeout}s for {self.path}")
        self.t_headers = time.monotonic()
        head, _, rest = bytes(self._buf).partition(b"\r\n\r\n")
        self._buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.header_list.append((k.strip(), v.strip()))
            self.headers[k.strip().lower()] = v.strip()
        te = self.headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        if self.method == "HEAD" or self.status in (204, 304):
            self._remaining = 0
        elif not self._chunked and "content-length" in self.headers:
            self._remaining = int(self.headers["content-length"])
        self._decode()
        return self.status

    def _decode(self):
        if self._chunked:
            while True:
                if self._state == "size":
                    i = self._buf.find(b"\r\n")
                    if i < 0:
                        return
                    size = int(bytes(self._buf[:i]).split(b";")[0].strip(), 16)
                    del self._buf[:i + 2]
                    if size == 0:
                        self._state = "trailer"
                    else:
                        self._chunk_left = size
                        self._state = "data"
                elif self._state == "data":
                    if not self._buf:
                        return
                    take = bytes(self._buf[:self._chunk_left])
                    del self._buf[:len(take)]
                    self._chunk_left -= len(take)
                    self._add(take)
                    if self._chunk_left == 0:
                        self._state = "crlf"
                elif self._state == "crlf":
                    if len(self._buf) < 2:
                        return
                    assert bytes(self._buf[:2]) == b"\r\n", f"bad chunk framing: {bytes(self._buf[:40])!r}"
                    del self._buf[:2]
                    self._state = "size"
                elif self._state == "trailer":
                    i = self._buf.find(b"\r\n")
                    if i < 0:
                        return
                    line = bytes(self._buf[:i])
                    del self._buf[:i + 2]
                    if line == b"":
                        self._state = "done"
                        self.clean_end = True
                        self.eof = True
                        self.t_eof = time.monotonic()
                        return
                else:
                    return
        else:
            if self._buf:
                data = bytes(self._buf)
                if self._remaining is not None:
                    data = data[:self._remaining]
                    self._remaining -= len(data)
                self._buf.clear()
                if data:
                    self._add(data)
            if self._remaining == 0 and not self.eof:
                self.clean_end = True
                self.eof = True
                self.t_eof = time.monotonic()

    def _add(self, data):
        self.body += data
        self.chunks.append((time.monotonic(), data))

    # ---- waiting ---------------------------------------------------------
    def read_until(self, pred, timeout):
        """Read until pred(self) is true; False on EOF/timeout."""
        deadline = time.monotonic() + timeout
        while not pred(self):
            if self.eof:
                return pred(self)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._recv(left)
        return True

    def wait_bytes(self, pattern: bytes, timeout=10):
        return self.read_until(lambda s: pattern in s.body, timeout)

    def wait_eof(self, timeout=10):
        return self.read_until(lambda s: s.eof, timeout)

    def idle(self, seconds):
        """Keep reading for `seconds` (collects whatever arrives)."""
        self.read_until(lambda s: False, seconds)

    # ---- events ----------------------------------------------------------
    def blocks(self):
        """All complete blocks received so far (heartbeats included)."""
        body = bytes(self.body)
        out = []
        start = 0
        while True:
            i = body.find(b"\n\n", start)
            if i < 0:
                break
            out.append(Event(body[start:i + 2]))
            start = i + 2
        return out

    def events(self):
        """Complete non-comment, non-retry-only blocks (i.e. events)."""
        return [b for b in self.blocks() if not b.is_comment and not b.is_retry_only]

    def body_without_heartbeats(self):
        return b"".join(b.raw for b in self.blocks() if b.raw != HEARTBEAT)

    def next_events(self, n, timeout=10):
        """The next n events not returned before; AssertionError if they do
        not all arrive in time."""
        want = self._consumed + n
        self.read_until(lambda s: len(s.events()) >= want, timeout)
        evs = self.events()
        if len(evs) < want:
            raise AssertionError(
                f"expected {n} more event(s) within {timeout}s on {self.path}, got "
                f"{len(evs) - self._consumed}: body so far {bytes(self.body)!r} eof={self.eof}")
        out = evs[self._consumed:want]
        self._consumed = want
        return out

    def next_event(self, timeout=10):
        return self.next_events(1, timeout)[0]

    def assert_no_event(self, seconds=1.0):
        self.idle(seconds)
        evs = self.events()
        assert len(evs) == self._consumed, f"unexpected events: {evs[self._consumed:]}"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Vanish abruptly: RST instead of FIN."""
        try:
            import struct
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def subscribe(port, channels=None, path="/events", headers=None, extra_query=None, **kw):
    """A stream on path for channels (query parameters); asserts 200."""
    target = path
    if channels is not None:
        target += chan_query(channels, extra_query)
    elif extra_query:
        target += "?" + extra_query
    c = SSEClient(port, target, headers=headers, **kw)
    assert c.status == 200, f"GET {target}: {c.status_line} {bytes(c._buf)!r}"
    return c


# --------------------------------------------------------------------------
# the npm eventsource client
# --------------------------------------------------------------------------

class NodeClient:
    def __init__(self, url, count, timeout=15.0, types=(), last_event_id=None):
        if not (NODE_DIR / "node_modules" / "eventsource").is_dir():
            pytest.fail("tests/node/node_modules is missing: run scripts/deps.sh")
        args = ["node", str(NODE_CLIENT), "--url", url, "--count", str(count),
                "--timeout", str(int(timeout * 1000))]
        if types:
            args += ["--types", ",".join(types)]
        if last_event_id is not None:
            args += ["--last-event-id", last_event_id]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=str(NODE_DIR))
        self.lines = []
        self._q = queue.Queue()
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()
        self.timeout = timeout

    def _reader(self):
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = {"kind": "garbage", "line": raw.decode(errors="replace")}
            self.lines.append(msg)
            self._q.put(msg)
        self._q.put(None)

    def wait_for(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        seen = [m for m in list(self.lines) if pred(m)]
        if seen:
            return seen[0]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"node client: condition not met in {timeout}s; lines {self.lines}")
            try:
                m = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                raise AssertionError(f"node client exited; lines {self.lines} stderr "
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
            if pred(m):
                return m

    def wait_open(self, n=1, timeout=10):
        return self.wait_for(lambda m: m.get("kind") == "open" and m.get("n") == n, timeout)

    def result(self, timeout=None):
        """Wait for the client to finish; returns (final kind, events)."""
        try:
            self.proc.wait(timeout if timeout is not None else self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.close()
            raise
        self._t.join(5)
        final = [m for m in self.lines if m.get("kind") in ("done", "timeout", "closed")]
        events = [m for m in self.lines if m.get("kind") == "event"]
        return (final[-1]["kind"] if final else None), events

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item._sse_failed = True
        for label, srv, mark in getattr(item, "_sse_servers", []):
            text = srv.log_since(mark)
            if len(text) > 6000:
                text = "...\n" + text[-6000:]
            rep.sections.append((f"httpd error log ({label}, {srv.dir})", text or "(empty)"))


def _track(request, label, srv, mark=0):
    if not hasattr(request.node, "_sse_servers"):
        request.node._sse_servers = []
    request.node._sse_servers.append((label, srv, mark))


def server_factory(request, cls, label):
    """The body of a server-factory fixture (`yield from` it): yields
    make(start=True, **kw) -> cls(**kw), started unless start=False; its
    error log is shown if the test fails, under label(server, kw) #n. Every
    server made is stopped (by pid) after the test, and its directory removed
    unless the test failed (kept for a post-mortem)."""
    made = []

    def make(start=True, **kw):
        h = cls(**kw)
        made.append(h)
        _track(request, f"{label(h, kw)} #{len(made)}", h)
        if start:
            h.start()
        return h

    yield make
    for h in made:
        h.stop()
    if not getattr(request.node, "_sse_failed", False):
        for h in made:
            shutil.rmtree(h.dir, ignore_errors=True)


@pytest.fixture
def httpd(request):
    """Factory: httpd(mpm=..., conf=..., server_conf=..., start=True) -> Httpd."""
    yield from server_factory(request, Httpd, lambda h, kw: h.mpm)


class _Pool:
    def __init__(self):
        self.servers = {}

    def get(self, mpm):
        h = self.servers.get(mpm)
        if h is not None and h.running() and h._port_answers():
            return h
        if h is not None:
            h.stop()
        h = Httpd(mpm=mpm, name=f"shared-{mpm}")
        h.start()
        self.servers[mpm] = h
        return h

    def stop_all(self):
        for h in self.servers.values():
            h.cleanup()


@pytest.fixture(scope="session")
def _pool():
    p = _Pool()
    yield p
    p.stop_all()


@pytest.fixture
def srv(_pool, request):
    """The shared event-MPM server with the standard locations."""
    h = _pool.get("event")
    _track(request, "shared event", h, h.log_mark())
    return h


@pytest.fixture(params=MPMS)
def mpm_srv(_pool, request):
    """The shared server of each MPM in turn."""
    h = _pool.get(request.param)
    _track(request, f"shared {request.param}", h, h.log_mark())
    return h


@pytest.fixture
def chan():
    return uniq("t")
