#!/bin/bash
# t1113: a lock wait is not silent without a terminal: "waiting for lock KEY held by WHO, N s of M s" every FERRY_PROGRESS_INTERVAL_MS (10 s by default), in plain and JSON lines.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

moto_start
write_ini "$T/a.ini" holder
write_ini "$T/b.ini" waiter "max_wait = 3s
backoff_base = 100ms
backoff_cap = 5s"

ferry -c "$T/a.ini" run lock 2>"$T/err1" || { cat "$T/err1" >&2; fail "holder could not lock"; }

# stderr is a file here, as in a container: the wait reports itself while it lasts. The
# backoff cap (5 s) is longer than the whole wait: the lines come from the wait itself,
# not from the polls.
rc=0; FERRY_PROGRESS_INTERVAL_MS=500 ferry -c "$T/b.ini" run lock 2>"$T/err2" || rc=$?
assert_eq 3 "$rc" "exit status of the waiter"
assert_contains "$T/err2" "info lock waiting for lock '$LOCK' held by 'ferry holder'"
grep -E "waiting for lock '$LOCK' held by .*, [0-9]+ s of 3 s waited_s=[0-9]+ max_wait_s=3$" "$T/err2" >/dev/null ||
	{ cat "$T/err2" >&2; fail "no well-formed waiting line"; }

# the same in JSON: numbers are numbers
rc=0; FERRY_PROGRESS_INTERVAL_MS=500 ferry --log-format=json -c "$T/b.ini" run lock 2>"$T/err3" || rc=$?
assert_eq 3 "$rc" "exit status of the JSON waiter"
python3 - "$T/err3" <<'PY' || { cat "$T/err3" >&2; fail "JSON waiting lines"; }
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
w = [l for l in lines if l["msg"].startswith("waiting for lock ")]
assert w, "no waiting line"
assert all(isinstance(l["waited_s"], int) and l["max_wait_s"] == 3 for l in w), w
PY

# the default interval is 10 s: a 3 s wait logs no such line
rc=0; ferry -c "$T/b.ini" run lock 2>"$T/err4" || rc=$?
assert_eq 3 "$rc" "exit status of the third waiter"
assert_not_contains "$T/err4" "waiting for lock '"

ferry -c "$T/a.ini" run unlock 2>"$T/err5" || { cat "$T/err5" >&2; fail "holder could not unlock"; }
assert_no_secrets "$T"
valgrind_verdict
