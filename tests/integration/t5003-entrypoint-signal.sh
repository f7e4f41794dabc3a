#!/usr/bin/env bash
# SIGTERM/SIGINT to entrypoint.sh (alone, and as tini's child like in the image) reach
# ferry, which unwinds before exiting 143/130; a second SIGTERM does not cut it short.
. "$(dirname "$0")/../lib.sh"
ENTRY=$SRC_DIR/entrypoint.sh
[ -x "$FERRY_BIN" ] || skip "ferry not built"
[ -e "$FERRY_BUILD/plugins/exec.so" ] || skip "exec plugin not built"
ferry_on_path
export BUCKET_NAME=ferry-entry-bucket ORG_ID=4242

# first: undo takes a moment, so a second signal lands during unwinding.
# long: records its pid, then sleeps until cancelled.
cat >"$T/p.ini" <<INI
[pipeline]
name = entry-signal
state_dir = $T/state

[stage first]
plugin = exec
command = touch $T/first.ran
undo = sh -c 'touch $T/first.undoing; sleep 1; touch $T/first.undone'
cleanup = touch $T/first.cleaned

[stage long]
plugin = exec
command = sh -c 'echo \$\$ >$T/long.pid; touch $T/long.started; exec sleep 60'
cleanup = touch $T/long.cleaned

[stage never]
plugin = exec
command = touch $T/never.ran
INI
export FERRY_CONFIG=$T/p.ini

wait_for() { local i; for i in $(seq 1 200); do [ -e "$1" ] && return 0; sleep 0.1; done; fail "timed out waiting for $1"; }
alive() { kill -0 "$1" 2>/dev/null; }

# one_case LABEL SIGNAL EXPECTED [tini] [twice]
one_case() {
	local label=$1 sig=$2 want=$3 how=${4:-} twice=${5:-} pid rc ferry_pid
	rm -f "$T"/*.ran "$T"/*.undoing "$T"/*.undone "$T"/*.cleaned "$T"/*.started "$T"/long.pid
	if [ "$how" = tini ]; then
		env --default-signal=INT tini -s -- "$ENTRY" >"$T/out" 2>"$T/err" &
	else
		env --default-signal=INT "$ENTRY" >"$T/out" 2>"$T/err" &
	fi
	pid=$!
	wait_for "$T/long.started"
	kill -s "$sig" "$pid"
	if [ -n "$twice" ]; then
		wait_for "$T/first.undoing"
		kill -s "$sig" "$pid" 2>/dev/null || true
	fi
	rc=0
	wait "$pid" || rc=$?
	assert_eq "$want" "$rc" "$label: exit status"
	assert_contains "$T/err" "forwarding signal to ferry signal=SIG$sig"
	assert_contains "$T/err" "info entrypoint ferry exited status=$want"
	[ -e "$T/first.undone" ] || fail "$label: first was not undone"
	[ -e "$T/first.cleaned" ] || fail "$label: first was not cleaned up"
	[ -e "$T/long.cleaned" ] || fail "$label: long was not cleaned up"
	[ ! -e "$T/never.ran" ] || fail "$label: a stage ran after the signal"
	# Nothing left running: not the stage's command, not ferry.
	! alive "$(cat "$T/long.pid")" || fail "$label: the long stage's command is still running"
	ferry_pid=$(sed -n 's/.*forwarding signal to ferry .* pid=\([0-9]*\).*/\1/p' "$T/err" | head -1)
	[ -n "$ferry_pid" ] || fail "$label: no ferry pid logged"
	! alive "$ferry_pid" || fail "$label: ferry is still running"
	note "$label: exit $rc after unwinding"
}

one_case "SIGTERM" TERM 143
one_case "SIGINT" INT 130
one_case "SIGTERM twice" TERM 143 "" twice
assert_eq 2 "$(grep -c 'forwarding signal to ferry' "$T/err")" "signals forwarded when sent twice"
if command -v tini >/dev/null; then
	one_case "SIGTERM via tini" TERM 143 tini
	one_case "SIGINT via tini" INT 130 tini
else
	note "tini not installed: the image's PID 1 path is not covered here (apt-get install tini)"
fi

assert_no_secrets "$T"
valgrind_verdict
