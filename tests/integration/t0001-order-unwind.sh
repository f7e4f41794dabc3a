#!/usr/bin/env bash
# Stages run in INI order; reordering sections reorders the run; a failure at each
# position unwinds exactly the started stages in reverse, in log and journal.
. "$(dirname "$0")/../lib.sh"

# pipeline ORDER FAILING: exec stages named by ORDER (e.g. "a b c d e"), FAILING fails.
pipeline() {
	local order=$1 fail=$2 s
	printf '[pipeline]\nname = order\nstate_dir = %s/state\n' "$T"
	for s in $order; do
		printf '\n[stage %s]\nplugin = exec\n' "$s"
		if [ "$s" = "$fail" ]; then
			printf 'command = false\n'
		else
			printf 'command = echo run-%s\n' "$s"
		fi
		printf 'undo = echo undo-%s\ncleanup = echo cleanup-%s\n' "$s" "$s"
	done
}

# The journal's events as "op stage result" lines.
events() {
	python3 -c 'import json,sys
for e in json.load(open(sys.argv[1]))["events"]: print(e["op"], e["stage"], e["result"])' "$T/state/journal.json"
}

# Success: run in order, then cleanup in reverse.
pipeline "a b c d e" none >"$T/p.ini"
ferry -c "$T/p.ini" run >"$T/out" 2>"$T/err" || fail "clean pipeline failed: $(cat "$T/err")"
assert_eq "run-a run-b run-c run-d run-e cleanup-e cleanup-d cleanup-c cleanup-b cleanup-a" \
	"$(tr '\n' ' ' <"$T/out" | sed 's/ $//')" "stdout order"
assert_eq "run a ok,run b ok,run c ok,run d ok,run e ok,cleanup e ok,cleanup d ok,cleanup c ok,cleanup b ok,cleanup a ok" \
	"$(events | paste -sd, -)" "journal events"

# Reordering the sections reorders the run.
pipeline "c a e b d" none >"$T/p.ini"
ferry -c "$T/p.ini" run >"$T/out" 2>"$T/err" || fail "reordered pipeline failed"
assert_eq "run-c run-a run-e run-b run-d" "$(grep '^run-' "$T/out" | paste -sd' ' -)" "reordered"

# Failure at each position: exit 1, unwinding exactly the started stages in reverse.
for f in a b c d e; do
	pipeline "a b c d e" "$f" >"$T/p.ini"
	rc=0
	ferry -c "$T/p.ini" run >"$T/out" 2>"$T/err" || rc=$?
	assert_eq 1 "$rc" "exit code with $f failing"
	want=""
	started=""
	for s in a b c d e; do
		started="$s $started"
		if [ "$s" = "$f" ]; then want+="run $s failed,"; break; fi
		want+="run $s ok,"
	done
	for s in $started; do
		[ "$s" = "$f" ] || want+="undo $s ok,"
		want+="cleanup $s ok,"
	done
	assert_eq "${want%,}" "$(events | paste -sd, -)" "journal events with $f failing"
	# the log shows the same sequence
	got=$(grep -oE ' [a-e] (run|undo|cleanup) (ok|failed)' "$T/err" | awk '{print $2, $1, $3}' | paste -sd, -)
	assert_eq "${want%,}" "$got" "log events with $f failing"
	assert_contains "$T/err" "error $f run failed: run command 'false' exited with status 1"
done

# The acceptance example, spelled out: a..e with c failing.
pipeline "a b c d e" c >"$T/p.ini"
ferry -c "$T/p.ini" run >/dev/null 2>&1 && fail "c should fail"
assert_eq "run a ok,run b ok,run c failed,cleanup c ok,undo b ok,cleanup b ok,undo a ok,cleanup a ok" \
	"$(events | paste -sd, -)" "acceptance sequence"
python3 - "$T/state/journal.json" <<'PY' || fail "journal stage results"
import json, sys
j = json.load(open(sys.argv[1]))
r = {s["name"]: s["result"] for s in j["stages"]}
assert j["result"] == "failed" and j["exit"] == 1, j
assert r == {"a": "undone", "b": "undone", "c": "failed", "d": "none", "e": "none"}, r
PY
# A disabled stage is skipped.
pipeline "a b c" none >"$T/p.ini"
sed -i '/\[stage b\]/a enabled = false' "$T/p.ini"
ferry -c "$T/p.ini" run >"$T/out" 2>/dev/null || fail "pipeline with a disabled stage failed"
assert_eq "run-a run-c" "$(grep '^run-' "$T/out" | paste -sd' ' -)" "disabled stage skipped"
valgrind_verdict
