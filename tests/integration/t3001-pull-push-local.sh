#!/usr/bin/env bash
# t3001: pull and push against a plain local origin (no ferryfs): full copy, page-level
# compare, push of changed pages, content fence (exit 4), bad inputs, dry-run writes nothing.
. "$(dirname "$0")/../lib.sh"
moto_start

command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
sql() { sqlite3 "$1" "$2" >/dev/null; }
qc() { sqlite3 "$1" "PRAGMA quick_check"; }
fact() { # fact STAGE KEY: a fact from the run journal
	if command -v jq >/dev/null; then
		jq -r --arg s "$1" --arg k "$2" '.stages[] | select(.name == $s) | .facts[$k] // ""' "$T/state/journal.json"
	else
		python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
for s in j["stages"]:
    if s["name"] == sys.argv[2]: print(s["facts"].get(sys.argv[3], "")); break' "$T/state/journal.json" "$1" "$2"
	fi
}

O=$T/origin.db R=$T/state/org.db
mkdir -p "$T/state"
sql "$O" "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5000) INSERT INTO t SELECT x, randomblob(300) FROM c;"
cat >"$T/p.ini" <<INI
[pipeline]
name = t3001
state_dir = $T/state

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}

[stage lock]
plugin = lock
key = org-data/t3001.db.lock
max_wait = 5s

[stage pull]
plugin = pull
origin = $O
replica = \${state_dir}/org.db

[stage work]
plugin = exec
command = sqlite3 $R "UPDATE t SET b=randomblob(300) WHERE a=77"

[stage push]
plugin = push

[stage unlock]
plugin = unlock
INI

# 1. first run: full copy, one page (plus the header page) changed and pushed back
ferry -c "$T/p.ini" run 2>"$T/err1" || { cat "$T/err1"; fail "first run failed"; }
cmp -s "$O" "$R" || fail "origin and replica differ after push"
assert_eq ok "$(qc "$O")" "origin quick_check"
assert_eq copy "$(fact pull source)" "first pull is a full copy"
assert_eq "$(($(stat -c %s "$O") / 4096))" "$(fact pull pages_moved)" "full copy moves every page"
assert_eq 2 "$(fact push pages_written)" "pages pushed (row page + header page)"
[ -f "$R.ferry-state" ] || fail "no state file"
[ ! -e "$R.ferry-undo" ] || fail "undo file left behind"
[ ! -e "$R.ferry-tmp" ] || fail "temp file left behind"

# 2. pull again: compare mode (no etag on a plain file), nothing to write
sum=$(sha256sum <"$R")
ferry -c "$T/p.ini" run lock pull unlock 2>"$T/err2" || { cat "$T/err2"; fail "second pull failed"; }
assert_eq 0 "$(fact pull pages_moved)" "unchanged origin moves no page"
assert_eq compare "$(fact pull source)" "plain origin compares by hashes"
assert_eq "$sum" "$(sha256sum <"$R")" "replica unchanged"

# 3. 1% of the rows change at the origin: only the differing pages are written locally
sql "$O" "UPDATE t SET b=randomblob(300) WHERE a % 100 = 0;"
ferry -c "$T/p.ini" run lock pull unlock 2>"$T/err3" || { cat "$T/err3"; fail "third pull failed"; }
cmp -s "$O" "$R" || fail "replica differs from origin after a differential pull"
moved=$(fact pull pages_moved); total=$(fact pull pages_total)
[ "$moved" -gt 1 ] && [ "$moved" -le 60 ] || fail "1% change moved $moved of $total pages"

# 4. growth and truncation
sql "$O" "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<3000) INSERT INTO t(b) SELECT randomblob(300) FROM c;"
ferry -c "$T/p.ini" run lock pull unlock 2>"$T/err4" || { cat "$T/err4"; fail "pull after growth failed"; }
cmp -s "$O" "$R" || fail "replica differs after growth"
sql "$O" "DELETE FROM t WHERE a > 1000; VACUUM;"
ferry -c "$T/p.ini" run lock pull unlock 2>"$T/err5" || { cat "$T/err5"; fail "pull after truncation failed"; }
cmp -s "$O" "$R" || fail "replica differs after truncation"
assert_eq ok "$(qc "$R")" "replica quick_check after truncation"

