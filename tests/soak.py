#!/usr/bin/env python3
"""Soak test of mod_sse (`make soak`; issue 14). Stdlib only, run as root with
/usr/bin/python3; not part of `make test`. It stops by itself after
SOAK_SECONDS (default 300; the round under way is finished).

It starts a real httpd (tests/ssetest: generated configuration, free
127.0.0.1 port, stopped by pid) sized for 2,000 streams (event MPM, 2
children x 1,100 threads, 256 KiB stacks), then runs rounds of:

  1. connect 2,000 subscribers (200 at a time) to 20 fresh channels, 100
     each, half written directly by the dispatcher (/fan), half through the
     output filters (/fan-filtered, SSEDirectWrite off); wait until the
     channel info counts all of them;
  2. publish 5 events per channel (one JSON array of 60 events, then 40
     single raw POSTs, all on one keep-alive connection to a publish
     location with SSEPublishKeepAliveWait 10ms); each event also goes to
     the channel of 4 watchers that stay connected for the whole run;
  3. check that every subscriber received exactly the acknowledged events
     of its channel (the ids and bytes from the publish answers), in id
     order, nothing else (heartbeats aside); sample memory and descriptors
     ("peak": 2,000 streams open);
  4. drop the subscribers, the even ones with FIN (close), the odd ones with
     RST (SO_LINGER 0); publish one more event per channel (to streams whose
     clients are gone); DELETE the even channels; wait until every channel
     of the round has no subscriber left (the odd ones: the server notices
     the gone clients by a failed write, within two 1 s heartbeats);
  5. check that the watchers received exactly every event acknowledged
     since the last check; wait until httpd's descriptor count is steady
     for 1 s; sample again ("idle").

Samples: PSS summed over httpd's parent and children
(/proc/PID/smaps_rollup) and their open descriptors (/proc/PID/fd). The
children must stay the same processes for the whole run (one that dies or
is replaced fails the soak), and the error log must hold no message of
level error or worse but AH10159 (see EXPECTED_ERRORS).

Growth verdict (README, Testing): warm-up is the first quarter of the
rounds (at least 2), and at least until every worker thread of both
children has served a stream (their context-switch counts in
/proc/PID/task moved) and the count stopped rising; by then the 64 KiB
ring (wrapped before round 1) and the 256-entry channel table have been
recycled several times. The rest is cut in thirds; for each of the four
series (PSS idle and peak, descriptors idle and peak) the last third's
maximum may exceed the middle third's maximum by at most the margin: PSS
2% (at least 1 MiB), descriptors 2.

    /usr/bin/python3 tests/soak.py --report   # verdict, soak.md and soak.png
                                              # again from soak.tsv/soak.json

Writes bench/results/soak/ (SOAK_OUT elsewhere): soak.tsv (one line a
round), soak.json (run facts), soak.png (gnuplot) and soak.md (settings,
verdict, first/middle/last samples).
Exit status 0 if every check passed, 1 otherwise.
"""
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ssetest.channels import chan_query, uniq
from ssetest.clients import SSEClient, read_all, request
from ssetest.delivery import (DIRECT, FILTERED, STREAM_LOCATIONS, Publisher, close_all,
                              events_body, expected_wire, has_received, sent_record)
from ssetest.httpd import Httpd
from ssetest.procs import fd_count, smaps_rollup, thread_count, thread_switches
from ssetest.publish import channel_info, wait_subscribers

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("SOAK_OUT", REPO / "bench" / "results" / "soak"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))

SUBS = 2000
CHANNELS = 20                 # 100 subscribers each
EVENTS = 5                    # checked events per channel and round
WATCHERS = 4
CHILDREN = 2
THREADS = 1100
BATCH = 200                   # subscribers connected at once
# Growth margins (README, Testing: what they were chosen from). PSS: 2% of
# the middle third's maximum (at least 1 MiB), about 3 times the largest
# step between two rounds after warm-up in a 600 s run (1.1 MiB idle);
# descriptors: 2 (none varied in any round measured; this leaves room for
# a connection or two still in lingering close when sampled).
PSS_MARGIN_KIB = 1024
PSS_MARGIN_FRAC = 0.02
FD_MARGIN = 2
TIMEOUT = 60                  # generous: only keeps a failure from hanging

