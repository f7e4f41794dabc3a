#!/usr/bin/env bash
# t7005: a failing org exits 1 and gets a failed- record that does not mark the period done;
# after [work] retries failures it is left alone until the next period (exit 0, an error
# line); `ferry status --org` shows the records; --max-runs; a worker without --once
# serves its metrics over HTTP, sleeps between passes and exits 143 on SIGTERM.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/work.sh"
work_exec_setup 3
period=$(date -u +%Y-%m-%d)
touch "$T/fail.o2"

for n in 1 2 3; do
	worker w --once --workers 2
	rc=0; wait "$WORKER_PID" || rc=$?
	[ $rc = 1 ] || { cat "$T/w.err" >&2; fail "pass $n exited $rc, expected 1"; }
	assert_contains "$T/w.err" "error work org failed: act: "
	assert_contains "$T/w.err" "org=o2 exit=1"
	assert_eq $n "$(ws3 ls -r ferry-runs/o2/ | grep -c "$period\.failed-")" "failed records of o2"
done
assert_contains "$T/w.err" "due=1 done=2"
ws3 head "ferry-runs/o2/$period.json" >/dev/null 2>&1 && fail "a failed run marked o2 done"
ws3 head "ferry-runs/o1/$period.json" >/dev/null || fail "o1 has no record"
assert_fleet_clean

# retries (3) used up: left alone, not a failure of this worker
worker w --once
rc=0; wait "$WORKER_PID" || rc=$?
[ $rc = 0 ] || { cat "$T/w.err" >&2; fail "pass after the retries exited $rc"; }
assert_contains "$T/w.err" "due=0 done=2 given_up=1"
assert_contains "$T/w.err" "orgs left alone until the next period after failing [work] retries times count=1"
ferry -c "$PIPE" work --dry-run >"$T/out" 2>/dev/null
grep -qE '^o2 +given up$' "$T/out" || fail "dry run does not show o2 given up"

# the operator's view, from any machine
rc=0
ferry -c "$PIPE" status --org o2 >"$T/st" 2>"$T/st.err" || rc=$?
[ $rc = 0 ] || { cat "$T/st.err" >&2; fail "status --org exited $rc"; }
assert_contains "$T/st" "org o2: 3 run records under 'ferry-runs/o2/'"
assert_eq 3 "$(grep -cE "^$period +failed +1 " "$T/st")" "failed runs shown"
assert_contains "$T/st" "error: act: run command 'sh' exited with status 1"
assert_contains "$T/st" "lock org-data/o2.db.lock: free"
ferry -c "$PIPE" status --org o1 --last 1 >"$T/st" 2>&1 || fail "status --org o1"
grep -qE "^$period +ok +0 " "$T/st" || { cat "$T/st" >&2; fail "o1's run not shown"; }
grep -qE '^  act +exec +ok ' "$T/st" || fail "o1's stages not shown"
assert_exit 2 ferry -c "$PIPE" status --org ../x

# --max-runs: one pipeline, then exit (another records prefix makes every org due again)
worker w --once --workers 2 --max-runs 1 -o work.records=again/
rc=0; wait "$WORKER_PID" || rc=$?
[ $rc = 0 ] || [ $rc = 1 ] || fail "--max-runs 1 exited $rc"
assert_eq 1 "$(grep -cE 'org (done|failed)' "$T/w.err")" "pipelines run with --max-runs 1"

# a long-running worker: metrics over HTTP, an idle sleep, SIGTERM
rm -f "$T/fail.o2"
port=$(free_port)
worker d -o work.metrics_port=$port -o work.idle=1h -o work.records=daemon/
n=0
# the log first: metrics fetched before the pass ended could miss its last run
until grep -q 'idle until the next pass' "$T/d.err" &&
	curl -fs "http://127.0.0.1:$port/metrics" -o "$T/metrics" && grep -q '^ferry_work_passes_total 1' "$T/metrics"; do
	n=$((n + 1)); [ $n -lt 600 ] || { cat "$T/d.err" >&2; fail "no metrics after a pass"; }
	kill -0 "$WORKER_PID" || { cat "$T/d.err" >&2; fail "the worker exited"; }
	sleep 0.1
done
assert_contains "$T/metrics" 'ferry_work_runs_total{result="ok"} 3'
assert_contains "$T/metrics" '# TYPE ferry_work_stage_seconds_total counter'
assert_contains "$T/metrics" 'ferry_work_stage_runs_total{stage="act"} 3'
assert_contains "$T/metrics" 'ferry_work_stage_runs_total{stage="lock"} 3'
assert_contains "$T/metrics" 'ferry_work_orgs{state="due"} 3'
cmp -s "$T/metrics" "$T/d/metrics.prom" || fail "the endpoint and the metrics file differ"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/other")
assert_eq 404 "$code" "status of another path"
kill -TERM "$WORKER_PID"
rc=0; wait "$WORKER_PID" || rc=$?
assert_eq 143 $rc "exit of an idle worker after SIGTERM"
assert_fleet_clean
valgrind_verdict
