#!/usr/bin/env python3
"""What direct writes buy: mod_sse with `SSEDirectWrite on` (the default) and
`off`, side by side in one run.

    /usr/bin/python3 bench/direct.py                 # scenarios 1 and 2, 3 rounds
    /usr/bin/python3 bench/direct.py --only 1 --rounds 1

With `off` every event goes through the stream's own thread and the output
filters: the dispatcher queues it and wakes that thread, which writes and
flushes. With `on` (plain HTTP/1.x streams) the dispatcher writes the
stream's pending events to the socket itself, in one `sendmsg`. Same server
configuration as `make bench` otherwise, same load generator, alternating
which variant goes first. Writes bench/results/direct.md (ratios on/off
within this run) and appends the raw loadgen lines to direct.jsonl.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


class ModSseFilters(bench.ModSse):
    kind = "mod_sse-filters"

    def write_config(self):
        super().write_config()
        conf = self.dir / "httpd.conf"
        text = conf.read_text()
        marker = "    SSEInitialReplay 0\n"
        assert text.count(marker) == 1, "bench.py's stream location changed"
        conf.write_text(text.replace(marker, marker + "    SSEDirectWrite off\n"))


VARIANTS = {"on": bench.ModSse, "off": ModSseFilters}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="1,2", help="comma-separated scenario ids (1-4)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    bench.RESULTS.mkdir(exist_ok=True)
    bench.LOGS.mkdir(exist_ok=True)
    sha = bench.snapshot_module()
    runs = {}
    with open(bench.RESULTS / "direct.jsonl", "a") as raw:
        for rnd in range(a.rounds):
            for sid in a.only.split(","):
                sc = next(s for s in bench.SCENARIOS if str(s["id"]) == sid)
                order = ["on", "off"] if rnd % 2 == 0 else ["off", "on"]
                for v in order:
                    bench.SERVERS["mod_sse"] = VARIANTS[v]
                    r = bench.run_one(sc, "mod_sse", False, rnd + 1)
                    r["direct"] = v
                    raw.write(json.dumps(r) + "\n")
                    runs.setdefault((sid, v), []).append(r)
    bench.SERVERS["mod_sse"] = bench.ModSse

    lines = [f"# SSEDirectWrite on vs off ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"mod_sse.so sha256 {sha}…; {a.rounds} round(s) per scenario, medians; "
             "ratio = on / off within this run.", "",
             "| scenario | direct | published/s | delivered/s | loss | p50 | p99 | CPU µs / delivered |",
             "|---|---|---|---|---|---|---|---|"]
    for sid in a.only.split(","):
        agg = {v: bench.aggregate(runs[(sid, v)]) for v in ("on", "off") if (sid, v) in runs}
        for v, r in agg.items():
            if "error" in r:
                lines.append(f"| {sid} | {v} | error: {r['error']} | | | | | |")
                continue
            lines.append(f"| {sid} | {v} | {r['published_per_s']:,.0f} | {r['delivered_per_s']:,.0f} | "
                         f"{r['loss']} | {bench.fmt_lat(r['lat_us']['p50'])} | "
                         f"{bench.fmt_lat(r['lat_us']['p99'])} | {r['cpu_us_per_delivered']:.2f} |")
        if all(v in agg and "error" not in agg[v] for v in ("on", "off")):
            on, off = agg["on"], agg["off"]
            ratio = lambda x, y: f"{x / y:.2f}" if y else "-"  # noqa: E731
            lines.append(f"| **ratio on/off** | | {ratio(on['published_per_s'], off['published_per_s'])} | "
                         f"{ratio(on['delivered_per_s'], off['delivered_per_s'])} | | "
                         f"{ratio(on['lat_us']['p50'], off['lat_us']['p50'])} | "
                         f"{ratio(on['lat_us']['p99'], off['lat_us']['p99'])} | "
                         f"{ratio(on['cpu_us_per_delivered'], off['cpu_us_per_delivered'])} |")
    (bench.RESULTS / "direct.md").write_text("\n".join(lines) + "\n")
    bench.log(f"wrote {bench.RESULTS / 'direct.md'}")


if __name__ == "__main__":
    main()
