#!/usr/bin/env bash
# tests/reliability/s3_faults.sh [CASE...]: the S3 fault matrix. The whole
# default pipeline runs through tests/s3proxy.py, which injects one kind of fault into a
# few requests of every kind. Each case must either succeed (through retries) or fail with
# unwinding and a clear message; in both, the object on S3 is the base or the replica (never
# torn, passes quick_check), no lock is left by the run, nothing stays mounted. Prints a table.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
. "$TESTS_DIR/proxy.sh"
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(500 503 reset stall drop 412 bad_length truncate garbage_xml)
e2e_setup "${FAULT_CONTACTS:-800}"
cp "$T/org.db" "$T/base.db"
proxy_start
ov=(-o s3.low_speed_time=2s -o s3.connect_timeout=2s -o s3.retry_base=50ms -o s3.retry_cap=500ms
    -o lock.max_wait=20s -o schedule.run_id=fault-matrix)

printf '%-12s %-8s %-6s %-6s %-6s %s\n' case exit data lock mount message >"$T/table"
bad=0
for c in "${cases[@]}"; do
	ferry -q s3 put "$T/base.db" "org-data/$ORG_ID.db" >/dev/null || fail "reset failed"
	rm -rf "$FERRY_STATE_DIR"
	proxy_reset
	# every 5th request of each method, 3 times per method (stall: 4 s > low_speed_time)
	for m in GET PUT POST HEAD DELETE; do
		rule="{\"method\":\"$m\",\"nth\":5,\"count\":3,\"action\":\"$c\",\"seconds\":4}"
		[ "$c" = 412 ] && rule="{\"method\":\"$m\",\"nth\":3,\"count\":1,\"action\":\"412\"}"
		proxy_rule "$rule"
	done
	rc=0
	ferry -c "$PIPE" "${ov[@]}" run >"$T/out" 2>"$T/err" || rc=$?
	proxy_rules_clear
	e2e_get "org-data/$ORG_ID.db" "$T/obj.db"
	data=ok
	if cmp -s "$T/obj.db" "$T/base.db"; then :
	elif [ -f "$FERRY_STATE_DIR/org.db" ] && cmp -s "$T/obj.db" "$FERRY_STATE_DIR/org.db"; then :
	else data=TORN; fi
	[ "$(sqlite3 "$T/obj.db" 'PRAGMA quick_check' 2>&1)" = ok ] || data=CORRUPT
	[ "$rc" = 0 ] && ! cmp -s "$T/obj.db" "$FERRY_STATE_DIR/org.db" && data=STALE
	lock=ok
	s3_raw_exists "org-data/$ORG_ID.db.lock" && lock=LEFT
	mount=ok
	grep -q " $FERRY_MOUNTPOINT " /proc/mounts && mount=LEFT
	msg=$(grep -m1 -oE ' error [a-z]+ run failed: .*' "$T/err" | cut -c1-110)
	[ "$rc" = 0 ] && msg="succeeded ($(proxy_stats fired 2>/dev/null || echo '?') faults fired)"
	[ "$rc" != 0 ] && [ -z "$msg" ] && msg="NO CLEAR MESSAGE" && bad=$((bad + 1))
	case "$rc" in 0|1|3|4) ;; *) bad=$((bad + 1)) ;; esac
	[ "$data" = ok ] && [ "$lock" = ok ] && [ "$mount" = ok ] || bad=$((bad + 1))
	printf '%-12s %-8s %-6s %-6s %-6s %s\n' "$c" "$rc" "$data" "$lock" "$mount" "$msg" >>"$T/table"
	s3_raw_rm "org-data/$ORG_ID.db.lock" 2>/dev/null || true
	fusermount3 -uz "$FERRY_MOUNTPOINT" 2>/dev/null || true
done
cat "$T/table"
[ "$bad" -eq 0 ]
