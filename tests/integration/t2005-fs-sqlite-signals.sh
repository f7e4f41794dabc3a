#!/usr/bin/env bash
# SQLite reads a database stored in the bucket through ferryfs (immutable=1, cold cache);
# SIGUSR1 logs the counters; SIGTERM exits 0 and discards (with an error) what was never
# committed, leaving the object as it was.
. "$(dirname "$0")/../lib.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

M=$T/mnt
mkdir -p "$M"
ffs_mount() {
	"$FERRYFS_BIN" "$BUCKET_NAME:org-data" "$M" -f -o "cache_dir=$T/cache" 2>>"$T/ffs.log" &
	FFS_PID=$!
	at_exit "fusermount3 -u $M; kill $FFS_PID; wait $FFS_PID"
	local n=0
	until mountpoint -q "$M"; do
		n=$((n + 1)); [ $n -lt 100 ] || fail "ferryfs did not mount: $(cat "$T/ffs.log")"
		sleep 0.1
	done
}
ffs_mount
sqlite3 "$T/db.sqlite" <<'SQL' || fail "cannot build the test database"
PRAGMA page_size = 4096;
CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, x INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO t SELECT i, printf('name-%05d', i), i * 7 FROM n;
CREATE INDEX t_x ON t(x);
SQL
want=$(sqlite3 "$T/db.sqlite" 'SELECT count(*), sum(x), max(name) FROM t')
cp "$T/db.sqlite" "$M/db.sqlite" || fail "cannot copy the database in"
fusermount3 -u "$M"; wait $FFS_PID || fail "ferryfs exit status"

ffs_mount   # cold: every page comes through pinned ranged GETs
got=$(sqlite3 "file:$M/db.sqlite?immutable=1" 'SELECT count(*), sum(x), max(name) FROM t') || fail "sqlite3 query failed"
assert_eq "$want" "$got" "query through the mount"
got=$(sqlite3 "file:$M/db.sqlite?immutable=1" 'SELECT name FROM t WHERE x = 7 * 12345') || fail "index lookup failed"
assert_eq "name-12345" "$got" "index lookup through the mount"
assert_eq "ok" "$(sqlite3 "file:$M/db.sqlite?immutable=1" 'PRAGMA quick_check')" "quick_check through the mount"

# SIGUSR1: counters in the log, the filesystem keeps serving
kill -USR1 $FFS_PID
n=0
until grep -q "counters stats=" "$T/ffs.log"; do
	n=$((n + 1)); [ $n -lt 50 ] || fail "SIGUSR1 did not log the counters"
	sleep 0.1
done
assert_contains "$(grep 'counters stats=' "$T/ffs.log")" '\"get\":'
mountpoint -q "$M" || fail "SIGUSR1 unmounted"

# SIGTERM with uncommitted data: exit 0, nothing written, an error names the file
etag=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.ferry.etag").decode())' "$M/db.sqlite")
# the writer is its own process: any process closing the fd would commit (close = commit)
python3 - "$M/db.sqlite" "$T/dirty.ready" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"x" * 4096, 0)
os.sync()                       # writeback hands the page to ferryfs: no fsync, no flush
open(sys.argv[2], "w").close()
time.sleep(60)
PY
WRITER=$!
at_exit "kill $WRITER"
n=0
until [ -e "$T/dirty.ready" ]; do
	n=$((n + 1)); [ $n -lt 100 ] || fail "writer did not get ready"
	sleep 0.1
done
kill -TERM $FFS_PID
rc=0; wait $FFS_PID || rc=$?
kill $WRITER; wait $WRITER 2>/dev/null
assert_eq 0 $rc "ferryfs exit status on SIGTERM"
assert_contains "$T/ffs.log" "discarding uncommitted changes at unmount"
fusermount3 -u "$M" 2>/dev/null || true
now=$(curl -fsI --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
	"$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/org-data/db.sqlite" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}')
assert_eq "$etag" "$now" "object untouched by uncommitted writes"
assert_no_secrets "$T"
exit 0
