#!/bin/bash
# t1109: lock stage config errors (exit 2 with file:line and key, before anything runs) and the deadline/ttl rule.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" a

# the pipeline deadline must stay below the lock's ttl 
sed -i 's/^name = a$/name = a\ndeadline = 2h/' "$T/a.ini"
assert_exit 2 ferry -c "$T/a.ini" run 2>"$T/e1"
assert_contains "$T/e1" "a.ini:"
assert_contains "$T/e1" "ttl"
assert_contains "$T/e1" "deadline"
s3x exists "$LOCK" && fail "a refused config took the lock"
assert_exit 2 ferry -c "$T/a.ini" run -o lock.ttl=3h -o lock.margin=3h 2>"$T/e2"
assert_contains "$T/e2" "margin"
# within the margin: a warning, and the run goes ahead
ferry -c "$T/a.ini" run -o lock.ttl=2h30s 2>"$T/e3" || { cat "$T/e3" >&2; fail "deadline inside the margin refused"; }
assert_contains "$T/e3" "within the lock's safety margin"

write_ini "$T/b.ini" b
assert_exit 2 ferry -c "$T/b.ini" run -o lock.backoff_base=3s 2>"$T/e4"
assert_contains "$T/e4" "backoff_cap"
assert_exit 2 ferry -c "$T/b.ini" run -o lock.key=/abs 2>"$T/e5"
assert_contains "$T/e5" "key"
assert_exit 2 ferry -c "$T/b.ini" run -o lock.ttl=1s 2>"$T/e6"
assert_contains "$T/e6" "ttl"
assert_exit 2 ferry -c "$T/b.ini" run -o lock.max_wait=soon 2>"$T/e7"
assert_contains "$T/e7" "max_wait"
assert_eq "" "$(s3x list)" "bucket after refused configs"

# no credentials: a clear error, no crash, no secret
( unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; ferry -c "$T/b.ini" run >"$T/o8" 2>"$T/e8" ); rc=$?
[ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "run without credentials exited $rc"
assert_contains "$T/e8" "credentials"

assert_no_secrets "$T"
valgrind_verdict
