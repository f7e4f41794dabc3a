#!/usr/bin/env bash
# The command line: --help, --version, usage errors (exit 2), -q, --log-format=json,
# $FERRY_CONFIG, and the end-of-run summary table.
. "$(dirname "$0")/../lib.sh"

ferry --help >"$T/help" || fail "--help failed"
for w in "  run " "  list " "  status " "  check " "  s3 " "  lock " "  work " "  help "; do
	assert_contains "$T/help" "$w"
done
ferry --version | grep -qE '^ferry [0-9]+\.[0-9]+\.[0-9]+ \(stage ABI 2\)$' || fail "--version"
rc=0; ferry frobnicate 2>"$T/err" || rc=$?
assert_eq 2 $rc "unknown command"
assert_contains "$T/err" "unknown command 'frobnicate'"
rc=0; ferry 2>/dev/null || rc=$?
assert_eq 2 $rc "no command"
rc=0; ferry --log-format=xml run 2>"$T/err" || rc=$?
assert_eq 2 $rc "bad log format"

cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state
[stage one]
plugin = exec
command = true
INI
FERRY_CONFIG=$T/p.ini ferry run 2>"$T/err" || fail "FERRY_CONFIG not honoured"
assert_contains "$T/err" "info one run ok"
grep -qE '^one +exec +ok +[0-9.]+s +-$' "$T/err" || { cat "$T/err"; fail "summary table row"; }

ferry -q -c "$T/p.ini" run 2>"$T/err" || fail "-q run failed"
[ ! -s "$T/err" ] || { cat "$T/err"; fail "-q printed info lines"; }

ferry --log-format=json -c "$T/p.ini" run 2>"$T/err" || fail "json run failed"
python3 - "$T/err" <<'PY' || fail "json log lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines and all({"ts", "level", "stage", "msg"} <= set(l) for l in lines), lines
assert any(l["stage"] == "one" and l["msg"] == "run ok" and isinstance(l["ms"], int) for l in lines), lines
PY
valgrind_verdict
