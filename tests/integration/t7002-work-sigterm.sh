#!/usr/bin/env bash
# t7002: SIGTERM to a worker while two pipelines run: both unwind (unmount, cancelled record,
# lock released), the worker starts no other org and exits 143; a later `--once` pass runs
# the rest, the interrupted orgs too.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
. "$TESTS_DIR/work.sh"
work_setup 5 wait

worker w1 --once --workers 2
n=0
until [ "$(ls "$T"/started.* 2>/dev/null | wc -l)" -ge 2 ]; do
	n=$((n + 1)); [ $n -lt 600 ] || { cat "$T/w1.err" >&2; fail "no two pipelines started"; }
	kill -0 "$WORKER_PID" 2>/dev/null || { cat "$T/w1.err" >&2; fail "worker exited early"; }
	sleep 0.1
done
kill -TERM "$WORKER_PID"
rc=0; wait "$WORKER_PID" || rc=$?
[ $rc = 143 ] || { cat "$T/w1.err" >&2; fail "worker exited $rc after SIGTERM, expected 143"; }
assert_contains "$T/w1.err" "signal: finishing the running pipelines"
assert_eq 2 "$(grep -c 'org cancelled' "$T/w1.err")" "cancelled orgs"
assert_eq 2 "$(grep -c '^start ' "$T/intervals")" "pipelines started"
assert_eq 2 "$(grep -c '^end o[0-9]* cancelled$' "$T/intervals")" "pipelines cancelled in the probe"
assert_eq 0 "$(done_records)" "done records after SIGTERM"
assert_eq 2 "$(ws3 ls -r ferry-runs/ | grep -c '\.cancelled-')" "cancelled records"
for o in $(ls "$T"/started.* | sed 's/.*started\.//'); do
	grep -q "released lock" "$T/w1/orgs/$o/work.log" || { cat "$T/w1/orgs/$o/work.log" >&2; fail "lock of $o not released"; }
	grep -q "cleanup ok" "$T/w1/orgs/$o/work.log" || fail "org $o did not unwind"
done
assert_fleet_clean

# the next pass takes them all, the cancelled ones included
rm -f "$T"/started.*
touch "$T/go"
worker w1 --once --workers 2
rc=0; wait "$WORKER_PID" || rc=$?
[ $rc = 0 ] || { cat "$T/w1.err" >&2; fail "second pass exited $rc"; }
assert_eq 5 "$(done_records)" "done records after the second pass"
assert_contains "$T/w1.err" "due=5 done=0"
assert_no_overlap
assert_fleet_clean
valgrind_verdict
