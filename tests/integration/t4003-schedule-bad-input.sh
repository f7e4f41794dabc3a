#!/usr/bin/env bash
# t4003: bad input (RULES.md, contacts that get nothing): clear errors, the right exit code, and the file unchanged.
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
FIX=$SRC_DIR/tests/schedule
mk() { # mk DB SQL
	python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.close()" "$1" "$2"
}
cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state

[stage schedule]
plugin = schedule
state_rules = $SRC_DIR/conf/state_rules.csv
zip_states = $SRC_DIR/conf/zip3_states.csv
INI
# expect_fail CODE NEEDLE DB ARGS...: fails with CODE, says NEEDLE, leaves DB unchanged
expect_fail() {
	local code=$1 needle=$2 db=$3 before after rc=0
	shift 3
	before=$(sha256sum "$db" | cut -d' ' -f1)
	ferry -c "$T/p.ini" run schedule --db "$db" "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$code" ] || { cat "$T/err" >&2; fail "exit $rc, expected $code for: $needle"; }
	assert_contains "$T/err" "$needle"
	after=$(sha256sum "$db" | cut -d' ' -f1)
	assert_eq "$before" "$after" "sha256 of $db after '$needle'"
	[ ! -e "$db-journal" ] || fail "journal left behind"
}

good=$T/good.db
mk "$good" "$(cat "$FIX/example.sql")"
ferry -c "$T/p.ini" run schedule --db "$good" --today 2024-10-01 2>/dev/null || fail "setup run failed"

# database problems: exit 1
mk "$T/nocol.db" "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, state TEXT, zip_code TEXT, effective_date TEXT); INSERT INTO contacts VALUES (1, 'a@b.co', 'TX', NULL, NULL);"
expect_fail 1 "table contacts has no column birth_date" "$T/nocol.db" --today 2024-10-01
mk "$T/notable.db" "CREATE TABLE people (id INTEGER PRIMARY KEY);"
expect_fail 1 "has no table contacts" "$T/notable.db" --today 2024-10-01
head -c 65536 /dev/urandom >"$T/junk.db"
expect_fail 1 "file is not a database" "$T/junk.db" --today 2024-10-01
expect_fail 1 "cannot open database '$T/missing.db'" "$good" --db "$T/missing.db" --today 2024-10-01
expect_fail 1 "has no table contact_events" "$good" --today 2024-10-01 -o schedule.exclude_failed_underwriting=1
cp "$good" "$T/es.db"
mk "$T/es.db" "ALTER TABLE email_schedules RENAME COLUMN status TO state_of_row;"
expect_fail 1 "table email_schedules has no column status" "$T/es.db" --today 2024-10-01
cp "$good" "$T/dup.db"
mk "$T/dup.db" "DROP INDEX idx_email_schedules_unique; INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) VALUES (1, 'x', '2024-01-01', 'sent'), (1, 'x', '2024-01-01', 'sent');"
expect_fail 1 "cannot create unique index on table email_schedules" "$T/dup.db" --today 2024-10-01
# a bad row in strict mode ends the run before anything is written
expect_fail 1 "contacts id=3 email 'not-an-email' is not a valid email (strict = 1)" "$good" --today 2024-10-02 -o schedule.strict=1

# configuration and data files: exit 2, nothing read
expect_fail 2 "key 'today': '2024-02-30' is not a valid date" "$good" --today 2024-02-30
expect_fail 2 "key 'timezone': 'Mars/Olympus' is not a time zone" "$good" -o schedule.timezone=Mars/Olympus
expect_fail 2 "key 'birthday_days_before': '181' is out of range 0..180" "$good" -o schedule.birthday_days_before=181
expect_fail 2 "key 'aep_date': '02-29' is not a date MM-DD" "$good" -o schedule.aep_date=02-29
expect_fail 2 "key 'strict': '2' is out of range 0..1" "$good" -o schedule.strict=2
expect_fail 2 "key 'send_time': '24:00:00' is not a time HH:MM:SS" "$good" -o schedule.send_time=24:00:00
expect_fail 2 "key 'unknown_state_policy': 'maybe' is not no_rules or skip" "$good" -o schedule.unknown_state_policy=maybe
printf 'state,rule,before_days,after_days,pre_buffer_days,month_start\nCA,birthday,30,60,60,0\nCA,birthday,1,1,1,0\n' >"$T/rules.csv"
expect_fail 2 "$T/rules.csv:3: second 'birthday' rule for state 'CA'" "$good" -o schedule.state_rules="$T/rules.csv"
printf '# x\nzip3_lo,zip3_hi,state\n005,010,NY\n009,011,PR\n' >"$T/zips.csv"
expect_fail 2 "$T/zips.csv:4: range 009-011 overlaps" "$good" -o schedule.zip_states="$T/zips.csv"
expect_fail 2 "cannot open '$T/none.csv'" "$good" -o schedule.state_rules="$T/none.csv"

# an unknown key is refused by the supervisor before anything runs
expect_fail 2 "key 'no_such_key': unknown key" "$good" -o schedule.no_such_key=1
valgrind_verdict
exit 0
