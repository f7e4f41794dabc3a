# tests/work.sh: set-up shared by the fleet tests (tests/integration/t7*; source after lib.sh
# and e2e.sh).
#   work_setup N [PROBE]  e2e_setup on serialised moto (races of conditional writes need it),
#                         N small org databases org-data/o01.db.. (tests/gen_orgdb.py, one seed
#                         each) instead of e2e's org 7, ORG_ID and FERRY_MOUNTPOINT unset (the
#                         worker sets them per org), $PIPE with a [work] section; PROBE=wait
#                         makes the probe stage wait for $T/go (see below)
#   work_exec_setup N     moto and N tiny objects org-data/o1.db.. with $PIPE a light pipeline
#                         (no FUSE): lock, an exec stage `act` that fails for ORG when
#                         $T/fail.ORG exists, unlock
#   worker NAME ARGS...   `ferry -c $PIPE work ARGS` in the background with its own state dir
#                         $T/NAME (WORKER_PID), stdout/stderr in $T/NAME.out/.err
#   assert_no_overlap     no org ran two pipelines at once, and each saw its own lock
#   assert_fleet_clean    no lock object left, nothing mounted under $T
#   done_records          the number of RECORDS/ORG/PERIOD.json records
#   ws3 ARGS...           `ferry s3 ARGS` with $PIPE (whose ${ORG_ID} needs a value)
#
# The probe stage (an exec stage between pull and schedule) appends "start ORG" and
# "end ORG" ("end ORG cancelled" on SIGTERM) to $T/intervals, reads the org's lock object and notes a violation when its
# nonce is not the one this run's lock stage took, and touches $T/started.ORG.
work_setup() {
	local n=$1 probe=${2:-} i
	E2E_MOTO=serial e2e_setup 200
	s3_raw_rm "org-data/$ORG_ID.db"
	for i in $(seq -w 1 "$n"); do
		python3 "$TESTS_DIR/gen_orgdb.py" --contacts 150 --seed "$i" "$T/o$i.db" >/dev/null ||
			fail "gen_orgdb failed"
		s3_raw_put "org-data/o$i.db" "$T/o$i.db" || fail "cannot upload org o$i"
	done
	unset ORG_ID FERRY_MOUNTPOINT
	cat >"$T/probe.sh" <<SH
#!/bin/sh
echo "start \$ORG_ID" >>"$T/intervals"
trap 'echo "end \$ORG_ID cancelled" >>"$T/intervals"; exit 143' TERM
"$FERRY_BIN" -q -c "$PIPE" s3 get "org-data/\$ORG_ID.db.lock" "\$FERRY_STATE_DIR/lock.body" >/dev/null 2>&1 &&
	grep -q "\$FERRY_FACT_LOCK_NONCE" "\$FERRY_STATE_DIR/lock.body" ||
	echo "lock of \$ORG_ID is not ours" >>"$T/violations"
touch "$T/started.\$ORG_ID"
n=0
while [ "$probe" = wait ] && [ ! -e "$T/go" ] && [ \$n -lt 1200 ]; do sleep 0.1; n=\$((n + 1)); done
sleep 0.2
echo "end \$ORG_ID" >>"$T/intervals"
SH
	chmod +x "$T/probe.sh"
	[ "$probe" = none ] && return 0
	python3 - "$PIPE" "$T/probe.sh" <<'PY'
import sys
p, probe = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("[stage schedule]", "[stage probe]\nplugin = exec\ncommand = %s\nkill_grace = 2s\n\n[stage schedule]" % probe)
open(p, "w").write(s)
PY
	grep -q '^\[stage probe\]' "$PIPE" || fail "could not add the probe stage"
	grep -q '^orgs *= *org-data/\*\.db' "$PIPE" || fail "the pipeline has no [work] orgs"
}

work_exec_setup() {
	local i
	moto_start
	for i in $(seq 1 "$1"); do
		echo "org $i" >"$T/o$i"
		s3_raw_put "org-data/o$i.db" "$T/o$i" || fail "cannot upload org o$i"
	done
	PIPE=$T/pipeline.ini
	cat >"$PIPE" <<INI
[pipeline]
name = org-\${ORG_ID}
state_dir = \${FERRY_STATE_DIR:-$T/state}

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
bucket = \${BUCKET_NAME}

[stage lock]
plugin = lock
key = org-data/\${ORG_ID}.db.lock

[stage act]
plugin = exec
command = sh -c 'test ! -e $T/fail.\$\$ORG_ID || { echo "org \$\$ORG_ID is broken" >&2; exit 1; }'

[stage unlock]
plugin = unlock

[work]
orgs = org-data/*.db
INI
}

worker() {
	local name=$1
	shift
	mkdir -p "$T/$name"
	FERRY_STATE_DIR=$T/$name ferry_bg -c "$PIPE" work "$@" >"$T/$name.out" 2>"$T/$name.err"
	WORKER_PID=$FERRY_PID
}

assert_no_overlap() {
	[ -e "$T/violations" ] && { cat "$T/violations" >&2; fail "a pipeline ran without its own lock"; }
	python3 - "$T/intervals" <<'PY' || fail "two pipelines ran on one org at the same time"
import sys
open_ = {}
for line in open(sys.argv[1]):
    what, org = line.split()[:2]
    if what == "start":
        if open_.get(org):
            sys.exit("org %s started while already running" % org)
        open_[org] = True
    else:
        open_[org] = False
PY
}

assert_fleet_clean() {
	local locks
	locks=$(ws3 ls org-data/ | grep -c '\.lock' || true)
	assert_eq 0 "$locks" "lock objects left"
	if grep -q " $T/" /proc/mounts; then grep " $T/" /proc/mounts >&2; fail "a mount is left"; fi
}

done_records() {
	ws3 ls -r ferry-runs/ | grep -cE '/[0-9]{4}-[0-9]{2}-[0-9]{2}\.json' || true
}

ws3() { ORG_ID=none ferry -q -c "$PIPE" s3 "$@"; }
