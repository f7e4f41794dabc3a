#!/usr/bin/env bash
# t3007: long steps of pull and push report progress without a terminal (a container log):
# progress lines (what, how far, rate, ETA) every FERRY_PROGRESS_INTERVAL_MS, a closing line
# per step, and push's phase lines (commit from the replica, verify by ETag) with time and
# bytes; the commit counts what was actually sent. On a terminal: the live line instead, no
# such lines.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"

KEY=org-data/9.db
mkdir -p "$T/state" "$T/mnt"
pipeline_ini "$T/p.ini"
cat >>"$T/p.ini" <<INI
[stage lock]
plugin = lock
key = $KEY.lock

[stage mount]
plugin = mount
mountpoint = $T/mnt

[stage pull]
plugin = pull
origin = $T/mnt/$KEY
replica = \${state_dir}/org.db

[stage work]
plugin = exec
command = sqlite3 \${state_dir}/org.db "UPDATE t SET b = randomblob(3000) WHERE a % 5 = 0;"

[stage push]
plugin = push

[stage unlock]
plugin = unlock
INI
# 24 MiB: three 8 MiB parts, so the commit is a multipart upload
sqlite3 "$T/seed.db" "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<6000) INSERT INTO t SELECT x, randomblob(3000) FROM c;"
(cd "$T" && ferry s3 put seed.db "$KEY" >/dev/null 2>&1) || fail "seed upload"

# stderr is a file, as under a container runtime; interval 0: a line at every update
FERRY_PROGRESS_INTERVAL_MS=0 ferry -c "$T/p.ini" run >"$T/out" 2>"$T/err" ||
	{ cat "$T/err" >&2; fail "run failed"; }
size=$(stat -c %s "$T/state/org.db")
pages=$((size / 4096))
# pull: a full copy, with progress lines and the line that closes the step
grep -E "info pull copying every origin page pages_done=[0-9]+ pages_total=$pages pct=[0-9]+ mib=[0-9.]+ mib_per_s=[0-9.]+ elapsed_s=[0-9]+ eta_s=[0-9]+$" "$T/err" >/dev/null ||
	{ cat "$T/err" >&2; fail "no progress line of the pull"; }
assert_contains "$T/err" "info pull copying every origin page done pages_done=$pages pages_total=$pages"
# push: one line per phase, with its time and bytes; an object of the [s3] bucket is
# written from the replica, not through the mount's cache
grep -E "info push hashed the replica pages=$pages bytes=$size ms=[0-9]+$" "$T/err" >/dev/null ||
	{ cat "$T/err" >&2; fail "no hash phase line"; }
assert_not_contains "$T/err" "into the mount's cache"
assert_contains "$T/err" "info push committing: uploading to S3 pages_done="
assert_contains "$T/err" "info push committing: uploading to S3 done pages_done=$pages pages_total=$pages"
line=$(grep -E "info push committed from=replica bytes_uploaded=[0-9]+ bytes_copied=[0-9]+ ms=[0-9]+$" "$T/err") ||
	{ cat "$T/err" >&2; fail "no commit phase line"; }
up=$(sed -E 's/.*bytes_uploaded=([0-9]+).*/\1/' <<<"$line")
copied=$(sed -E 's/.*bytes_copied=([0-9]+).*/\1/' <<<"$line")
# what was sent: every byte of the new object, uploaded or copied server-side, once
assert_eq "$size" "$((up + copied))" "bytes uploaded + copied by the commit"
[ "$up" -gt 0 ] || fail "the commit uploaded nothing"
# verify = etag (the default): proven by the store's ETags, nothing read back
assert_contains "$T/err" "info push verified by the store's ETags: nothing read back how=md5 etag="
assert_not_contains "$T/err" "verifying: reading"
# the facts agree with the phase line
python3 - "$T/state/journal.json" "$up" <<'PY' || fail "bytes_uploaded fact"
import json, sys
j = json.load(open(sys.argv[1]))
push = [s for s in j["stages"] if s["name"] == "push"][0]
assert push["facts"]["bytes_uploaded"] == sys.argv[2], push["facts"]
PY

# a pull that compares every page: no state file, no manifest
rm -f "$T/state/org.db.ferry-state"
(cd "$T" && ferry s3 rm "$KEY.ferry-manifest" >/dev/null 2>&1) || fail "cannot remove the manifest"
FERRY_PROGRESS_INTERVAL_MS=0 ferry -c "$T/p.ini" run lock mount pull unlock 2>"$T/err2" ||
	{ cat "$T/err2" >&2; fail "second pull failed"; }
assert_contains "$T/err2" "info pull reading every origin page pages_done="
assert_contains "$T/err2" "info pull reading every origin page done pages_done=$pages"

# on a terminal the live line is drawn instead: no progress log lines
if command -v script >/dev/null; then
	FERRY_PROGRESS_INTERVAL_MS=0 script -qec "$FERRY_BIN -c $T/p.ini run lock mount pull work push unlock" /dev/null >"$T/tty" 2>&1 ||
		{ cat "$T/tty" >&2; fail "run on a terminal failed"; }
	assert_contains "$T/tty" "info push committed from=replica bytes_uploaded="
	assert_not_contains "$T/tty" "pages_done="
else
	note "script(1) missing: terminal case not checked"
fi
if grep -q " $T/mnt " /proc/mounts; then fail "still mounted: $T/mnt"; fi
valgrind_verdict
