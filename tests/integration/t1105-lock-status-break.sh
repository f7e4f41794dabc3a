#!/bin/bash
# t1105: `ferry lock status` and `ferry lock break [--yes]`.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" a

ferry -c "$T/a.ini" lock status >"$T/s0" 2>"$T/e0" || fail "status of a free lock failed"
assert_contains "$T/s0" "key:         $LOCK"
assert_contains "$T/s0" "free"

ferry -c "$T/a.ini" run lock 2>"$T/e1" || { cat "$T/e1" >&2; fail "run lock failed"; }
ferry -c "$T/a.ini" lock status >"$T/s1" 2>"$T/e1" || fail "status failed"
assert_contains "$T/s1" "state:       held"
assert_contains "$T/s1" "holder:      ferry a"
assert_contains "$T/s1" "instance:    $(hostname)"
assert_contains "$T/s1" "generation:  1"
assert_contains "$T/s1" "pid:"
assert_contains "$T/s1" "by server time"
assert_contains "$T/s1" "legacy:      no"
etag=$(s3x etag "$LOCK")
assert_contains "$T/s1" "etag:        $etag"

# break without --yes refuses (exit 2) and leaves it
assert_exit 2 ferry -c "$T/a.ini" lock break 2>"$T/e2" >"$T/s2"
assert_contains "$T/e2" "--yes"
s3x exists "$LOCK" || fail "break without --yes removed the lock"

# --key names another lock; unknown verbs are usage errors
ferry -c "$T/a.ini" lock status --key other/x.lock >"$T/s3" 2>&1 || fail "status --key failed"
assert_contains "$T/s3" "key:         other/x.lock"
assert_contains "$T/s3" "free"
assert_exit 2 ferry -c "$T/a.ini" lock frobnicate

ferry -c "$T/a.ini" lock break --yes >"$T/s4" 2>"$T/e4" || { cat "$T/e4" >&2; fail "break --yes failed"; }
assert_contains "$T/s4" "removed lock '$LOCK'"
s3x exists "$LOCK" && fail "break --yes left the lock"
ferry -c "$T/a.ini" lock break --yes >"$T/s5" 2>&1 || fail "break of a free lock failed"
assert_contains "$T/s5" "nothing to break"

assert_no_secrets "$T"
valgrind_verdict
