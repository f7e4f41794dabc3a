#!/usr/bin/env bash
# t4002: properties on a generated org DB (RULES.md): nothing pre-scheduled before today or in
# an exclusion window, frequency limit holds counting sent rows, rows not owned stay
# byte-identical, and a rerun with the same today changes no page.
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
FIX=$SRC_DIR/tests/schedule
db=$T/org.db
python3 "$SRC_DIR/tests/gen_orgdb.py" "$db" --contacts 4000 --seed 42 --events || fail "generator failed"
cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state

[stage schedule]
plugin = schedule
db = org.db
state_rules = $SRC_DIR/conf/state_rules.csv
zip_states = $SRC_DIR/conf/zip3_states.csv
exclude_failed_underwriting = 1
INI
python3 "$FIX/check_props.py" foreign "$db" >"$T/foreign0"
[ -s "$T/foreign0" ] || fail "generator made no foreign rows"
stale=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM email_schedules WHERE batch_id='stale'\").fetchone()[0])" "$db")
[ "$stale" -gt 0 ] || fail "generator made no stale owned rows"

# db = org.db is relative to the INI's directory
(cd / && ferry -c "$T/p.ini" run schedule --today 2024-10-01 2>"$T/run.err") ||
	{ tail "$T/run.err" >&2; fail "run failed"; }
grep -q "summary today=2024-10-01 contacts=4000 " "$T/run.err" || fail "no summary line"
grep -q " bad=[1-9]" "$T/run.err" || fail "the generator's bad rows were not reported"
python3 "$FIX/check_props.py" props "$db" 2024-10-01 || fail "properties violated"
python3 "$FIX/check_props.py" foreign "$db" >"$T/foreign1"
cmp -s "$T/foreign0" "$T/foreign1" || { diff "$T/foreign0" "$T/foreign1" | head >&2; fail "rows not owned changed"; }
left=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM email_schedules WHERE batch_id='stale'\").fetchone()[0])" "$db")
assert_eq 0 "$left" "stale owned rows left"

# rerun: same today, no byte changes; the stricter frequency limit then changes rows
sum1=$(sha256sum "$db" | cut -d' ' -f1)
python3 "$FIX/check_props.py" owned "$db" >"$T/owned1"
# (fingerprint = 0: the full read and compare, not t4004's shortcut, must find nothing to do)
ferry -c "$T/p.ini" run schedule --today 2024-10-01 -o schedule.fingerprint=0 2>"$T/rerun.err" ||
	fail "rerun failed"
assert_not_contains "$T/rerun.err" "(fingerprint)"
assert_contains "$T/rerun.err" " inserted=0 updated=0 "
assert_contains "$T/rerun.err" " deleted=0 "
assert_eq "$sum1" "$(sha256sum "$db" | cut -d' ' -f1)" "db after rerun"
python3 "$FIX/check_props.py" owned "$db" >"$T/owned2"
cmp -s "$T/owned1" "$T/owned2" || fail "rerun changed owned rows"

ferry -c "$T/p.ini" run schedule --today 2024-10-01 -o schedule.max_emails_per_period=1 \
	-o schedule.period_days=60 2>"$T/strict.err" || fail "run with max 1 failed"
grep -q " updated=[1-9]" "$T/strict.err" || fail "a tighter frequency limit changed nothing"
python3 "$FIX/check_props.py" props "$db" 2024-10-01 1 60 || fail "properties violated with max 1 per 60 days"
python3 "$FIX/check_props.py" foreign "$db" >"$T/foreign2"
cmp -s "$T/foreign0" "$T/foreign2" || fail "rows not owned changed"

# a later today moves the plan forward and keeps every property
ferry -c "$T/p.ini" run schedule --today 2025-02-28 2>"$T/later.err" || fail "later run failed"
python3 "$FIX/check_props.py" props "$db" 2025-02-28 || fail "properties violated on 2025-02-28"
python3 - "$db" <<'PY' || fail "database not clean after runs"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
assert c.execute("PRAGMA quick_check").fetchone()[0] == "ok"
assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
PY
valgrind_verdict
exit 0
