#!/bin/bash
# t1111: core/lib/lock.c against moto through the unit binary: acquire, NOLOCK, check_lease (ok, fenced, gone), release outcomes.
. "$(dirname "$0")/../lib.sh"

UNIT=$FERRY_BUILD/tests/test_lock
[ -x "$UNIT" ] || fail "test_lock not built ($UNIT)"
moto_start
FERRY_TEST_S3=1 "$UNIT" >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err" >&2; fail "test_lock against moto failed"; }
cat "$T/err" >&2
# the S3 part ran (it adds its checks to the count)
n=$(sed -n 's/.*: \([0-9]*\) checks, 0 failed$/\1/p' "$T/err")
[ -n "$n" ] && [ "$n" -gt 180 ] || fail "the S3 checks did not run ($n checks)"
assert_no_secrets "$T"
