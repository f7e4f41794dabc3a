#!/bin/bash
# t1103: expiry takeover (ttl 2s) with generation+1; the stale owner's release leaves the new lock intact.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" old "ttl = 2s
margin = 0s"
write_ini "$T/b.ini" new "max_wait = 30s
backoff_base = 100ms
backoff_cap = 500ms"

ferry -c "$T/a.ini" run lock 2>"$T/err1" || { cat "$T/err1" >&2; fail "first lock failed"; }
s3x get "$LOCK" "$T/old"
assert_eq 1 "$(body_field "$T/old" generation)" "first generation"

# the second owner waits out the 2 s lease (judged by the server's Date) and takes over
ferry -c "$T/b.ini" run lock 2>"$T/err2" || { cat "$T/err2" >&2; fail "takeover failed"; }
assert_contains "$T/err2" "took over expired lock"
s3x get "$LOCK" "$T/new"
assert_eq 2 "$(body_field "$T/new" generation)" "generation after takeover"
assert_eq "ferry new" "$(body_field "$T/new" owner)" "owner after takeover"
[ "$(body_field "$T/new" nonce)" != "$(body_field "$T/old" nonce)" ] || fail "nonce unchanged by takeover"
etag=$(s3x etag "$LOCK")

# the stale owner releases (its journal still names its own nonce): theirs stays
ferry -c "$T/a.ini" run unlock 2>"$T/err3" || { cat "$T/err3" >&2; fail "stale unlock failed"; }
assert_contains "$T/err3" "taken over by someone else; left untouched"
assert_contains "$T/err3" "ferry new"
assert_eq "$etag" "$(s3x etag "$LOCK")" "new holder's lock after the stale release"

ferry -c "$T/b.ini" run unlock 2>"$T/err4" || fail "new owner's unlock failed"
assert_contains "$T/err4" "released lock"
s3x exists "$LOCK" && fail "lock left behind"

assert_no_secrets "$T"
valgrind_verdict
