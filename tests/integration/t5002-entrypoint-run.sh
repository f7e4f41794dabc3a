#!/usr/bin/env bash
# entrypoint.sh in run mode: runs `ferry -c $FERRY_CONFIG run` (or the given arguments)
# once and exits with ferry's status: 0, 1 after an unwound failure, 2 from ferry itself.
. "$(dirname "$0")/../lib.sh"
ENTRY=$SRC_DIR/entrypoint.sh
[ -x "$FERRY_BIN" ] || skip "ferry not built"
[ -e "$FERRY_BUILD/plugins/exec.so" ] || skip "exec plugin not built"
ferry_on_path
export BUCKET_NAME=ferry-entry-bucket ORG_ID=4242
entry() { env --default-signal=INT "$ENTRY" "$@"; }

# Stages append their name to $T/order; "fail" decides whether the last one fails.
cat >"$T/p.ini" <<INI
[pipeline]
name = entry-run-\${ORG_ID}
state_dir = $T/state

[stage first]
plugin = exec
command = sh -c 'echo first >>$T/order'
undo = sh -c 'echo undo-first >>$T/order'
cleanup = sh -c 'echo cleanup-first >>$T/order'

[stage second]
plugin = exec
command = sh -c 'echo second >>$T/order; test ! -e $T/fail'
INI
export FERRY_CONFIG=$T/p.ini

# Default mode: the whole pipeline, status 0.
rc=0
entry >"$T/out" 2>"$T/err" || rc=$?
assert_eq 0 $rc "status of a successful run"
assert_eq "first second cleanup-first" "$(tr '\n' ' ' <"$T/order" | sed 's/ $//')" "stages run"
assert_contains "$T/err" "info entrypoint starting ferry config=$T/p.ini args=run"
assert_contains "$T/err" "info entrypoint ferry exited status=0"
assert_contains "$T/err" "ferry run end"

# A failing stage: ferry unwinds, the entrypoint exits 1 like ferry.
rm -f "$T/order"
touch "$T/fail"
rc=0
entry >"$T/out" 2>"$T/err" || rc=$?
assert_eq 1 $rc "status of a failed run"
assert_eq "first second undo-first cleanup-first" "$(tr '\n' ' ' <"$T/order" | sed 's/ $//')" "unwinding"
assert_contains "$T/err" "info entrypoint ferry exited status=1"
rm -f "$T/fail"

# Arguments replace `run`: a dry run changes nothing, `list` prints the stages.
rm -f "$T/order"
before=$(tree_digest "$T/state")
rc=0
entry run --dry-run >"$T/out" 2>"$T/err" || rc=$?
assert_eq 0 $rc "status of run --dry-run"
[ ! -e "$T/order" ] || fail "a dry run ran a stage"
assert_eq "$before" "$(tree_digest "$T/state")" "state_dir after a dry run"
rc=0
entry list >"$T/out" 2>"$T/err" || rc=$?
assert_eq 0 $rc "status of list"
assert_contains "$T/out" "second"

# ferry's own usage error is the entrypoint's status too.
rc=0
entry --no-such-option >"$T/out" 2>"$T/err" || rc=$?
assert_eq 2 $rc "status of a ferry usage error"

# FERRY_CONFIG defaults to /etc/ferry/pipeline.ini (the image's copy).
rc=0
env -u FERRY_CONFIG --default-signal=INT "$ENTRY" list >"$T/out" 2>"$T/err" || rc=$?
assert_contains "$T/err" "config=/etc/ferry/pipeline.ini"

assert_no_secrets "$T"
valgrind_verdict
