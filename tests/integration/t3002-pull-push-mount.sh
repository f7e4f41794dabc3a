#!/usr/bin/env bash
# t3002: pull/push through a real ferryfs mount on moto: full copy, zero-byte rerun,
# manifest-driven pull of a 1-page change written by another instance, fencing (exit 4,
# their object intact), create_if_missing with a conditional create.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

command -v sqlite3 >/dev/null || skip "sqlite3 CLI missing"
# S3 access for assertions through `ferry s3` (signed, quick to start)
s3put() { (cd "$T" && ferry s3 put "$2" "$1" >/dev/null 2>&1); }
s3get() { (cd "$T" && ferry s3 get "$1" "$2" 2>/dev/null); }
s3etag() { (cd "$T" && ferry s3 head "$1" 2>/dev/null) | awk '/^etag:/ { print $2 }'; }
s3exists() { (cd "$T" && ferry s3 head "$1" >/dev/null 2>&1); }
sql() { sqlite3 "$1" "$2" >/dev/null; }
qc() { sqlite3 "$1" "PRAGMA quick_check"; }
fact() { # fact INSTANCE STAGE KEY: a fact from that instance's run journal
	if command -v jq >/dev/null; then
		jq -r --arg s "$2" --arg k "$3" '.stages[] | select(.name == $s) | .facts[$k] // ""' "$T/$1/journal.json"
	else
		python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
for s in j["stages"]:
    if s["name"] == sys.argv[2]: print(s["facts"].get(sys.argv[3], "")); break' "$T/$1/journal.json" "$2" "$3"
	fi
}

KEY=org-data/42.db
# ini INSTANCE [UPDATE-SQL]: a full pipeline for one machine ("instance"), own state dir and mount
ini() {
	mkdir -p "$T/$1" "$T/mnt-$1"
	cat >"$T/$1.ini" <<INI
[pipeline]
name = t3002-$1
state_dir = $T/$1

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}

[stage lock]
plugin = lock
key = $KEY.lock
max_wait = 10s

[stage mount]
plugin = mount
mountpoint = $T/mnt-$1
cache_dir = $T/cache-$1

[stage pull]
plugin = pull
origin = $T/mnt-$1/$KEY
replica = \${state_dir}/org.db
create_if_missing = ${3:-false}

[stage work]
plugin = exec
command = sqlite3 $T/$1/org.db "${2:-SELECT 1;}"

[stage push]
plugin = push

[stage unlock]
plugin = unlock
INI
}

sql "$T/seed.db" "PRAGMA page_size=4096; CREATE TABLE t(a INTEGER PRIMARY KEY, b);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<8000) INSERT INTO t SELECT x, randomblob(300) FROM c;"
s3put "$KEY" "$T/seed.db" || fail "seed upload"
size=$(stat -c %s "$T/seed.db")
ini A "UPDATE t SET b=randomblob(300) WHERE a=100;"
ini B "UPDATE t SET b=randomblob(300) WHERE a=7000;"

# 1. A: first run = full copy, one row changed, pushed as its two pages
ferry -c "$T/A.ini" run 2>"$T/a1" || { cat "$T/a1"; fail "A first run"; }
assert_eq copy "$(fact A pull source)" "first pull"
assert_eq $((size / 4096)) "$(fact A pull pages_moved)" "first pull pages"
assert_eq 2 "$(fact A push pages_written)" "pages pushed"
s3get "$KEY" "$T/s3.db"
cmp -s "$T/s3.db" "$T/A/org.db" || fail "S3 object differs from A's replica after push"
assert_eq "$(s3etag "$KEY")" "$(fact A push etag)" "push etag fact"
s3exists "$KEY.ferry-manifest" || fail "no manifest sidecar after push"
up=$(fact A push bytes_uploaded)
[ "$up" -gt 0 ] && [ "$up" -le $((8 << 20)) ] || fail "push uploaded $up bytes"

