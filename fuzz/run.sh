#!/bin/sh
# fuzz/run.sh SECONDS TARGET... -- run each built fuzz target (fuzz/bin/TARGET,
# see `make fuzz`) for SECONDS, one after the other, from the repository root.
#
# Seeds are read from fuzz/corpus/TARGET/ (kept in the repository, never
# written); what a run finds new goes to fuzz/work/TARGET/, which later runs
# start from too. A crash, a sanitizer report or a failed property leaves
# its input in fuzz/artifacts/ and fails the run (after the other targets
# have run). FUZZ_JOBS=2 runs two targets at a time; FUZZ_NICE=19 runs
# them under nice. FUZZ_SEED=N fixes libFuzzer's random seed (CI does, so
# that its verdict depends on the code and the seed corpus alone, not on
# luck: a slower machine explores a prefix of what a faster one does);
# unset, every run explores anew.
set -u
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: fuzz/run.sh SECONDS TARGET..." >&2; exit 2; }
secs=$1
shift
jobs=${FUZZ_JOBS:-1}
nice=${FUZZ_NICE:-0}
seed=
[ -n "${FUZZ_SEED:-}" ] && seed="-seed=$FUZZ_SEED"
mkdir -p fuzz/artifacts fuzz/work

run_one() {
    t=$1
    mkdir -p "fuzz/work/$t"
    dict=
    [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
    log="fuzz/work/$t.log"
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb keeps a
    # runaway allocation from taking the machine.
    nice -n "$nice" "fuzz/bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t-" $seed $dict \
        "fuzz/work/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz: $t: ok, ${secs}s, ${runs:-?} runs, ${cov:-cov: ?}"
    else
        echo "fuzz: $t: FAILED (exit $rc), log fuzz/work/$t.log:"
        grep -B2 -A30 -m1 'ERROR\|fuzz property failed\|runtime error\|assertion failed' "$log" \
            || tail -40 "$log"
    fi
    return $rc
}

failed=0
if [ "$jobs" -le 1 ]; then
    for t in "$@"; do
        run_one "$t" || failed=1
    done
else
    # A pool of $jobs at a time: the list in batches.
    while [ $# -gt 0 ]; do
        pids=
        i=0
        while [ $i -lt "$jobs" ] && [ $# -gt 0 ]; do
            run_one "$1" &
            pids="$pids $!"
            shift
            i=$((i + 1))
        done
        for p in $pids; do
            wait "$p" || failed=1
        done
    done
fi
[ $failed -eq 0 ] || { echo "fuzz: failures above"; exit 1; }
echo "fuzz: all targets ok"
