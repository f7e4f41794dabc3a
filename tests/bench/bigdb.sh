#!/bin/bash
# tests/bench/bigdb.sh: pull and push of a database larger than 1 GiB on moto, so that the
# lock-byte page (offset 1 GiB, never used by SQLite, never copied by ferry) sits inside
# it: machine A creates it (create_if_missing, push creates the object), B pulls it cold,
# A changes a row on each side of 1 GiB and pushes, B pulls warm; byte equality (seed,
# replicas, S3 object) and quick_check after each step.
#   SIZE_MB=1100 bash tests/bench/bigdb.sh      (default; markdown on stdout)
# The bulk of the database is zeroblob() overflow pages: mostly zeros, cheap to make. The
# object is made by ferry's push (multipart through ferryfs), not by one 1.1 GiB PUT, which
# moto answers too slowly for the S3 client's low-speed timeout (it retries forever); for
# the same reason [s3] low_speed_time is raised for the multipart completes.
. "$(dirname "$0")/../lib.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start

SIZE_MB=${SIZE_MB:-1100}
KEY=org-data/big.db
GiB=1073741824
ms() { echo $(( $(date +%s%N) / 1000000 )); }
fact() { jq -r --arg s "$2" --arg k "$3" '.stages[] | select(.name == $s) | .facts[$k] // ""' "$T/$1/journal.json"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }
s3put() { (cd "$T" && ferry s3 put "$2" "$1" >/dev/null 2>&1); }
s3get() { (cd "$T" && ferry s3 get "$1" "$2" 2>/dev/null); }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
stage_ms() { awk -v s="$2" '$1 == s && $3 == "ok" { sub("s$", "", $4); printf "%.2f", $4 }' "$T/$1.log"; }
# changed_pages A B: 1-based numbers of the 4 KiB pages where A and B differ
changed_pages() { cmp -l "$1" "$2" | awk '{ p = int(($1 - 1) / 4096) + 1; if (p != last) printf "%s%d", n++ ? " " : "", p; last = p }'; }
# lock_page_zero FILE: the lock-byte page holds no data (a hole or zeros)
lock_page_zero() {
	[ "$(dd if="$1" bs=4096 skip=262144 count=1 2>/dev/null | tr -d '\0' | wc -c)" = 0 ]
}
ini() { # ini INSTANCE WORK-COMMAND
	mkdir -p "$T/$1" "$T/mnt-$1"
	cat >"$T/$1.ini" <<INI
[pipeline]
name = big-$1
state_dir = $T/$1
[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}
; moto assembles a 1.1 GiB multipart object for longer than the default 30 s of silence
low_speed_time = 10m
[stage lock]
plugin = lock
key = $KEY.lock
max_wait = 30s
ttl = 2h
[stage mount]
plugin = mount
mountpoint = $T/mnt-$1
cache_dir = $T/cache-$1
[stage pull]
plugin = pull
origin = $T/mnt-$1/$KEY
replica = \${state_dir}/org.db
create_if_missing = true
[stage work]
plugin = exec
command = $2
[stage push]
plugin = push
[stage unlock]
plugin = unlock
INI
}
run() { # run INSTANCE [STAGES...]
	local inst=$1
	shift
	ferry -c "$T/$inst.ini" run "$@" >/dev/null 2>"$T/$inst.log" || { tail -20 "$T/$inst.log"; fail "run $inst $*"; }
}
check_db() { # check_db FILE WHAT
	[ "$(sqlite3 "$1" 'PRAGMA quick_check')" = ok ] || fail "$2: quick_check"
	lock_page_zero "$1" || fail "$2: data in the lock-byte page"
}

