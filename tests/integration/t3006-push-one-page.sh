#!/usr/bin/env bash
# t3006: push of a 64 MiB database, counted at the wire by tests/s3proxy.py: a replica in
# WAL mode whose change touches exactly one page (checked page by page) uploads exactly
# one 5 MiB part, the rest copied server-side, and the whole run downloads less than 1 MiB
# (push proves the object by the store's ETags, verify = etag: nothing is read back); the
# same change in rollback-journal mode also rewrites page 1 (SQLite's file change counter)
# and so uploads two 5 MiB parts; a part damaged on the way is refused and the origin stays as
# it was; verify = readback still reads the whole object back; where the store's ETags are
# no MD5s (SSE-KMS), only the uploaded parts are read back; a push killed before its
# multipart write completes leaves the origin as it was.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/proxy.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

MiB=1048576
KEY=org-data/one.db
s3put() { (cd "$T" && ferry s3 put "$2" "$1" >/dev/null 2>&1); }
s3get() { (cd "$T" && ferry s3 get "$1" "$2" 2>/dev/null); }
fact() { # fact STAGE KEY
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
for s in j["stages"]:
    if s["name"] == sys.argv[2]: print(s["facts"].get(sys.argv[3], "")); break' "$T/A/journal.json" "$1" "$2"
}
# pages_diff OLD NEW: "PAGE:first-byte-offsets..." for each differing 4 KiB page (1-based)
pages_diff() {
	python3 - "$1" "$2" <<'PY'
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
assert len(a) == len(b), "sizes differ"
out = []
for i in range(len(a) // 4096):
    x, y = a[i * 4096:(i + 1) * 4096], b[i * 4096:(i + 1) * 4096]
    if x != y:
        out.append("%d:%s" % (i + 1, ",".join(str(k) for k in range(4096) if x[k] != y[k])[:40]))
print(" ".join(out))
PY
}
mkdir -p "$T/A" "$T/mnt-A"
# the work stage runs work.sh (written before each run)
cat >"$T/A.ini" <<INI
[pipeline]
name = t3006
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
# the counts below are the copy path's: a loaded moto (its part copies cost O(object)) must
# not turn copies into uploads here (test_s3's test_copy_choice covers that switch)
copy_slack = 0
[stage unlock]
plugin = unlock
INI
run() { ferry -c "$T/A.ini" run "$@" 2>"$T/run.log" || { cat "$T/run.log"; fail "run $*"; }; }
# change_row N: the work stage keeps a copy of the replica as pulled, then changes row N
change_row() {
	printf 'cp %s %s && sqlite3 %s "UPDATE t SET b=randomblob(4000) WHERE a = %d;"\n' \
		"$T/A/org.db" "$T/before.db" "$T/A/org.db" "$1" >"$T/work.sh"
}

# 64 MiB, about one row a page, WAL mode (the mode is in the header: bytes 18-19 = 2)
sqlite3 "$T/seed.db" >/dev/null "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<16600) INSERT INTO t(b) SELECT randomblob(4000) FROM c;"
size=$(stat -c %s "$T/seed.db")
[ "$size" -ge $((64 * MiB)) ] || fail "seed is only $size bytes"
s3put "$KEY" "$T/seed.db" || fail "upload"
proxy_start
run lock mount pull unlock

# 1. WAL: a row in the middle; SQLite leaves page 1 alone, so exactly one page differs
change_row 9000
proxy_reset
run
diff=$(pages_diff "$T/before.db" "$T/A/org.db")
note "wal: differing pages: $diff"
[ "$(wc -w <<<"$diff")" = 1 ] && [ "${diff%%:*}" -gt 1 ] || fail "wal: expected one page other than page 1 to differ, got '$diff'"
assert_eq 1 "$(fact push pages_written)" "wal: pages written"
# the part around the page is 5 MiB (S3's smallest), the rest of the object is copied
assert_eq $((5 * MiB)) "$(fact push bytes_uploaded)" "wal: bytes uploaded"
# at the wire: the one 5 MiB part, the manifest (16 bytes a page) and small bodies (lock,
# complete), nothing like a second part
put_up=$(proxy_stats methods PUT bytes_up) post_up=$(proxy_stats methods POST bytes_up)
note "wal: PUT bytes up $put_up, POST bytes up $post_up, size $size"
[ "$put_up" -ge $((5 * MiB)) ] && [ "$put_up" -le $((5 * MiB + size / 4096 * 16 + 64 * 1024)) ] ||
	fail "wal: $put_up bytes PUT for one page (one part is $((5 * MiB)))"
[ "$post_up" -le 65536 ] || fail "wal: $post_up bytes POSTed"
down=$(proxy_stats bytes_down)
note "wal: bytes down for the whole run $down"
[ "$down" -lt "$MiB" ] || fail "wal: the run downloaded $down bytes for a one-row change"
assert_contains "$T/run.log" "push verified by the store's ETags: nothing read back how=md5"
[ "$(fact push bytes_copied)" -ge $((size - 5 * MiB)) ] || fail "wal: only $(fact push bytes_copied) bytes copied server-side"
s3get "$KEY" "$T/check.db" || fail "get"
cmp -s "$T/check.db" "$T/A/org.db" || fail "wal: S3 object differs from the replica"

# 2. rollback journal: the same kind of change also bumps the change counter on page 1
#    (bytes 24-27, and 92-95, "version-valid-for"): two pages far apart, each in a 5 MiB
#    part of its own (ferry_s3_plan_around): 10 MiB up (13 in ferryfs's fixed layout)
echo "sqlite3 $T/A/org.db 'PRAGMA journal_mode=DELETE;' >/dev/null" >"$T/work.sh"
run                                         # pushes page 1 (header bytes 18-19)
change_row 9100
proxy_reset
run
diff=$(pages_diff "$T/before.db" "$T/A/org.db")
note "rollback: differing pages: $diff"
[ "$(wc -w <<<"$diff")" = 2 ] && [[ "${diff%% *}" =~ ^1:(2[4-7]|9[2-5])(,(2[4-7]|9[2-5]))*$ ]] ||
	fail "rollback: expected page 1 (change counter) and one more, got '$diff'"
assert_eq 2 "$(fact push pages_written)" "rollback: pages written"
assert_eq $((10 * MiB)) "$(fact push bytes_uploaded)" "rollback: bytes uploaded"
put_up=$(proxy_stats methods PUT bytes_up)
note "rollback: PUT bytes up $put_up"
[ "$put_up" -ge $((10 * MiB)) ] && [ "$put_up" -le $((10 * MiB + size / 4096 * 16 + 64 * 1024)) ] ||
	fail "rollback: $put_up bytes PUT for two parts"
s3get "$KEY" "$T/check.db" || fail "get"
cmp -s "$T/check.db" "$T/A/org.db" || fail "rollback: S3 object differs from the replica"

# 3. a part damaged on the way (one bit flipped after ferry computed its Content-MD5): a
#    store that checks Content-MD5 answers BadDigest; moto stores it, and its ETag is not
#    the MD5 sent: either way the part fails, the commit is abandoned, the origin is as it was
change_row 9200
cp "$T/check.db" "$T/origin-before.db"
proxy_reset
proxy_rule '{"method":"PUT","query":"uploadId","action":"flip_byte","count":-1}'
rc=0; ferry -c "$T/A.ini" run 2>"$T/run.log" || rc=$?
assert_eq 1 $rc "push of a damaged part"
[ "$(proxy_stats fired flip_byte)" -ge 1 ] || fail "no part went through the flip"
grep -q "BadDigest\|the bytes changed on the way" "$T/run.log" || { cat "$T/run.log"; fail "damaged part not named"; }
s3get "$KEY" "$T/check.db" || fail "get"
cmp -s "$T/check.db" "$T/origin-before.db" || fail "damaged push: the origin changed"
assert_contains "$T/run.log" "lock released lock key=$KEY.lock"

# 4. verify = readback reads the whole new object back from the store
proxy_reset
run -o push.verify=readback
assert_contains "$T/run.log" "push verified: what was read back from the store matches the replica how=readback bytes_read=$size of=$size"
s3get "$KEY" "$T/check.db" || fail "get"
cmp -s "$T/check.db" "$T/A/org.db" || fail "readback: S3 object differs from the replica"

# 4b. a store whose ETags are no MD5s (SSE-KMS: the proxy says so on every part uploaded):
#     push reads back exactly what it uploaded (page 1's part and the row's: 10 MiB), never
#     the copied parts
change_row 9250
proxy_reset
proxy_rule '{"method":"PUT","query":"uploadId","action":"sse_kms","count":-1}'
run
assert_contains "$T/run.log" "push the store's ETags prove nothing here (not MD5s): reading back what was uploaded"
assert_contains "$T/run.log" "how=readback-uploaded bytes_read=$((10 * MiB)) of=$size reads=2 "
down=$(proxy_stats bytes_down)
[ "$down" -ge $((10 * MiB)) ] && [ "$down" -lt $((11 * MiB)) ] || fail "sse-kms: $down bytes read back for 10 MiB uploaded"
proxy_rules_clear
s3get "$KEY" "$T/check.db" || fail "get"
cmp -s "$T/check.db" "$T/A/org.db" || fail "sse-kms: S3 object differs from the replica"

# 5. push writes the replica straight to the store (a multipart upload here: one part
#    uploaded, two copied). Killed with every part on the store and the upload not
#    completed, or halfway through the parts: the object is as it was; the next run (after
#    the dead run's lock is broken) writes the change
n=9300
for fp in push.before_complete push.mid_write; do
	n=$((n + 1))
	change_row $n
	cp "$T/check.db" "$T/origin-before.db"
	rc=0; FERRY_FAILPOINT=$fp:kill ferry -c "$T/A.ini" run 2>"$T/run.log" || rc=$?
	assert_eq 137 $rc "ferry killed at $fp"
	assert_contains "$T/run.log" "failpoint hit name=$fp"
	s3get "$KEY" "$T/check.db" || fail "get"
	cmp -s "$T/check.db" "$T/origin-before.db" || fail "killed at $fp: the origin changed"
	(cd "$T" && ferry -c "$T/A.ini" lock break --yes >/dev/null 2>&1) || fail "cannot break the lock after $fp"
	echo true >"$T/work.sh"
	run
	s3get "$KEY" "$T/check.db" || fail "get"
	cmp -s "$T/check.db" "$T/A/org.db" || fail "the run after a kill at $fp: S3 object differs from the replica"
	[ "$(fact push bytes_uploaded)" -lt "$size" ] || fail "after $fp: the whole object was uploaded"
done
valgrind_verdict
