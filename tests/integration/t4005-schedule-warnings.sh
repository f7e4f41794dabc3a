#!/usr/bin/env bash
# t4005: bad contact rows do not flood the log: the first 5 warnings and one summary line
# (counts per kind, the file) on every run, -q included; the whole list in
# STATE_DIR/schedule-warnings.txt (0600: it names contacts), or in the log with -v; a dry
# run writes no list, a clean run removes the old one.
. "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
db=$T/org.db
W=$T/state/schedule-warnings.txt
python3 "$SRC_DIR/tests/gen_orgdb.py" "$db" --contacts 5000 --seed 3 >/dev/null || fail "generator failed"
schedule_ini "$T/p.ini" "$db"
examples() { grep -c ' warn schedule contacts id=' "$1" || true; }
summary_of() { grep -E ' warn schedule [0-9]+ contact rows with bad or unknown values ' "$1"; }

ferry -c "$T/p.ini" run schedule 2>"$T/run.err" || { cat "$T/run.err" >&2; fail "run failed"; }
assert_eq 5 "$(examples "$T/run.err")" "warnings shown in the log"
line=$(summary_of "$T/run.err") || { cat "$T/run.err" >&2; fail "no summary line"; }
assert_contains "$line" "first 5 shown, all in '$W'"
[ -f "$W" ] || fail "no list of warnings"
assert_eq 600 "$(stat -c %a "$W")" "mode of the list"
# the counts of the summary are the list's, kind by kind, and the stage's bad= count
python3 - "$line" "$W" "$T/run.err" <<'PY' || fail "summary and list disagree"
import re, sys
line, path, err = sys.argv[1:4]
kv = dict(re.findall(r' ([a-z_]+)=([^ ]+)', line))
total = int(re.search(r' schedule (\d+) contact rows', line).group(1))
skipped = int(re.search(r'\((\d+) skipped\)', line).group(1))
rows = open(path).read().splitlines()
assert len(rows) == total > 5, (len(rows), total)
kinds = {"bad_email": r"email '.*' is not a valid email \(contact skipped\)$",
         "bad_birth_date": r"birth_date '.*' is not a valid date \(contact skipped\)$",
         "bad_effective_date": r"effective_date '.*' is not a valid date \(contact skipped\)$",
         "unknown_state": r"state '.*' is not a known state code$"}
for k, pat in kinds.items():
    n = sum(1 for r in rows if re.match(r"contacts id=\d+ " + pat, r))
    assert int(kv[k]) == n, (k, kv[k], n)
assert sum(int(kv[k]) for k in kinds) == total, kv
assert skipped == total - int(kv["unknown_state"]), (skipped, kv)
stage_bad = re.search(r' summary .* bad=(\d+) ', open(err).read()).group(1)
assert int(stage_bad) == skipped, (stage_bad, skipped)
# the examples in the log are the list's first lines
shown = [l.split(" warn schedule ", 1)[1].rstrip("\n") for l in open(err)
         if " warn schedule contacts id=" in l]
assert shown == rows[:5], (shown, rows[:5])
PY
total=$(wc -l <"$W")

# -q keeps warnings: still the 5 and the summary, nothing more (on this unchanged database
# the fingerprint shortcut replays the warnings the first run saved, summarised the same)
ferry -q -c "$T/p.ini" run schedule 2>"$T/q.err" || { cat "$T/q.err" >&2; fail "-q run failed"; }
assert_eq 6 "$(wc -l <"$T/q.err")" "lines of a -q run"
assert_eq 5 "$(examples "$T/q.err")" "warnings shown with -q"
summary_of "$T/q.err" >/dev/null || fail "no summary with -q"
assert_eq "$total" "$(wc -l <"$W")" "list after the shortcut"

# -v: every warning in the log too
ferry -v -c "$T/p.ini" run schedule -o schedule.fingerprint=0 2>"$T/v.err" || fail "-v run failed"
assert_eq "$total" "$(examples "$T/v.err")" "warnings shown with -v"
assert_contains "$(summary_of "$T/v.err")" "all $total shown, all in '$W'"

# JSON: the counts are numbers
ferry --log-format=json -c "$T/p.ini" run schedule 2>"$T/json.err" || fail "json run failed"
python3 - "$T/json.err" "$total" <<'PY' || { cat "$T/json.err" >&2; fail "JSON summary"; }
import json, sys
s = [l for l in map(json.loads, open(sys.argv[1])) if "bad_email" in l]
assert len(s) == 1 and s[0]["level"] == "warn", s
s = s[0]
assert all(isinstance(s[k], int) for k in ("bad_email", "bad_birth_date", "bad_effective_date", "unknown_state"))
assert sum(s[k] for k in ("bad_email", "bad_birth_date", "bad_effective_date", "unknown_state")) == int(sys.argv[2])
assert s["file"].endswith("/schedule-warnings.txt"), s
PY

# a dry run changes nothing in the state dir, and says where the rest is
rm -f "$W"
before=$(tree_digest "$T/state")
ferry -c "$T/p.ini" run --dry-run schedule 2>"$T/dry.err" || fail "dry run failed"
assert_eq 5 "$(examples "$T/dry.err")" "warnings shown by a dry run"
assert_contains "$(summary_of "$T/dry.err")" "first 5 shown, -v shows all"
assert_eq "$before" "$(tree_digest "$T/state")" "state dir after a dry run"

# a database without bad rows: no warning, and no list of an earlier run left behind
ferry -c "$T/p.ini" run schedule 2>/dev/null || fail "run failed"
[ -f "$W" ] || fail "no list"
python3 - "$db" "$W" <<'PY' || fail "cannot clean the contacts"
import re, sqlite3, sys
ids = [int(m.group(1)) for m in map(lambda l: re.match(r"contacts id=(\d+) ", l), open(sys.argv[2])) if m]
c = sqlite3.connect(sys.argv[1])
c.executemany("DELETE FROM contacts WHERE id = ?", [(i,) for i in ids])
c.commit()
PY
ferry -c "$T/p.ini" run schedule 2>"$T/clean.err" || { cat "$T/clean.err" >&2; fail "clean run failed"; }
assert_not_contains "$T/clean.err" " warn "
[ ! -e "$W" ] || fail "the list of an earlier run is still there"
valgrind_verdict