# 2. A again without work: the state's etag is current -> zero bytes from S3
ini A
ferry -c "$T/A.ini" -o work.enabled=false run 2>"$T/a2" || { cat "$T/a2"; fail "A rerun"; }
assert_eq current "$(fact A pull source)" "rerun source"
assert_eq 0 "$(fact A pull pages_moved)" "rerun pages"
assert_eq 0 "$(fact A pull bytes_read)" "rerun bytes read from S3"
assert_eq 0 "$(fact A push pages_written)" "nothing to push"
# ... said by one HEAD and one listing, without opening the origin through the mount
assert_contains "$T/a2" "pull replica is current: unchanged since the last sync, and so is the origin (one HEAD)"
assert_contains "$T/a2" "push replica and origin unchanged since the last sync (one HEAD, the sidecar's header)"

# 3. B (another machine) changes one row and pushes (writing the manifest); A pulls just
#    the changed pages, driven by the manifest
ferry -c "$T/B.ini" run 2>"$T/b1" || { cat "$T/b1"; fail "B run"; }
# a dry run of A changes nothing (no mount in a dry run: pull asks S3 when the mount stage
# tells it where, else says it cannot count; push counts from the state file)
d0=$(tree_digest "$T/A")
ferry -c "$T/A.ini" run --dry-run 2>"$T/a-dry" || { cat "$T/a-dry"; fail "A dry run"; }
assert_contains "$T/a-dry" "info pull dry-run ok"
assert_contains "$T/a-dry" "dry-run: would write pages from replica into origin pages=0"
assert_eq "$d0" "$(tree_digest "$T/A")" "A's state dir after a dry run"
ferry -c "$T/A.ini" run lock mount pull unlock 2>"$T/a3" || { cat "$T/a3"; fail "A pull after B"; }
assert_not_contains "$T/a3" "and so is the origin (one HEAD)"
assert_eq manifest "$(fact A pull source)" "pull after B's push"
assert_eq 2 "$(fact A pull pages_moved)" "pages pulled after a 1-row change"
br=$(fact A pull bytes_read)
[ "$br" -le $((size / 10)) ] || fail "pulled $br bytes for a 1-row change of $size"
cmp -s "$T/A/org.db" "$T/B/org.db" || fail "A's replica differs from B's"

# 4. local change on A's replica (e.g. a failed push) and an unchanged origin: a rerun of
#    pull refuses to drop it (no silent loss); with --discard-local it restores just that
#    page from the state, then the replica equals the origin again
sql "$T/A/org.db" "UPDATE t SET b='local' WHERE a=3000;"
local_sum=$(sha256sum <"$T/A/org.db")
rc=0; ferry -c "$T/A.ini" run lock mount pull unlock 2>"$T/a4" || rc=$?
assert_eq 1 $rc "a rerun of pull over unpushed local changes"
assert_contains "$T/a4" "pages changed since the last sync"
assert_contains "$T/a4" "ferry run --discard-local pull"
assert_eq "$local_sum" "$(sha256sum <"$T/A/org.db")" "the refused pull left the replica alone"
ferry -c "$T/A.ini" run --discard-local lock mount pull unlock 2>"$T/a4" || { cat "$T/a4"; fail "A pull over local change"; }
assert_contains "$T/a4" "discarding local changes not pushed (discard_local)"
assert_eq state "$(fact A pull source)" "source for a locally changed replica"
assert_eq 2 "$(fact A pull pages_moved)" "pages restored"
cmp -s "$T/A/org.db" "$T/B/org.db" || fail "A's replica not restored"

# 5. fencing: A pulls, B pushes meanwhile, A's push is refused with exit 4
ini A "UPDATE t SET b='from-A' WHERE a=1;"
ferry -c "$T/A.ini" run lock mount pull work unlock 2>"$T/a5" || { cat "$T/a5"; fail "A pull+work"; }
ferry -c "$T/B.ini" run 2>"$T/b2" || { cat "$T/b2"; fail "B second run"; }
s3get "$KEY" "$T/theirs.db"
theirs=$(s3etag "$KEY")
rc=0; ferry -c "$T/A.ini" run lock mount push unlock 2>"$T/a6" || rc=$?
assert_eq 4 "$rc" "A's push over B's newer object"
assert_contains "$T/a6" "changed since this replica's last sync"
assert_eq "$theirs" "$(s3etag "$KEY")" "their object's etag"
s3get "$KEY" "$T/after.db"
cmp -s "$T/theirs.db" "$T/after.db" || fail "their object was modified"

