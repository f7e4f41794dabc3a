#!/usr/bin/env bash
# t3009: pull's read plan weighs requests as well as bytes (plugins/pull/pull_cost.c): the
# first pull (a copy, in order) measures the store's rate; the next, with two pages far
# apart changed and no figure for a ranged GET yet, times one and reads just those pages;
# when every ranged GET is made slow (tests/s3proxy.py stalls requests carrying Range), the
# pull that meets it measures that, and the one after reads the whole origin in one pass,
# although the changed pages are 0.01 % of it. The figures are in state_dir, never a URL.
# The origin's -journal and -wal are looked for by one listing first: both still stop it.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/proxy.sh"
need_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
moto_start
proxy_start
KEY=org-data/plan.db
MiB=1048576
# 64 MiB: a 1,000-row table of 4 KB rows (a row a page) and 60 MiB of padding after it
sqlite3 "$T/v.db" >/dev/null "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<1000) INSERT INTO t(b) SELECT randomblob(3900) FROM c;
CREATE TABLE pad(b); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<60) INSERT INTO pad SELECT randomblob(1048576) FROM c;"
[ "$(stat -c %s "$T/v.db")" -ge $((60 * MiB)) ] || fail "the database is too small"
put() { (cd "$T" && ferry -q s3 put "$T/v.db" "$KEY" >/dev/null) || fail "upload failed"; }
# the other machine, B: pull, change two rows 500 apart (two pages far apart: two ranged GETs
# for A), push (which writes the manifest A's pull reads the page hashes from)
pipeline_ini "$T/b.ini" "$T/b"
cat >>"$T/b.ini" <<INI
[stage lock]
plugin = lock
key = $KEY.lock
[stage mount]
plugin = mount
mountpoint = $T/mnt-b
cache_dir = $T/cache-b
[stage pull]
plugin = pull
origin = $T/mnt-b/$KEY
replica = \${state_dir}/org.db
[stage change]
plugin = exec
command = sqlite3 $T/b/org.db "UPDATE t SET b = randomblob(3900) WHERE a % 500 = \${ROUND}"
[stage push]
plugin = push
[stage unlock]
plugin = unlock
INI
change() { ROUND=$1 ferry -c "$T/b.ini" run >"$T/bo$1" 2>"$T/be$1" || { cat "$T/be$1" >&2; fail "B's change $1 failed"; }; }
# this machine, A: mount and pull only
pipeline_ini "$T/p.ini"
cat >>"$T/p.ini" <<INI
[stage mount]
plugin = mount
mountpoint = $T/mnt
cache_dir = $T/cache
[stage pull]
plugin = pull
origin = $T/mnt/$KEY
replica = \${state_dir}/org.db
INI
pull() { ferry -c "$T/p.ini" run >"$T/o$1" 2>"$T/e$1" || { cat "$T/e$1" >&2; fail "pull $1 failed"; }; }

put
change 0
pull 1
assert_contains "$T/e1" "pulled source=copy reads=sequential"
costs=$(ls "$T"/state/pull-costs-*.json 2>/dev/null) || fail "no read costs saved after the first pull"
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["in_order_bytes_per_ms"] > 0, c' "$costs" ||
	fail "no rate of a pass in order: $(cat "$costs")"
grep -q "127.0.0.1" "$costs" && fail "the costs file holds the endpoint"

change 1
pull 2
assert_contains "$T/e2" "reading just the differing pages: ranged GETs cost less than one pass here"
assert_contains "$T/e2" "ranged_gets=2 "
assert_contains "$T/e2" "ranged_get_timed_now=yes"
assert_contains "$T/e2" "reads=ranged"
cmp -s "$T/b/org.db" "$T/state/org.db" || fail "replica differs from the origin after pull 2"

# every ranged GET now waits 4 s: the pull that meets it still reads ranged (the figure
# says cheap) and measures the stall (blended with the cheap figure, ~1 s a GET; with a
# 2 s stall, a busy machine's in-order rate of 43 MB/s once made one pass dearer still)
proxy_rule '{"method":"GET","header":"range","action":"stall","seconds":4,"count":-1}'
change 2
pull 3
assert_contains "$T/e3" "reads=ranged"
cmp -s "$T/b/org.db" "$T/state/org.db" || fail "replica differs from the origin after pull 3"

change 3
pull 4
assert_contains "$T/e4" "reading the origin in order: one pass costs less than the ranged GETs here"
assert_contains "$T/e4" "reads=sequential"
cmp -s "$T/b/org.db" "$T/state/org.db" || fail "replica differs from the origin after pull 4"
proxy_rules_clear

# the origin's sidecars are found by one listing before any stat: a hot journal or a
# non-empty WAL beside the origin still stops the pull
printf '\xd9\xd5\x05\xf9\x20\xa1\x63\xd7 journal' >"$T/journal"
(cd "$T" && ferry -q s3 put "$T/journal" "$KEY-journal" >/dev/null) || fail "cannot put the journal"
rc=0; ferry -c "$T/p.ini" run >"$T/o5" 2>"$T/e5" || rc=$?
assert_eq 1 "$rc" "pull beside a hot journal"
assert_contains "$T/e5" "has a hot journal"
(cd "$T" && ferry -q s3 rm "$KEY-journal" >/dev/null) || fail "cannot remove the journal"
(cd "$T" && ferry -q s3 put "$T/journal" "$KEY-wal" >/dev/null) || fail "cannot put the wal"
rc=0; ferry -c "$T/p.ini" run >"$T/o6" 2>"$T/e6" || rc=$?
assert_eq 1 "$rc" "pull beside a non-empty WAL"
assert_contains "$T/e6" "-wal': checkpoint it first"
assert_no_secrets "$T"
