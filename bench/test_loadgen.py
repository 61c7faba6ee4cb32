#!/usr/bin/env python3
"""Self-test of bench/loadgen against a tiny, deliberately awkward pub/sub
server (stdlib only): chunks split anywhere, chunk extensions, upper-case hex,
LF / CRLF / CR line endings, comments, id/event fields, data split over two
`data:` lines, HTTP/1.0 close-delimited bodies, publish responses with
Content-Length, chunked and Connection: close. Subscriber 0 gets every event
twice (duplicates) and subscriber 1 gets them in swapped pairs (out of
order): the counters must say exactly that.

Two servers (`--port2`): two listening sockets of one broker, so that a
publish on either reaches the subscribers of both (as two servers sharing
Redis do). Each socket counts its streams and publishes: the subscribers
must split evenly and the fixed-rate publishes alternate (counts differ by
at most one), and each `--server-pid` tree gets its own CPU figure.

Several processes (`--procs 3`): 12 subscribers split 4 + 4 + 4, only the
first process publishes; the merged result must count every subscriber's
expected events (4 per channel: expected == 4 x published), their
deliveries and latencies, and the anomalies of subscribers 0 and 1
wherever they landed.

    python3 bench/test_loadgen.py [path/to/loadgen]
"""
import json
import random
import socket
import subprocess
import sys
import threading
import time

LOADGEN = sys.argv[1] if len(sys.argv) > 1 else "bench/loadgen"


class Server:
    def __init__(self, share=None, answer_delay=0.0):
        self.answer_delay = answer_delay
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        # with share: one broker for both listening sockets (subscribers,
        # their numbering and the random framing are shared)
        self.broker = share.broker if share else self
        self.lock = self.broker.lock if share else threading.Lock()
        self.subs = self.broker.subs if share else {}   # channel -> list of subscriber dicts
        self.post_log = []
        self.nsub = 0
        self.rng = random.Random(7)
        self.streams = 0        # GETs on this socket
        self.posts = 0          # POSTs on this socket
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            s, _ = self.lsock.accept()
            threading.Thread(target=self.handle, args=(s,), daemon=True).start()

    def send_split(self, s, data):
        # write in random small pieces so that reads split anywhere
        i = 0
        while i < len(data):
            k = self.rng.randint(1, 40)
            s.sendall(data[i:i + k])
            i += k

    def handle(self, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        npub = 0
        while True:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    s.close()
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            method, path, ver = lines[0].split(" ")
            hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
            if method == "GET":
                chan = path.split("channel=")[1]
                http10 = ver == "HTTP/1.0"
                if http10:
                    s.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
                else:
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
                with self.lock:
                    idx = self.broker.nsub
                    self.broker.nsub += 1
                    self.streams += 1
                    self.subs.setdefault(chan, []).append(
                        {"sock": s, "http10": http10, "idx": idx, "lock": threading.Lock(),
                         "held": None})
                return          # the socket now belongs to the publishers
            # POST
            n = int(hdrs["content-length"])
            while len(buf) < n:
                buf += s.recv(65536)
            body, buf = buf[:n], buf[n:]
            chan = path.rsplit("/", 1)[1]
            with self.lock:
                self.posts += 1
                # (send_ns, publisher connection, socket): the order in which
                # the load generator sent the POSTs, whatever order they came in
                f = body.split(b" ")
                self.broker.post_log.append((int(f[1]), int(f[3]), self))
            self.broker.publish(chan, body)
            if self.answer_delay:
                time.sleep(self.answer_delay)
            npub += 1
            msg = b'{"ok":true}'
            close = npub % 7 == 0
            if npub % 2:
                resp = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" %
                        (len(msg), b"Connection: close\r\n" if close else b"")) + msg
            else:
                resp = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n%s\r\n" %
                        (b"Connection: close\r\n" if close else b"")) + \
                    b"4;x=y\r\n" + msg[:4] + b"\r\n" + b"%X\r\n" % (len(msg) - 4) + msg[4:] + \
                    b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
            s.sendall(resp)
            if close:
                s.close()
                return

    def frame(self, body):
        eol = self.rng.choice([b"\n", b"\r\n", b"\r"])
        cut = self.rng.randint(40, len(body))   # past "seq ts chan pub phase "
        out = b": comment" + eol + b"id: 1" + eol + b"event: x" + eol
        out += b"data:" + body[:cut] + eol + b"data: " + body[cut:] + eol + eol
        return out

    def chunk(self, data):
        out = b""
        i = 0
        while i < len(data):
            k = self.rng.randint(1, 50)
            part = data[i:i + k]
            ext = b";a=b" if self.rng.random() < 0.3 else b""
            out += b"%X%s\r\n" % (len(part), ext) + part + b"\r\n"
            i += k
        return out

    def publish(self, chan, body):
        with self.lock:
            subs = list(self.subs.get(chan, []))
        for sub in subs:
            with sub["lock"]:
                with self.lock:                         # one rng for both sockets
                    data = self.frame(body)
                    if sub["idx"] == 0:
                        data += self.frame(body)        # duplicate
                if sub["idx"] == 1:                     # swap pairs
                    if sub["held"] is None:
                        sub["held"] = data
                        continue
                    data, sub["held"] = data + sub["held"], None
                if not sub["http10"]:
                    with self.lock:
                        data = self.chunk(data)
                try:
                    self.send_split(sub["sock"], data)
                except OSError:
                    pass


