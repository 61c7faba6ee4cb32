"""Clients of the server: plain requests through http.client (Response,
request(), basic_auth()), the raw-socket stream client SSEClient with its
parsed Event blocks and subscribe(), and NodeClient (the npm `eventsource`
package, tests/node/sse-client.mjs)."""
import base64
import http.client
import json
import queue
import select
import socket
import subprocess
import threading
import time

import pytest

from .channels import chan_query
from .env import AUTH_USERS, NODE_CLIENT, NODE_DIR
from .procs import terminate
from .wire import HEARTBEAT


def basic_auth(user, password=None):
    if password is None:
        password = AUTH_USERS[user]
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": "Basic " + tok}


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
        # poll, not select: a process holding thousands of streams (the
        # soak, tests/soak.py) has descriptors above select's FD_SETSIZE.
        p = select.poll()
        p.register(self.sock, select.POLLIN)
        if not p.poll(max(0.0, timeout) * 1000):
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

    def fileno(self):
        return self.sock.fileno()

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


def read_all(clients, pred, timeout):
    """Reads whichever of clients (SSEClients) have data, one poll() over
    them all, until pred(c) holds for every client or timeout seconds
    passed. Returns the clients for which it does not hold (empty: all
    done). For many streams at once, where reading each in turn would wait
    on every quiet one."""
    left = [c for c in clients if not pred(c)]
    deadline = time.monotonic() + timeout
    while left:
        waiting = {c.fileno(): c for c in left if not c.eof}
        if not waiting or time.monotonic() >= deadline:
            break
        p = select.poll()
        for fd in waiting:
            p.register(fd, select.POLLIN)
        for fd, _ in p.poll(max(0.0, min(1.0, deadline - time.monotonic())) * 1000):
            waiting[fd]._recv(0)
        left = [c for c in left if not pred(c)]
    return left


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
        terminate(self.proc)
