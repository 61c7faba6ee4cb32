"""Thousands of streams from one process: raw non-blocking sockets under one
epoll (selectors), for the detached-stream tests. Each stream keeps every
byte it received; its events are decoded (chunked framing, then the
event-stream format) only when asked, so that reading stays cheap while
thousands of them are open. SSEClient (clients.py) is the one-stream client
with exact framing checks; this one checks the same things in bulk.

The process needs a descriptor per stream: the tests raise the soft limit
to the hard one (RLIMIT_NOFILE) first."""
import resource
import selectors
import socket
import time

from .channels import chan_query

TERMINAL = b"0\r\n\r\n"


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= need


class Stream:
    __slots__ = ("sock", "raw", "eof", "head_end", "n_id")

    def __init__(self, sock):
        self.sock = sock
        self.raw = bytearray()
        self.eof = False
        self.head_end = -1
        self.n_id = 0           # "id: " lines seen so far (cheap progress count)

    def status(self):
        if self.head_end < 0:
            return None
        return int(self.raw[9:12])

    def headers(self):
        head = bytes(self.raw[:self.head_end]).decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in head if l)}

    def body(self):
        """(decoded body, clean): chunks joined; clean when the terminal chunk
        ended it (chunked) or, close-delimited, when the server closed."""
        data = bytes(self.raw[self.head_end + 4:])
        if self.headers().get("transfer-encoding") != "chunked":
            return data, self.eof
        out, i = bytearray(), 0
        while True:
            j = data.find(b"\r\n", i)
            if j < 0:
                return bytes(out), False
            size = int(data[i:j].split(b";")[0], 16)
            if size == 0:
                return bytes(out), data[j:j + 4] == b"\r\n\r\n"
            if len(data) < j + 2 + size + 2:
                return bytes(out), False
            out += data[j + 2:j + 2 + size]
            i = j + 2 + size + 2

    def events(self):
        """The events of the body (comments and retry-only blocks left out),
        as raw blocks, each ending with its blank line."""
        body, _ = self.body()
        blocks = [b + b"\n\n" for b in body.split(b"\n\n")[:-1]]
        return [b for b in blocks if not b.startswith(b":") and not b.startswith(b"retry:")]


class ManyStreams:
    """n streams of path?channel=chan on 127.0.0.1:port."""

    def __init__(self, port, path, chan, n, batch=250, timeout=120, headers=None):
        self.sel = selectors.DefaultSelector()
        self.streams = []
        target = path + chan_query(chan)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Accept: text/event-stream\r\n{extra}\r\n").encode()
        deadline = time.monotonic() + timeout
        # In batches, each waited for, so that the listen queue never
        # overflows (its SYNs would be retried a second later).
        for start in range(0, n, batch):
            for _ in range(min(batch, n - start)):
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(self.request)
                s.setblocking(False)
                st = Stream(s)
                self.streams.append(st)
                self.sel.register(s, selectors.EVENT_READ, st)
            self.pump_until(lambda st: st.head_end >= 0 or st.eof, deadline)
        bad = [st for st in self.streams if st.status() != 200]
        assert not bad, f"{len(bad)} streams without a 200: {bytes(bad[0].raw[:200])!r}"

    def _read(self, st):
        try:
            data = st.sock.recv(262144)
        except BlockingIOError:
            return
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        if not data:
            st.eof = True
            self.sel.unregister(st.sock)
            return
        tail = bytes(st.raw[-3:])
        st.raw += data
        if st.head_end < 0:
            st.head_end = st.raw.find(b"\r\n\r\n")
        st.n_id += (tail + data).count(b"id: ")

    def pump(self, seconds):
        """Reads whatever arrives for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, _ in self.sel.select(timeout=max(0.0, min(0.5, end - time.monotonic()))):
                self._read(key.data)

    def pump_until(self, pred, deadline):
        """Reads until pred(stream) holds for every stream; returns those for
        which it does not at the deadline."""
        left = [st for st in self.streams if not pred(st)]
        while left and time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
                self._read(key.data)
            left = [st for st in left if not pred(st)]
        return left

    def wait_ids(self, n, timeout=60):
        """Every stream has n "id: " lines (events) at least."""
        left = self.pump_until(lambda st: st.n_id >= n, time.monotonic() + timeout)
        assert not left, (f"{len(left)} of {len(self.streams)} streams short of {n} events; "
                          f"one has {left[0].n_id}, eof={left[0].eof}")

    def wait_eof(self, timeout=30):
        left = self.pump_until(lambda st: st.eof, time.monotonic() + timeout)
        assert not left, f"{len(left)} of {len(self.streams)} streams still open"

    def close(self):
        for st in self.streams:
            try:
                self.sel.unregister(st.sock)
            except (KeyError, ValueError):
                pass
            st.sock.close()
        self.sel.close()
