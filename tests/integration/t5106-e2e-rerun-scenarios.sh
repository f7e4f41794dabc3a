#!/usr/bin/env bash
# The operator's reruns, as typed at a shell, after a whole run:
#  (1) a manual schedule, then `ferry run push` publishes exactly it (push works from the
#      replica's state file, not from pull's facts of an older run); `ferry run pull` before
#      that refuses to drop the unpushed schedule and leaves the replica alone;
#  (2) after a failed push (failpoint), `ferry run push` retries and publishes;
#  (3) another machine pushed meanwhile: `ferry run pull` over local changes stops with a
#      conflict, `ferry run push` exits 4 and says what the object is now;
#  (4) a stale holder (its lease expired while it slept before the commit, another machine
#      took the lock and pushed) loses the conditional commit: exit 4 and who, not ESTALE.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
E2E_MOTO=serial e2e_setup 600
obj=org-data/$ORG_ID.db
has_run() { # has_run DB RUN_ID: rows of that scheduler run are there
	[ "$(sqlite3 "$1" "SELECT count(*) FROM email_schedules WHERE scheduler_run_id='$2'")" -gt 0 ] ||
		fail "no rows of scheduler run '$2' in $1"
}

ferry -c "$PIPE" run >"$T/out" 2>"$T/err" || { tail -20 "$T/err"; fail "first whole run"; }

# (1) manual schedule on the replica; pull refuses to drop it
ferry -c "$PIPE" run schedule --today 2026-03-09 --run-id manual >"$T/out" 2>"$T/err1" ||
	{ tail -20 "$T/err1"; fail "manual schedule"; }
sum=$(sha256sum <"$FERRY_STATE_DIR/org.db")
rc=0; ferry -c "$PIPE" run pull >"$T/out" 2>"$T/err2" || rc=$?
assert_eq 1 $rc "ferry run pull over an unpushed schedule"
assert_contains "$T/err2" "bringing in mount for pull"
assert_contains "$T/err2" "pages changed since the last sync"
assert_contains "$T/err2" "push them (ferry run push)"
assert_eq "$sum" "$(sha256sum <"$FERRY_STATE_DIR/org.db")" "replica after the refused pull"
ferry -c "$PIPE" run --dry-run pull >"$T/out" 2>"$T/err3" || { tail -20 "$T/err3"; fail "dry run of pull"; }
assert_contains "$T/err3" "dry-run: would refuse: the replica has local changes not pushed"
ferry -c "$PIPE" run push >"$T/out" 2>"$T/err4" || { tail -30 "$T/err4"; fail "ferry run push after a manual schedule"; }
assert_contains "$T/err4" "bringing in lock, mount, unlock for push"
e2e_get "$obj" "$T/o1.db"
cmp "$T/o1.db" "$FERRY_STATE_DIR/org.db" || fail "object is not the replica after the manual push"
has_run "$T/o1.db" manual
assert_no_lock
assert_unmounted

# (2) a failed push, then the rerun of push
rc=0
FERRY_FAILPOINT=push.before_fsync:fail ferry -c "$PIPE" -o schedule.today=2026-03-16 -o schedule.run_id=day16 \
	run >"$T/out" 2>"$T/err5" || rc=$?
assert_eq 1 $rc "run with a failing push"
assert_contains "$T/err5" "undo: kept: the new schedule stays in the replica"
e2e_get "$obj" "$T/o2.db"
cmp -s "$T/o2.db" "$T/o1.db" || fail "a failed push changed the object"
ferry -c "$PIPE" run push >"$T/out" 2>"$T/err6" || { tail -30 "$T/err6"; fail "rerun of push after a failure"; }
e2e_get "$obj" "$T/o3.db"
cmp "$T/o3.db" "$FERRY_STATE_DIR/org.db" || fail "object is not the replica after the retried push"
has_run "$T/o3.db" day16

# (3) local changes here, a push from another machine meanwhile
ferry -c "$PIPE" run schedule --today 2026-03-23 --run-id local23 >"$T/out" 2>"$T/err7" ||
	{ tail -20 "$T/err7"; fail "second manual schedule"; }
FERRY_STATE_DIR=$T/B/state FERRY_MOUNTPOINT=$T/B/mnt ferry -c "$PIPE" -o schedule.today=2026-03-30 \
	-o schedule.run_id=machineB run >"$T/out" 2>"$T/errB" || { tail -20 "$T/errB"; fail "machine B's run"; }
e2e_get "$obj" "$T/oB.db"
sum=$(sha256sum <"$FERRY_STATE_DIR/org.db")
rc=0; ferry -c "$PIPE" run pull >"$T/out" 2>"$T/err8" || rc=$?
assert_eq 1 $rc "pull with changes on both sides"
assert_contains "$T/err8" "conflict: replica"
assert_eq "$sum" "$(sha256sum <"$FERRY_STATE_DIR/org.db")" "replica after the conflict"
rc=0; ferry -c "$PIPE" run push >"$T/out" 2>"$T/err9" || rc=$?
assert_eq 4 $rc "push over machine B's newer object"
assert_contains "$T/err9" "changed since this replica's last sync"
assert_contains "$T/err9" "the object is now etag"
e2e_get "$obj" "$T/o4.db"
cmp -s "$T/o4.db" "$T/oB.db" || fail "the fenced push changed machine B's object"
assert_no_lock
# the operator takes the origin: --discard-local
ferry -c "$PIPE" run --discard-local pull >"$T/out" 2>"$T/err10" || { tail -20 "$T/err10"; fail "pull --discard-local"; }
cmp "$FERRY_STATE_DIR/org.db" "$T/oB.db" || fail "replica is not machine B's object after --discard-local"

# (4) a stale holder: A sleeps before its commit past its lease (a 4 s lock, 3 s of lease: it
#     must reach push within that on a loaded machine); B takes over and pushes
rm -rf "$T/B"
FERRY_FAILPOINT=push.before_fsync:sleep=9000 ferry_bg -c "$PIPE" -o pipeline.deadline=0 -o lock.ttl=4s \
	-o lock.margin=1s -o push.lease_need=0 -o schedule.today=2026-04-06 -o schedule.run_id=stale \
	run >"$T/outA" 2>"$T/errA"
pid_A=$FERRY_PID
for _ in $(seq 100); do grep -q 'failpoint hit name=push.before_fsync' "$T/errA" && break; sleep 0.1; done
grep -q 'failpoint hit name=push.before_fsync' "$T/errA" || { kill "$pid_A"; fail "A never reached its commit"; }
FERRY_STATE_DIR=$T/B/state FERRY_MOUNTPOINT=$T/B/mnt ferry -c "$PIPE" -o pipeline.deadline=0 -o lock.ttl=60s \
	-o lock.margin=1s -o lock.max_wait=20s -o push.lease_need=0 -o schedule.today=2026-04-13 -o schedule.run_id=fresh \
	run >"$T/out" 2>"$T/errB" || { tail -20 "$T/errB"; fail "machine B's takeover run"; }
assert_contains "$T/errB" "took_over=yes"
rc=0; wait "$pid_A" || rc=$?
assert_eq 4 $rc "the stale holder's push"
assert_contains "$T/errA" "was replaced by another writer"
assert_not_contains "$T/errA" "Stale file handle"
e2e_get "$obj" "$T/o5.db"
has_run "$T/o5.db" fresh
if sqlite3 "$T/o5.db" "SELECT 1 FROM email_schedules WHERE scheduler_run_id='stale'" | grep -q 1; then
	fail "the stale holder's schedule reached the object"
fi
assert_no_lock
assert_unmounted
