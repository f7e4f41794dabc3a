#!/usr/bin/env bash
# t4004: the fingerprint shortcut (DB.ferry-sched): a rerun on a byte-identical fixed point
# skips the work with the same summary and warnings as the full run; any change to the file
# (any table), the inputs or the sidecar, WAL mode or an unknown schema means a full run.
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
db=$T/org.db
side=$db.ferry-sched
python3 "$SRC_DIR/tests/gen_orgdb.py" "$db" --contacts 3000 --seed 7 || fail "generator failed"
cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state

[stage schedule]
plugin = schedule
db = $db
state_rules = $SRC_DIR/conf/state_rules.csv
zip_states = $SRC_DIR/conf/zip3_states.csv
INI
sql() { python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.close()" "$db" "$1"; }
sum() { sha256sum "$1" | cut -d' ' -f1; }
HIT="fixed point of these inputs (fingerprint)"
# run NAME ARGS...: one run; its stderr in $T/NAME.err
run() {
	local name=$1
	shift
	ferry -c "$T/p.ini" run schedule --today 2024-10-01 "$@" 2>"$T/$name.err" ||
		{ tail "$T/$name.err" >&2; fail "run $name failed"; }
}
counts() { grep -o ' summary .*' "$T/$1.err" | sed 's/ load_ms=.*//'; }
warnings() { grep ' warn schedule ' "$T/$1.err" | cut -d' ' -f2-; }

run first
assert_not_contains "$T/first.err" "$HIT"
grep -q ' inserted=[1-9]' "$T/first.err" || fail "first run inserted nothing"
[ -s "$side" ] || fail "no sidecar after a run into the canonical schema"
s0=$(sum "$db")

# the shortcut: same counts and warnings as a full rerun, nothing written
run hit
assert_contains "$T/hit.err" "$HIT"
assert_eq "$s0" "$(sum "$db")" "db after the shortcut"
cp "$T/state/schedule-warnings.txt" "$T/hit.warnings"
run full -o schedule.fingerprint=0
assert_not_contains "$T/full.err" "$HIT"
assert_contains "$T/full.err" " inserted=0 updated=0 "
assert_eq "$s0" "$(sum "$db")" "db after a full rerun"
assert_eq "$(counts full)" "$(counts hit)" "summary of the shortcut"
# the log shows a summary of them, the list is in the state dir
[ "$(wc -l <"$T/state/schedule-warnings.txt")" -gt 10 ] || fail "the generator's bad rows gave no warnings"
assert_eq "$(sum "$T/state/schedule-warnings.txt")" "$(sum "$T/hit.warnings")" "warnings of the shortcut"
assert_eq "$(warnings full | sha256sum)" "$(warnings hit | sha256sum)" "logged warnings of the shortcut"

# a change in email_schedules: one owned row's priority
sql "UPDATE email_schedules SET priority = 99 WHERE rowid = (SELECT min(rowid) FROM email_schedules WHERE status = 'pre-scheduled' AND email_type = 'birthday')"
run owned
assert_not_contains "$T/owned.err" "$HIT"
assert_contains "$T/owned.err" " inserted=0 updated=1 "
run owned2
assert_contains "$T/owned2.err" "$HIT"
assert_eq "$(counts full)" "$(counts owned2)" "summary after the repair"

# a change in another table: one contact's birth date moves its birthday email
cid=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT contact_id FROM email_schedules WHERE email_type = 'birthday' AND status = 'pre-scheduled' ORDER BY rowid LIMIT 1\").fetchone()[0])" "$db")
sql "UPDATE contacts SET birth_date = '1950-12-25' WHERE id = $cid"
run contact
assert_not_contains "$T/contact.err" "$HIT"
grep -q ' moved=[1-9]' "$T/contact.err" || fail "a new birth date moved no row"
run contact2
assert_contains "$T/contact2.err" "$HIT"

# other inputs: another today, another option
run today --today 2024-10-02
assert_not_contains "$T/today.err" "$HIT"
run back
assert_not_contains "$T/back.err" "$HIT"
run opt -o schedule.birthday_days_before=15
assert_not_contains "$T/opt.err" "$HIT"
run opt2 -o schedule.birthday_days_before=15
assert_contains "$T/opt2.err" "$HIT"
run back2
assert_not_contains "$T/back2.err" "$HIT"

