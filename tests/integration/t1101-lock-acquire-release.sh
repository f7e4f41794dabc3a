#!/bin/bash
# t1101: lock + unlock pipeline: acquire, body fields, release; `run lock` then `run unlock` from the journal.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" a "max_wait = 5s"

ferry -c "$T/a.ini" run >"$T/out1" 2>"$T/err1" || { cat "$T/err1" >&2; fail "lock/unlock pipeline failed"; }
assert_contains "$T/err1" "acquired lock"
assert_contains "$T/err1" "released lock"
s3x exists "$LOCK" && fail "lock left behind after the pipeline"

# the lock stage alone leaves the lock held, with a complete body
ferry -c "$T/a.ini" run lock 2>"$T/err2" || { cat "$T/err2" >&2; fail "run lock failed"; }
s3x get "$LOCK" "$T/body" || fail "no lock object after run lock"
python3 - "$T/body" "$(hostname)" <<'PY' || fail "bad lock body: $(cat "$T/body")"
import json, re, sys, datetime
b = json.load(open(sys.argv[1]))
for k in ('owner', 'instance_id', 'pid', 'nonce', 'generation', 'acquired_at', 'expires_at',
          'ttl_s', 'timestamp', 'timeout'):
    assert k in b, k
assert b['owner'] == 'ferry a', b['owner']
assert b['instance_id'] == sys.argv[2], b['instance_id']
assert re.fullmatch('[0-9a-f]{64}', b['nonce']), b['nonce']
assert b['generation'] == 1
assert b['ttl_s'] == 3600 and b['timeout'] == 3600
t = lambda s: datetime.datetime.strptime(s, '%Y-%m-%dT%H:%M:%SZ')
assert b['timestamp'] == b['acquired_at']
assert (t(b['expires_at']) - t(b['acquired_at'])).total_seconds() == 3600
# server time (moto runs here): acquired within a minute of now
assert abs((t(b['acquired_at']) - datetime.datetime.utcnow()).total_seconds()) < 60
PY
nonce=$(body_field "$T/body" nonce)

# another pipeline finds it held (max_wait 1s) and exits 3
write_ini "$T/b.ini" b
assert_exit 3 ferry -c "$T/b.ini" run lock -o lock.max_wait=1s 2>"$T/err3"
assert_contains "$T/err3" "held by 'ferry a'"
s3x get "$LOCK" "$T/body2"
assert_eq "$nonce" "$(body_field "$T/body2" nonce)" "nonce after a refused second run"

# unlock alone, in another process, releases it from the journal's facts
ferry -c "$T/a.ini" run unlock 2>"$T/err4" || { cat "$T/err4" >&2; fail "run unlock failed"; }
assert_contains "$T/err4" "released lock"
s3x exists "$LOCK" && fail "lock still there after run unlock"

# releasing again: already gone is a warning, not an error
ferry -c "$T/a.ini" run unlock 2>"$T/err5" || { cat "$T/err5" >&2; fail "second unlock failed"; }
assert_contains "$T/err5" "already gone"

assert_no_secrets "$T"
valgrind_verdict
