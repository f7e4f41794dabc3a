# tests/e2e.sh: set-up shared by the end-to-end tests (source after lib.sh).
#   e2e_setup [CONTACTS]   moto_start (E2E_MOTO=serial: moto_start_serial; E2E_STORE=gcs: the
#                          GCS test server in front, FERRY_S3_DIALECT=gcs), a generated org DB uploaded as org-data/$ORG_ID.db,
#                          the env of conf/pipeline.ini (ORG_ID, FERRY_STATE_DIR,
#                          FERRY_MOUNTPOINT) and $PIPE (a copy of the default pipeline)
#   e2e_get KEY FILE       download an object with ferry itself
#   journal_fact STAGE KEY the fact from $FERRY_STATE_DIR/journal.json
#   assert_no_lock         the lock object is gone
#   assert_unmounted       nothing is mounted at $FERRY_MOUNTPOINT
e2e_setup() {
	local contacts=${1:-2000}
	need_fuse
	# races of conditional writes need moto serialised (see moto_start_serial)
	if [ "${E2E_MOTO:-}" = serial ]; then moto_start_serial e2e-bucket; else moto_start e2e-bucket; fi
	# E2E_STORE=gcs: the GCS XML-API test server in front of moto, the gcs dialect
	if [ "${E2E_STORE:-}" = gcs ]; then . "$TESTS_DIR/gcs.sh"; gcs_start; fi
	export ORG_ID=7 FERRY_STATE_DIR=$T/state FERRY_MOUNTPOINT=$T/mnt
	python3 "$TESTS_DIR/gen_orgdb.py" --contacts "$contacts" --seed 11 "$T/org.db" >/dev/null ||
		fail "gen_orgdb failed"
	ferry -q s3 put "$T/org.db" "org-data/$ORG_ID.db" >/dev/null || fail "upload failed"
	cp "$SRC_DIR/conf/pipeline.ini" "$T/pipeline.ini"
	PIPE=$T/pipeline.ini
	# a fixed day, so reruns compare like with like
	sed -i -e '/^\[stage schedule\]/a today = 2026-03-02' \
		-e "s|= state_rules.csv|= $SRC_DIR/conf/state_rules.csv|; s|= zip3_states.csv|= $SRC_DIR/conf/zip3_states.csv|" "$PIPE"
	grep -q '^today = 2026-03-02' "$PIPE" || fail "could not pin today in the pipeline"
}

e2e_get() { ferry -q s3 get "$1" "$2" >/dev/null || fail "cannot download '$1'"; }

journal_fact() {
	python3 - "$FERRY_STATE_DIR/journal.json" "$1" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for s in j["stages"]:
    if s["name"] == sys.argv[2]:
        print(s["facts"].get(sys.argv[3], ""))
PY
}

assert_no_lock() {
	if s3_raw_exists "org-data/$ORG_ID.db.lock"; then fail "the lock object is still there"; fi
}

assert_unmounted() {
	if grep -q " $FERRY_MOUNTPOINT " /proc/mounts; then fail "still mounted: $FERRY_MOUNTPOINT"; fi
}