def run(port, extra):
    cmd = [LOADGEN, "--port", str(port), "--sub-path", "/sub?channel=%s",
           "--pub-path", "/pub/%s", "--subs", "12", "--channels", "3", "--rate", "200",
           "--warmup", "0.5", "--duration", "2", "--drain", "2", "--nsrc", "4",
           "--quiet"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def two_servers():
    # the first server answers POSTs 30 ms late, slower than its share of
    # 200/s over its 2 connections: a load generator that sent the next POST
    # on whichever connection is idle would send more to the second one;
    # alternation must hold anyway (slots are skipped instead)
    a = Server(answer_delay=0.03)
    b = Server(share=a)
    # two idle processes stand for the two servers' trees: each must get its
    # own CPU figure
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        r = run(a.port, ["--port2", str(b.port), "--pub-conns", "4",
                         "--server-pid", str(sleepers[0].pid),
                         "--server-pid", str(sleepers[1].pid)])
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    order = sorted(a.post_log)
    checks = {
        "subs_connected == 12": r["subs_connected"] == 12,
        "6 streams on each socket": (a.streams, b.streams) == (6, 6),
        "subs_per_server == [6, 6]": r["subs_per_server"] == [6, 6],
        "servers == 2": r["servers"] == 2,
        "published > 100": r["published"] > 100,
        # every event to every subscriber of its channel, whichever socket
        # took the POST (both subscribers' anomalies as in the one-server runs)
        "bad_events == 0": r["bad_events"] == 0,
        "loss <= 1 (held odd event of subscriber 1)": 0 <= r["loss"] <= 1,
        "duplicates > 0": r["duplicates"] > 0,
        "out_of_order > 0": r["out_of_order"] > 0,
        "POSTs alternate (counts differ by at most 1)": abs(a.posts - b.posts) <= 1,
        "in send order, every POST goes to the other server than the one before":
            all(x[2] is not y[2] for x, y in zip(order, order[1:])),
        "publisher connection i talks to server i % 2":
            all(s is (a, b)[pub % 2] for _, pub, s in order),
        "published_per_server == POSTs per socket":
            r["published_per_server"] == [a.posts, b.posts],
        "one CPU figure per --server-pid": len(r["server_cpu_parts_s"]) == 2,
    }
    print("loadgen self-test two servers",
          {k: r[k] for k in ("published", "expected", "delivered", "loss", "subs_per_server",
                             "missed_slots",
                             "published_per_server", "server_cpu_parts_s")},
          {"posts": [a.posts, b.posts]})
    ok = True
    for k, v in checks.items():
        if not v:
            print("  FAIL:", k)
            ok = False
    return ok


def procs():
    srv = Server()
    r = run(srv.port, ["--procs", "3"])
    checks = {
        "subs_connected == 12": r["subs_connected"] == 12,
        "12 streams on the socket": srv.streams == 12,
        "published > 100": r["published"] > 100,
        # 3 channels of 4 subscribers each, 3 processes: the helpers'
        # shares are counted (each process alone would expect a third)
        "expected == 4 x published": r["expected"] == 4 * r["published"],
        "bad_events == 0": r["bad_events"] == 0,
        "loss <= 1 (held odd event of subscriber 1)": 0 <= r["loss"] <= 1,
        "latency histograms merged": r["lat_us"]["n"] == r["delivered"],
        "duplicates > 0": r["duplicates"] > 0,
        "out_of_order > 0": r["out_of_order"] > 0,
    }
    print("loadgen self-test --procs 3",
          {k: r[k] for k in ("published", "expected", "delivered", "loss", "duplicates",
                             "out_of_order")}, {"streams": srv.streams})
    ok = True
    for k, v in checks.items():
        if not v:
            print("  FAIL:", k)
            ok = False
    return ok


def main():
    ok = True
    for extra in ([], ["--http10"], ["--pub-conns", "3"]):
        srv = Server()
        r = run(srv.port, extra)
        pub = r["published"]
        # subscriber 1 (channel 1): swapped pairs -> one out-of-order per pair;
        # subscriber 0 (channel 0): every event twice.
        checks = {
            "subs_connected == 12": r["subs_connected"] == 12,
            "published > 100": pub > 100,
            "bad_events == 0": r["bad_events"] == 0,
            "duplicates > 0": r["duplicates"] > 0,
            "out_of_order > 0": r["out_of_order"] > 0,
            "loss <= 1 (held odd event of subscriber 1)": 0 <= r["loss"] <= 1,
            "latency measured": r["lat_us"]["n"] == r["delivered"],
        }
        print("loadgen self-test", extra or "(HTTP/1.1 chunked)",
              {k: r[k] for k in ("published", "expected", "delivered", "loss",
                                 "duplicates", "out_of_order", "pub_reconnects")})
        for k, v in checks.items():
            if not v:
                print("  FAIL:", k)
                ok = False
    ok = two_servers() and ok
    ok = procs() and ok
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
