#!/usr/bin/env bash
# FERRY_MODE=serve: entrypoint.sh stays up without running the pipeline (for SSH sessions),
# even with an incomplete environment (a warning names what is missing), and stops on
# SIGTERM/SIGINT with 143/130, leaving no child behind.
. "$(dirname "$0")/../lib.sh"
ENTRY=$SRC_DIR/entrypoint.sh
[ -x "$FERRY_BIN" ] || skip "ferry not built"
[ -e "$FERRY_BUILD/plugins/exec.so" ] || skip "exec plugin not built"
ferry_on_path
export BUCKET_NAME=ferry-entry-bucket ORG_ID=4242

cat >"$T/p.ini" <<INI
[pipeline]
name = entry-serve
state_dir = $T/state

[stage mark]
plugin = exec
command = touch $T/ran
INI
export FERRY_CONFIG=$T/p.ini

children() { # pids whose parent is $1 (stat: "pid (comm) state ppid ...", comm may hold spaces)
	cat /proc/[0-9]*/stat 2>/dev/null | sed -E 's/ \(.*\) / /' | awk -v p="$1" '$3 == p { print $1 }'
}
wait_log() { local i; for i in $(seq 1 100); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; fail "'$1' never showed '$2'"; }

# serve_case LABEL SIGNAL EXPECTED [env-args...]
serve_case() {
	local label=$1 sig=$2 want=$3 pid rc kids k
	shift 3
	rm -f "$T/ran"
	env --default-signal=INT "$@" FERRY_MODE=serve "$ENTRY" extra-arg >"$T/out" 2>"$T/err" &
	pid=$!
	wait_log "$T/err" "info entrypoint serving"
	# An operator's command in an SSH session works meanwhile (same config).
	ferry list >"$T/list.out" 2>&1 || fail "$label: ferry list failed while serving"
	assert_contains "$T/list.out" "mark"
	kill -0 "$pid" 2>/dev/null || fail "$label: entrypoint exited in serve mode"
	kids=$(children "$pid")
	[ -n "$kids" ] || fail "$label: no sleeping child while serving"
	kill -s "$sig" "$pid"
	rc=0
	wait "$pid" || rc=$?
	assert_eq "$want" "$rc" "$label: exit status"
	assert_contains "$T/err" "info entrypoint stopping signal=SIG$sig"
	assert_contains "$T/err" "warn entrypoint arguments are ignored in serve mode"
	for k in $kids; do
		! kill -0 "$k" 2>/dev/null || fail "$label: child $k still running after the entrypoint exited"
	done
	[ ! -e "$T/ran" ] || fail "$label: serve mode ran the pipeline"
	note "$label: exit $rc"
}

serve_case "serve, SIGTERM" TERM 143
serve_case "serve, SIGINT" INT 130
serve_case "serve, no credentials" TERM 143 -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY
assert_contains "$T/err" "warn entrypoint missing environment variable 'AWS_ACCESS_KEY_ID'"
assert_contains "$T/err" "warn entrypoint environment incomplete"

assert_no_secrets "$T"
