#!/usr/bin/env bash
# The gcs dialect against the GCS XML-API test server (tests/gcsserver.py in front of moto):
# `ferry check` proves the store fences writes in its own spelling and prints the matrix;
# the s3 spelling against the same server is refused (GCS ignores If-None-Match on writes);
# a careless store (every condition ignored) is refused by check and by the lock stage,
# naming the property; the probe is cached per store and dialect; the lock stage takes and
# releases the lock with generation preconditions, also when every quick second write is
# answered 429; 8 racers x 50 rounds: one holder per round, no overlap.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/gcs.sh"
LOCK=org-data/5.db.lock
. "$TESTS_DIR/lock.sh"
RACE=$FERRY_BUILD/tests/tools/lockrace
[ -x "$RACE" ] || fail "lockrace not built ($RACE)"
moto_start gcs-bucket
gcs_start

pipeline_ini "$T/p.ini"
cat >>"$T/p.ini" <<INI
[stage lock]
plugin = lock
key = $LOCK
ttl = 1h

[stage unlock]
plugin = unlock
INI

# 1. check in the gcs dialect: every property holds, spelled x-goog-if-generation-match
rc=0
ferry -c "$T/p.ini" -o s3.dialect=gcs check >"$T/c1" 2>&1 || rc=$?
cat "$T/c1" >&2
assert_eq 0 "$rc" "check in the gcs dialect"
assert_contains "$T/c1" "store 127.0.0.1:$GCS_PORT/gcs-bucket, dialect gcs, probed now"
assert_contains "$T/c1" "ok     create if absent, twice: the second refused: 412 to x-goog-if-generation-match: 0"
assert_contains "$T/c1" "ok     replace with a wrong version: refused: 412 to x-goog-if-generation-match: N"
assert_contains "$T/c1" "ok     write if version V on an absent key: refused: 412"
assert_contains "$T/c1" "ok     delete with a wrong version: refused: 412"
assert_contains "$T/c1" "ok     ranged GET: exactly the bytes asked for: 206"
assert_contains "$T/c1" "-      UploadPartCopy: not used (no multipart commit here)"
assert_contains "$T/c1" "no     fenced multipart commit: every commit is one conditional PUT"
assert_contains "$T/c1" "the store fences every write ferry relies on"
ls "$T"/state/s3-probe-*.json >/dev/null 2>&1 || fail "check did not cache its safe probe"

# 2. the s3 spelling on the same store: GCS takes a second If-None-Match: * create
rc=0
FERRY_S3_DIALECT= ferry -c "$T/p.ini" -o s3.dialect=s3 check >"$T/c2" 2>&1 || rc=$?
[ "$rc" != 0 ] || { cat "$T/c2" >&2; fail "check in the s3 dialect passed on a GCS store"; }
assert_contains "$T/c2" "REFUSED: store 127.0.0.1:$GCS_PORT/gcs-bucket (dialect s3) failed the probe: create if absent, twice: the second refused: it was accepted (it answered 200); two machines could both take the lock"
assert_contains "$T/c2" "FAILED create if absent"

# 3. lock and unlock in the gcs dialect; the cached probe costs no request
rc=0
ferry -c "$T/p.ini" run lock >"$T/o3" 2>"$T/e3" || rc=$?
[ "$rc" = 0 ] || { cat "$T/e3" >&2; fail "lock in the gcs dialect exited $rc"; }
assert_not_contains "$T/e3" "endpoint probed"
s3x exists "$LOCK" || fail "no lock object after the lock stage"
gen=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print([s for s in j["stages"] if s["name"]=="lock"][0]["facts"].get("etag",""))' "$T/state/journal.json")
case $gen in ''|*[!0-9]*) fail "the lock's version is not a generation: '$gen'" ;; esac
rc=0
ferry -c "$T/p.ini" run unlock >"$T/o4" 2>"$T/e4" || rc=$?
[ "$rc" = 0 ] || { cat "$T/e4" >&2; fail "unlock in the gcs dialect exited $rc"; }
assert_contains "$T/e4" "released lock key=$LOCK"
if s3x exists "$LOCK"; then fail "the lock object is still there after unlock"; fi

# 4. one write a second per object: 429s are retried, the lock still taken and released
gcs_stop
gcs_start --write-rate-limit
rm -f "$T"/state/s3-probe-*.json
rc=0
ferry -c "$T/p.ini" run >"$T/o5" 2>"$T/e5" || rc=$?
[ "$rc" = 0 ] || { cat "$T/e5" "$T/gcs.log" >&2; fail "lock+unlock under the write rate limit exited $rc"; }
assert_contains "$T/e5" "endpoint probed: it fences conditional writes"
grep -q " 429 " "$T/gcs.log" || fail "the rate limit never answered 429 (nothing was tested)"
if s3x exists "$LOCK"; then fail "the lock object is still there after the rate-limited run"; fi

# 5. a careless store: check and the lock stage refuse it, naming the property
gcs_stop
gcs_start --careless
rm -f "$T"/state/s3-probe-*.json
rc=0
ferry -c "$T/p.ini" -o s3.dialect=gcs check >"$T/c6" 2>&1 || rc=$?
[ "$rc" != 0 ] || { cat "$T/c6" >&2; fail "check passed on a careless store"; }
assert_contains "$T/c6" "REFUSED: store 127.0.0.1:$GCS_PORT/gcs-bucket (dialect gcs) failed the probe: create if absent, twice: the second refused: it was accepted"
rc=0
ferry -c "$T/p.ini" run >"$T/o7" 2>"$T/e7" || rc=$?
assert_eq 2 "$rc" "the lock stage on a careless store"
assert_contains "$T/e7" "refusing to take a lock there"
if s3x exists "$LOCK"; then fail "a lock was written on a careless store"; fi
ls "$T"/state/s3-probe-*.json >/dev/null 2>&1 && fail "an unsafe probe result was cached"

# 6. 8 racers x 50 rounds on the GCS server: exactly one holder a round, no overlap
gcs_stop
gcs_start
"$RACE" -m round -n 8 -r 50 -k race/gcs.lock -T 600 >"$T/r1" 2>"$T/re1" || { cat "$T/r1" "$T/re1" >&2; fail "gcs round race failed"; }
cat "$T/r1" >&2
assert_contains "$T/r1" "holds=50 rounds_not_one_holder=0 overlaps=0 bad_generation=0 errors=0"
"$RACE" -m takeover -n 8 -r 10 -k race/gcs-takeover.lock -T 600 >"$T/r2" 2>"$T/re2" || { cat "$T/r2" "$T/re2" >&2; fail "gcs takeover race failed"; }
cat "$T/r2" >&2
assert_contains "$T/r2" "holds=10 rounds_not_one_holder=0 overlaps=0 bad_generation=0 errors=0"
s3x list race/ | grep -q . && fail "the race left a lock behind: $(s3x list race/)"
assert_no_secrets "$T"