MPM = f"""
StartServers {CHILDREN}
ServerLimit {2 * CHILDREN}
ThreadLimit {THREADS}
ThreadsPerChild {THREADS}
MaxRequestWorkers {CHILDREN * THREADS}
MinSpareThreads {THREADS}
MaxSpareThreads {CHILDREN * THREADS}
MaxConnectionsPerChild 0
ThreadStackSize 262144
ListenBacklog 4096
"""
PUB = "/soak-pub"
CONF = STREAM_LOCATIONS + f"""
<Location {PUB}>
    SetHandler sse-publish
    SSEPublishKeepAliveWait 10ms
</Location>
"""
SERVER_CONF = "SSEBufferSize 64K\nSSEMaxChannels 256\n"


def log(*a):
    print(f"[soak {time.strftime('%H:%M:%S')}]", *a, flush=True)


class SoakFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise SoakFailure(msg)


# --------------------------------------------------------------------------
# the server and its samples
# --------------------------------------------------------------------------

def wait_threads(h):
    """Both children up with all their worker threads."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        kids = h.children()
        if len(kids) == CHILDREN and all(thread_count(k) > THREADS for k in kids):
            return kids
        time.sleep(0.2)
    raise SoakFailure(f"children {h.children()} never had {THREADS} threads each")


def sample(h, kids):
    """{pss, anon, file, shmem (KiB), fds} summed over parent and children."""
    check(h.children() == kids, f"children changed: {kids} -> {h.children()}")
    out = dict(pss=0, anon=0, file=0, shmem=0, fds=0)
    for p in [h.pid] + kids:
        m = smaps_rollup(p)
        for k, field in (("pss", "Pss"), ("anon", "Pss_Anon"), ("file", "Pss_File"),
                         ("shmem", "Pss_Shmem")):
            out[k] += m.get(field, 0)
        out["fds"] += fd_count(p)
    return out


def steady_fds(h, kids):
    """The sample once the descriptor count has not changed for 1 s
    (lingering closes finish), at most TIMEOUT s."""
    deadline = time.monotonic() + TIMEOUT
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        n = sum(fd_count(p) for p in [h.pid] + kids)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            break
        time.sleep(0.1)
    return sample(h, kids)


class ThreadUse:
    """Which of the children's threads have run since start-up: those whose
    context-switch counts moved. Worker threads that never served a request
    stay unmoved, and so may a few others (a child's main thread)."""

    def __init__(self, kids):
        self.base = {p: thread_switches(p) for p in kids}
        self.used = {p: set() for p in kids}

    def update(self):
        """The number of threads used so far; whether each child has used at
        least ThreadsPerChild of them."""
        for p, base in self.base.items():
            now = thread_switches(p)
            self.used[p] |= {t for t, n in now.items() if n != base.get(t)}
        return (sum(len(u) for u in self.used.values()),
                all(len(u) >= THREADS for u in self.used.values()))


# --------------------------------------------------------------------------
# a round
# --------------------------------------------------------------------------

def assert_received(streams, wants, who):
    """Every stream received exactly its want (bytes), within TIMEOUT."""
    late = read_all(streams, lambda s: has_received(s, wants[s]), TIMEOUT)
    check(not late, f"{who}: {len(late)} of {len(streams)} streams did not receive all "
          f"of {len(wants[late[0]]) if late else 0} bytes; first {late[0].path if late else ''}: "
          f"{events_body(late[0])[-200:] if late else b''!r} eof={late[0].eof if late else ''}")
    bad = [s for s in streams if events_body(s) != wants[s]]
    check(not bad, f"{who}: {len(bad)} of {len(streams)} streams received other bytes; first "
          f"{bad[0].path if bad else ''}: got {events_body(bad[0])[-300:] if bad else b''!r}, "
          f"expected {wants[bad[0]][-300:] if bad else b''!r}")


def connect(port, chans):
    subs = []
    for start in range(0, SUBS, BATCH):
        batch = []
        for k in range(start, min(SUBS, start + BATCH)):
            path = (DIRECT, FILTERED)[k % 2] + chan_query(chans[k % CHANNELS])
            batch.append(SSEClient(port, path, timeout=TIMEOUT, wait_headers=False))
        for s in batch:
            s.read_headers(TIMEOUT)
            check(s.status == 200, f"GET {s.path}: {s.status_line}")
        subs += batch
    for c in chans:
        wait_subscribers(port, c, SUBS // CHANNELS, timeout=TIMEOUT)
    return subs


def publish(port, chans, all_chan, rnd, n):
    """n events per channel, each also on all_chan, over one keep-alive
    connection: the first 60% in one JSON array, the rest as single raw
    POSTs. Returns their Sent records."""
    events = [{"channel": [c, all_chan], "data": f"r{rnd} {c} {k}"}
              for k in range(n) for c in chans]
    cut = len(events) * 3 // 5
    pub = Publisher(port, PUB)
    try:
        sent = [sent_record(i, ev["channel"], ev["data"])
                for i, ev in zip(pub.many(events[:cut]), events[:cut])]
        for ev in events[cut:]:
            sent.append(pub.one(ev["channel"], ev["data"]))
    finally:
        pub.close()
    return sent


def released(port, chans):
    """Every channel of chans has no subscriber (or is gone), within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    left = list(chans)
    while left and time.monotonic() < deadline:
        infos = {c: channel_info(port, c, PUB) for c in left}
        left = [c for c, r in infos.items()
                if not (r.status == 404 or (r.status == 200 and r.json["subscribers"] == 0))]
        if left:
            time.sleep(0.1)
    check(not left, f"{len(left)} channels still have subscribers after {TIMEOUT}s: "
          f"{[(c, channel_info(port, c, PUB).body) for c in left[:3]]}")


def one_round(h, kids, rnd, watchers, all_chan, pending):
    chans = [uniq(f"soak{rnd}") for _ in range(CHANNELS)]
    subs = connect(h.port, chans)
    try:
        sent = publish(h.port, chans, all_chan, rnd, EVENTS)
        pending += sent
        wants = {s: expected_wire(sent, [chans[k % CHANNELS]]) for k, s in enumerate(subs)}
        assert_received(subs, wants, f"round {rnd}, subscribers")
        peak = sample(h, kids)
        for k, s in enumerate(subs):
            (s.close if k % 2 == 0 else s.abort)()
        pending += publish(h.port, chans, all_chan, rnd, 1)
        for c in chans[::2]:
            r = request(h.port, "DELETE", PUB + chan_query(c))
            check(r.status == 200 and r.json["channel"] == c, f"DELETE {c}: {r}")
        released(h.port, chans)
    finally:
        close_all(subs)
    want = expected_wire(pending)
    assert_received(watchers, {w: want for w in watchers}, f"round {rnd}, watchers")
    for w in watchers:           # checked: start afresh
        del w.body[:]
        w.chunks.clear()
    pending.clear()
    idle = steady_fds(h, kids)
    return peak, idle


# --------------------------------------------------------------------------
# verdict, report, plot
# --------------------------------------------------------------------------

COLUMNS = ("round", "seconds", "threads_used", "all_workers_used",
           "pss_idle", "pss_peak", "fds_idle", "fds_peak",
           "anon_idle", "file_idle", "shmem_idle", "anon_peak", "file_peak", "shmem_peak")
# (label, column, margin(middle third's maximum))
SERIES = (("PSS idle (KiB)", "pss_idle", lambda m: max(PSS_MARGIN_KIB, m * PSS_MARGIN_FRAC)),
          ("PSS peak (KiB)", "pss_peak", lambda m: max(PSS_MARGIN_KIB, m * PSS_MARGIN_FRAC)),
          ("descriptors idle", "fds_idle", lambda m: FD_MARGIN),
          ("descriptors peak", "fds_peak", lambda m: FD_MARGIN))


def split(rows):
    """Warm-up, first, middle and last third of the rounds after it, as
    index ranges. Warm-up: at least a quarter of the rounds (and 2), and
    until the round after the one by which every worker thread had served
    and the number of threads used stopped rising."""
    n = len(rows)
    settled = next((i for i in range(1, n) if rows[i]["all_workers_used"]
                    and rows[i]["threads_used"] == rows[i - 1]["threads_used"]), n)
    warm = min(n, max(2, n // 4, settled + 1))
    m = n - warm
    a, b = warm + m // 3, warm + 2 * m // 3
    return warm, range(warm, a), range(a, b), range(b, n)


def verdict(rows):
    n = len(rows)
    warm, first, middle, last = split(rows)
    if len(middle) == 0 or len(last) == 0:
        return False, [f"{n} rounds, {warm} of warm-up: too few to judge growth"]
    out, ok = [], True
    for label, key, margin in SERIES:
        mid_max = max(rows[i][key] for i in middle)
        last_max = max(rows[i][key] for i in last)
        allowed = int(margin(mid_max))
        good = last_max <= mid_max + allowed
        ok &= good
        out.append(f"{label}: last third max {last_max} vs middle third max {mid_max} "
                   f"({last_max - mid_max:+d}, margin {allowed}): {'ok' if good else 'GROWING'}")
    return ok, out


def plot(rows, tsv, png):
    n = len(rows)
    warm, _, middle, last = split(rows)
    c = {k: i + 1 for i, k in enumerate(COLUMNS)}
    # dashed: end of warm-up, start of the middle third, start of the last
    marks = "".join(f"set arrow from {x + 0.5}, graph 0 to {x + 0.5}, graph 1 nohead dt 2 "
                    f"lc rgb 'gray40'\n" for x in sorted({warm, middle.start, last.start}) if 0 < x < n)
    gp = f"""
set terminal pngcairo size 1200,900 font "sans,10" noenhanced
set output "{png}"
set multiplot layout 2,1 title "mod_sse soak: {SUBS} streams a round (half FIN, half RST), {n} rounds in {rows[-1]['seconds']:.0f} s; dashed: end of warm-up, start of middle and last thirds"
set grid
set key bottom right
set xlabel "round"
set xrange [0.5:{n + 0.5}]
{marks}
set ylabel "httpd PSS, MiB (parent + children)"
plot "{tsv}" using 1:(${c['pss_idle']}/1024) with linespoints pt 7 ps 0.4 title "PSS idle (streams released)", \\
     "" using 1:(${c['pss_peak']}/1024) with linespoints pt 7 ps 0.4 title "PSS peak ({SUBS} streams open)", \\
     "" using 1:(${c['anon_idle']}/1024) with lines dt 3 title "of it anonymous, idle"
set ylabel "open descriptors, idle"
set y2label "open descriptors, peak"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom right
plot "{tsv}" using 1:{c['fds_idle']} with linespoints pt 7 ps 0.4 title "idle (left axis)", \\
     "" using 1:{c['fds_peak']} axes x1y2 with linespoints pt 7 ps 0.4 title "peak (right axis)"
unset multiplot
"""
    subprocess.run(["gnuplot"], input=gp, text=True, check=False)


def write_tsv(rows, tsv):
    with open(tsv, "w") as f:
        f.write("# " + "\t".join(COLUMNS) + "   (memory in KiB, summed over httpd's processes)\n")
        for r in rows:
            f.write("\t".join(f"{r[k]:.1f}" if k == "seconds" else str(int(r[k]))
                              for k in COLUMNS) + "\n")


def read_tsv(tsv):
    rows = []
    for line in tsv.read_text().splitlines():
        if line and not line.startswith("#"):
            rows.append({k: (float(v) if k == "seconds" else int(v))
                         for k, v in zip(COLUMNS, line.split("\t"))})
    return rows


def report(rows, meta):
    """soak.tsv (unless rebuilding), soak.png and soak.md; returns whether
    the soak passed."""
    tsv, png = OUT / "soak.tsv", OUT / "soak.png"
    ok, lines = verdict(rows) if rows else (False, ["no round completed"])
    passed = ok and not meta["failure"]
    for ln in lines:
        log(ln)
    if rows:
        plot(rows, tsv, png)
    n = len(rows)
    warm, first, middle, last = split(rows) if n else (0, range(0), range(0), range(0))
    pick = ([("first", 0), ("end of warm-up", max(0, warm - 1)), ("middle", n // 2),
             ("last", n - 1)] if n else [])
    md = [f"# mod_sse soak ({meta['started']} UTC)", "",
          f"`make soak SOAK_SECONDS={meta['seconds']:g}`: {n} rounds in {meta['elapsed']:.0f} s; "
          f"each round {SUBS} subscribers on {CHANNELS} channels (half written directly, half "
          f"through the filters), {EVENTS} checked events per channel, the subscribers dropped "
          f"(half FIN, half RST), one more event per channel, the even channels deleted. httpd: "
          f"event MPM, {CHILDREN} children x {THREADS} threads, "
          f"{SERVER_CONF.strip().replace(chr(10), ', ')}; {meta.get('threads', '?')} threads in all.",
          "", f"Verdict: **{'PASS' if passed else 'FAIL'}**", ""]
    if meta["failure"]:
        md += [f"Failure: {meta['failure']}", ""]
    if n and len(middle):
        md += [f"Growth rule: warm-up {warm} rounds (every worker had served by round "
               f"{next((r['round'] for r in rows if r['all_workers_used']), '-')}); the maximum "
               f"of rounds {last.start + 1}-{last.stop} (last third) against that of rounds "
               f"{middle.start + 1}-{middle.stop} (middle third):", ""]
    md += [f"- {x}" for x in lines]
    md += ["", "| sample | round | s | threads used | PSS idle KiB | PSS peak KiB | "
           "anonymous idle KiB | fds idle | fds peak |", "|---|---|---|---|---|---|---|---|---|"]
    for name, i in pick:
        r = rows[i]
        md.append(f"| {name} | {r['round']} | {r['seconds']:.0f} | {r['threads_used']} | "
                  f"{r['pss_idle']} | {r['pss_peak']} | {r['anon_idle']} | {r['fds_idle']} | "
                  f"{r['fds_peak']} |")
    md += ["", "Every round: [soak.tsv](soak.tsv); plot: [soak.png](soak.png).", ""]
    (OUT / "soak.md").write_text("\n".join(md))
    log(f"wrote {OUT / 'soak.md'}, {tsv}, {png}")
    return passed


# AH10159 "server is within MinSpareThreads of MaxRequestWorkers": logged once
# (error level) as soon as more than MaxRequestWorkers - MinSpareThreads
# workers are busy, which the README's sizing (MinSpareThreads =
# ThreadsPerChild, every child started at once) makes happen by design.
EXPECTED_ERRORS = ("AH10159:",)


def error_lines(h):
    return [ln for ln in h.error_log().splitlines()
            if any(f":{lvl}]" in ln for lvl in ("error", "crit", "alert", "emerg"))
            and not any(tag in ln for tag in EXPECTED_ERRORS)]


def run():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    check(hard >= SUBS + 1000, f"RLIMIT_NOFILE {hard} is too low for {SUBS} streams")
    meta = dict(started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
                seconds=SECONDS, failure=None)
    h = Httpd(mpm="event", mpm_conf=MPM, conf=CONF, server_conf=SERVER_CONF,
              log_level="notice", name="soak")
    rows, watchers = [], []
    t0 = time.monotonic()
    try:
        h.start(timeout=TIMEOUT)
        kids = wait_threads(h)
        meta["threads"] = sum(thread_count(k) for k in kids)
        log(f"httpd {h.pid} on port {h.port}, children {kids} ({meta['threads']} threads); "
            f"{SECONDS:g} s")
        use = ThreadUse(kids)
        all_chan = uniq("soak-all")
        watchers = [SSEClient(h.port, (DIRECT, FILTERED)[k % 2] + chan_query(all_chan),
                              timeout=TIMEOUT) for k in range(WATCHERS)]
        wait_subscribers(h.port, all_chan, WATCHERS, timeout=TIMEOUT)
        # Wrap the ring twice before round 1: its pages are all resident.
        filler = uniq("soak-fill")
        pub = Publisher(h.port, PUB)
        for k in range(2 * 64):
            pub.many([{"channel": filler, "data": f"{k} " + "f" * 960}])
        pub.close()
        pending = []
        rnd = 0
        while rnd == 0 or time.monotonic() - t0 < SECONDS:
            rnd += 1
            peak, idle = one_round(h, kids, rnd, watchers, all_chan, pending)
            used, all_used = use.update()
            rows.append(dict(round=rnd, seconds=time.monotonic() - t0, threads_used=used,
                             all_workers_used=int(all_used),
                             pss_idle=idle["pss"], pss_peak=peak["pss"],
                             fds_idle=idle["fds"], fds_peak=peak["fds"],
                             anon_idle=idle["anon"], file_idle=idle["file"],
                             shmem_idle=idle["shmem"], anon_peak=peak["anon"],
                             file_peak=peak["file"], shmem_peak=peak["shmem"]))
            log(f"round {rnd}: PSS idle {idle['pss']} KiB (anon {idle['anon']}), peak "
                f"{peak['pss']} KiB; fds idle {idle['fds']}, peak {peak['fds']}; "
                f"threads used {used}")
        errs = error_lines(h)
        check(not errs, f"{len(errs)} error lines in httpd's log, first: {errs[:3]}")
    except SoakFailure as e:
        meta["failure"] = str(e)
        log("FAIL:", meta["failure"])
    finally:
        close_all(watchers)
        h.stop()
    meta["elapsed"] = time.monotonic() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    write_tsv(rows, OUT / "soak.tsv")
    (OUT / "soak.json").write_text(json.dumps(meta, indent=1) + "\n")
    if report(rows, meta):
        log("PASS")
        h.cleanup()
        return 0
    log(f"FAIL (httpd's directory kept: {h.dir})")
    return 1


def main():
    if sys.argv[1:] == ["--report"]:      # rebuild soak.md and soak.png from the files
        passed = report(read_tsv(OUT / "soak.tsv"), json.loads((OUT / "soak.json").read_text()))
        return 0 if passed else 1
    return run()


if __name__ == "__main__":
    sys.exit(main())