# 5. fence by content: the origin changes between pull and push -> exit 4, theirs intact
ferry -c "$T/p.ini" run lock pull work 2>"$T/err6" || { cat "$T/err6"; fail "lock pull work failed"; }
sql "$O" "UPDATE t SET b='theirs' WHERE a=5;"
theirs=$(sha256sum <"$O")
rc=0; ferry -c "$T/p.ini" run push 2>"$T/err7" || rc=$?
assert_eq 4 "$rc" "push over a changed origin"
assert_contains "$T/err7" "changed since this replica's last sync"
assert_eq "$theirs" "$(sha256sum <"$O")" "their origin untouched"
ferry -c "$T/p.ini" run unlock 2>/dev/null || fail "unlock failed"

# 6. bad inputs: a clear error, nothing written
head -c 8192 /dev/urandom >"$T/junk.db"
before=$(sha256sum <"$R")
rc=0; ferry -c "$T/p.ini" -o pull.origin="$T/junk.db" run pull 2>"$T/err8" || rc=$?
assert_eq 1 "$rc" "origin not a database"
assert_contains "$T/err8" "origin '$T/junk.db': not a SQLite database (bad magic)"
assert_eq "$before" "$(sha256sum <"$R")" "replica untouched after bad origin"
rc=0; ferry -c "$T/p.ini" -o pull.origin="$T/none.db" run pull 2>"$T/err9" || rc=$?
assert_eq 1 "$rc" "missing origin"
assert_contains "$T/err9" "origin '$T/none.db' does not exist"
printf '\xd9\xd5\x05\xf9\x20\xa1\x63\xd7rest-of-journal' >"$O-journal"
rc=0; ferry -c "$T/p.ini" run pull 2>"$T/err10" || rc=$?
assert_eq 1 "$rc" "hot journal on the origin"
assert_contains "$T/err10" "hot journal"
rm -f "$O-journal"
cp "$O" "$T/trunc.db"; truncate -s $(( $(stat -c %s "$O") / 2 )) "$T/trunc.db"
rc=0; ferry -c "$T/p.ini" -o pull.origin="$T/trunc.db" run pull 2>"$T/err11" || rc=$?
assert_eq 1 "$rc" "truncated origin"
assert_contains "$T/err11" "truncated"
assert_eq "$before" "$(sha256sum <"$R")" "replica untouched after bad inputs"
printf '\xd9\xd5\x05\xf9\x20\xa1\x63\xd7rest-of-journal' >"$R-journal"
rc=0; ferry -c "$T/p.ini" run pull 2>"$T/err14" || rc=$?
assert_eq 1 "$rc" "hot journal on the replica"
assert_contains "$T/err14" "replica '$R' has a hot journal"
rm -f "$R-journal"
cp "$R" "$T/r.keep"; head -c 4096 /dev/urandom >"$R"
rc=0; ferry -c "$T/p.ini" run pull 2>"$T/err15" || rc=$?
assert_eq 1 "$rc" "replica not a database"
assert_contains "$T/err15" "replica '$R': not a SQLite database"
cp "$T/r.keep" "$R"
rc=0; ferry -c "$T/p.ini" -o pull.verify=sometimes run pull 2>"$T/err12" || rc=$?
assert_eq 2 "$rc" "bad verify value"
assert_contains "$T/err12" "verify"

# 7. dry-run changes nothing and says how much would move
sql "$O" "UPDATE t SET b=randomblob(300) WHERE a=10;"
d0=$(tree_digest "$T/state"); o0=$(sha256sum <"$O")
ferry -c "$T/p.ini" run --dry-run 2>"$T/err13" || { cat "$T/err13"; fail "dry-run failed"; }
assert_contains "$T/err13" "dry-run: would read and hash every origin page"
assert_contains "$T/err13" "dry-run: would write pages from replica into origin"
assert_eq "$d0" "$(tree_digest "$T/state")" "dry-run changed the state dir"
assert_eq "$o0" "$(sha256sum <"$O")" "dry-run changed the origin"
# 8. create_if_missing and nothing written: push creates an empty origin (O_CREAT|O_EXCL);
#    the next run pulls the empty database and has nothing to push
ferry -c "$T/p.ini" -o pull.origin="$T/new.db" -o pull.create_if_missing=true -o work.enabled=false \
	run 2>"$T/err16" || { cat "$T/err16"; fail "create run"; }
assert_eq create "$(fact pull source)" "missing origin started empty"
[ -f "$T/new.db" ] && [ ! -s "$T/new.db" ] || fail "push did not create an empty origin"
ferry -c "$T/p.ini" -o pull.origin="$T/new.db" -o work.enabled=false run 2>"$T/err17" || { cat "$T/err17"; fail "rerun on the empty origin"; }
assert_eq 0 "$(fact pull pages_total)" "pages of the empty database"
assert_eq 0 "$(fact push pages_written)" "nothing to push"

assert_no_secrets "$T/state" "$T"/err*
valgrind_verdict
