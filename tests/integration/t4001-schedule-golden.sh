#!/usr/bin/env bash
# t4001: the worked examples of plugins/schedule/RULES.md through `ferry run schedule`: exact rows, a rerun that
# changes no byte, the dry-run CSV, and the next day after the sender took a row.
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
FIX=$SRC_DIR/tests/schedule

cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state

[stage schedule]
plugin = schedule
state_rules = $SRC_DIR/conf/state_rules.csv
zip_states = $SRC_DIR/conf/zip3_states.csv
INI
db=$T/org.db
python3 - "$db" "$FIX/example.sql" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.close()
PY

rows() { # the owned rows as the dry-run CSV prints them
	python3 - "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print("contact_id,email_type,scheduled_send_date,scheduled_send_time,status,skip_reason,priority,event_year,event_month,event_day")
for r in c.execute("SELECT contact_id, email_type, scheduled_send_date, scheduled_send_time, status, "
                   "coalesce(skip_reason, ''), priority, event_year, event_month, event_day FROM email_schedules "
                   "WHERE status IN ('pre-scheduled','skipped') ORDER BY contact_id, email_type, scheduled_send_date"):
    print(",".join(str(x) for x in r))
PY
}

# dry run on a table that does not exist yet: the golden CSV, nothing written
sum0=$(sha256sum "$db" | cut -d' ' -f1)
ferry -c "$T/p.ini" run --dry-run schedule --db "$db" --today 2024-10-01 --dry-run-csv - >"$T/dry.csv" 2>"$T/dry.err" ||
	{ cat "$T/dry.err" >&2; fail "dry run failed"; }
diff -u "$FIX/example.csv" "$T/dry.csv" || fail "dry-run CSV differs from the golden rows"
assert_contains "$T/dry.err" "would delete 0 owned rows"
assert_contains "$T/dry.err" "summary today=2024-10-01 contacts=16 valid=10 bad=5 no_email=1"
assert_eq "$sum0" "$(sha256sum "$db" | cut -d' ' -f1)" "db after dry run"
[ ! -e "$db-journal" ] || fail "dry run left a journal"

# the run writes exactly the golden rows
ferry -c "$T/p.ini" run schedule --db "$db" --today 2024-10-01 --run-id golden-1 2>"$T/run.err" ||
	{ cat "$T/run.err" >&2; fail "run failed"; }
assert_contains "$T/run.err" "rows=35 pre_scheduled=23 skipped=12 ignored=0 inserted=35"
assert_contains "$T/run.err" "contacts id=10 birth_date '1961-02-30' is not a valid date (contact skipped)"
rows "$db" >"$T/rows.csv"
diff -u "$FIX/example.csv" "$T/rows.csv" || fail "written rows differ from the golden rows"
[ -z "$(ls "$T" | grep -e '-journal$' -e '-wal$')" ] || fail "journal left behind"

# a rerun with the same today changes no byte of the file
sum1=$(sha256sum "$db" | cut -d' ' -f1)
python3 "$FIX/check_props.py" owned "$db" >"$T/ids1"
ferry -c "$T/p.ini" run schedule --db "$db" --today 2024-10-01 --run-id golden-2 2>"$T/rerun.err" ||
	{ cat "$T/rerun.err" >&2; fail "rerun failed"; }
assert_contains "$T/rerun.err" "inserted=0 updated=0 unchanged=35 deleted=0"
assert_eq "$sum1" "$(sha256sum "$db" | cut -d' ' -f1)" "db after rerun"
python3 "$FIX/check_props.py" owned "$db" >"$T/ids2"
cmp -s "$T/ids1" "$T/ids2" || fail "rerun changed row ids or run ids"
grep -q "golden-1" "$T/ids2" || fail "rows lost the run id of the run that wrote them"

# the dry run now sees the same rows and would delete nothing
ferry -c "$T/p.ini" run --dry-run schedule --db "$db" --today 2024-10-01 --dry-run-csv - >"$T/dry2.csv" 2>"$T/dry2.err" ||
	fail "second dry run failed"
diff -u "$FIX/example.csv" "$T/dry2.csv" || fail "dry run on a written table differs"
assert_contains "$T/dry2.err" "would delete 0 owned rows would_insert=0 would_update=0 unchanged=35"

# next day: contact 15's birthday row was sent; the guard keeps it from coming back
python3 - "$db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE email_schedules SET status='sent' WHERE contact_id=15 AND email_type='birthday'")
c.commit()
PY
ferry -c "$T/p.ini" run schedule --db "$db" --today 2024-10-02 2>"$T/next.err" || fail "next-day run failed"
rows "$db" >"$T/next.csv"
grep -q '^15,birthday' "$T/next.csv" && fail "contact 15's sent birthday came back"
grep -q '^15,effective_date,2024-10-02,08:30:00,pre-scheduled,,20,2024,10,5$' "$T/next.csv" ||
	fail "contact 15's past-due effective-date row is not on today"
python3 "$FIX/check_props.py" props "$db" 2024-10-02 || fail "properties violated"
valgrind_verdict
exit 0
