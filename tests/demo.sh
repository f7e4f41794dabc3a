#!/usr/bin/env bash
# tests/demo.sh (make demo): the real default pipeline end to end on this machine.
# Starts a local S3 server (moto) on a free 127.0.0.1 port, generates an org database
# (DEMO_CONTACTS, default 20000 contacts) and uploads it as org-data/$ORG_ID.db, then runs
# conf/pipeline.ini twice (cold: no local replica; warm: replica present), prints a few of
# the scheduled rows from the object on S3, and leaves no mount, server or temp file behind.
. "$(dirname "$0")/lib.sh"
set -e
contacts=${DEMO_CONTACTS:-20000}
need_fuse
moto_start demo-bucket
export ORG_ID=42 FERRY_STATE_DIR=$T/state FERRY_MOUNTPOINT=$T/mnt
echo "== generating an org database with $contacts contacts"
python3 "$TESTS_DIR/gen_orgdb.py" --contacts "$contacts" --seed 7 "$T/org.db" >/dev/null
ferry -q s3 put "$T/org.db" "org-data/$ORG_ID.db" >/dev/null
echo "== s3://$BUCKET_NAME/org-data/$ORG_ID.db ($(stat -c %s "$T/org.db") bytes) on $AWS_ENDPOINT_URL_S3"
# The generated data holds bad rows on purpose: the schedule stage shows the first few and a
# summary line naming the file with all of them.
run_pipeline() {
	ferry -c "$SRC_DIR/conf/pipeline.ini" run
}
echo "== ferry run (cold: no local replica)"
run_pipeline
echo "== ferry run (warm: replica present, nothing changed outside)"
run_pipeline
echo "== a few rows of email_schedules in the database now on S3"
ferry -q s3 get "org-data/$ORG_ID.db" "$T/after.db"
sqlite3 -header -column "$T/after.db" \
	"SELECT contact_id, email_type, scheduled_send_date AS date, status, skip_reason
	 FROM email_schedules ORDER BY contact_id, scheduled_send_date LIMIT 8;
	 SELECT status, count(*) AS rows FROM email_schedules GROUP BY status;"
echo "== lock after the run"
ferry -c "$SRC_DIR/conf/pipeline.ini" lock status || true
echo "== demo done; cleaning up (server stopped, nothing mounted)"
