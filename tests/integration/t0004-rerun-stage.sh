#!/usr/bin/env bash
# `ferry run STAGE` (the SSH rerun) runs only that stage, with facts of earlier stages
# taken from the run journal; --from runs a stage and everything after it; `list` shows
# the last result of each stage.
. "$(dirname "$0")/../lib.sh"

cat >"$T/p.ini" <<INI
[pipeline]
name = rerun
state_dir = $T/state

[stage produce]
plugin = exec
command = sh -c 'echo "ferry-fact token=tok-\$\$\$\$"; echo "ferry-fact etag=\\"abc\\""'

[stage consume]
plugin = exec
command = sh -c 'echo "\$FERRY_FACT_PRODUCE_TOKEN" >> $T/consumed; test -n "\$FERRY_FACT_PRODUCE_TOKEN"'

[stage last]
plugin = exec
command = sh -c 'echo last >> $T/last'
INI

ferry -c "$T/p.ini" run >/dev/null 2>"$T/err" || fail "first run failed: $(cat "$T/err")"
tok=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["stages"][0]["facts"]["token"])' "$T/state/journal.json")
case "$tok" in tok-[0-9]*) ;; *) fail "token fact not journaled: '$tok'" ;; esac
assert_eq "$tok" "$(tail -1 "$T/consumed")" "fact passed to the next stage"
etag=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["stages"][0]["facts"]["etag"])' "$T/state/journal.json")
assert_eq '"abc"' "$etag" "fact with quotes"

# rerun only `consume`: produce does not run again, its fact comes from the journal
rm -f "$T/consumed" "$T/last"
ferry -c "$T/p.ini" run consume >/dev/null 2>"$T/err" || fail "rerun failed: $(cat "$T/err")"
assert_eq "$tok" "$(cat "$T/consumed")" "fact from the journal"
[ ! -e "$T/last" ] || fail "rerun of one stage ran another"
python3 - "$T/state/journal.json" <<'PY' || fail "journal after rerun"
import json, sys
j = json.load(open(sys.argv[1]))
assert [(e["op"], e["stage"]) for e in j["events"]] == [("run", "consume"), ("cleanup", "consume")], j["events"]
assert j["stages"][0]["facts"]["token"].startswith("tok-")   # kept from the first run
PY

# --from consume runs consume and last
rm -f "$T/consumed" "$T/last"
ferry -c "$T/p.ini" run --from consume >/dev/null 2>&1 || fail "--from failed"
[ -e "$T/consumed" ] && [ -e "$T/last" ] || fail "--from did not run the rest"

# list shows order, plugin, enabled and the last result
ferry -c "$T/p.ini" list >"$T/list" 2>&1 || fail "list failed"
assert_contains "$T/list" "produce"
grep -qE '^2 +consume +exec +yes +ok' "$T/list" || { cat "$T/list"; fail "list line for consume"; }
ferry -c "$T/p.ini" status -v >"$T/status" 2>&1 || fail "status failed"
assert_contains "$T/status" "pipeline  rerun"
assert_contains "$T/status" "token=$tok"

# unknown and disabled stages are refused with a reason
rc=0; ferry -c "$T/p.ini" run nosuch 2>"$T/err" || rc=$?
assert_eq 2 $rc "unknown stage"
assert_contains "$T/err" "no stage 'nosuch' in '$T/p.ini'"
rc=0; ferry -c "$T/p.ini" -o last.enabled=false run last 2>"$T/err" || rc=$?
assert_eq 2 $rc "disabled stage"
assert_contains "$T/err" "stage 'last' is disabled"
valgrind_verdict
