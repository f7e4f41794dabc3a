#!/usr/bin/env bash
# SIGTERM/SIGINT during a long stage cancel it and unwind (exit 143/130); a second signal
# during unwinding does not skip it; the pipeline deadline unwinds with exit 1.
. "$(dirname "$0")/../lib.sh"

cat >"$T/p.ini" <<INI
[pipeline]
name = sig
state_dir = $T/state
deadline = ${DEADLINE:-0}

[stage first]
plugin = exec
command = touch $T/first.ran
undo = sh -c 'sleep 1; touch $T/first.undone'
cleanup = touch $T/first.cleaned

[stage long]
plugin = exec
command = sh -c 'touch $T/long.started; exec sleep 60'
cleanup = touch $T/long.cleaned

[stage never]
plugin = exec
command = touch $T/never.ran
INI

wait_for() { local i; for i in $(seq 1 100); do [ -e "$1" ] && return 0; sleep 0.1; done; fail "timed out waiting for $1"; }

for sig in TERM INT; do
	rm -f "$T"/*.ran "$T"/*.undone "$T"/*.cleaned "$T"/*.started
	ferry_bg -c "$T/p.ini" run >"$T/out" 2>"$T/err"
	pid=$FERRY_PID
	wait_for "$T/long.started"
	start=$(date +%s)
	kill -$sig $pid
	if [ $sig = TERM ]; then
		# a second signal while first's undo (1 s) runs must not skip unwinding
		sleep 0.5
		kill -TERM $pid 2>/dev/null || true
	fi
	rc=0
	wait $pid || rc=$?
	[ $sig = TERM ] && want=143 || want=130
	assert_eq $want $rc "exit code after SIG$sig"
	[ $(( $(date +%s) - start )) -lt 20 ] || fail "cancellation took too long"
	[ -e "$T/first.undone" ] || fail "first was not undone after SIG$sig"
	[ -e "$T/first.cleaned" ] || fail "first was not cleaned after SIG$sig"
	[ -e "$T/long.cleaned" ] || fail "long was not cleaned after SIG$sig"
	[ ! -e "$T/never.ran" ] || fail "a stage ran after SIG$sig"
	assert_contains "$T/err" "run command cancelled"
	python3 - "$T/state/journal.json" <<'PY' || fail "journal after signal"
import json, sys
j = json.load(open(sys.argv[1]))
ev = [(e["op"], e["stage"], e["result"]) for e in j["events"]]
assert ev == [("run", "first", "ok"), ("run", "long", "failed"), ("cleanup", "long", "ok"),
              ("undo", "first", "ok"), ("cleanup", "first", "ok")], ev
assert j["result"] == "cancelled", j["result"]
PY
done

# The deadline cancels the long stage and unwinds; exit 1.
rm -f "$T"/*.ran "$T"/*.undone "$T"/*.cleaned
sed -i 's/^deadline = .*/deadline = 1s/' "$T/p.ini"
rc=0
ferry -c "$T/p.ini" run >"$T/out" 2>"$T/err" || rc=$?
assert_eq 1 $rc "exit code after the deadline"
[ -e "$T/first.undone" ] && [ -e "$T/long.cleaned" ] || fail "deadline did not unwind"
[ ! -e "$T/never.ran" ] || fail "a stage ran after the deadline"
valgrind_verdict