# rows 1..2000 small, then zeroblob rows up to SIZE_MB, then rows 5001..7000 small:
# those last rows live in leaf pages past 1 GiB
cat >"$T/make.sql" <<SQL
PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000) INSERT INTO t SELECT x, randomblob(300) FROM c;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<$SIZE_MB) INSERT INTO t SELECT 2000 + x, zeroblob(1048576) FROM c;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<2000) INSERT INTO t SELECT 5000 + x, randomblob(300) FROM c;
PRAGMA journal_mode=DELETE;
SQL
echo "# big database bench on moto_server $(python3 -c 'import moto; print(moto.__version__)'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
row "operation" "seconds (stage)" "MiB from/to S3" "notes"
row "---" "---" "---" "---"

# A: no object yet; pull starts an empty replica, work fills it, push creates the object
echo "sqlite3 $T/A/org.db <$T/make.sql >/dev/null && cp --sparse=always $T/A/org.db $T/seed.db" >"$T/make.sh"
ini A "sh $T/make.sh"
run A
SIZE=$(stat -c %s "$T/seed.db")
[ "$SIZE" -gt $((GiB + 4096)) ] || fail "the database is only $SIZE bytes"
check_db "$T/seed.db" seed
row "work: make the database locally" "$(stage_ms A work)" "-" "$(mib "$SIZE") MiB, $((SIZE / 4096)) pages of 4096 bytes (lock-byte page = page 262145), $(du -m "$T/seed.db" | cut -f1) MiB on disk"
row "push cold (creates the object)" "$(stage_ms A push)" "$(mib "$(fact A push bytes_uploaded)") up, $(mib "$(fact A push bytes_copied)") copied" "pages written $(fact A push pages_written), verify=checksum"

# B: a second machine, cold
ini B "true"
run B lock mount pull unlock
row "pull cold on B (full copy)" "$(stage_ms B pull)" "$(mib "$(fact B pull bytes_read)") down" "pages moved $(fact B pull pages_moved) of $(fact B pull pages_total), reads $(fact B pull reads)"
cmp -s "$T/B/org.db" "$T/seed.db" || fail "cold pull: B's replica differs from A's database"
check_db "$T/B/org.db" "cold pull"
run B lock mount pull unlock
row "pull warm on B, nothing changed" "$(stage_ms B pull)" "$(mib "$(fact B pull bytes_read)") down" "source $(fact B pull source)"

# A: one row before 1 GiB and one after, in rollback-journal mode (page 1 changes too)
cp --sparse=always "$T/A/org.db" "$T/before.db"
ini A "sqlite3 $T/A/org.db 'UPDATE t SET b=randomblob(300) WHERE a IN (10, 6990);'"
run A -o push.verify=none     # (the GET below checks the object)
changed=$(changed_pages "$T/before.db" "$T/A/org.db")
rm -f "$T/before.db"
row "push 2 rows, one past 1 GiB" "$(stage_ms A push)" "$(mib "$(fact A push bytes_uploaded)") up, $(mib "$(fact A push bytes_copied)") copied" "verify=none; pages written $(fact A push pages_written): $changed"
[ "$(echo "$changed" | awk '{ print $NF }')" -gt 262145 ] || fail "the change did not reach past 1 GiB: pages $changed"
check_db "$T/A/org.db" "A after push"

run B lock mount pull unlock
row "pull warm on B (A's push)" "$(stage_ms B pull)" "$(mib "$(fact B pull bytes_read)") down" "source $(fact B pull source), reads $(fact B pull reads), pages moved $(fact B pull pages_moved)"
cmp -s "$T/B/org.db" "$T/A/org.db" || fail "B differs from A after the warm pull"
check_db "$T/B/org.db" "B after the warm pull"
t0=$(ms)
s3get "$KEY" "$T/s3.db" || fail "get"
t1=$(ms)
cmp -s "$T/s3.db" "$T/A/org.db" || fail "S3 object differs from A's replica"
check_db "$T/s3.db" "S3 object"
rm -f "$T/s3.db"
row "(check: one GET of the whole object)" "$(secs "$t0" "$t1")" "$(mib "$SIZE") down" "equal to both replicas, quick_check ok"
echo
echo "All copies byte-equal (seed, replicas A and B, S3 object), quick_check ok, lock-byte page empty in each. Load at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
