#!/usr/bin/env bash
# t7003: SIGKILL to a worker mid-run (lock ttl 15s) loses nothing: its pipeline is told to
# unwind (PR_SET_PDEATHSIG) and unmounts, its lock stays until the lease expires, another
# worker leaves that org alone meanwhile and takes it over in a pass after the expiry.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
. "$TESTS_DIR/work.sh"
work_setup 3 wait
sed -i -e '/^\[stage lock\]/,/^\[/{s/^ttl .*/ttl = 15s/;/^max_wait/a margin = 1s
}' -e 's/^deadline .*/deadline = 0/' -e '/^\[stage push\]/a lease_need = 1s' "$PIPE"
grep -q '^ttl = 15s' "$PIPE" && grep -q '^margin = 1s' "$PIPE" || fail "could not shorten the lock ttl"

worker A --once --workers 1
n=0
until ls "$T"/started.* >/dev/null 2>&1; do
	n=$((n + 1)); [ $n -lt 600 ] || { cat "$T/A.err" >&2; fail "no pipeline started"; }
	sleep 0.1
done
org=$(ls "$T"/started.* | sed 's/.*started\.//')
kill -KILL "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null
# its pipeline unwinds by itself: the probe is cancelled and the mount goes
n=0
while pgrep -f -- "state_dir=$T/A/orgs" >/dev/null; do
	n=$((n + 1)); [ $n -lt 600 ] || fail "the killed worker's pipeline did not end"
	sleep 0.1
done
grep -q "^end $org cancelled\$" "$T/intervals" || fail "the probe of $org was not cancelled"
grep -q "cleanup ok" "$T/A/orgs/$org/work.log" || { cat "$T/A/orgs/$org/work.log" >&2; fail "no unwinding"; }
if grep -q " $T/A/" /proc/mounts; then fail "the killed worker's mount is left"; fi
s3_raw_exists "org-data/$org.db.lock" || fail "the dead worker's lock is gone already"

# another worker: every other org; the dead one's org only once its lease has expired
touch "$T/go"
worker B --once --workers 2
rc=0; wait "$WORKER_PID" || rc=$?
[ $rc = 0 ] || { cat "$T/B.err" >&2; fail "worker B exited $rc"; }
if grep -q "org busy: .* org=$org" "$T/B.err"; then
	assert_eq 2 "$(done_records)" "done records while $org is locked"
	s3_raw_exists "org-data/$org.db.lock" || fail "the busy org's lock went away"
	n=0
	until ORG_ID=$org ferry -c "$PIPE" lock status 2>/dev/null | grep -q '^state: *expired'; do
		n=$((n + 1)); [ $n -lt 600 ] || fail "the lock of $org never expired"
		sleep 0.1
	done
	worker B --once --workers 2
	rc=0; wait "$WORKER_PID" || rc=$?
	[ $rc = 0 ] || { cat "$T/B.err" >&2; fail "worker B's later pass exited $rc"; }
	assert_contains "$T/B.err" "due=1 done=2"
else
	note "the lease expired before worker B reached $org (a slow machine): taken over at once"
fi
grep -q "took_over=yes" "$T/B/orgs/$org/work.log" || { cat "$T/B/orgs/$org/work.log" >&2; fail "$org was not taken over"; }
assert_eq 3 "$(done_records)" "done records"
assert_no_overlap
assert_fleet_clean
valgrind_verdict
