#!/usr/bin/env bash
# The default pipeline end to end: rows appear in email_schedules of the object on S3;
# a second run is idempotent (same rows) and its pull moves zero bytes; nothing is left.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
e2e_setup 3000

ferry -c "$PIPE" run >"$T/out1" 2>"$T/err1" || { tail -30 "$T/err1"; fail "first run failed"; }
assert_no_lock
assert_unmounted
e2e_get "org-data/$ORG_ID.db" "$T/after1.db"
[ "$(sqlite3 "$T/after1.db" 'PRAGMA quick_check')" = ok ] || fail "object fails quick_check"
rows1=$(sqlite3 "$T/after1.db" "SELECT count(*) FROM email_schedules WHERE status IN ('pre-scheduled','skipped') AND email_type IN ('birthday','effective_date','aep','post_window')")
[ "$rows1" -gt 1000 ] || fail "too few owned rows on S3: $rows1"
# the object holds exactly what the replica holds
cmp "$T/after1.db" "$FERRY_STATE_DIR/org.db" || fail "object and replica differ"

sqlite3 "$T/after1.db" "SELECT contact_id, email_type, scheduled_send_date, status, ifnull(skip_reason,''), id FROM email_schedules ORDER BY 1,2,3" >"$T/rows1"
ferry -c "$PIPE" run >"$T/out2" 2>"$T/err2" || { tail -30 "$T/err2"; fail "second run failed"; }
assert_eq 0 "$(journal_fact pull pages_moved)" "pages moved by the warm pull"
assert_eq 0 "$(journal_fact pull bytes_read)" "bytes read by the warm pull"
assert_eq 0 "$(journal_fact push pages_written)" "pages written by the idempotent push"
e2e_get "org-data/$ORG_ID.db" "$T/after2.db"
sqlite3 "$T/after2.db" "SELECT contact_id, email_type, scheduled_send_date, status, ifnull(skip_reason,''), id FROM email_schedules ORDER BY 1,2,3" >"$T/rows2"
cmp -s "$T/rows1" "$T/rows2" || fail "the second run changed rows"
assert_no_lock
assert_unmounted
assert_no_secrets "$T"
