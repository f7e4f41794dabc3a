#!/usr/bin/env bash
# Two pipelines for the same org started at once (two "machines": own state_dir and
# mountpoint): one waits for the lock, then runs after the other; the final object holds
# both runs' effects in order: no lost update.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
E2E_MOTO=serial e2e_setup 800

# each run marks its replica between pull and schedule
python3 - "$PIPE" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("[stage schedule]", """[stage mark]
plugin = exec
command = sqlite3 ${state_dir}/org.db "CREATE TABLE IF NOT EXISTS marks(seq INTEGER PRIMARY KEY, run TEXT); INSERT INTO marks(run) VALUES('${RUN_NAME}')"

[stage schedule]""")
open(p, "w").write(s)
PY
for m in A B; do
	mkdir -p "$T/$m"
	RUN_NAME=$m FERRY_STATE_DIR=$T/$m/state FERRY_MOUNTPOINT=$T/$m/mnt \
		ferry_bg -c "$PIPE" run >"$T/$m/out" 2>"$T/$m/err"
	eval "pid_$m=$FERRY_PID"
done
rc_A=0; wait "$pid_A" || rc_A=$?
rc_B=0; wait "$pid_B" || rc_B=$?
[ $rc_A = 0 ] || { tail -20 "$T/A/err"; fail "run A exited $rc_A"; }
[ $rc_B = 0 ] || { tail -20 "$T/B/err"; fail "run B exited $rc_B"; }
# exactly one of them waited for the lock
waited=$(grep -l 'took_over=no' "$T"/A/err "$T"/B/err | xargs grep -lE 'waited_polls=[1-9]' | wc -l)
assert_eq 1 "$waited" "runs that waited for the lock"
e2e_get "org-data/$ORG_ID.db" "$T/final.db"
marks=$(sqlite3 "$T/final.db" "SELECT group_concat(run, '') FROM (SELECT run FROM marks ORDER BY seq)")
case "$marks" in AB|BA) ;; *) fail "lost update: marks on S3 are '$marks', expected both runs" ;; esac
# the one that waited ran second
first=${marks:0:1}
grep -qE 'waited_polls=0' "$T/$first/err" || fail "run $first is first in the object but waited"
[ "$(sqlite3 "$T/final.db" 'PRAGMA quick_check')" = ok ] || fail "final object fails quick_check"
assert_no_lock
for m in A B; do grep -q " $T/$m/mnt " /proc/mounts && fail "run $m left its mount"; done
true
