#!/bin/bash
# t1112: the lock through tests/s3proxy.py: header-stripping store refused, dropped answers settled by read-back, 5xx bursts retried, no credential in any log.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"
. "$TESTS_DIR/proxy.sh"

moto_start
proxy_start
write_ini "$T/a.ini" a "max_wait = 10s
backoff_base = 50ms
backoff_cap = 200ms"
write_ini "$T/b.ini" b "max_wait = 10s
backoff_base = 50ms
backoff_cap = 200ms"

# a store that ignores If-None-Match / If-Match: the lock stage refuses to run
proxy_rule '{"action":"strip_cond","count":-1}'
assert_exit 2 ferry -c "$T/a.ini" run 2>"$T/e1"
assert_contains "$T/e1" "failed the probe: create if absent, twice: the second refused: it was accepted (it answered 200); two machines could both take the lock; refusing to take a lock there"
s3x exists "$LOCK" && fail "lock taken on a store that ignores conditions"
proxy_reset

# our create's answer is dropped after it landed: read back, it is ours
proxy_rule '{"method":"PUT","key":"42.db.lock","action":"drop","count":1}'
ferry -c "$T/a.ini" run lock 2>"$T/e2" || { cat "$T/e2" >&2; fail "lock with a dropped answer failed"; }
assert_eq 1 "$(proxy_stats fired drop)" "drop fired"
s3x get "$LOCK" "$T/body"
grep -q "\"nonce\": \"$(body_field "$T/body" nonce)\"" "$T/state-a/journal.json" ||
	fail "the stored lock is not the one the journal says we hold"
proxy_reset

# 5xx bursts on the waiter's reads and on the holder's release: retried, and the
# handoff still happens
proxy_rule '{"method":"GET","key":"42.db.lock","action":"503","count":3}'
ferry -c "$T/b.ini" run lock -o lock.max_wait=1s 2>"$T/e3" && fail "b took a held lock"
assert_contains "$T/e3" "held by 'ferry a'"
proxy_reset
proxy_rule '{"method":"DELETE","key":"42.db.lock","action":"500","count":2}'
ferry -c "$T/a.ini" run unlock 2>"$T/e4" || { cat "$T/e4" >&2; fail "unlock through a 500 burst failed"; }
assert_contains "$T/e4" "released lock"
s3x exists "$LOCK" && fail "lock left after unlock"
proxy_reset

# a takeover whose answer is dropped: settled as ours by read-back
write_ini "$T/c.ini" c "ttl = 2s
margin = 0s"
ferry -c "$T/c.ini" run lock 2>"$T/e5" || fail "c could not lock"
proxy_rule '{"method":"PUT","key":"42.db.lock","header":"if-match","action":"drop","count":1}'
ferry -c "$T/b.ini" run lock 2>"$T/e6" || { cat "$T/e6" >&2; fail "takeover with a dropped answer failed"; }
assert_contains "$T/e6" "took over expired lock"
assert_eq 1 "$(proxy_stats fired drop)" "drop fired on the takeover"
s3x get "$LOCK" "$T/body2"
assert_eq 2 "$(body_field "$T/body2" generation)" "generation after the takeover"
ferry -c "$T/b.ini" run unlock 2>/dev/null || fail "b could not unlock"

assert_no_secrets "$T"
valgrind_verdict
