#!/usr/bin/env bash
# t1002-s3-proxy-faults.sh: `ferry s3` and `ferry check` through tests/s3proxy.py: 5xx bursts
# are retried, a conditional PUT whose answer is lost is settled by reading back (ours, or
# someone else's), and a store that ignores conditions is detected by the probe.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/proxy.sh"
moto_start
proxy_start
cd "$T" || fail "no temp dir"
unset FERRY_CONFIG
LOG=$T/ferry.log
AUTH="Authorization: AWS4-HMAC-SHA256 Credential=AKIAFERRYTESTKEY0001/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
moto_get() { curl -fs -H "$AUTH" "http://127.0.0.1:$MOTO_PORT/$BUCKET_NAME/$1"; }
cat >s3.ini <<INI
[pipeline]
name = t1002
state_dir = $T/state
[s3]
endpoint = http://127.0.0.1:$PROXY_PORT
bucket = $BUCKET_NAME
max_retries = 4
retry_base = 10ms
retry_cap = 100ms
low_speed_time = 1s
INI
F() { ferry -c s3.ini "$@"; }

# a burst of 503 SlowDown on PUT: retried, stored once
printf 'burst body\n' >burst.txt
proxy_rule '{"method":"PUT","key":"burst","action":"503","count":3}'
F s3 put burst.txt burst.txt >/dev/null 2>>"$LOG" || fail "put through a 503 burst failed: $(tail -2 "$LOG")"
assert_eq 4 "$(proxy_stats methods PUT requests)" "PUT requests (3 refused + 1)"
assert_eq "burst body" "$(moto_get burst.txt)" "stored body"
# a 500 burst and a stalled answer on GET
proxy_reset
proxy_rule '{"method":"GET","key":"burst","action":"500","count":2}'
proxy_rule '{"method":"GET","key":"burst","action":"stall","seconds":3,"count":1}'
assert_eq "burst body" "$(F s3 get burst.txt 2>>"$LOG")" "GET through 500s and a stall"
assert_eq 4 "$(proxy_stats methods GET requests)" "GET requests"
# more failures than retries: exit 1, the message names the request and the attempts
proxy_rule '{"method":"HEAD","key":"burst","action":"503","count":-1}'
assert_exit 1 F s3 head burst.txt 2>e503.log
assert_contains e503.log "HEAD 'burst.txt': 503"
assert_contains e503.log "after 5 attempts"
cat e503.log >>"$LOG"

# our create-only PUT lands, its answer is dropped: read back, the bytes are ours
proxy_reset
printf 'lock body nonce=%s\n' "$RANDOM$RANDOM" >mine.txt
proxy_rule '{"method":"PUT","key":"mine","action":"drop","count":1}'
F s3 put mine.txt mine.lock --if-none-match >/dev/null 2>>"$LOG" || fail "dropped conditional put not settled as ours: $(tail -2 "$LOG")"
assert_eq 1 "$(proxy_stats methods PUT requests)" "conditional PUT sent once (never resent blindly)"
assert_eq 1 "$(proxy_stats fired drop)" "drop fired"
cmp -s mine.txt <(moto_get mine.lock) || fail "stored object is not ours"

# someone else's object is there; our create-only PUT's 412 is dropped: not ours, exit 1
proxy_reset
printf 'their lock nonce=1\n' >theirs.txt
F s3 put theirs.txt theirs.lock >/dev/null 2>>"$LOG" || fail "setup put"
printf 'our lock nonce=2!\n' >ours.txt
proxy_rule '{"method":"PUT","key":"theirs","action":"drop","count":1}'
assert_exit 1 F s3 put ours.txt theirs.lock --if-none-match 2>e412.log
assert_contains e412.log "PUT 'theirs.lock': 412"
cat e412.log >>"$LOG"
cmp -s theirs.txt <(moto_get theirs.lock) || fail "their object was overwritten"

# If-Match PUT dropped after it landed: ours
proxy_reset
etag=$(F s3 head mine.lock 2>>"$LOG" | awk '/^etag:/ { print $2 }')
printf 'renewed nonce=%s\n' "$RANDOM" >renew.txt
proxy_rule '{"method":"PUT","key":"mine","action":"drop","count":1}'
F s3 put renew.txt mine.lock --if-match "$etag" >/dev/null 2>>"$LOG" || fail "dropped If-Match put not settled"
cmp -s renew.txt <(moto_get mine.lock) || fail "renewed body not stored"

# the probe: moto enforces conditions; behind a header-stripping proxy it does not
proxy_reset
F check >check.out 2>>"$LOG" || { cat check.out >&2; fail "ferry check failed on moto"; }
assert_contains check.out "ok     create if absent, twice: the second refused: 412 to If-None-Match: *"
assert_contains check.out "ok     replace with a wrong version: refused: 412 to If-Match"
assert_contains check.out "ok     write if version V on an absent key: refused: 404 to If-Match: \"etag\" (as AWS)"
assert_contains check.out "ok     delete with a wrong version: refused: 412 to If-Match"
assert_contains check.out "ok     UploadPartCopy: 200"
proxy_rule '{"action":"strip_cond","count":-1}'
assert_exit 1 F check >check2.out 2>>"$LOG"
assert_contains check2.out "FAILED create if absent, twice: the second refused: 200 to If-None-Match: *"
assert_contains check2.out "FAILED replace with a wrong version: refused: 200 to If-Match"
assert_contains check2.out "FAILED write if version V on an absent key: refused: 200"
assert_contains check2.out "REFUSED: store 127.0.0.1:$PROXY_PORT/"
assert_contains check2.out "lock stage refuses"
proxy_reset
F s3 ls -r .ferry-probe/ >probe-left.out 2>>"$LOG" || fail "ls"
[ ! -s probe-left.out ] || { cat probe-left.out >&2; fail "probe left scratch keys"; }

# garbage in a listing: an error, not a crash
proxy_rule '{"method":"GET","query":"list-type","action":"garbage_xml","count":1}'
assert_exit 1 F s3 ls 2>egx.log
assert_contains egx.log "malformed ListObjectsV2 response"
cat egx.log >>"$LOG"

# the rules file works too, and the byte counters count
proxy_reset
proxy_rules_file '[{"method":"HEAD","key":"mine","action":"503","count":2}]'
F s3 head mine.lock >/dev/null 2>>"$LOG" || fail "head through a rules-file 503 burst"
assert_eq 3 "$(proxy_stats methods HEAD requests)" "HEAD requests with the rules file"
head -c 200000 /dev/zero >zeros.bin
F s3 put zeros.bin zeros.bin >/dev/null 2>>"$LOG" || fail "put zeros"
up=$(proxy_stats methods PUT bytes_up)
[ "$up" -ge 200000 ] || fail "PUT bytes_up $up < 200000"

assert_no_secrets "$T"
valgrind_verdict
