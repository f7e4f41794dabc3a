#!/usr/bin/env bash
# tests/reliability/crash_matrix.sh [ITERATIONS] [POINT...]: the crash matrix.
# For each fault point, ITERATIONS times: reset the org DB on S3 to a base version, run the
# default pipeline with FERRY_FAILPOINT=POINT:kill (ferry SIGKILLs itself there), then check
#   - data: the S3 object is byte-equal to the base or to the replica the run was pushing,
#     and passes quick_check; the replica (if any) passes quick_check (after the rollback of
#     a pending .ferry-undo by the next run); after the second run object == replica;
#   - recovery: a normal second run succeeds (taking over the dead run's lock once its
#     short ttl has passed, cleaning its mount) and leaves no lock and no mount.
# Prints a table: point, runs, crashed (the point was reached), survived, lost (a data check
# failed), failed (a recovery check failed). Exit 1 if anything was lost or failed, or a
# point was never reached.
# The crashing run holds its lock for CRASH_TTL (default 8s: the second run waits that out);
# the second run takes a 10 minute lock so a loaded machine cannot run its lease out.
# Every odd iteration starts with no local replica, every even one with last run's replica;
# the points that need a replica to patch always keep it. push.before_complete kills ferry
# with every part of a multipart write on the store and the object not completed: only
# reached by a multipart write (a part left to copy, or more than 256 MiB), which this
# matrix's first schedule of a reset object never makes (every part changes: one PUT);
# t3006 kills there on a one-row change of a 64 MiB database. fs.* points
# kill ferryfs; push writes an object of the [s3] bucket from the replica, not through the
# mount, so in this pipeline they only reach the manifest sidecar's commit (not a data point).
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
iters=${1:-10}
shift || true
points=("$@")
[ ${#points[@]} -gt 0 ] || points=(
	lock.after_run mount.after_spawn mount.after_run pull.after_undo pull.mid_patch pull.before_commit
	pull.after_commit schedule.before_run schedule.mid_write schedule.after_commit schedule.after_run
	push.mid_write push.before_fsync push.after_commit push.before_manifest
	unlock.before_run)
e2e_setup "${CRASH_CONTACTS:-1500}"
cp "$T/org.db" "$T/base.db"
ov=(-o lock.margin=2s -o lock.max_wait=60s -o pipeline.deadline=0
    -o push.lease_need=1s -o schedule.run_id=crash-matrix)
ov_crash=("${ov[@]}" -o "lock.ttl=${CRASH_TTL:-8s}")
ov_again=("${ov[@]}" -o lock.ttl=10m)

check_db() { [ "$(sqlite3 "$1" 'PRAGMA quick_check' 2>&1)" = ok ]; }

printf '%-24s %5s %8s %9s %5s %6s\n' point runs crashed survived lost failed >"$T/table"
total_bad=0
for p in "${points[@]}"; do
	runs=0 crashed=0 ok=0 lost=0 failed=0
	keep_replica=false
	case $p in pull.after_undo|pull.mid_patch) keep_replica=true ;; esac
	for i in $(seq 1 "$iters"); do
		runs=$((runs + 1))
		lost_why="" why=""
		ferry -q s3 put "$T/base.db" "org-data/$ORG_ID.db" >/dev/null || why="reset failed"
		s3_raw_rm "org-data/$ORG_ID.db.ferry-manifest" 2>/dev/null || true
		[ $((i % 2)) = 1 ] && ! $keep_replica && rm -rf "$FERRY_STATE_DIR"
		rc=0
		FERRY_FAILPOINT=$p:kill ferry -c "$PIPE" "${ov_crash[@]}" run >"$T/crash.out" 2>"$T/crash.err" || rc=$?
		# fs.* points kill ferryfs (it inherits FERRY_FAILPOINT), not ferry: push must fail
		# and the run unwind (exit 1); the point was reached if ferryfs logged it
		case $p in
		fs.*) if grep -q "failpoint hit name=$p " "$T/crash.err"; then
			[ "$rc" = 1 ] || why="ferryfs died at $p but ferry exited $rc"
			rc=137
		      fi ;;
		esac
		if [ -z "$why" ] && [ "$rc" != 137 ] && grep -q "lease of lock .* s needed" "$T/crash.err"; then
			# a loaded machine ran the short CRASH_TTL lease out before the point: push
			# refused, as it must; this iteration tested nothing
			echo "# $p iteration $i: not counted: the lease ran out before the point (raise CRASH_TTL)" >&2
			runs=$((runs - 1))
			s3_raw_rm "org-data/$ORG_ID.db.lock" 2>/dev/null
			continue
		fi
		if [ -z "$why" ] && [ "$rc" != 137 ]; then
			# the point is not on this iteration's path (e.g. patching needs a replica)
			[ "$rc" = 0 ] || why="run without a crash failed (exit $rc)"
			[ -n "$why" ] || { ok=$((ok + 1)); s3_raw_rm "org-data/$ORG_ID.db.lock" 2>/dev/null; continue; }
		fi
		[ -z "$why" ] && crashed=$((crashed + 1))
		e2e_get "org-data/$ORG_ID.db" "$T/obj.db"
		if cmp -s "$T/obj.db" "$T/base.db"; then :
		elif [ -f "$FERRY_STATE_DIR/org.db" ] && cmp -s "$T/obj.db" "$FERRY_STATE_DIR/org.db"; then :
		else lost_why="object is neither the base nor the replica"; fi
		[ -z "$lost_why" ] && ! check_db "$T/obj.db" && lost_why="object fails quick_check"
		# A crash while pull patches the replica leaves <replica>.ferry-undo behind; the next
		# pull or push rolls it back before anything else reads the replica. Without one
		# the replica must be whole right now; with one it is checked after the next run.
		[ -z "$lost_why" ] && [ -f "$FERRY_STATE_DIR/org.db" ] && [ ! -e "$FERRY_STATE_DIR/org.db.ferry-undo" ] \
			&& ! check_db "$FERRY_STATE_DIR/org.db" && lost_why="replica fails quick_check"
		if [ -z "$why$lost_why" ]; then
			rc=0
			ferry -c "$PIPE" "${ov_again[@]}" run >"$T/again.out" 2>"$T/again.err" || rc=$?
			[ $rc = 0 ] || why="second run exited $rc: $(grep -m1 ' error ' "$T/again.err" | cut -c1-160)"
		fi
		if [ -z "$why$lost_why" ]; then
			e2e_get "org-data/$ORG_ID.db" "$T/obj2.db"
			cmp -s "$T/obj2.db" "$FERRY_STATE_DIR/org.db" || lost_why="after the second run object != replica"
			check_db "$FERRY_STATE_DIR/org.db" || lost_why="after the second run the replica fails quick_check"
			check_db "$T/obj2.db" || lost_why="after the second run object fails quick_check"
			s3_raw_exists "org-data/$ORG_ID.db.lock" && why="lock left after the second run"
			grep -q " $FERRY_MOUNTPOINT " /proc/mounts && why="mount left after the second run"
		fi
		if [ -n "$lost_why" ]; then
			lost=$((lost + 1))
			echo "# $p iteration $i: LOST: $lost_why" >&2
			cp "$T/crash.err" "$T/fail-$p-$i.crash.err" 2>/dev/null
		elif [ -n "$why" ]; then
			failed=$((failed + 1))
			echo "# $p iteration $i: $why" >&2
			cp "$T/crash.err" "$T/fail-$p-$i.crash.err" 2>/dev/null
		else
			ok=$((ok + 1))
		fi
		# whatever happened, start the next iteration clean
		fusermount3 -uz "$FERRY_MOUNTPOINT" 2>/dev/null || true
		pkill -9 -f "ferryfs .* $FERRY_MOUNTPOINT" 2>/dev/null || true
		s3_raw_rm "org-data/$ORG_ID.db.lock" 2>/dev/null || true
	done
	[ "$crashed" -gt 0 ] || { failed=$((failed + 1)); echo "# $p: never reached" >&2; }
	total_bad=$((total_bad + lost + failed))
	printf '%-24s %5d %8d %9d %5d %6d\n' "$p" "$runs" "$crashed" "$ok" "$lost" "$failed" >>"$T/table"
done
cat "$T/table"
[ "$total_bad" -eq 0 ]
