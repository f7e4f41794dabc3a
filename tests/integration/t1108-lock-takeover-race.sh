#!/bin/bash
# t1108: four ferry processes race to take over one expired lock: exactly one wins, the rest exit 3.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"


moto_start_serial
for i in 1 2 3 4; do
	write_ini "$T/r$i.ini" "racer$i" "max_wait = 0s"
done

python3 - "$T/dead" <<'PY'
import json, sys, datetime
now = datetime.datetime.utcnow()
old = (now - datetime.timedelta(hours=2)).strftime('%Y-%m-%dT%H:%M:%SZ')
exp = (now - datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')
json.dump({'owner': 'ferry dead', 'instance_id': 'gone', 'pid': 1, 'nonce': 'ab' * 32,
           'generation': 7, 'acquired_at': old, 'expires_at': exp, 'ttl_s': 3600,
           'timestamp': old, 'timeout': 3600}, open(sys.argv[1], 'w'))
PY
s3x put "$LOCK" "$T/dead"

pids=()
for i in 1 2 3 4; do
	ferry -c "$T/r$i.ini" run lock 2>"$T/err$i" &
	pids+=($!)
done
wins=0 losses=0
for i in 1 2 3 4; do
	rc=0
	wait "${pids[$((i - 1))]}" || rc=$?
	case $rc in
	0) wins=$((wins + 1)) ;;
	3) losses=$((losses + 1)); assert_contains "$T/err$i" "cannot take lock" ;;
	*) cat "$T/err$i" >&2; fail "racer $i exited $rc" ;;
	esac
done
assert_eq 1 "$wins" "winners"
assert_eq 3 "$losses" "losers"
s3x get "$LOCK" "$T/now"
assert_eq 8 "$(body_field "$T/now" generation)" "generation after the takeover"

assert_no_secrets "$T"
valgrind_verdict
