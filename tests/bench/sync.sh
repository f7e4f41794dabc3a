#!/bin/bash
# tests/bench/sync.sh: pull/push figures on moto: bytes and seconds for pull cold, pull warm
# (0%, 1 page, 1% and ~90% of the pages changed elsewhere, ranged and sequential), push
# (1 page in rollback-journal and in WAL mode, 1%, ~90%), beside cp through ferryfs and
# s3fs in the same run, plus SIGKILL-during-pull and SIGKILL-during-push iterations.
#   SIZE_MB=256 CRASH_ITER=50 PUSH_ITER=50 CRASH_MB=16 bash tests/bench/sync.sh
#   (defaults; markdown on stdout)
# moto serves a ranged GET in time proportional to the object's size (a moto quirk: it reads the whole object for a ranged GET), so the
# differential pulls here are dominated by moto, not by bytes; the crash loop uses its own
# CRASH_MB database so that kills land inside the pull.
. "$(dirname "$0")/../lib.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

SIZE_MB=${SIZE_MB:-256}
CRASH_ITER=${CRASH_ITER:-50}
PUSH_ITER=${PUSH_ITER:-50}
CRASH_MB=${CRASH_MB:-16}
KEY=org-data/bench.db
ms() { echo $(( $(date +%s%N) / 1000000 )); }
fact() { jq -r --arg s "$2" --arg k "$3" '.stages[] | select(.name == $s) | .facts[$k] // ""' "$T/$1/journal.json"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
s3put() { (cd "$T" && ferry s3 put "$2" "$1" >/dev/null 2>&1); }
s3get() { (cd "$T" && ferry s3 get "$1" "$2" 2>/dev/null); }

ini() { # ini INSTANCE WORK-SQL [VERIFY]
	mkdir -p "$T/$1" "$T/mnt-$1"
	cat >"$T/$1.ini" <<INI
[pipeline]
name = bench-$1
state_dir = $T/$1
[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}
[stage lock]
plugin = lock
key = $KEY.lock
max_wait = 30s
[stage mount]
plugin = mount
mountpoint = $T/mnt-$1
cache_dir = $T/cache-$1
[stage pull]
plugin = pull
origin = $T/mnt-$1/$KEY
replica = \${state_dir}/org.db
[stage work]
plugin = exec
command = sqlite3 $T/$1/org.db "$2"
[stage push]
plugin = push
verify = ${3:-checksum}
[stage unlock]
plugin = unlock
INI
}
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
# stage_ms INSTANCE STAGE: the stage's own time from the summary table of the last run
stage_ms() { awk -v s="$2" '$1 == s && $3 == "ok" { sub("s$", "", $4); printf "%.2f", $4 }' "$T/$1.log"; }
run() { # run INSTANCE [STAGES...]
	local inst=$1
	shift
	ferry -c "$T/$inst.ini" run "$@" >/dev/null 2>"$T/$inst.log" || { tail -20 "$T/$inst.log"; fail "run $inst $*"; }
}

# ~316 bytes a row: 12 rows a 4 KiB page; "WHERE a % 1200 = 0" touches 1% of the pages
ROWS=$((SIZE_MB * 1048576 / 316))
sqlite3 "$T/seed.db" >/dev/null "PRAGMA page_size=4096; PRAGMA journal_mode=OFF; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$ROWS) INSERT INTO t SELECT x, randomblob(300) FROM c;"
SIZE=$(stat -c %s "$T/seed.db")
PAGES=$((SIZE / 4096))
s3put "$KEY" "$T/seed.db" || fail "seed upload"
ONE="UPDATE t SET b=randomblob(300) WHERE a = $((ROWS / 2));"
PCT="UPDATE t SET b=randomblob(300) WHERE a % 1200 = 0;"
MOST="UPDATE t SET b=randomblob(300) WHERE a % 10 != 0;"

echo "# sync bench on moto_server $(python3 -c 'import moto; print(moto.__version__)'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "database: $(mib "$SIZE") MiB, $PAGES pages of 4096 bytes"
echo
row "operation" "seconds (stage)" "MiB from/to S3" "notes"
row "---" "---" "---" "---"

ini A "SELECT 1;"
run A lock mount pull unlock
row "pull cold (full copy)" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "pages moved $(fact A pull pages_moved)"
run A lock mount pull unlock
row "pull warm, 0% changed" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "source $(fact A pull source)"

# B: a second machine with a copy of A's replica (same content, same state)
mkdir -p "$T/B"
cp "$T/A/org.db" "$T/A/org.db.ferry-state" "$T/B/"
ini B "$ONE"
run B
row "push 1 page (B, verify=checksum; rollback journal)" "$(stage_ms B push)" "$(mib "$(fact B push bytes_uploaded)") up, $(mib "$(fact B push bytes_copied)") copied" "pages written $(fact B push pages_written)"
run A lock mount pull unlock
row "pull warm, 1 page changed" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "source $(fact A pull source), pages $(fact A pull pages_moved)"
ini B "$PCT"
run B
row "push 1% of pages (B)" "$(stage_ms B push)" "$(mib "$(fact B push bytes_uploaded)") up, $(mib "$(fact B push bytes_copied)") copied" "pages written $(fact B push pages_written)"
cp "$T/A/org.db" "$T/a-pre.db"; cp "$T/A/org.db.ferry-state" "$T/a-pre.state"
run A lock mount pull unlock
pct_read=$(fact A pull bytes_read)
row "pull warm, 1% changed" "$(stage_ms A pull)" "$(mib "$pct_read") down" "source $(fact A pull source), reads $(fact A pull reads), pages $(fact A pull pages_moved); $(awk -v a="$pct_read" -v b="$SIZE" 'BEGIN { printf "%.2f", 100 * a / b }')% of the database"
# the same 1% pull again as one sequential pass (A's replica and state put back first)
cp "$T/A/org.db" "$T/a-new.db"
cp "$T/a-pre.db" "$T/A/org.db"; cp "$T/a-pre.state" "$T/A/org.db.ferry-state"
run A lock mount pull unlock -o pull.reads=sequential
row "pull warm, 1% changed, reads=sequential" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "source $(fact A pull source), reads $(fact A pull reads), pages $(fact A pull pages_moved)"
cmp -s "$T/A/org.db" "$T/a-new.db" || fail "the sequential 1% pull differs from the ranged one"
ini A "$ONE" none
run A
row "push 1 page (A, verify=none)" "$(stage_ms A push)" "$(mib "$(fact A push bytes_uploaded)") up, $(mib "$(fact A push bytes_copied)") copied" "pages written $(fact A push pages_written)"
# WAL mode: SQLite leaves page 1 (its change counter) alone, so one row = one page
ini B "PRAGMA journal_mode=WAL;"
run B
row "push journal_mode=WAL (B; page 1's header)" "$(stage_ms B push)" "$(mib "$(fact B push bytes_uploaded)") up, $(mib "$(fact B push bytes_copied)") copied" "pages written $(fact B push pages_written)"
ini B "$ONE"
run B
row "push 1 page (B, WAL replica)" "$(stage_ms B push)" "$(mib "$(fact B push bytes_uploaded)") up, $(mib "$(fact B push bytes_copied)") copied" "pages written $(fact B push pages_written)"
run A lock mount pull unlock
row "pull warm, 2 pages changed (WAL header, 1 row)" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "source $(fact A pull source), reads $(fact A pull reads), pages $(fact A pull pages_moved)"
ini B "$MOST"
run B
row "push ~90% of the rows (B)" "$(stage_ms B push)" "$(mib "$(fact B push bytes_uploaded)") up, $(mib "$(fact B push bytes_copied)") copied" "pages written $(fact B push pages_written)"
# the ~90% change pulled both ways: auto (a sequential pass), then ranged GETs
cp "$T/A/org.db" "$T/a-pre.db"; cp "$T/A/org.db.ferry-state" "$T/a-pre.state"
run A lock mount pull unlock
row "pull warm, ~90% changed (auto)" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "source $(fact A pull source), reads $(fact A pull reads), pages $(fact A pull pages_moved)"
cp "$T/A/org.db" "$T/a-new.db"
cp "$T/a-pre.db" "$T/A/org.db"; cp "$T/a-pre.state" "$T/A/org.db.ferry-state"
run A lock mount pull unlock -o pull.reads=ranged
row "pull warm, ~90% changed, reads=ranged" "$(stage_ms A pull)" "$(mib "$(fact A pull bytes_read)") down" "source $(fact A pull source), reads $(fact A pull reads), pages $(fact A pull pages_moved)"
cmp -s "$T/A/org.db" "$T/a-new.db" || fail "the ranged ~90% pull differs from the sequential one"
rm -f "$T"/a-pre.db "$T"/a-new.db

# peers: full copies through ferryfs and s3fs on the same moto
mkdir -p "$T/fs" "$T/s3fs"
"$FERRYFS_BIN" "$BUCKET_NAME" "$T/fs" -o cache_dir="$T/fscache" || fail "ferryfs"
at_exit "fusermount3 -u '$T/fs'"
t0=$(ms); cp "$T/fs/$KEY" "$T/cp-ferryfs.db"; t1=$(ms)
row "cp from ferryfs (full read)" "$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", (b - a) / 1000 }')" "$(mib "$SIZE") down" ""
t0=$(ms); cp "$T/seed.db" "$T/fs/org-data/cp-ferryfs.db"; t1=$(ms)
row "cp to ferryfs (full write)" "$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", (b - a) / 1000 }')" "$(mib "$SIZE") up" ""
fusermount3 -u "$T/fs"
if command -v s3fs >/dev/null; then
	echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >"$T/s3fs.pw"
	chmod 600 "$T/s3fs.pw"
	if s3fs "$BUCKET_NAME" "$T/s3fs" -o url="$AWS_ENDPOINT_URL_S3" -o use_path_request_style \
		-o passwd_file="$T/s3fs.pw" -o use_cache="$T/s3fscache" 2>"$T/s3fs.log"; then
		at_exit "fusermount3 -u '$T/s3fs'"
		sleep 1
		t0=$(ms); cp "$T/s3fs/$KEY" "$T/cp-s3fs.db"; t1=$(ms)
		row "cp from s3fs (full read)" "$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", (b - a) / 1000 }')" "$(mib "$SIZE") down" ""
		t0=$(ms); cp "$T/seed.db" "$T/s3fs/org-data/cp-s3fs.db"; t1=$(ms)
		row "cp to s3fs (full write)" "$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", (b - a) / 1000 }')" "$(mib "$SIZE") up" ""
		fusermount3 -u "$T/s3fs"
	else
		row "s3fs" "-" "-" "did not mount: $(head -c 100 "$T/s3fs.log")"
	fi
