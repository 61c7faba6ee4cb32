#!/usr/bin/env python3
"""Profile mod_sse (or the load generator) under one benchmark scenario.

    /usr/bin/python3 bench/profile.py 1            # perf on mod_sse's children, scenario 1
    /usr/bin/python3 bench/profile.py 2 --target loadgen
    /usr/bin/python3 bench/profile.py 1 --server nchan
    /usr/bin/python3 bench/profile.py 7m           # two servers + Redis: both servers' and
                                                   # Redis's processes are measured

Starts the server like bench.py does, runs bench/loadgen with the scenario's
parameters, and once the loadgen starts publishing runs `perf record -a`
(system-wide: attaching to httpd's ~11,000 threads would exceed the file
descriptor limit) with DWARF call graphs (Debian's libc and APR have no frame
pointers) for the given seconds. The report keeps only the processes of the
server tree (or the loadgen) and writes bench/results/profile-s<N>-<server>-
<target>.txt: the whole machine's split, where the samples land (kernel,
libraries), the hottest functions, the innermost module function each sample
is charged to, inclusive shares, the system calls, the busiest threads, and
the loadgen's JSON line of that run.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def summarize(data, pids, target, top=25):
    """Aggregates `perf script` call chains of the given pids: where the
    samples land (kernel / each library), the hottest leaf functions, the
    user-space function each sample is charged to (the first frame outside
    the kernel, libc, libpthread, ld.so: the code that asked for the work),
    inclusive time per function, and the system calls the kernel time is
    spent in."""
    from collections import Counter
    p = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,ip,sym,dso"],
                       capture_output=True, text=True)
    machine = Counter()
    dso = Counter()
    leaf = Counter()
    charged = Counter()
    incl = Counter()
    sysc = Counter()
    thread = Counter()
    thread_top = {}
    n = 0
    total = 0

    def flush(pid, comm, frames, tid=None):
        nonlocal n, total
        if pid is None:
            return
        total += 1
        who = "idle" if pid == 0 else ("measured" if pid in pids else comm)
        machine[who] += 1
        if pid not in pids or not frames:
            return
        n += 1
        sym, d = frames[0]
        dname = d.rsplit("/", 1)[-1]
        kern = dname == "[kernel.kallsyms]"
        dso["kernel" if kern else dname] += 1
        leaf[f"{sym}  [{'k' if kern else dname}]"] += 1
        seen = set()
        for s_, d_ in frames:
            key = f"{s_}  [{d_.rsplit('/', 1)[-1]}]"
            if key not in seen:
                seen.add(key)
                incl[key] += 1
        owner = None
        for want in (("mod_sse.so",), ("apache2", "mod_mpm_event.so", "mod_mpm_worker.so",
                                       "mod_mpm_prefork.so", "nginx", "ngx_nchan_module.so",
                                       "loadgen"), None):
            for s_, d_ in frames:
                dn = d_.rsplit("/", 1)[-1]
                if s_ == "[unknown]" or dn == "[kernel.kallsyms]":
                    continue
                if want is None and dn.startswith(("libc.so", "ld-linux")):
                    continue
                if want is None or dn in want:
                    owner = f"{s_}  [{dn}]"
                    break
            if owner:
                break
        owner = owner or "(no user frame: kernel/libc only)"
        charged[owner] += 1
        names = [f for f, _ in frames]
        if not kern:
            sysc["(user space)"] += 1
        elif "do_syscall_64" in names and names.index("do_syscall_64") > 0:
            s_ = names[names.index("do_syscall_64") - 1]
            for pre in ("__x64_sys_", "__se_sys_", "__do_sys_", "___sys_", "__sys_", "ksys_"):
                if s_.startswith(pre):
                    s_ = s_[len(pre):]
                    break
            sysc[s_] += 1
        else:
            sysc["(other kernel: interrupt, softirq, page fault)"] += 1
        thread[tid] += 1
        thread_top.setdefault(tid, Counter())[owner] += 1

    pid = comm = tid = None
    frames = []
    for line in p.stdout.splitlines():
        if not line.strip():
            flush(pid, comm, frames, tid)
            pid, frames = None, []
            continue
        if not line.startswith("\t"):
            parts = line.split()
            try:
                comm = " ".join(parts[:-1])
                pid, tid = (int(x) for x in parts[-1].split("/"))
            except (ValueError, IndexError):
                pid = None
            frames = []
            continue
        t = line.strip().split(" ", 1)
        if len(t) == 2:
            rest = t[1]
            if rest.endswith(")") and " (" in rest:
                sym, d = rest.rsplit(" (", 1)
                sym = sym.split("+0x")[0]
                frames.append((sym, d[:-1]))
    flush(pid, comm, frames, tid)
    tid = None

    def table(title, c, denom):
        out = [f"==== {title} ===="]
        for k, v in c.most_common(top):
            out.append(f"{100.0 * v / max(denom, 1):6.2f}%  {k}")
        return "\n".join(out)

    parts = [f"samples: {n} of the {target} ({total} on the whole machine, both CPUs)",
             table("whole machine during the window (share of all samples)", machine, total),
             table("where the " + target + "'s samples land (self, by object)", dso, n),
             table("hottest functions (self)", leaf, n),
             table("charged to the innermost mod_sse frame on the stack (else httpd's, else any "
                   "library's outside libc): that code and everything it called",
                   charged, n),
             table("inclusive (function anywhere on the stack)", incl, n),
             table("system call the sample is in (kernel samples)", sysc, n)]
    lines = ["==== busiest threads: share of the samples, and what they are charged to ===="]
    for t, v in thread.most_common(12):
        tops = ", ".join(f"{k} ({c})" for k, c in thread_top.get(t, Counter()).most_common(2))
        lines.append(f"{100.0 * v / max(n, 1):6.2f}%  tid {t}: {tops}")
    lines.append(f"({len(thread)} threads had samples)")
    parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", help="a scenario id of bench.py (1, ..., 7, 7m)")
    ap.add_argument("--server", default="mod_sse")
    ap.add_argument("--target", default="server", choices=["server", "loadgen"])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--freq", type=int, default=499)
    ap.add_argument("--keep-data", action="store_true", help="keep /tmp/mod_sse-bench-*.perf.data")
    ap.add_argument("--call-graph", default="dwarf,16384",
                    help="perf's --call-graph: dwarf unwinds through Debian's libc and APR, "
                         "which have no frame pointers; fp is cheaper")
    a = ap.parse_args()
    bench.RESULTS.mkdir(exist_ok=True)
    bench.LOGS.mkdir(exist_ok=True)
    sha = bench.snapshot_module() if a.server == "mod_sse" else "-"
    commit = bench.sh(f"git -C {bench.ROOT} log -1 --format='%h %ci'")
    sc = next((s for s in bench.SCENARIOS if str(s["id"]) == a.scenario), None)
    if sc is None:
        sys.exit(f"profile.py: no scenario {a.scenario}")
    tag = f"profile-s{sc['id']}-{a.server}-{a.target}"
    out = bench.RESULTS / f"{tag}.txt"
    data = Path(f"/tmp/mod_sse-bench-{tag}.perf.data")
    # scenario 7: Redis, then the two servers (as bench.run_one); measured
    # and reported together
    started = []
    try:
        if sc.get("topology") == "redis2":
            redis = bench.Redis(f"{tag}-redis").start()
            started.append(redis)
            for ab in "ab":
                started.append(bench.SERVERS[a.server](f"{tag}-{ab}", redis.port).start())
            srv = started[1]
        else:
            srv = bench.SERVERS[a.server](tag).start()
            started.append(srv)
    except RuntimeError:
        for x in reversed(started):
            x.stop()
        raise
    try:
        args = bench.loadgen_args(sc, srv, a.server, quick=False)
        if len(started) > 1:
            args += ["--port2", str(started[2].port)]
        for x in started:
            args += ["--server-pid", str(x.proc.pid)]
        lg_log = bench.LOGS / f"{tag}.loadgen.log"
        with open(lg_log, "w") as lf:
            lg = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=lf, text=True,
                                  preexec_fn=bench.boost)
        # wait for publishing to start
        t = time.time() + 120
        while time.time() < t and "publishing" not in lg_log.read_text():
            time.sleep(0.1)
        if a.target == "server":
            pids = [p for x in started for p, _ in bench.descendants(x.proc.pid)]
        else:
            pids = [lg.pid]
        # system-wide (per-CPU events): attaching to each of httpd's ~11,000
        # threads would need more file descriptors than allowed here; the
        # report keeps only these pids
        bench.log(f"perf record -a -g for {a.seconds} s, reporting {len(pids)} processes")
        subprocess.run(["perf", "record", "-q", "-a", "--call-graph", a.call_graph,
                        "-F", str(a.freq), "-o", str(data),
                        "--", "sleep", str(a.seconds)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res_line = lg.communicate(timeout=300)[0].strip().splitlines()[-1]
    finally:
        for x in reversed(started):
            x.stop()
    rep = summarize(data, set(pids), a.target)
    res = json.loads(res_line)
    out.write_text(f"scenario {sc['id']} ({sc['name']}), {a.server}, perf on the {a.target}, "
                   f"{a.seconds} s at {a.freq} Hz, call graph {a.call_graph}; "
                   f"mod_sse.so sha256 {sha}…, work tree at {commit}; "
                   f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\nloadgen result: {json.dumps(res)}\n\n"
                   + rep + "\n")
    bench.log(f"wrote {out}")
    if not a.keep_data:
        data.unlink()
    import shutil
    for x in started:
        shutil.rmtree(x.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
