#!/usr/bin/env bash
# t4007: the schedule stage's compaction (`compact`): after a run that wrote, `always`
# rewrites the database with VACUUM INTO and renames it over the original: the rows are the
# ones a `never` run leaves, the file passes quick_check, keeps its mode, its tables and
# indexes each lie in one run of pages, the fingerprint shortcut holds on the new file, and
# nothing is left beside it; `never` and a run that wrote nothing keep the file (same inode);
# auto leaves a small database alone; a WAL database is not compacted; a bad value is named.
. "$(dirname "$0")/../lib.sh"
command -v sqlite3 >/dev/null || skip "sqlite3 missing"
python3 "$TESTS_DIR/gen_orgdb.py" --contacts 3000 --seed 4 "$T/base.db" >/dev/null || fail "gen_orgdb failed"
schedule_ini "$T/p.ini" "$T/org.db"
dump() { sqlite3 "$1" "SELECT contact_id, email_type, scheduled_send_date, status, ifnull(skip_reason,''), priority, event_year, event_month, event_day FROM email_schedules ORDER BY 1,2,3"; }
# the table or index each page belongs to, in file order, as runs of one name: the number
# of runs per name (the root pages, which VACUUM puts first, one per b-tree, left out)
runs() {
	sqlite3 "$1" "SELECT name FROM dbstat WHERE pageno > (SELECT count(DISTINCT name) + 1 FROM dbstat) ORDER BY pageno" |
		uniq | sort | uniq -c | awk '{ print $2, $1 }'
}

# never: the file stays (same inode), rows written
cp "$T/base.db" "$T/org.db"
ino=$(stat -c %i "$T/org.db")
ferry -c "$T/p.ini" -o schedule.compact=never run >"$T/o1" 2>"$T/e1" || { cat "$T/e1" >&2; fail "never run failed"; }
assert_eq "$ino" "$(stat -c %i "$T/org.db")" "inode after compact = never"
assert_not_contains "$T/e1" "compacting"
dump "$T/org.db" >"$T/rows.never"
[ -s "$T/rows.never" ] || fail "no rows written"
runs "$T/org.db" >"$T/runs.never"
awk '$2 > 1 { bad = 1 } END { exit !bad }' "$T/runs.never" || fail "the uncompacted file has no interleaved pages (nothing to compare with)"

# always: same rows, a new file, one run of pages per table and index
cp "$T/base.db" "$T/org.db"
chmod 640 "$T/org.db"
ino=$(stat -c %i "$T/org.db")
ferry -c "$T/p.ini" -o schedule.compact=always run >"$T/o2" 2>"$T/e2" || { cat "$T/e2" >&2; fail "always run failed"; }
assert_contains "$T/e2" "compacting the database"
assert_contains "$T/e2" "compacted the database:"
[ "$ino" != "$(stat -c %i "$T/org.db")" ] || fail "compact = always kept the old file"
assert_eq 640 "$(stat -c %a "$T/org.db")" "mode of the compacted file"
assert_eq ok "$(sqlite3 "$T/org.db" 'PRAGMA quick_check')" "quick_check of the compacted file"
dump "$T/org.db" >"$T/rows.always"
cmp -s "$T/rows.never" "$T/rows.always" || fail "compaction changed the rows"
runs "$T/org.db" >"$T/runs.always"
awk '$2 != 1 { print; bad = 1 } END { exit bad }' "$T/runs.always" || fail "a table or index of the compacted file lies in more than one run of pages"
ls "$T"/org.db.ferry-compact* 2>/dev/null && fail "the compaction left a file behind"
# the rerun on the same day: the fingerprint shortcut, on the compacted file
ino=$(stat -c %i "$T/org.db")
ferry -c "$T/p.ini" -o schedule.compact=always run >"$T/o3" 2>"$T/e3" || { cat "$T/e3" >&2; fail "rerun failed"; }
assert_contains "$T/e3" "nothing to read, compute or write"
assert_eq "$ino" "$(stat -c %i "$T/org.db")" "inode after a rerun that wrote nothing"
# it replays the warnings about contact rows, not the compaction it did not do
assert_not_contains "$T/e3" "compacting the database"

# killed between the copy and the rename: the committed database stays whole, and the next
# run removes the copy left beside it
cp "$T/base.db" "$T/org.db"
rc=0
FERRY_FAILPOINT=schedule.before_compact_rename:kill ferry -c "$T/p.ini" -o schedule.compact=always run >"$T/o7" 2>"$T/e7" || rc=$?
assert_eq 137 "$rc" "exit of a run killed before the rename"
[ -f "$T/org.db.ferry-compact" ] || fail "the killed compaction left no copy (the point was not reached)"
assert_eq ok "$(sqlite3 "$T/org.db" 'PRAGMA quick_check')" "quick_check after the kill"
dump "$T/org.db" >"$T/rows.killed"
cmp -s "$T/rows.never" "$T/rows.killed" || fail "the committed rows are not there after the kill"
ferry -c "$T/p.ini" -o schedule.compact=never run >"$T/o8" 2>"$T/e8" || { cat "$T/e8" >&2; fail "the run after the kill failed"; }
[ -f "$T/org.db.ferry-compact" ] && fail "the next run left the stale copy"

# auto: a small database is left as it is
cp "$T/base.db" "$T/org.db"
ino=$(stat -c %i "$T/org.db")
ferry -c "$T/p.ini" run >"$T/o4" 2>"$T/e4" || { cat "$T/e4" >&2; fail "auto run failed"; }
assert_eq "$ino" "$(stat -c %i "$T/org.db")" "inode after compact = auto on a small database"

# WAL: not compacted (push needs a checkpointed file; the stage leaves the mode alone)
cp "$T/base.db" "$T/org.db"
sqlite3 "$T/org.db" "PRAGMA journal_mode = WAL" >/dev/null
ino=$(stat -c %i "$T/org.db")
ferry -c "$T/p.ini" -o schedule.compact=always run >"$T/o5" 2>"$T/e5" || { cat "$T/e5" >&2; fail "WAL run failed"; }
assert_eq "$ino" "$(stat -c %i "$T/org.db")" "inode of a WAL database"
assert_not_contains "$T/e5" "compacted"

# a bad value names the key
rc=0
ferry -c "$T/p.ini" -o schedule.compact=sometimes run >"$T/o6" 2>"$T/e6" || rc=$?
assert_eq 2 "$rc" "exit on a bad compact value"
assert_contains "$T/e6" "compact"
assert_contains "$T/e6" "sometimes"
