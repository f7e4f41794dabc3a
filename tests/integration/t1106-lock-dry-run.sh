#!/bin/bash
# t1106: dry-run of lock/unlock says which request it would make and changes nothing (S3, state dir).
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" a
write_ini "$T/b.ini" b

before=$(tree_digest "$T/state-a")
ferry -c "$T/a.ini" run --dry-run >"$T/o1" 2>"$T/e1" || { cat "$T/e1" >&2; fail "dry-run failed"; }
assert_contains "$T/e1" "lock is free; would create it"
assert_contains "$T/e1" "PUT $LOCK If-None-Match: *"
assert_contains "$T/e1" "would release"
assert_eq "" "$(s3x list)" "bucket after a dry-run"
assert_eq "$before" "$(tree_digest "$T/state-a")" "state dir after a dry-run"

# held by another pipeline: dry-run says it would wait, and touches nothing
ferry -c "$T/b.ini" run lock 2>"$T/e2" || fail "b could not lock"
etag=$(s3x etag "$LOCK")
ferry -c "$T/a.ini" run --dry-run >"$T/o3" 2>"$T/e3" || { cat "$T/e3" >&2; fail "dry-run (held) failed"; }
assert_contains "$T/e3" "lock is held; would wait for it"
assert_contains "$T/e3" "ferry b"
assert_eq "$etag" "$(s3x etag "$LOCK")" "lock after a dry-run"
assert_eq "$LOCK" "$(s3x list)" "bucket after a dry-run (held)"

ferry -c "$T/b.ini" run unlock 2>/dev/null || fail "b could not unlock"
assert_no_secrets "$T"
valgrind_verdict
