#!/usr/bin/env bash
# The default pipeline end to end in the gcs dialect, against the GCS XML-API test server:
# a database above one part (8 MiB) is committed as one PUT fenced by its generation (no
# multipart, which GCS cannot fence; nothing copied server-side), the versions recorded are
# generations, the object equals the replica; a warm rerun moves nothing and its snapshot is
# one pinned CopyObject; a push over an
# origin that another writer replaced is refused (exit 4) and the other writer's bytes stay.
. "$(dirname "$0")/../lib.sh"
E2E_STORE=gcs
. "$TESTS_DIR/e2e.sh"
e2e_setup 60000

rc=0
ferry -c "$PIPE" run >"$T/out1" 2>"$T/err1" || rc=$?
[ "$rc" = 0 ] || { tail -40 "$T/err1" >&2; tail -20 "$T/gcs.log" >&2; fail "the gcs pipeline exited $rc"; }
assert_no_lock
assert_unmounted
assert_contains "$T/err1" "endpoint probed: it fences conditional writes store=127.0.0.1:$GCS_PORT/e2e-bucket dialect=gcs"
e2e_get "org-data/$ORG_ID.db" "$T/after1.db"
cmp "$T/after1.db" "$FERRY_STATE_DIR/org.db" || fail "object and replica differ"
size=$(stat -c %s "$T/after1.db")
[ "$size" -gt $((8 << 20)) ] || fail "the org database ($size bytes) is not above one part"
rows=$(sqlite3 "$T/after1.db" "SELECT count(*) FROM email_schedules")
[ "$rows" -gt 1000 ] || fail "too few rows on the store: $rows"
etag=$(journal_fact push etag)
case $etag in ''|*[!0-9]*) fail "push recorded '$etag', not a generation" ;; esac
assert_eq 0 "$(journal_fact push bytes_copied)" "bytes copied server-side (no multipart on GCS)"
grep -q "multipart" "$T/gcs.log" && { cat "$T/gcs.log" >&2; fail "the GCS server saw a multipart request"; }

rc=0
ferry -c "$PIPE" -o snapshot.enabled=true run >"$T/out2" 2>"$T/err2" || rc=$?
[ "$rc" = 0 ] || { tail -30 "$T/err2" >&2; fail "the warm gcs run (with a snapshot) exited $rc"; }
# the snapshot: one CopyObject pinned to the pulled generation, created only if absent
grep -q "copy PUT /e2e-bucket/org-data/$ORG_ID.db.snapshots/.* -> 200" "$T/gcs.log" ||
	{ tail -20 "$T/gcs.log" >&2; fail "no snapshot copy reached the GCS server"; }
ferry -q s3 ls -r "org-data/$ORG_ID.db.snapshots/" >"$T/snaps" || fail "cannot list snapshots"
[ "$(wc -l <"$T/snaps")" = 1 ] || { cat "$T/snaps" >&2; fail "expected one snapshot"; }
assert_eq 0 "$(journal_fact pull pages_moved)" "pages moved by the warm pull"
assert_eq 0 "$(journal_fact push pages_written)" "pages written by the warm push"

# another writer replaces the object between our pull and our push: refused, theirs stays
ferry -c "$PIPE" run lock mount pull >"$T/out3" 2>"$T/err3" || { tail -30 "$T/err3" >&2; fail "lock mount pull failed"; }
sqlite3 "$FERRY_STATE_DIR/org.db" "UPDATE contacts SET first_name = 'Ours' WHERE id = (SELECT min(id) FROM contacts)"
cp "$T/after1.db" "$T/theirs.db"
sqlite3 "$T/theirs.db" "UPDATE contacts SET first_name = 'Theirs' WHERE id = (SELECT min(id) FROM contacts)"
ferry -q s3 put "$T/theirs.db" "org-data/$ORG_ID.db" >/dev/null || fail "the other writer's upload failed"
rc=0
ferry -c "$PIPE" run push >"$T/out4" 2>"$T/err4" || rc=$?
assert_eq 4 "$rc" "push over a replaced origin"
e2e_get "org-data/$ORG_ID.db" "$T/after4.db"
cmp -s "$T/after4.db" "$T/theirs.db" || fail "the other writer's object was overwritten"
ferry -c "$PIPE" run unlock >/dev/null 2>&1
assert_no_lock
assert_unmounted
assert_no_secrets "$T"
