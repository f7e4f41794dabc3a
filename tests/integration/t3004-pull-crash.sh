#!/usr/bin/env bash
# t3004: SIGKILL of ferry during pull (at each failpoint, then at random moments): after the
# next start's rollback the replica is always the old or the new version and passes
# quick_check; a later pull completes. CRASH_ITER=N sets the random kills (default 6).
. "$(dirname "$0")/../lib.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

M=$T/mnt R=$T/state/org.db
mkdir -p "$M" "$T/state"
# in the foreground, so its log (and any sanitizer report) lands in ferryfs.log
"$FERRYFS_BIN" "$BUCKET_NAME" "$M" -f -o cache_dir="$T/cache" 2>"$T/ferryfs.log" &
FS_PID=$!
at_exit "fusermount3 -u '$M'; kill $FS_PID; wait $FS_PID"
for i in $(seq 100); do [ -r "$M/.ferryfs-stats" ] && break; sleep 0.1; done
[ -r "$M/.ferryfs-stats" ] || { cat "$T/ferryfs.log"; fail "ferryfs did not mount"; }
fs_alive() { kill -0 $FS_PID 2>/dev/null || { cat "$T/ferryfs.log" >&2; fail "ferryfs died ($1)"; }; }

# V1, and V2 = V1 with ~10% of the rows rewritten and grown by a third
sqlite3 "$T/v1.db" "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<6000) INSERT INTO t SELECT x, randomblob(300) FROM c;"
cp "$T/v1.db" "$T/v2.db"
sqlite3 "$T/v2.db" "UPDATE t SET b=randomblob(300) WHERE a % 10 = 3;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000) INSERT INTO t(b) SELECT randomblob(300) FROM c;"
V1=$(sha256sum <"$T/v1.db") V2=$(sha256sum <"$T/v2.db")

cat >"$T/p.ini" <<INI
[pipeline]
name = t3004
state_dir = $T/state

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}

[stage pull]
plugin = pull
origin = $M/org.db
replica = \${state_dir}/org.db
INI

cp "$T/v1.db" "$M/org.db" || fail "cannot write the origin through the mount"
ferry -c "$T/p.ini" run 2>"$T/first" || { cat "$T/first"; fail "first pull"; }
assert_eq "$V1" "$(sha256sum <"$R")" "first pull"
cp "$R" "$T/r1.db"; cp "$R.ferry-state" "$T/r1.state"
cp "$T/v2.db" "$M/org.db" || fail "cannot replace the origin"

# check_after_crash WHAT: roll back (a pull that stops at its missing origin still recovers
# first), then the replica must be V1 or V2 and pass quick_check
old=0 new=0
check_after_crash() {
	local rc=0 got
	fs_alive "$1"
	ferry -c "$T/p.ini" -o pull.origin="$M/absent.db" run pull >"$T/recover" 2>&1 || rc=$?
	assert_eq 1 "$rc" "recovery run ($1)"
	assert_contains "$T/recover" "origin '$M/absent.db' does not exist"
	[ ! -e "$R.ferry-undo" ] || fail "undo file left after recovery ($1)"
	got=$(sha256sum <"$R")
	if [ "$got" = "$V1" ]; then old=$((old + 1))
	elif [ "$got" = "$V2" ]; then new=$((new + 1))
	else fail "replica is neither old nor new after a crash ($1)"
	fi
	assert_eq ok "$(sqlite3 "$R" 'PRAGMA quick_check')" "quick_check after crash ($1)"
}
reset_replica() { cp "$T/r1.db" "$R"; cp "$T/r1.state" "$R.ferry-state"; rm -f "$R.ferry-undo" "$R.ferry-tmp"; }

for fp in pull.after_undo pull.mid_patch pull.before_commit pull.after_commit; do
	reset_replica
	rc=0; FERRY_FAILPOINT=$fp:kill ferry -c "$T/p.ini" run >"$T/crash" 2>&1 || rc=$?
	assert_eq 137 "$rc" "ferry killed at $fp"
	case $fp in
	pull.after_commit) ;;
	*) [ -e "$R.ferry-undo" ] || fail "no undo file after a kill at $fp" ;;
	esac
	check_after_crash "$fp"
done
# the kill before the commit must have rolled back; after the commit it must be new
[ "$old" -ge 3 ] && [ "$new" -ge 1 ] || fail "failpoint outcomes: old=$old new=$new"

mid=0
# random moments: the pull is slowed at its mid-patch point so kills land inside it too
for i in $(seq 1 "${CRASH_ITER:-6}"); do
	reset_replica
	# the binary itself (not the valgrind wrapper function), so $! is ferry's pid
	FERRY_FAILPOINT=pull.mid_patch:sleep=300 "$FERRY_BIN" -c "$T/p.ini" run >"$T/crash" 2>&1 &
	pid=$!
	sleep "0.$(( RANDOM % 9 + 1 ))$(( RANDOM % 10 ))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	[ -e "$R.ferry-undo" ] && mid=$((mid + 1))
	check_after_crash "random kill $i"
done
note "outcomes: old=$old new=$new, random kills mid-patch: $mid"

# and a pull after all that completes to V2
ferry -c "$T/p.ini" run 2>"$T/last" || { cat "$T/last"; fail "final pull"; }
assert_eq "$V2" "$(sha256sum <"$R")" "final pull"
valgrind_verdict
