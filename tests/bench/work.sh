#!/usr/bin/env bash
# tests/bench/work.sh: `ferry work` throughput (issue 18): one pass over N small orgs
# (default 40, tests/gen_orgdb.py, 150 contacts each: tests/work.sh's work_setup) with the default pipeline, by
#   - one worker process running one pipeline at a time (--workers 1),
#   - one worker process running two at a time (--workers 2),
#   - two worker processes of one pipeline each, as two machines would (own state dirs),
# each cold (no replica) against one serialised moto_server (conditional writes are atomic
# only so), with a fresh records prefix per run so every org is due. Prints orgs per minute
# and the mean seconds per stage from the workers' metrics files. Not a test: no asserts.
#   bash tests/bench/work.sh            WORK_BENCH_ORGS=80 bash tests/bench/work.sh
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
. "$TESTS_DIR/work.sh"
N=${WORK_BENCH_ORGS:-40}
work_setup "$N" none
echo "# $N orgs, $(stat -c %s "$T/o01.db") bytes each, moto_server (serialised) on 127.0.0.1"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
stages() { # mean seconds per run of each stage over the given metrics files
	python3 - "$@" <<'PY'
import re, sys
secs, runs = {}, {}
for f in sys.argv[1:]:
    for line in open(f):
        m = re.match(r'ferry_work_stage_(seconds|runs)_total\{stage="([^"]+)"\} (\S+)', line)
        if m:
            d = secs if m.group(1) == "seconds" else runs
            d[m.group(2)] = d.get(m.group(2), 0) + float(m.group(3))
print("    " + " ".join(f"{k}={secs[k] / runs[k]:.3f}s" for k in secs if runs.get(k)))
PY
}
run() { # run NAME PROCESSES WORKERS-EACH
	local name=$1 procs=$2 each=$3 t p pids=() ok
	t=$(date +%s%N)
	for p in $(seq 1 "$procs"); do
		mkdir -p "$T/$name-$p"
		FERRY_STATE_DIR=$T/$name-$p ferry -c "$PIPE" -o "work.records=bench-$name/" work --once \
			--workers "$each" >/dev/null 2>"$T/$name-$p.err" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || echo "worker exited $?"; done
	ms=$(ms "$t")
	ok=$(cat "$T/$name"-*.err | grep -c 'info work org done ')
	awk -v n="$name ($procs x --workers $each)" -v ok="$ok" -v ms="$ms" \
		'BEGIN { printf "%-34s %3d orgs in %6.1f s: %6.1f orgs/min\n", n, ok, ms / 1000, ok * 60000 / ms }'
	stages "$T/$name"-*/metrics.prom
}
run one 1 1
run two-slots 1 2
run two-procs 2 1
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
