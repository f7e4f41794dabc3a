#!/bin/bash
# t1107: lock race through core/lib/lock.c (tests/tools/lockrace): one holder per round, no overlaps.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"


RACE=$FERRY_BUILD/tests/tools/lockrace
[ -x "$RACE" ] || fail "lockrace not built ($RACE)"
moto_start_serial

"$RACE" -m round -n 4 -r 20 -k race/round.lock -T 300 >"$T/r1" 2>"$T/e1" || { cat "$T/r1" "$T/e1" >&2; fail "round race failed"; }
cat "$T/r1" >&2
assert_contains "$T/r1" "holds=20 rounds_not_one_holder=0 overlaps=0 bad_generation=0 errors=0"

"$RACE" -m takeover -n 4 -r 10 -k race/takeover.lock -T 300 >"$T/r2" 2>"$T/e2" || { cat "$T/r2" "$T/e2" >&2; fail "takeover race failed"; }
cat "$T/r2" >&2
assert_contains "$T/r2" "holds=10 rounds_not_one_holder=0 overlaps=0 bad_generation=0 errors=0"

"$RACE" -m wait -n 4 -r 10 -b 20 -c 200 -k race/wait.lock -T 300 >"$T/r3" 2>"$T/e3" || { cat "$T/r3" "$T/e3" >&2; fail "waiting race failed"; }
cat "$T/r3" >&2
assert_contains "$T/r3" "holds=40 overlaps=0 errors=0"

s3x list race/ | grep -q . && fail "race left a lock behind: $(s3x list race/)"
assert_no_secrets "$T"
