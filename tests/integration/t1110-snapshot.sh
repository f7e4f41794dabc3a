#!/bin/bash
# t1110: snapshot stage: pinned server-side copy to a dated key (CopyObject and UploadPartCopy), keep=N retention, dry-run.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
. "$TESTS_DIR/lock.sh"

DB=org-data/42.db
SNAP=org-data/42.db.snapshots
moto_start
mkdir -p "$T/state"
cat >"$T/s.ini" <<INI
[pipeline]
name = snap
state_dir = $T/state

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
bucket = \${BUCKET_NAME}

[stage snapshot]
plugin = snapshot
key = $DB
part_size = 5MiB
keep = 2
INI

head -c $((11 * 1024 * 1024 + 12345)) /dev/urandom >"$T/db"
s3x put "$DB" "$T/db"
echo old >"$T/old"
s3x put "$SNAP/20200101T000000Z.db" "$T/old"
s3x put "$SNAP/20210101T000000Z.db" "$T/old"
s3x put "$SNAP/notes.txt" "$T/old"

# dry-run: says what it would copy and delete, changes nothing
before=$(s3x list | sort)
ferry -c "$T/s.ini" run --dry-run >"$T/o0" 2>"$T/e0" || { cat "$T/e0" >&2; fail "dry-run failed"; }
assert_contains "$T/e0" "would copy in parts"
assert_contains "$T/e0" "parts=3"
assert_contains "$T/e0" "would delete old snapshot"
assert_contains "$T/e0" "DELETE $SNAP/20200101T000000Z.db"
assert_eq "$before" "$(s3x list | sort)" "bucket after a dry-run"

# multipart (11 MiB in 5 MiB parts), then retention keeps the newest 2
ferry -c "$T/s.ini" run >"$T/o1" 2>"$T/e1" || { cat "$T/e1" >&2; fail "snapshot failed"; }
assert_contains "$T/e1" "snapshot made"
assert_contains "$T/e1" "parts=3"
new=$(s3x list "$SNAP/" | grep -E '/[0-9]{8}T[0-9]{6}Z\.db$' | sort | tail -1)
[ -n "$new" ] && [ "$new" != "$SNAP/20210101T000000Z.db" ] || fail "no new snapshot: $(s3x list)"
s3x get "$new" "$T/copy"
cmp -s "$T/db" "$T/copy" || fail "snapshot differs from the source"
s3x exists "$SNAP/20200101T000000Z.db" && fail "oldest snapshot not deleted"
s3x exists "$SNAP/20210101T000000Z.db" || fail "second newest snapshot deleted"
s3x exists "$SNAP/notes.txt" || fail "retention deleted a non-snapshot"

# single CopyObject, keep all; custom dest pattern
s3x rm "$new"
ferry -c "$T/s.ini" run -o snapshot.part_size=64MiB -o snapshot.keep=0 \
	-o 'snapshot.dest=backups/{key}-{time}.bak' >"$T/o2" 2>"$T/e2" || { cat "$T/e2" >&2; fail "single copy failed"; }
assert_contains "$T/e2" "parts=1"
one=$(s3x list backups/)
case "$one" in backups/org-data/42.db-*Z.bak) ;; *) fail "unexpected snapshot key '$one'" ;; esac
s3x get "$one" "$T/copy2"
cmp -s "$T/db" "$T/copy2" || fail "single-copy snapshot differs from the source"

# a missing source is a clear error
assert_exit 1 ferry -c "$T/s.ini" run -o snapshot.key=org-data/none.db 2>"$T/e3"
assert_contains "$T/e3" "cannot snapshot 'org-data/none.db': no such object"
# bad dest pattern: config error
assert_exit 2 ferry -c "$T/s.ini" run -o 'snapshot.dest=x/{key}.db' 2>"$T/e4"
assert_contains "$T/e4" "{time}"

# the default etag_from = pull pins the version pull read (its origin_etag fact): the
# snapshot is that version, and an object replaced after the pull is refused (exit 4)
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
rm -f "$T/db"
sqlite3 "$T/db" "CREATE TABLE t(a); INSERT INTO t VALUES (randomblob(9000));"
s3x put "$DB" "$T/db"
mkdir -p "$T/mnt"
cat >"$T/p.ini" <<INI
[pipeline]
name = snap-pinned
state_dir = $T/state2

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
bucket = \${BUCKET_NAME}

[stage mount]
plugin = mount
mountpoint = $T/mnt

[stage pull]
plugin = pull
origin = $T/mnt/$DB
replica = \${state_dir}/org.db

[stage snapshot]
plugin = snapshot
key = $DB
dest = pinned/{time}.db
INI
ferry -v -c "$T/p.ini" run >"$T/o5" 2>"$T/e5" || { cat "$T/e5" >&2; fail "pinned snapshot failed"; }
pulled=$(grep -o 'fact origin_etag=.*' "$T/e5" | head -1 | cut -d= -f2-)
[ -n "$pulled" ] && [ "$pulled" != '""' ] || fail "pull published no origin_etag: $(cat "$T/e5")"
snap=$(s3x list pinned/)
s3x get "$snap" "$T/copy5"
cmp -s "$T/db" "$T/copy5" || fail "pinned snapshot differs from the version pulled"
s3x rm "$snap"
# the object replaced between pull and snapshot (by an exec stage)
head -c 4096 /dev/urandom >"$T/other"
cat >>"$T/p.ini" <<INI
[stage replace]
plugin = exec
command = cp $T/other $T/mnt/$DB
INI
sed -i '/^\[stage snapshot\]/,/^dest/d' "$T/p.ini"
printf '[stage snapshot]\nplugin = snapshot\nkey = %s\ndest = pinned/{time}.db\n' "$DB" >>"$T/p.ini"
assert_exit 4 ferry -c "$T/p.ini" run 2>"$T/e6"
assert_contains "$T/e6" "cannot snapshot '$DB': it changed since stage 'pull' saw ETag"
[ -z "$(s3x list pinned/)" ] || fail "a snapshot of the replaced object was made"
no_mount_left

assert_no_secrets "$T"
valgrind_verdict
