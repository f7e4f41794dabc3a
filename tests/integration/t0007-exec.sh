#!/usr/bin/env bash
# The exec stage: no shell unless shell = true (hostile values stay inert), timeout,
# facts in and out, cwd, a missing program, and --KEY VALUE shorthands after one stage.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/work"
export HOSTILE="x; touch $T/pwned1 \$(touch $T/pwned2) \`touch $T/pwned3\` | touch $T/pwned4"
cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state

[stage hostile]
plugin = exec
command = printf '%s\n' \${HOSTILE}

[stage where]
plugin = exec
cwd = work
command = sh -c 'pwd > here'

[stage sh]
plugin = exec
shell = true
command = echo "\$FERRY_STAGE \$FERRY_OP" > $T/shell.out && echo ferry-fact n=7
INI
ferry -c "$T/p.ini" run >"$T/out" 2>"$T/err" || fail "exec pipeline failed: $(cat "$T/err")"
for i in 1 2 3 4; do [ ! -e "$T/pwned$i" ] || fail "a hostile value reached a shell ($i)"; done
assert_contains "$T/out" '$(touch'
assert_eq "$T/work" "$(cat "$T/work/here")" "cwd relative to the INI's directory"
assert_eq "sh run" "$(cat "$T/shell.out")" "shell = true and FERRY_* variables"

# timeout kills the command (and its children), exit 1 with the reason
cat >"$T/t.ini" <<INI
[pipeline]
state_dir = $T/state
[stage slow]
plugin = exec
command = sh -c 'sleep 30 & sleep 30'
timeout = 500ms
kill_grace = 200ms
INI
start=$(date +%s)
rc=0; ferry -c "$T/t.ini" run >/dev/null 2>"$T/err" || rc=$?
assert_eq 1 $rc "timeout exit"
assert_contains "$T/err" "run command timed out after 500ms"
[ $(( $(date +%s) - start )) -lt 10 ] || fail "timeout was not enforced"

# a missing program is a config error, found before any stage runs
rc=0; ferry -c "$T/t.ini" run slow --command /nonexistent/prog >/dev/null 2>"$T/err" || rc=$?
assert_eq 2 $rc "missing program"
assert_contains "$T/err" "program '/nonexistent/prog' does not exist"
rc=0; ferry -c "$T/t.ini" run slow --command no-such-prog-xyz >/dev/null 2>"$T/err" || rc=$?
assert_eq 2 $rc "program not in PATH"
assert_contains "$T/err" "program 'no-such-prog-xyz' is not in PATH"
# one that vanishes after the check (here: the shell cannot find it) fails the stage clearly
rc=0; ferry -c "$T/t.ini" run slow --shell true --command /nonexistent/prog >/dev/null 2>"$T/err" || rc=$?
assert_eq 1 $rc "missing program at run time"
assert_contains "$T/err" "exited with status 127"

# --KEY VALUE and --KEY=VALUE after a single stage are -o STAGE.KEY=VALUE
ferry -c "$T/t.ini" run slow --command "touch $T/via-option" --kill-grace=1s >/dev/null 2>"$T/err" \
	|| fail "--KEY VALUE shorthand failed: $(cat "$T/err")"
[ -e "$T/via-option" ] || fail "--command was not applied"
rc=0; ferry -c "$T/t.ini" run --command x 2>"$T/err" || rc=$?
assert_eq 2 $rc "--KEY without a single stage"
assert_contains "$T/err" "unknown option '--command' for run (--KEY VALUE works after a single stage name)"
valgrind_verdict
