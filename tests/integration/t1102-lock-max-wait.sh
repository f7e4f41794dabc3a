#!/bin/bash
# t1102: a held lock makes a second pipeline wait max_wait, then exit 3 naming holder and expiry; the lock stays intact.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" holder
write_ini "$T/b.ini" waiter "max_wait = 1500ms
backoff_base = 100ms
backoff_cap = 400ms"

ferry -c "$T/a.ini" run lock 2>"$T/err1" || { cat "$T/err1" >&2; fail "holder could not lock"; }
before=$(s3x etag "$LOCK")
s3x get "$LOCK" "$T/body"
expires=$(body_field "$T/body" expires_at)

assert_exit 3 ferry -c "$T/b.ini" run 2>"$T/err2"
assert_contains "$T/err2" "cannot take lock '$LOCK'"
assert_contains "$T/err2" "held by 'ferry holder'"
assert_contains "$T/err2" "until $expires"
assert_not_contains "$T/err2" "released lock"
assert_eq "$before" "$(s3x etag "$LOCK")" "lock etag after the waiter gave up"

# once the holder releases, the waiter gets it
ferry -c "$T/a.ini" run unlock 2>"$T/err3" || { cat "$T/err3" >&2; fail "holder could not unlock"; }
ferry -c "$T/b.ini" run 2>"$T/err4" || { cat "$T/err4" >&2; fail "waiter failed after release"; }
assert_contains "$T/err4" "acquired lock"
s3x exists "$LOCK" && fail "lock left behind"

assert_no_secrets "$T"
valgrind_verdict