# 6. create_if_missing: a missing origin starts empty; push creates it (If-None-Match: *)
ini C "CREATE TABLE n(x); INSERT INTO n VALUES (42);" true
sed -i "s#$KEY#org-data/new.db#" "$T/C.ini"
ferry -c "$T/C.ini" run 2>"$T/c1" || { cat "$T/c1"; fail "create run"; }
assert_eq create "$(fact C pull source)" "missing origin"
s3get org-data/new.db "$T/new.db" || fail "push did not create the object"
assert_eq 42 "$(sqlite3 "$T/new.db" "SELECT x FROM n")" "created database content"
assert_eq ok "$(qc "$T/new.db")" "created database quick_check"
rc=0; ferry -c "$T/B.ini" -o pull.origin="$T/mnt-B/org-data/none.db" run lock mount pull unlock 2>"$T/b3" || rc=$?
assert_eq 1 "$rc" "missing origin without create_if_missing"
assert_contains "$T/b3" "does not exist"

# 7. a corrupt manifest for the current object: a clear error, the replica untouched;
#    without the manifest pull compares every page
ini A
ini B "UPDATE t SET b=randomblob(300) WHERE a=4242;"
ferry -c "$T/A.ini" -o work.enabled=false run 2>"$T/a7" || { cat "$T/a7"; fail "A catch-up run"; }
ferry -c "$T/B.ini" run 2>"$T/b4" || { cat "$T/b4"; fail "B third run"; }
head -c 5000 /dev/urandom >"$T/junk"
s3put "$KEY.ferry-manifest" "$T/junk" || fail "cannot corrupt the manifest"
before=$(sha256sum <"$T/A/org.db")
rc=0; ferry -c "$T/A.ini" run lock mount pull unlock 2>"$T/a8" || rc=$?
assert_eq 1 "$rc" "pull with a corrupt manifest"
assert_contains "$T/a8" "manifest '$T/mnt-A/$KEY.ferry-manifest': not a ferry manifest"
assert_eq "$before" "$(sha256sum <"$T/A/org.db")" "replica after a corrupt manifest"
(cd "$T" && ferry s3 rm "$KEY.ferry-manifest" >/dev/null 2>&1) || fail "cannot remove the manifest"
ferry -c "$T/A.ini" run lock mount pull unlock 2>"$T/a9" || { cat "$T/a9"; fail "pull without manifest"; }
assert_eq compare "$(fact A pull source)" "pull without a manifest"
assert_eq 2 "$(fact A pull pages_moved)" "pages written after a full compare"
cmp -s "$T/A/org.db" "$T/B/org.db" || fail "A differs from B after a full compare"

# 8. a push with nothing to send still writes the sidecar when it is missing or is not a
#    manifest of this version (it reads the sidecar's header only)
for what in missing junk; do
	if [ $what = junk ]; then
		s3put "$KEY.ferry-manifest" "$T/junk" || fail "cannot corrupt the manifest"
	else
		(cd "$T" && ferry s3 rm "$KEY.ferry-manifest" >/dev/null 2>&1) || fail "cannot remove the manifest"
	fi
	ferry -c "$T/A.ini" run lock mount push unlock 2>"$T/a10" || { cat "$T/a10"; fail "push, sidecar $what"; }
	assert_eq 0 "$(fact A push pages_written)" "pages written by a push with nothing to send"
	(cd "$T" && ferry s3 get "$KEY.ferry-manifest" "$T/mf.$what" >/dev/null 2>&1) ||
		fail "no manifest sidecar after a push (it was $what)"
	assert_eq FERRYPG1 "$(head -c 8 "$T/mf.$what")" "the sidecar after a push (it was $what)"
done

assert_no_secrets "$T/A" "$T/B" "$T/C" "$T"/a? "$T"/b? "$T"/c?
valgrind_verdict
