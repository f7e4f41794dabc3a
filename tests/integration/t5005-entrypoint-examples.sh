#!/usr/bin/env bash
# Each conf/examples/*.ini through entrypoint.sh, as the container runs it, against
# moto_server (gcs.ini: the GCS XML-API test server in front of it) with a real ferryfs mount: `ferry check` passes (config, plugins, endpoint
# probe), the run exits 0 with push and unlock done and no mount left; for snapshot.ini and
# exec.ini the object read back changed, a snapshot exists, the exec stage's command ran
# (a stand-in for the external scheduler).
. "$(dirname "$0")/../lib.sh"
ENTRY=$SRC_DIR/entrypoint.sh
[ -x "$FERRY_BIN" ] || skip "ferry not built"
for p in lock mount pull schedule push unlock snapshot exec; do
	[ -e "$FERRY_BUILD/plugins/$p.so" ] || skip "plugin $p not built"
done
need_fuse
command -v sqlite3 >/dev/null || python3 -c 'import sqlite3' || skip "no sqlite3"
mkdir -p "$T/bin"
ln -s "$FERRY_BIN" "$T/bin/ferry"
# The mount stage finds ferryfs next to ferry.
export PATH="$T/bin:$FERRY_BUILD:$PATH"
moto_start ferry-examples
. "$TESTS_DIR/gcs.sh"
gcs_start                 # for gcs.ini: the GCS XML-API test server in front of the same moto
unset FERRY_S3_DIALECT    # gcs.ini says dialect = gcs itself
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
python3 "$SRC_DIR/tests/gen_orgdb.py" "$T/org.db" --contacts 2000 --seed 5 >/dev/null || fail "cannot generate the org database"
entry() { env --default-signal=INT "$ENTRY" "$@"; }
# Unsigned PUT, with a content type: curl's default (a form) makes moto parse the binary
# body as a form and hang. The checks read back signed, through boto3 (moto refuses
# some unsigned reads), all in one python, as starting boto3 is the slow part here.
put_db() {
	curl -fs -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$T/org.db" \
		"$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/org-data/$ORG_ID.db" -o /dev/null
}
verify() { # verify EXAMPLE: no lock left, the object changed, rows are there; prints rows

	T="$T" python3 - "$@" <<'PY'
import os, sqlite3, sys, boto3, botocore.config
c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
                 config=botocore.config.Config(response_checksum_validation="when_required",
                                               request_checksum_calculation="when_required"))
b, org, tdir = os.environ["BUCKET_NAME"], os.environ["ORG_ID"], os.environ["T"]
key = "org-data/%s.db" % org
def die(msg):
    print("FAIL: %s" % msg, file=sys.stderr)
    sys.exit(1)
ex = sys.argv[1]
try:
    c.head_object(Bucket=b, Key=key + ".lock")
    die("%s: the lock object is still there" % ex)
except c.exceptions.ClientError:
    pass
after = os.path.join(tdir, ex + ".after.db")
c.download_file(b, key, after)
if open(after, "rb").read() == open(os.path.join(tdir, "org.db"), "rb").read():
    die("%s: the database object did not change" % ex)
db = sqlite3.connect(after)
table = "exec_stage_ran" if ex == "exec" else "email_schedules"
n = db.execute("select count(*) from " + table).fetchone()[0]
if ex == "exec" and n != 1:
    die("%s: %d rows written by the exec stage, expected 1" % (ex, n))
if n == 0:
    die("%s: no rows in %s" % (ex, table))
if ex == "snapshot":
    snaps = c.list_objects_v2(Bucket=b, Prefix=key + ".snapshots/").get("Contents", [])
    if not snaps:
        die("%s: no snapshot under %s.snapshots/" % (ex, key))
print(n)
PY
}

# The stand-in for "the scheduler you run today": records in the replica that it ran.
cat >"$T/run-scheduler" <<'SH'
#!/bin/sh
python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS exec_stage_ran (at TEXT)")
db.execute("INSERT INTO exec_stage_ran VALUES (datetime('now'))")
db.commit()
PY
SH
chmod +x "$T/run-scheduler"

org=70
for ex in tigris aws gcs snapshot exec; do
	ini=$SRC_DIR/conf/examples/$ex.ini
	# A fresh org (key) per example: moto refuses an unsigned PUT over a signed object.
	org=$((org + 1))
	export ORG_ID=$org
	put_db || fail "$ex: cannot upload the database"
	export FERRY_STATE_DIR=$T/state-$ex FERRY_MOUNTPOINT=$T/mnt-$ex
	mkdir -p "$FERRY_MOUNTPOINT"
	args=()
	case $ex in
	gcs) args=(-o "s3.endpoint=http://127.0.0.1:$GCS_PORT") ;;  # the GCS test server, not Google
	exec) args=(-o "scheduler.command=$T/run-scheduler $FERRY_STATE_DIR/org.db") ;;
	esac
	rc=0
	FERRY_CONFIG=$ini entry "${args[@]}" check >"$T/$ex.check.out" 2>&1 || rc=$?
	[ $rc = 0 ] || { cat "$T/$ex.check.out" >&2; fail "$ex: ferry check exited $rc"; }
	[ "$ex" != gcs ] || assert_contains "$T/$ex.check.out" "dialect gcs, probed now"
	rc=0
	FERRY_CONFIG=$ini entry "${args[@]}" run >"$T/$ex.run.out" 2>&1 || rc=$?
	[ $rc = 0 ] || { tail -30 "$T/$ex.run.out" >&2; fail "$ex: the pipeline exited $rc"; }
	! grep -q " $FERRY_MOUNTPOINT " /proc/mounts || fail "$ex: still mounted"
	assert_contains "$T/$ex.run.out" "info unlock released lock key=org-data/$ORG_ID.db.lock"
	case $ex in
	snapshot | exec)
		# The three store examples differ only in [s3]; reading back costs a boto3 start.
		n=$(verify "$ex") || fail "$ex: the result on S3 is wrong"
		note "$ex: check and run passed, $n rows read back"
		;;
	*)
		assert_contains "$T/$ex.run.out" "info push pushed"
		note "$ex: check and run passed"
		;;
	esac
done
assert_no_secrets "$T"
