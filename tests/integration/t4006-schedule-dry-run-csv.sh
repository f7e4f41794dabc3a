#!/usr/bin/env bash
# t4006: the schedule's dry run says what it would do in a few lines; the rows themselves
# (tens of thousands on a big org) only when asked: dry_run_csv = PATH, or
# `ferry run schedule --dry-run --dry-run-csv PATH` ('-': stdout), a 0600 file.
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
db=$T/org.db
python3 "$SRC_DIR/tests/gen_orgdb.py" "$db" --contacts 2000 --seed 5 >/dev/null || fail "generator failed"
schedule_ini "$T/p.ini" "$db"
ferry -c "$T/p.ini" run schedule 2>"$T/first.err" || fail "first run failed"
sum0=$(sha256sum "$db" | cut -d' ' -f1)
rows=$(sed -n 's/.* summary .* rows=\([0-9]*\) .*/\1/p' "$T/first.err")
[ "${rows:-0}" -gt 1000 ] || fail "too few rows to tell: '$rows'"

# the whole pipeline's dry run, as an operator types it: a few lines, no rows
ferry -c "$T/p.ini" run --dry-run >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; fail "dry run failed"; }
[ ! -s "$T/out" ] || fail "the dry run printed $(wc -l <"$T/out") lines on stdout"
n=$(grep -c ' schedule ' "$T/err")
[ "$n" -le 15 ] || { cat "$T/err" >&2; fail "the schedule's dry run logged $n lines"; }
assert_contains "$T/err" "would delete 0 owned rows would_insert=0 would_update=0 unchanged=$rows"
assert_contains "$T/err" "dry-run: rows not listed; dry_run_csv = PATH writes them as CSV"

# asked for: the rows in a file, nothing on stdout
ferry -c "$T/p.ini" run schedule --dry-run --dry-run-csv "$T/out.csv" >"$T/out" 2>"$T/err" ||
	{ cat "$T/err" >&2; fail "dry run with a CSV failed"; }
[ ! -s "$T/out" ] || fail "rows on stdout too"
assert_eq 600 "$(stat -c %a "$T/out.csv")" "mode of the CSV"
assert_eq "contact_id,email_type,scheduled_send_date,scheduled_send_time,status,skip_reason,priority,event_year,event_month,event_day" \
	"$(head -n 1 "$T/out.csv")" "CSV header"
assert_eq $((rows + 1)) "$(wc -l <"$T/out.csv")" "CSV lines"
assert_contains "$T/err" "dry-run: wrote the rows the run would leave as CSV rows=$rows csv=$T/out.csv"
# '-': the same rows on stdout, from the INI key as well as the option
sed -i "/^\[stage schedule\]/a dry_run_csv = -" "$T/p.ini"
ferry -c "$T/p.ini" run --dry-run schedule >"$T/stdout.csv" 2>"$T/err" || fail "dry run to stdout failed"
cmp "$T/out.csv" "$T/stdout.csv" || fail "stdout CSV differs from the file"
# a real run ignores the key
ferry -c "$T/p.ini" run schedule >"$T/out" 2>"$T/err" || fail "run with dry_run_csv set failed"
[ ! -s "$T/out" ] || fail "a real run printed rows"

# a CSV that cannot be written: the dry run fails and says why
rc=0; ferry -c "$T/p.ini" run schedule --dry-run --dry-run-csv "$T/none/x.csv" 2>"$T/err" || rc=$?
assert_eq 1 "$rc" "exit status with an unwritable CSV"
assert_contains "$T/err" "cannot write '$T/none/x.csv': No such file or directory"

# the runs after the first (dry, or on a fixed point) left the database alone
assert_eq "$sum0" "$(sha256sum "$db" | cut -d' ' -f1)" "database after the dry runs"
valgrind_verdict
