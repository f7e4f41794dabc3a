#!/usr/bin/env bash
# A failing schedule (corrupt contacts table) unwinds: exit 1, lock released, mount gone,
# the S3 object byte-identical to before.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
e2e_setup 500

sqlite3 "$T/org.db" "ALTER TABLE contacts DROP COLUMN birth_date" || fail "cannot corrupt"
ferry -q s3 put "$T/org.db" "org-data/$ORG_ID.db" >/dev/null
e2e_get "org-data/$ORG_ID.db" "$T/before.db"
rc=0
ferry -c "$PIPE" run >"$T/out" 2>"$T/err" || rc=$?
assert_eq 1 $rc "exit code"
assert_contains "$T/err" "table contacts has no column birth_date"
assert_no_lock
assert_unmounted
e2e_get "org-data/$ORG_ID.db" "$T/after.db"
cmp "$T/before.db" "$T/after.db" || fail "the object changed"
python3 - "$FERRY_STATE_DIR/journal.json" <<'PY' || fail "journal of the failed run"
import json, sys
j = json.load(open(sys.argv[1]))
ev = [(e["op"], e["stage"], e["result"]) for e in j["events"]]
runs = [e for e in ev if e[0] == "run"]
assert runs == [("run", "lock", "ok"), ("run", "mount", "ok"), ("run", "pull", "ok"),
                ("run", "schedule", "failed")], runs
assert ("undo", "lock", "ok") in ev and ev[-1][1] == "lock", ev
assert j["exit"] == 1
PY