fi
rm -f "$T"/s3fs.pw

# crash: SIGKILL at random moments of a pull (compare mode: the object was replaced by a
# plain upload, no manifest), CRASH_ITER times; after the next start's rollback the replica
# must be the old or the new version and pass quick_check
if [ "$CRASH_ITER" -gt 0 ]; then
	CK=org-data/crash.db
	sqlite3 "$T/c-old.db" >/dev/null "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$((CRASH_MB * 1048576 / 316))) INSERT INTO t SELECT x, randomblob(300) FROM c;"
	cp "$T/c-old.db" "$T/c-new.db"
	sqlite3 "$T/c-new.db" "UPDATE t SET b=randomblob(300) WHERE a % 20 = 0;"
	s3put "$CK" "$T/c-old.db" || fail "crash seed"
	ini C "SELECT 1;"
	sed -i "s#$KEY#$CK#g" "$T/C.ini"
	run C lock mount pull unlock
	cp "$T/C/org.db" "$T/c-r1.db"; cp "$T/C/org.db.ferry-state" "$T/c-r1.state"
	s3put "$CK" "$T/c-new.db" || fail "crash new version"
	OLD=$(sha256sum <"$T/c-old.db") NEW=$(sha256sum <"$T/c-new.db")
	old=0 new=0 mid=0
	for i in $(seq 1 "$CRASH_ITER"); do
		cp "$T/c-r1.db" "$T/C/org.db"; cp "$T/c-r1.state" "$T/C/org.db.ferry-state"
		FERRY_FAILPOINT=pull.mid_patch:sleep=200 "$FERRY_BIN" -c "$T/C.ini" run lock mount pull unlock >/dev/null 2>&1 &
		pid=$!
		sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + (r % 300) / 100 }')"
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
		[ -e "$T/C/org.db.ferry-undo" ] && mid=$((mid + 1))
		# the dead run's ferryfs, lock and undo file: unmount, break, roll back
		for m in $(awk -v t="$T/mnt-C" '$2 == t { print $2 }' /proc/mounts); do fusermount3 -uz "$m"; done
		(cd "$T" && ferry -c "$T/C.ini" lock break --yes >/dev/null 2>&1)
		"$FERRY_BIN" -c "$T/C.ini" -o pull.origin="$T/absent.db" run pull >/dev/null 2>&1
		[ ! -e "$T/C/org.db.ferry-undo" ] || fail "crash iteration $i: undo file left"
		got=$(sha256sum <"$T/C/org.db")
		if [ "$got" = "$OLD" ]; then old=$((old + 1))
		elif [ "$got" = "$NEW" ]; then new=$((new + 1))
		else fail "crash iteration $i: replica is neither old nor new"
		fi
		[ "$(sqlite3 "$T/C/org.db" 'PRAGMA quick_check')" = ok ] || fail "crash iteration $i: quick_check"
	done
	echo
	echo "crash ($(mib "$(stat -c %s "$T/c-old.db")") MiB, 5% of the rows changed): $CRASH_ITER SIGKILLs during pull: $old old, $new new, $mid killed mid-patch; none torn, all quick_check ok"
