#!/usr/bin/env bash
# `ferry status` as the operator reads it: the age of the last run, which stages ran in it
# and which were carried over, the replica against the last sync ("N pages changed since
# the last sync (not pushed)"), recent runs; a SIGKILLed run shows as killed (the run lock
# tells), not "running" for ever; a deadline says so; --json is one JSON document; every
# line fits 80 columns.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
e2e_setup 600
fits80() { awk -v f="$1" 'length > 80 { print f ": " length ": " $0; bad = 1 } END { exit bad }' "$1" ||
	fail "status lines wider than 80 columns"; }
jq_() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

ferry -c "$PIPE" status >"$T/s0" 2>&1 || fail "status before any run"
assert_contains "$T/s0" "no run journal at"

ferry -c "$PIPE" run >"$T/out" 2>"$T/err" || { tail -20 "$T/err"; fail "whole run"; }
ferry -c "$PIPE" status >"$T/s1" 2>&1 || { cat "$T/s1"; fail "status after a run"; }
assert_contains "$T/s1" "ok (exit 0), ended "
assert_contains "$T/s1" " s ago"
grep -qE '^push +ok +[0-9.]+s  ran$' "$T/s1" || { cat "$T/s1"; fail "push not shown as ran"; }
assert_contains "$T/s1" "replica   in sync (etag "
grep -qE "^  20[0-9-]+ [0-9:]+  ok +0 +[0-9.]+s  lock,mount,pull,schedule,push,unlock$" "$T/s1" ||
	{ cat "$T/s1"; fail "history line of the whole run"; }
fits80 "$T/s1"

# a manual schedule: the replica is ahead of the last sync; other stages carried over
ferry -c "$PIPE" run schedule --today 2026-03-09 --run-id manual >"$T/out" 2>"$T/err" ||
	{ tail -20 "$T/err"; fail "manual schedule"; }
ferry -c "$PIPE" status >"$T/s2" 2>&1 || { cat "$T/s2"; fail "status after a manual schedule"; }
grep -qE '^schedule +ok +[0-9.]+s  ran$' "$T/s2" || { cat "$T/s2"; fail "schedule not shown as ran"; }
grep -qE '^push +ok +- +carried over$' "$T/s2" || { cat "$T/s2"; fail "push not carried over"; }
grep -qE '^replica   [1-9][0-9]* pages changed since the last sync \(not pushed\)$' "$T/s2" ||
	{ cat "$T/s2"; fail "replica line after a manual schedule"; }
ferry -c "$PIPE" status --json >"$T/j2" 2>"$T/err" || { cat "$T/err"; fail "status --json"; }
[ "$(jq_ "$T/j2" 'd["replica"]["changed_pages"] > 0')" = True ] || fail "json changed_pages"
assert_eq ok "$(jq_ "$T/j2" 'd["state"]')" "json state"
assert_eq 2 "$(jq_ "$T/j2" 'len(d["history"])')" "json history"
ferry -c "$PIPE" status -v >"$T/s2v" 2>&1 || fail "status -v"
assert_contains "$T/s2v" "   origin_etag="

# SIGKILL mid-run: killed, not running
rc=0; FERRY_FAILPOINT=push.before_fsync:kill ferry -c "$PIPE" -o schedule.today=2026-03-20 run >"$T/out" 2>"$T/err" || rc=$?
assert_eq 137 $rc "SIGKILLed run"
ferry -c "$PIPE" status >"$T/s3" 2>&1 || true
assert_contains "$T/s3" "killed or crashed: started"
assert_not_contains "$T/s3" "running now"
ferry -c "$PIPE" status --json >"$T/j3" 2>/dev/null || true
assert_eq killed "$(jq_ "$T/j3" 'd["state"]')" "json state after SIGKILL"
fits80 "$T/s3"
ferry -c "$PIPE" run unlock >"$T/out" 2>"$T/err" || { tail -20 "$T/err"; fail "unlock after the kill"; }
assert_no_lock
fusermount3 -u "$FERRY_MOUNTPOINT" 2>/dev/null || fusermount3 -uz "$FERRY_MOUNTPOINT" 2>/dev/null || true

# a live run: running, with its pid
FERRY_FAILPOINT=schedule.before_run:sleep=3000 ferry_bg -c "$PIPE" run >"$T/out4" 2>"$T/err4"
for _ in $(seq 100); do grep -q 'failpoint hit' "$T/err4" && break; sleep 0.05; done
ferry -c "$PIPE" status >"$T/s4" 2>&1 || true
assert_contains "$T/s4" "running now (pid $FERRY_PID)"
wait "$FERRY_PID" || fail "the live run failed"

# the deadline: said in the log, the journal and status
rc=0; FERRY_FAILPOINT=schedule.before_run:sleep=2500 ferry -c "$PIPE" -o pipeline.deadline=2s run \
	>"$T/out" 2>"$T/err5" || rc=$?
assert_eq 1 $rc "run past its deadline"
assert_contains "$T/err5" "deadline 2s reached; unwinding"
ferry -c "$PIPE" status >"$T/s5" 2>&1 || true
assert_contains "$T/s5" "deadline 2s reached"
assert_no_lock
assert_unmounted
