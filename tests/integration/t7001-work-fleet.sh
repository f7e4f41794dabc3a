#!/usr/bin/env bash
# t7001: three workers (two pipelines each) x 12 orgs against one S3: every org runs exactly
# once in the period (one run record each, written by whoever ran it), no org runs two
# pipelines at once (each run checks the lock object holds its own nonce), every lock is
# released and nothing stays mounted.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
. "$TESTS_DIR/work.sh"
work_setup 12

for w in w1 w2 w3; do
	worker $w --once --workers 2
	eval "pid_$w=$WORKER_PID"
done
for w in w1 w2 w3; do
	eval "pid=\$pid_$w"
	rc=0; wait "$pid" || rc=$?
	[ $rc = 0 ] || { tail -30 "$T/$w.err" >&2; fail "worker $w exited $rc"; }
done

# exactly one record per org for the period, and one pipeline per org across the fleet
assert_eq 12 "$(done_records)" "done records"
period=$(date -u +%Y-%m-%d)
for i in $(seq -w 1 12); do
	ws3 get "ferry-runs/o$i/$period.json" "$T/rec.json" || fail "no record for o$i"
	python3 - "$T/rec.json" "o$i" <<'PY' || fail "bad record for o$i"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["org"] == sys.argv[2] and r["result"] == "ok" and r["exit"] == 0, r
assert [s["name"] for s in r["stages"]] == ["lock", "mount", "pull", "probe", "schedule", "push"], r
assert all(s["result"] == "ok" for s in r["stages"]), r
for k in ("run_id", "worker", "host", "started_at", "ended_at", "seconds", "bytes"):
    assert k in r, k
PY
done
ran=$(cat "$T"/w?.err | grep -c 'info work org done ')
assert_eq 12 "$ran" "pipelines run by the fleet"
assert_eq 12 "$(grep -c '^start ' "$T/intervals")" "probe starts"
for i in $(seq -w 1 12); do
	assert_eq 1 "$(grep -c "^start o$i\$" "$T/intervals")" "pipelines of o$i"
done
assert_no_overlap
assert_fleet_clean
ws3 ls -r ferry-runs/ | grep -q 'failed-' && fail "a run failed"
# each worker's metrics file counts what it ran
sum=0
for w in w1 w2 w3; do
	n=$(sed -n 's/^ferry_work_runs_total{result="ok"} //p' "$T/$w/metrics.prom")
	sum=$((sum + n))
done
assert_eq 12 "$sum" "ok runs in the metrics files"
# a second pass finds nothing due and runs nothing
worker w1 --once --workers 2
rc=0; wait "$WORKER_PID" || rc=$?
assert_eq 0 $rc "exit of a pass with nothing due"
assert_contains "$T/w1.err" "due=0 done=12"
assert_eq 12 "$(done_records)" "done records after a second pass"
valgrind_verdict