fi

# crash: SIGKILL at random moments of a push, PUSH_ITER times. The replica holds the new
# version (5% of the rows changed), its state the old object's; ferryfs runs outside ferry
# (as the mount stage's does) and is remounted each time. Each kill must leave S3 with the
# old or the new database (quick_check ok) and the replica untouched (quick_check ok).
if [ "$PUSH_ITER" -gt 0 ]; then
	PK=org-data/crash-push.db M=$T/mnt-P
	[ -e "$T/c-old.db" ] || {
		sqlite3 "$T/c-old.db" >/dev/null "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$((CRASH_MB * 1048576 / 316))) INSERT INTO t SELECT x, randomblob(300) FROM c;"
		cp "$T/c-old.db" "$T/c-new.db"
		sqlite3 "$T/c-new.db" "UPDATE t SET b=randomblob(300) WHERE a % 20 = 0;"
	}
	OLD=$(sha256sum <"$T/c-old.db") NEW=$(sha256sum <"$T/c-new.db")
	mkdir -p "$T/P" "$M"
	FS_PID=
	mount_p() {
		"$FERRYFS_BIN" "$BUCKET_NAME" "$M" -f -o cache_dir="$T/cache-P" 2>>"$T/ferryfs-P.log" &
		FS_PID=$!
		for _ in $(seq 100); do [ -r "$M/.ferryfs-stats" ] && break; sleep 0.1; done
		[ -r "$M/.ferryfs-stats" ] || fail "ferryfs did not mount"
	}
	umount_p() { fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M"; wait $FS_PID 2>/dev/null; }
	at_exit "fusermount3 -uz '$M'"
	cat >"$T/P.ini" <<INI
[pipeline]
name = bench-P
state_dir = $T/P
[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}
[stage lock]
plugin = lock
key = $PK.lock
max_wait = 30s
[stage pull]
plugin = pull
origin = $M/$PK
replica = \${state_dir}/org.db
[stage push]
plugin = push
[stage unlock]
plugin = unlock
INI
	# the replica's state: a pull of the old object (a plain PUT: re-uploading the same
	# bytes gives the same ETag, so every iteration starts from the same fence)
	s3put "$PK" "$T/c-old.db" || fail "push crash seed"
	mount_p
	ferry -c "$T/P.ini" run lock pull unlock 2>"$T/P.log" || { cat "$T/P.log"; fail "push crash: pull"; }
	cp "$T/P/org.db.ferry-state" "$T/p-old.state"
	# sleeps at push's four fault points spread the kills over every phase of a push
	SLOW=push.mid_write:sleep=250,push.before_fsync:sleep=250,push.after_commit:sleep=250,push.before_manifest:sleep=250
	cp "$T/c-new.db" "$T/P/org.db"
	t0=$(ms)
	FERRY_FAILPOINT=$SLOW ferry -c "$T/P.ini" run lock push unlock 2>"$T/P.log" || { cat "$T/P.log"; fail "push crash: a push"; }
	full=$(( $(ms) - t0 ))
	umount_p
	old=0 new=0 done_runs=0
	for i in $(seq 1 "$PUSH_ITER"); do
		s3put "$PK" "$T/c-old.db" || fail "push crash: reset"
		cp "$T/c-new.db" "$T/P/org.db"; cp "$T/p-old.state" "$T/P/org.db.ferry-state"
		rm -f "$T/P/org.db-journal" "$T/P/org.db-wal"
		mount_p
		FERRY_FAILPOINT=$SLOW "$FERRY_BIN" -c "$T/P.ini" run lock push unlock >/dev/null 2>"$T/P.log" &
		pid=$!
		sleep "$(awk -v r=$RANDOM -v f=$full 'BEGIN { printf "%.3f", (r % 1000) / 1000 * f * 1.1 / 1000 }')"
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
		grep -q ' pushed ' "$T/P.log" && done_runs=$((done_runs + 1))
		umount_p                    # lets an fsync that was in flight finish or fail
		(cd "$T" && ferry -c "$T/P.ini" lock break --yes >/dev/null 2>&1)
		s3get "$PK" "$T/p-s3.db" || fail "push crash iteration $i: object gone"
		got=$(sha256sum <"$T/p-s3.db")
		if [ "$got" = "$OLD" ]; then old=$((old + 1))
		elif [ "$got" = "$NEW" ]; then new=$((new + 1))
		else fail "push crash iteration $i: S3 object is neither old nor new"
		fi
		[ "$(sqlite3 "$T/p-s3.db" 'PRAGMA quick_check')" = ok ] || fail "push crash iteration $i: S3 quick_check"
		[ "$(sha256sum <"$T/P/org.db")" = "$NEW" ] || fail "push crash iteration $i: replica changed"
		[ "$(sqlite3 "$T/P/org.db" 'PRAGMA quick_check')" = ok ] || fail "push crash iteration $i: replica quick_check"
	done
	echo
	echo "push crash ($(mib "$(stat -c %s "$T/c-old.db")") MiB, 5% of the rows changed, an unkilled push with the sleeps takes $full ms; kills uniform over 0..1.1x that): $PUSH_ITER SIGKILLs during push: S3 held $old old, $new new ($done_runs runs had logged 'pushed'); none torn, all quick_check ok, replica untouched"
fi
