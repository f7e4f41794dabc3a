#!/usr/bin/env bash
# t3010: push remembers what part copies and part uploads cost on this store
# (state_dir/push-costs-HASH.json, plugins/push/README.md "Remembered part costs"), counted
# at the wire by tests/s3proxy.py: a push whose copies the proxy stalls leaves a file saying
# copies cost more than uploads; the next push (no stall now) sends no UploadPartCopy at all,
# not even a probe, and uploads the whole object in parts, saying in its info line that the
# remembered figure decided; copy_slack = 0 still copies; a copy figure too old is held back
# and copies are timed again (a probe copy at the wire); a corrupt file is ignored with an
# info line and written anew.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/proxy.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

MiB=1048576
KEY=org-data/costs.db
s3put() { (cd "$T" && ferry s3 put "$2" "$1" >/dev/null 2>&1); }
s3get() { (cd "$T" && ferry s3 get "$1" "$2" 2>/dev/null); }
fact() { # fact STAGE KEY
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
for s in j["stages"]:
    if s["name"] == sys.argv[2]: print(s["facts"].get(sys.argv[3], "")); break' "$T/A/journal.json" "$1" "$2"
}
costs() { # costs FIELD: a field of the costs file
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$COSTS" "$1"
}
# copies: the UploadPartCopy requests the proxy saw since the last proxy_reset
count_copies() { proxy_rule '{"method":"PUT","header":"x-amz-copy-source","action":"count","count":-1}'; }
copies() { proxy_stats fired count; }
mkdir -p "$T/A" "$T/mnt-A"
# copy_slack = 1ms: any remembered difference is worth uploading for, so what the second
# push does follows from the file alone, not from how fast this machine is right now
cat >"$T/A.ini" <<INI
[pipeline]
name = t3010
state_dir = $T/A
[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}
[stage lock]
plugin = lock
key = $KEY.lock
max_wait = 10s
[stage mount]
plugin = mount
mountpoint = $T/mnt-A
cache_dir = $T/cache-A
[stage pull]
plugin = pull
origin = $T/mnt-A/$KEY
replica = \${state_dir}/org.db
[stage work]
plugin = exec
command = sh $T/work.sh
[stage push]
plugin = push
copy_slack = 1ms
[stage unlock]
plugin = unlock
INI
run() { ferry -c "$T/A.ini" run "$@" 2>"$T/run.log" || { cat "$T/run.log"; fail "run $*"; }; }
change_row() { printf 'sqlite3 %s "UPDATE t SET b=randomblob(4000) WHERE a = %d;"\n' "$T/A/org.db" "$1" >"$T/work.sh"; }
same_object() {
	s3get "$KEY" "$T/check.db" || fail "get"
	cmp -s "$T/check.db" "$T/A/org.db" || fail "$1: S3 object differs from the replica"
}

# 32 MiB, about one row a page, WAL mode: one changed row is one page, one 5 MiB part
# uploaded, the ~27 MiB around it copyable (two parts)
sqlite3 "$T/seed.db" >/dev/null "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<8300) INSERT INTO t(b) SELECT randomblob(4000) FROM c;"
size=$(stat -c %s "$T/seed.db")
[ "$size" -ge $((32 * MiB)) ] || fail "seed is only $size bytes"
s3put "$KEY" "$T/seed.db" || fail "upload"
proxy_start
run lock mount pull unlock
ls "$T"/A/push-costs-*.json >/dev/null 2>&1 && fail "a costs file before any push"

# 1. every part copy stalls 4 s in the proxy: the push leaves figures saying copies cost
#    more per MiB than uploads (a 5 MiB upload would have to take over a second for them
#    not to), and no endpoint in the file
change_row 4000
proxy_reset
proxy_rule '{"method":"PUT","header":"x-amz-copy-source","action":"stall","seconds":4,"count":-1}'
run
[ "$(proxy_stats fired stall)" -ge 1 ] || fail "no copy went through the stall"
COSTS=$(ls "$T"/A/push-costs-*.json 2>/dev/null) || fail "no costs file after a push"
note "after the stalled push: $(cat "$COSTS")"
grep -q "127.0.0.1" "$COSTS" && fail "the costs file holds the endpoint"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))
assert c["copy_ms_per_mib"] > c["upload_ms_per_mib"] > 0, c
assert c["pushes_on_copy_figure"] == 0 and c["copy_timed_at"] > 0, c' "$COSTS" ||
	fail "costs after stalled copies: $(cat "$COSTS")"
