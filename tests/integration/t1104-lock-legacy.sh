#!/bin/bash
# t1104: interop with the shell locker (seed 003): its lock is honoured until timestamp+timeout, and it sees ferry's lock as held.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

# What the shell locker decides about a lock body: held while now < timestamp + timeout.
shell_sees_held() {
	python3 - "$1" <<'PY'
import json, sys, datetime
b = json.load(open(sys.argv[1]))
ts = datetime.datetime.strptime(b['timestamp'], '%Y-%m-%dT%H:%M:%SZ')
age = (datetime.datetime.utcnow() - ts).total_seconds()
sys.exit(0 if age < int(b['timeout']) else 1)
PY
}
legacy_body() { # legacy_body FILE AGE_S TIMEOUT_S
	python3 - "$@" <<'PY'
import json, sys, datetime
ts = datetime.datetime.utcnow() - datetime.timedelta(seconds=int(sys.argv[2]))
json.dump({'instance_id': 'instance_20250121_143022_1234_oldbox',
           'timestamp': ts.strftime('%Y-%m-%dT%H:%M:%SZ'), 'timeout': int(sys.argv[3])},
          open(sys.argv[1], 'w'), indent=2)
PY
}

moto_start
write_ini "$T/a.ini" a "max_wait = 1s
backoff_base = 100ms
backoff_cap = 300ms"

# a fresh shell lock: ferry waits, then exits 3 naming it
legacy_body "$T/legacy" 10 3600
s3x put "$LOCK" "$T/legacy"
before=$(s3x etag "$LOCK")
assert_exit 3 ferry -c "$T/a.ini" run 2>"$T/err1"
assert_contains "$T/err1" "shell locker instance 'instance_20250121_143022_1234_oldbox'"
assert_eq "$before" "$(s3x etag "$LOCK")" "shell lock after ferry gave up"

# ferry lock status says legacy
ferry -c "$T/a.ini" lock status >"$T/status" 2>"$T/err2" || fail "lock status failed"
assert_contains "$T/status" "legacy:      yes"
assert_contains "$T/status" "state:       held"

# a shell lock past timestamp + timeout is taken over (generation 1)
legacy_body "$T/legacy" 7300 3600
s3x put "$LOCK" "$T/legacy"
ferry -c "$T/a.ini" run lock 2>"$T/err3" || { cat "$T/err3" >&2; fail "takeover of an expired shell lock failed"; }
assert_contains "$T/err3" "took over expired lock"
s3x get "$LOCK" "$T/ours"
assert_eq 1 "$(body_field "$T/ours" generation)" "generation after a legacy takeover"

# and the shell locker sees ferry's body as held
shell_sees_held "$T/ours" || fail "the shell locker would not honour ferry's lock: $(cat "$T/ours")"

ferry -c "$T/a.ini" run unlock 2>"$T/err4" || fail "unlock failed"
s3x exists "$LOCK" && fail "lock left behind"
assert_no_secrets "$T"
valgrind_verdict
