#!/usr/bin/env bash
# `ferry run --dry-run` changes no file anywhere: not state_dir (byte-identical, even its
# absence), not the journal, not what the commands would touch; it says what it would run.
. "$(dirname "$0")/../lib.sh"

cat >"$T/p.ini" <<INI
[pipeline]
name = dry
state_dir = $T/state

[stage a]
plugin = exec
command = touch $T/a.ran
undo = touch $T/a.undone
cleanup = touch $T/a.cleaned

[stage b]
plugin = exec
command = sh -c 'echo hi > $T/b.ran'
INI

# With no state_dir at all: a dry run must not create it.
ferry -c "$T/p.ini" run --dry-run >"$T/out" 2>"$T/err" || fail "dry run failed: $(cat "$T/err")"
[ ! -e "$T/state" ] || fail "dry run created state_dir"
[ ! -e "$T/a.ran" ] && [ ! -e "$T/b.ran" ] && [ ! -e "$T/a.cleaned" ] || fail "dry run ran a command"
assert_contains "$T/err" "would run op=command argv=\"[touch] [$T/a.ran]\""
assert_contains "$T/err" "would run op=undo argv=\"[touch] [$T/a.undone]\""
assert_contains "$T/err" "argv=\"[sh] [-c] [echo hi > $T/b.ran]\""

# After a real run, a dry run leaves state_dir byte-identical (journal included).
ferry -c "$T/p.ini" run >/dev/null 2>&1 || fail "real run failed"
rm -f "$T"/*.ran "$T"/*.cleaned
before=$(tree_digest "$T")
sleep 1.1                     # so that a rewrite would change mtimes too
ferry -c "$T/p.ini" run --dry-run >/dev/null 2>&1 || fail "dry run failed"
ferry -c "$T/p.ini" run --dry-run b >/dev/null 2>&1 || fail "dry run of one stage failed"
ferry -c "$T/p.ini" run --dry-run --from b >/dev/null 2>&1 || fail "dry run --from failed"
after=$(tree_digest "$T")
assert_eq "$before" "$after" "digest of the test dir around dry runs"
valgrind_verdict
