#!/usr/bin/env bash
# t1001-s3-cli.sh: `ferry s3 ls|head|get|put|rm|cp` against moto_server: results, 412s,
# errors naming the request, exit codes, and no credentials in any output.
. "$(dirname "$0")/../lib.sh"
moto_start
cd "$T" || fail "no temp dir"
unset FERRY_CONFIG        # no conf/pipeline.ini here: [s3] comes from the environment
LOG=$T/ferry.log
# moto refuses anonymous reads of objects a signed request wrote: sign as the test key
# (moto does not check the signature itself)
AUTH="Authorization: AWS4-HMAC-SHA256 Credential=AKIAFERRYTESTKEY0001/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
s3_raw_get() { curl -fs -H "$AUTH" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o "$2"; }
s3_raw_exists() { curl -fs -I -H "$AUTH" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o /dev/null; }

printf 'hello ferry\n' >a.txt
etag=$(ferry s3 put a.txt dir/a.txt 2>>"$LOG") || fail "put failed: $(tail -1 "$LOG")"
case "$etag" in '"'*'"') ;; *) fail "put printed '$etag', not an ETag" ;; esac
s3_raw_get dir/a.txt got.txt || fail "raw get"
cmp -s a.txt got.txt || fail "stored bytes differ"

ferry s3 head dir/a.txt >head.out 2>>"$LOG" || fail "head failed"
assert_contains head.out "size:          12"
assert_contains head.out "etag:          $etag"

# conditional writes: create-only refused on an existing key, If-Match checked
assert_exit 1 ferry s3 put a.txt dir/a.txt --if-none-match 2>e412.log
assert_contains e412.log "PUT 'dir/a.txt': 412 PreconditionFailed"
cat e412.log >>"$LOG"
assert_exit 1 ferry s3 put a.txt dir/a.txt --if-match '"00000000000000000000000000000000"' 2>>"$LOG"
printf 'second\n' >b.txt
etag2=$(ferry s3 put b.txt dir/a.txt --if-match "$etag" 2>>"$LOG") || fail "If-Match put with the right ETag failed"
[ "$etag2" != "$etag" ] || fail "ETag did not change"
ferry s3 put b.txt new.txt --if-none-match >/dev/null 2>>"$LOG" || fail "create-only put of a new key failed"

# get to stdout, to a file, as s3://bucket/key; a failed get leaves no file behind
ferry s3 get dir/a.txt >out1 2>>"$LOG" || fail "get to stdout"
cmp -s b.txt out1 || fail "get to stdout: wrong bytes"
ferry s3 get "s3://$BUCKET_NAME/dir/a.txt" out2.txt 2>>"$LOG" || fail "get to file"
cmp -s b.txt out2.txt || fail "get to file: wrong bytes"
assert_exit 1 ferry s3 get missing out3.txt 2>e404.log
assert_contains e404.log "GET 'missing': 404 NoSuchKey"
cat e404.log >>"$LOG"
[ ! -e out3.txt ] || fail "failed get left out3.txt"
ls | grep -q ferry-tmp && fail "failed get left a temp file"
assert_exit 1 ferry s3 get dir/a.txt out4.txt --if-match "$etag" 2>>"$LOG"

# a bigger object from a file (streamed from the fd) and back
head -c 1048576 /dev/urandom >big.bin
ferry s3 put big.bin big.bin >/dev/null 2>>"$LOG" || fail "big put"
ferry s3 get big.bin big.out 2>>"$LOG" || fail "big get"
cmp -s big.bin big.out || fail "big object differs"
# from stdin
printf 'piped' | ferry s3 put - piped.txt >/dev/null 2>>"$LOG" || fail "put from stdin"
assert_eq piped "$(ferry s3 get piped.txt 2>>"$LOG")" "piped object"

# server-side copy, listing one level and recursively, delete
ferry s3 cp dir/a.txt dir/sub/c.txt >/dev/null 2>>"$LOG" || fail "cp"
cmp -s b.txt <(ferry s3 get dir/sub/c.txt 2>>"$LOG") || fail "copy differs"
ferry s3 ls "s3://$BUCKET_NAME/" >ls.out 2>>"$LOG" || fail "ls"
assert_contains ls.out "PRE dir/"
assert_contains ls.out " big.bin"
assert_not_contains ls.out "dir/a.txt"
ferry s3 ls dir/ >ls1.out 2>>"$LOG" || fail "ls dir/"
assert_contains ls1.out "PRE dir/sub/"
assert_contains ls1.out "           7 dir/a.txt"
ferry s3 ls -r dir/ >lsr.out 2>>"$LOG" || fail "ls -r"
assert_contains lsr.out "dir/sub/c.txt"
ferry s3 rm dir/sub/c.txt 2>>"$LOG" || fail "rm"
s3_raw_exists dir/sub/c.txt && fail "rm left the object"
ferry s3 rm dir/sub/c.txt 2>>"$LOG" || fail "rm of a missing key must succeed"
assert_exit 1 ferry s3 rm dir/a.txt --if-match "$etag" 2>>"$LOG"
s3_raw_exists dir/a.txt || fail "conditional rm with a stale ETag deleted the object"
ferry s3 rm dir/a.txt --if-match "$etag2" 2>>"$LOG" || fail "conditional rm"

# usage errors: exit 2 with the reason
assert_exit 2 ferry s3 get "s3://other-bucket/x" 2>eb.log
assert_contains eb.log "bucket 'other-bucket' of 's3://other-bucket/x' is not the configured bucket"
assert_exit 2 ferry s3 frob 2>>"$LOG" >/dev/null
assert_exit 2 ferry s3 put onlyone 2>>"$LOG" >/dev/null
assert_exit 2 ferry s3 put a.txt k --if-match x --if-none-match 2>>"$LOG" >/dev/null
cat eb.log >>"$LOG"

# an unreachable endpoint: a clear error naming the request, after bounded retries
cat >s3.ini <<INI
[pipeline]
name = t1001
state_dir = $T/state
[s3]
endpoint = http://127.0.0.1:1
bucket = $BUCKET_NAME
max_retries = 1
retry_base = 10ms
INI
assert_exit 1 ferry -c s3.ini s3 head x 2>eu.log
assert_contains eu.log "HEAD 'x': "
assert_contains eu.log "2 attempts: is the endpoint http://127.0.0.1:1 up?"
cat eu.log >>"$LOG"
# a bad [s3] value is a config error naming file:line and key
printf '[pipeline]\nname = t\nstate_dir = %s/state\n[s3]\nconnect_timeout = soon\n' "$T" >bad.ini
assert_exit 2 ferry -c bad.ini s3 ls 2>ebad.log
assert_contains ebad.log "bad.ini:5"
assert_contains ebad.log "connect_timeout"
cat ebad.log >>"$LOG"

[ -s "$LOG" ] || fail "no ferry output was collected for the credential scan"
assert_no_secrets "$T"
valgrind_verdict