same_object "stalled copies"

# 2. the next push, copies no longer stalled: the remembered figure decides before any
#    copy is sent: no UploadPartCopy at the wire, every byte of the object uploaded in parts
change_row 4100
proxy_reset
count_copies
run
note "$(grep -m1 'copies are slower than uploads' "$T/run.log")"
assert_eq 0 "$(copies)" "UploadPartCopy requests with copies remembered slow"
assert_eq 0 "$(fact push bytes_copied)" "bytes copied with copies remembered slow"
assert_eq "$size" "$(fact push bytes_uploaded)" "bytes uploaded with copies remembered slow"
put_up=$(proxy_stats methods PUT bytes_up)
[ "$put_up" -ge "$size" ] || fail "only $put_up bytes PUT for a $size-byte object uploaded whole"
assert_contains "$T/run.log" "s3 part copies are slower than uploads here: uploading the copyable parts left key=$KEY"
assert_contains "$T/run.log" "copy_figure=remembered costs_file=$COSTS copy_figure_age_days=0.0 earlier_uploads_on_it=0"
assert_eq 1 "$(costs pushes_on_copy_figure)" "pushes counted on the copy figure"
same_object "copies remembered slow"

# 3. copy_slack = 0 is "always copy", whatever the file says; the copies are timed and
#    the count of pushes on the old figure starts again
change_row 4200
proxy_reset
count_copies
run -o push.copy_slack=0
[ "$(copies)" -ge 1 ] || fail "copy_slack = 0: no UploadPartCopy at the wire"
[ "$(fact push bytes_copied)" -gt 0 ] || fail "copy_slack = 0: nothing copied"
assert_not_contains "$T/run.log" "copies are slower than uploads"
assert_eq 0 "$(costs pushes_on_copy_figure)" "pushes on a figure just timed"
same_object "copy_slack = 0"

# 4. a copy figure saying "slow" but 8 days old is held back: copies are timed again (the
#    smallest part to copy goes first as a probe), and the new figure replaces the old one
python3 -c 'import json,sys,time; json.dump({"copy_ms_per_mib": 100000.0, "upload_ms_per_mib": 1.0,
    "copy_timed_at": int(time.time()) - 8 * 86400, "pushes_on_copy_figure": 3}, open(sys.argv[1], "w"))' "$COSTS"
change_row 4300
proxy_reset
count_copies
run
assert_contains "$T/run.log" "remembered part copy figure held back: timing part copies again copy_ms_per_mib=100000.0 copy_figure_age_days=8.0 earlier_pushes_on_it=3"
[ "$(copies)" -ge 1 ] || fail "an old copy figure: no probe copy at the wire"
python3 -c 'import json,sys,time; c=json.load(open(sys.argv[1]))
assert c["copy_timed_at"] > time.time() - 3600 and c["pushes_on_copy_figure"] == 0, c
assert c["copy_ms_per_mib"] < 50000.0, c' "$COSTS" ||   # averaged in, it would be over 50000
	fail "costs after timing copies again: $(cat "$COSTS")"
same_object "copies timed again"

# 5. a corrupt file: an info line, the push runs as with no file, and writes it anew
echo '{"copy_ms_per_mib": "fast"' >"$COSTS"
change_row 4400
proxy_reset
run
assert_contains "$T/run.log" "remembered part costs ignored: cannot read them; timing copies and uploads afresh file=$COSTS"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["upload_ms_per_mib"] > 0, c' "$COSTS" ||
	fail "costs file not written anew: $(cat "$COSTS")"
echo '{"copy_ms_per_mib": -5}' >"$COSTS"
change_row 4500
run
assert_contains "$T/run.log" "remembered part costs ignored: not what push writes"
same_object "corrupt costs file"
valgrind_verdict
