#!/usr/bin/env bash
# The operator's rerun over SSH. (1) push fails (the store refuses the commit): the run
# unwinds and releases the lock; `ferry run --exact push` refuses (no lock held, it says
# so), and `ferry run push` brings in lock, mount and unlock and completes the job from the
# replica and its state file.
# (2) ferry is SIGKILLed just before the push commit: lock and mount stay; `ferry run push`
# alone succeeds with the journal's facts, `ferry run unlock mount` tidies up.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
. "$TESTS_DIR/proxy.sh"
e2e_setup 600
proxy_start

# (1) every commit of the DB object (multipart completion, or the If-Match PUT of a small
# object; the lock's create carries If-None-Match and is let through) fails with 500
proxy_rule '{"method":"POST","key":"org-data/7.db","query":"uploadId","action":"500","count":-1}'
proxy_rule '{"method":"PUT","key":"org-data/7.db","header":"if-match","action":"500","count":-1}'
rc=0
ferry -c "$PIPE" run >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 1 ] || [ $rc = 4 ] || { tail -20 "$T/err"; fail "push failure exited $rc"; }
grep -qE 'push run failed' "$T/err" || { tail -20 "$T/err"; fail "push did not fail"; }
proxy_rules_clear
assert_no_lock
assert_unmounted
e2e_get "org-data/$ORG_ID.db" "$T/unchanged.db"
cmp -s "$T/unchanged.db" "$T/org.db" || fail "a failed push changed the object"

rc=0
ferry -c "$PIPE" run --exact push >"$T/out" 2>"$T/err" || rc=$?
[ $rc != 0 ] || fail "push --exact without the lock succeeded"
grep -qiE 'lock' "$T/err" || { cat "$T/err"; fail "refusal does not name the lock"; }
e2e_get "org-data/$ORG_ID.db" "$T/still.db"
cmp -s "$T/still.db" "$T/org.db" || fail "a refused push changed the object"

ferry -c "$PIPE" run push >"$T/out" 2>"$T/err" || { tail -20 "$T/err"; fail "rerun failed"; }
assert_contains "$T/err" "bringing in lock, mount, unlock for push"
grep -E '^(lock|mount|push|unlock) ' "$T/err" >"$T/table"
assert_contains "$T/table" "(brought in)"

e2e_get "org-data/$ORG_ID.db" "$T/pushed.db"
cmp "$T/pushed.db" "$FERRY_STATE_DIR/org.db" || fail "object differs from the replica after the rerun"
sqlite3 "$T/pushed.db" "SELECT count(*) FROM email_schedules WHERE scheduler_run_id IS NOT NULL" | grep -qv '^0$' \
	|| fail "the rerun did not push the schedule"
assert_no_lock
assert_unmounted

# (2) SIGKILL right before the commit: nothing changes on S3, lock and mount remain
sqlite3 "$T/org.db" "UPDATE contacts SET email='new-' || email WHERE id % 7 = 0"
ferry -q s3 put "$T/org.db" "org-data/$ORG_ID.db" >/dev/null
e2e_get "org-data/$ORG_ID.db" "$T/base2.db"
rc=0
FERRY_FAILPOINT=push.before_fsync:kill ferry -c "$PIPE" run >"$T/out" 2>"$T/err" || rc=$?
assert_eq 137 $rc "exit of a SIGKILLed ferry"
e2e_get "org-data/$ORG_ID.db" "$T/after-kill.db"
cmp -s "$T/after-kill.db" "$T/base2.db" || fail "a killed push changed the object"
s3_raw_exists "org-data/$ORG_ID.db.lock" || fail "the lock is gone after kill -9"
ferry -c "$PIPE" run push >"$T/out" 2>"$T/err" || { tail -20 "$T/err"; fail "SSH rerun of push failed"; }
e2e_get "org-data/$ORG_ID.db" "$T/after-rerun.db"
cmp "$T/after-rerun.db" "$FERRY_STATE_DIR/org.db" || fail "object differs from the replica after 'ferry run push'"
ferry -c "$PIPE" run unlock >"$T/out" 2>"$T/err" || { tail -20 "$T/err"; fail "run unlock failed"; }
assert_no_lock
# the mount of the killed run is still there (ferryfs outlived ferry); the mount stage's
# next run cleans it, and so does this test's exit
true
