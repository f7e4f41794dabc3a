#!/usr/bin/env bash
# t3008: an unchanged replica is not hashed twice. After a sync, pull and push stamp the
# replica (identity + the state's checksum, REPLICA.ferry-stamp); while the stamp holds they
# take the state's page hashes instead of hashing the file. Any change breaks it: a row
# written by SQLite, bytes written by another tool with the mtime set back (ctime moves),
# a replaced file (another inode). Each such change is then found and pushed.
. "$(dirname "$0")/../lib.sh"
moto_start
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"

O=$T/origin.db R=$T/state/org.db
mkdir -p "$T/state"
sqlite3 "$O" "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<3000) INSERT INTO t SELECT x, randomblob(300) FROM c;"
pipeline_ini "$T/p.ini"
cat >>"$T/p.ini" <<INI
[stage lock]
plugin = lock
key = org-data/t3008.db.lock

[stage pull]
plugin = pull
origin = $O
replica = \${state_dir}/org.db

[stage push]
plugin = push

[stage unlock]
plugin = unlock
INI
# run STAGE...: push brings in lock (and unlock after it)
run() { ferry -c "$T/p.ini" run "$@" 2>"$T/err" || { cat "$T/err"; fail "run $*"; }; }
NOT="replica unchanged since the last sync: not hashed"

# a first pull copies and stamps; nothing hashed again by the push after it
run pull
[ -s "$R.ferry-stamp" ] || fail "pull left no stamp"
run pull push
assert_contains "$T/err" "push $NOT"
assert_not_contains "$T/err" "hashed the replica"
assert_contains "$T/err" "push origin is current pages_written=0"

# 1. a row written by SQLite: the stamp no longer holds, push hashes and pushes the change
sqlite3 "$R" "UPDATE t SET b = randomblob(300) WHERE a = 1500"
run push
assert_not_contains "$T/err" "$NOT"
assert_contains "$T/err" "push hashed the replica pages="
grep -q "push pushed pages_written=[1-9]" "$T/err" || { cat "$T/err"; fail "the change was not pushed"; }
cmp -s "$O" "$R" || fail "origin differs from the replica after the push"
# the push stamped it again
run push
assert_contains "$T/err" "push $NOT"

# 2. a byte changed by another tool, mtime set back: ctime still moved
m=$(stat -c %y "$R")
python3 - "$R" <<'PY'      # flip one bit inside page 21 (a changed byte, whatever was there)
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(4096 * 20 + 2000)
    b = f.read(1)[0]
    f.seek(4096 * 20 + 2000)
    f.write(bytes([b ^ 1]))
PY
touch -d "$m" "$R"
[ "$(stat -c %y "$R")" = "$m" ] || fail "mtime not restored"
run push
assert_not_contains "$T/err" "$NOT"
assert_contains "$T/err" "push pushed pages_written=1"
cmp -s "$O" "$R" || fail "the changed byte was not pushed"

# 3. a replaced file (same bytes, another inode) is hashed again
cp "$R" "$T/copy.db" && mv "$T/copy.db" "$R"
run pull
assert_not_contains "$T/err" "$NOT"
assert_contains "$T/err" "pull hashed the replica pages="
run pull
assert_contains "$T/err" "pull $NOT"

# 4. a stamp that names another state (state file rewritten) is not trusted
run pull push
assert_contains "$T/err" "push $NOT"
sqlite3 "$O" "UPDATE t SET b = randomblob(300) WHERE a = 10"
run pull
assert_contains "$T/err" "pull $NOT"       # the replica is unchanged, the origin moved
cmp -s "$O" "$R" || fail "pull did not bring the origin's change"
run push
assert_contains "$T/err" "push $NOT"       # stamped by that pull
assert_contains "$T/err" "push origin is current pages_written=0"
valgrind_verdict