# a torn, a flipped and a foreign sidecar are not trusted (and are replaced)
run base
assert_contains "$T/base.err" "$HIT"
head -c 200 "$side" >"$side.x" && mv "$side.x" "$side"
run torn
assert_not_contains "$T/torn.err" "$HIT"
run torn2
assert_contains "$T/torn2.err" "$HIT"                  # the torn sidecar was replaced
python3 - "$side" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
i = b.index(b"\nreport ") + 9
b[i] = ord("7") if b[i] != ord("7") else ord("8")       # one count
open(p, "wb").write(bytes(b))
PY
run flipped
assert_not_contains "$T/flipped.err" "$HIT"
assert_eq "$(counts full)" "$(counts flipped)" "summary after a flipped sidecar"
cp "$db" "$T/other.db"
sql "INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) VALUES (1, 'birthday', '2020-01-01', 'sent')"
cp "$side" "$T/other.db.ferry-sched"
ferry -c "$T/p.ini" run schedule --today 2024-10-01 2>"$T/foreign.err" || fail "run after a foreign row failed"
assert_not_contains "$T/foreign.err" "$HIT"
ferry -c "$T/p.ini" run schedule --today 2024-10-01 --db "$T/other.db" 2>"$T/copy.err" || fail "run on a copy failed"
assert_contains "$T/copy.err" "$HIT"                   # same bytes elsewhere: same fixed point

# another writer commits between our commit and our fingerprint: no claim about its state
# (the run writes nothing, so only the header counter tells the two commits apart). The
# writer waits until ferry holds the write lock (paused at mid_write), then blocks until
# ferry's COMMIT and commits while ferry pauses again before fingerprinting.
rm -f "$side" "$T/ready"
python3 - "$db" "$T/ready" <<'PY' &
import sqlite3, sys, time
db, ready = sys.argv[1], sys.argv[2]
probe = sqlite3.connect(db, timeout=0, isolation_level=None)
open(ready, "w").close()
deadline = time.monotonic() + 120
while True:                     # until ferry holds the write lock (BEGIN IMMEDIATE)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError:
        break
    if time.monotonic() > deadline:
        sys.exit("ferry never held the write lock")
    time.sleep(0.002)
w = sqlite3.connect(db, timeout=120, isolation_level=None)  # waits for ferry's COMMIT
w.execute("UPDATE email_schedules SET priority = 97 WHERE rowid = (SELECT min(rowid) "
          "FROM email_schedules WHERE status = 'pre-scheduled' AND email_type = 'birthday')")
PY
wpid=$!
while [ ! -e "$T/ready" ]; do sleep 0.05; done
FERRY_FAILPOINT=schedule.mid_write:sleep=2000,schedule.after_commit:sleep=2000 \
	ferry_bg -c "$T/p.ini" run schedule --today 2024-10-01 2>"$T/race.err"
wait "$FERRY_PID" || { cat "$T/race.err" >&2; fail "run with a concurrent writer failed"; }
wait "$wpid" || fail "the concurrent writer failed"
assert_contains "$T/race.err" " inserted=0 updated=0 "
run afterrace
assert_not_contains "$T/afterrace.err" "$HIT"
assert_contains "$T/afterrace.err" " inserted=0 updated=1 "

# a dry run neither uses nor writes the sidecar
rm -f "$side"
ferry -c "$T/p.ini" run --dry-run schedule --today 2024-10-01 >"$T/dry.csv" 2>"$T/dry.err" || fail "dry run failed"
[ ! -e "$side" ] || fail "a dry run wrote the sidecar"
assert_not_contains "$T/dry.err" "$HIT"

# fingerprint = 0: no sidecar
run off -o schedule.fingerprint=0
[ ! -e "$side" ] || fail "fingerprint = 0 wrote the sidecar"

# WAL: the main file is not the whole state, so no sidecar
sql "PRAGMA journal_mode = WAL"
run wal1
run wal2
assert_not_contains "$T/wal2.err" "$HIT"
[ ! -e "$side" ] || fail "a sidecar was written in WAL mode"
sql "PRAGMA journal_mode = DELETE"

# an unknown schema (a trigger on the table): a run that writes leaves no claim; the
# next run, which writes nothing, proves one
sql "CREATE TRIGGER t_es AFTER UPDATE ON email_schedules BEGIN SELECT 1; END"
run trig0
[ -s "$side" ] || fail "no sidecar after a run that wrote nothing"
sql "UPDATE email_schedules SET priority = 98 WHERE rowid = (SELECT min(rowid) FROM email_schedules WHERE status = 'skipped')"
before=$(sum "$side")
run trig1
assert_contains "$T/trig1.err" " updated=1 "
assert_eq "$before" "$(sum "$side")" "sidecar after a write into an unknown schema"
run trig2
assert_not_contains "$T/trig2.err" "$HIT"
run trig3
assert_contains "$T/trig3.err" "$HIT"
python3 - "$db" <<'PY' || fail "database not clean after the runs"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
assert c.execute("PRAGMA quick_check").fetchone()[0] == "ok"
assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
PY
valgrind_verdict
exit 0
