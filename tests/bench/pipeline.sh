#!/usr/bin/env bash
# tests/bench/pipeline.sh: the whole default pipeline on a large org database (issue 8).
#   bash tests/bench/pipeline.sh                 1,000,000 contacts
#   PIPE_BENCH_CONTACTS=100000 bash tests/bench/pipeline.sh
# Against one local moto_server: ferry cold (no replica), warm (replica present, no
# outside change) and next day (today + 1: the daily run) with per-stage times and bytes;
# the schedule stage alone on the same replica; a raw parallel multipart upload of the same
# bytes as the cold push and the day after's (rclone, 8 MiB parts, 4 at a time, as ferry
# sends them); and the path of the seed guides reproduced here: s3fs mount + cp down + the
# same schedule stage + cp up. Prints ratios measured in this run. Not a test: no asserts.
. "$(dirname "$0")/../lib.sh"
set -e
N=${PIPE_BENCH_CONTACTS:-1000000}
TODAY=2026-03-02
need_fuse
command -v s3fs >/dev/null || bash "$TESTS_DIR/deps.sh" bench >/dev/null 2>&1 || true
CACHE=${PIPE_BENCH_CACHE:-/tmp/ferry-bench-pipeline}
mkdir -p "$CACHE"
db=$CACHE/org-$N.db
if [ ! -s "$db" ] || [ "$TESTS_DIR/gen_orgdb.py" -nt "$db" ]; then
	python3 "$TESTS_DIR/gen_orgdb.py" --contacts "$N" --seed 3 --today "$TODAY" "$db.tmp" >/dev/null
	mv "$db.tmp" "$db"
fi
moto_start bench-bucket
export ORG_ID=1 FERRY_STATE_DIR=$T/state FERRY_MOUNTPOINT=$T/mnt
ferry -q s3 put "$db" "org-data/$ORG_ID.db" >/dev/null
size=$(stat -c %s "$db")
PIPE=$T/pipeline.ini
sed -e "/^\[stage schedule\]/a today = $TODAY" -e "s|= state_rules.csv|= $SRC_DIR/conf/state_rules.csv|" \
	-e "s|= zip3_states.csv|= $SRC_DIR/conf/zip3_states.csv|" "$SRC_DIR/conf/pipeline.ini" >"$PIPE"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
stage_table() { # the journal's per-stage ms and byte facts
	python3 - "$FERRY_STATE_DIR/journal.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for s in j["stages"]:
    f = s["facts"]
    b = " ".join(f"{k}={v}" for k, v in f.items() if k.startswith("bytes") or k.startswith("pages"))
    print(f"    {s['name']:<10} {s['ms']:>8} ms  {b}")
PY
}
stage_ms() { # the journal's ms of stage $1 in the last run
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))
print([s["ms"] for s in j["stages"] if s["name"] == sys.argv[2]][0])' "$FERRY_STATE_DIR/journal.json" "$1"
}
# raw_up FILE KEY: ms of a raw parallel multipart upload of FILE to the same server ("" without rclone)
raw_up() {
	command -v rclone >/dev/null || return 0
	local t0
	t0=$(date +%s%N)
	RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$AWS_ENDPOINT_URL_S3 \
	RCLONE_CONFIG_B_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
	RCLONE_CONFIG_B_REGION=$AWS_REGION env -u AWS_CA_BUNDLE rclone copyto "$1" "B:$BUCKET_NAME/$2" \
		--s3-chunk-size 8M --s3-upload-concurrency 4 --s3-upload-cutoff 8M --s3-no-head \
		--config /dev/null 2>>"$T/rclone.log" || { echo "rclone failed (see $T/rclone.log)" >&2; return 0; }
	ms "$t0"
}
phases() { # the pull, schedule and push phase lines of a run's log (-q keeps warnings only: rerun -v)
	grep -E "(pull|push) (hashed|wrote|committed|verified|replica unchanged|pulled|pushed)|s3 part copies|schedule the database as the last run" "$1" |
		sed -E 's/^[^ ]+ info /      /' || true
	grep -E "schedule summary" "$1" | grep -oE "load_ms=[0-9]+ compute_ms=[0-9]+ write_ms=[0-9]+ compact_ms=[0-9]+" |
		sed 's/^/      schedule /' || true
}
echo "# org database: $N contacts, $((size / 1048576)) MiB, moto_server on 127.0.0.1"

t=$(date +%s%N); ferry -c "$PIPE" run 2>"$T/cold.err"; cold=$(ms "$t")
echo "ferry cold (no replica):            $cold ms"; stage_table; phases "$T/cold.err"
cold_push=$(stage_ms push)
raw_cold=$(raw_up "$FERRY_STATE_DIR/org.db" raw-cold.db)
[ -z "$raw_cold" ] || echo "raw parallel multipart upload of the same bytes (rclone): $raw_cold ms"
t=$(date +%s%N); ferry -q -c "$PIPE" run 2>"$T/warm.err"; warm=$(ms "$t")
[ -z "${PIPE_BENCH_KEEP:-}" ] || { ferry -v -c "$PIPE" run 2>"$PIPE_BENCH_KEEP/warm-v.err"; cp "$PIPE" "$PIPE_BENCH_KEEP/"; }
echo "ferry warm (replica, no change):    $warm ms"; stage_table
cp "$FERRY_STATE_DIR/org.db" "$T/warm.db"   # the schedule stage alone runs on this below
cp "$FERRY_STATE_DIR/org.db.ferry-sched" "$T/warm.db.ferry-sched" 2>/dev/null || true

# the daily case: the next day's run on the same org
NEXT=$(date -u -d "$TODAY + 1 day" +%F)
sed -i "s/^today = $TODAY/today = $NEXT/" "$PIPE"
t=$(date +%s%N); ferry -c "$PIPE" run 2>"$T/next.err"; next=$(ms "$t")
echo "ferry next day (today = $NEXT):  $next ms"; stage_table; phases "$T/next.err"
python3 - "$FERRY_STATE_DIR/journal.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
f = {s["name"]: s["facts"] for s in j["stages"]}
sch, push = f.get("schedule", {}), f.get("push", {})
rows = {k: sch[k] for k in ("rows", "unchanged", "inserted", "updated", "moved", "deleted") if k in sch}
print("    schedule facts:", " ".join(f"{k}={v}" for k, v in rows.items()))
pw, pt = int(push.get("pages_written", 0)), int(push.get("pages_total", 1))
print(f"    push: {pw} of {pt} pages written ({100 * pw / pt:.1f} %), "
      f"{int(push.get('bytes_uploaded', 0)) / 1048576:.1f} MiB up, "
      f"{int(push.get('bytes_copied', 0)) / 1048576:.1f} MiB copied server-side")
PY

# the day after, every part uploaded (push.server_copy = false): moto's UploadPartCopy costs
# O(object size) per part, so there copying the unchanged parts is slower than uploading them
NEXT2=$(date -u -d "$TODAY + 2 day" +%F)
sed -i "s/^today = $NEXT/today = $NEXT2/" "$PIPE"
t=$(date +%s%N); ferry -c "$PIPE" -o push.server_copy=false run 2>"$T/next2.err"; next2=$(ms "$t")
echo "ferry day after (today = $NEXT2, server_copy = false):  $next2 ms"; stage_table; phases "$T/next2.err"
next2_push=$(stage_ms push)
raw_next2=$(raw_up "$FERRY_STATE_DIR/org.db" raw-next2.db)
[ -z "$raw_next2" ] || echo "raw parallel multipart upload of the same bytes (rclone): $raw_next2 ms"

# the third day with the default server_copy = true: push remembers what copies and uploads
# cost on this store (state_dir/push-costs-*.json, from the next day's probe), so on moto it
# uploads every part without a probe copy
NEXT3=$(date -u -d "$TODAY + 3 day" +%F)
sed -i "s/^today = $NEXT2/today = $NEXT3/" "$PIPE"
t=$(date +%s%N); ferry -c "$PIPE" run 2>"$T/next3.err"; next3=$(ms "$t")
echo "ferry third day (today = $NEXT3, server_copy = true, part costs remembered):  $next3 ms"
stage_table; phases "$T/next3.err"

# the schedule stage alone on the same replica (same inputs: a warm schedule run)
cat >"$T/sched.ini" <<INI
[pipeline]
state_dir = $T/sched-state
[stage schedule]
plugin = schedule
db = $T/warm.db
today = $TODAY
state_rules = $SRC_DIR/conf/state_rules.csv
zip_states = $SRC_DIR/conf/zip3_states.csv
INI
t=$(date +%s%N); ferry -c "$T/sched.ini" run 2>"$T/alone.err"; alone=$(ms "$t")
echo "schedule stage alone (warm):        $alone ms"
grep -E "schedule (database is byte-identical|run ok)" "$T/alone.err" | sed -E 's/^[^ ]+ info /      /' || true

# the seeds' path: s3fs mount, cp down, schedule, cp up (no lock, no fencing)
seed=""
if command -v s3fs >/dev/null; then
	ferry -q s3 put "$db" "org-data/$ORG_ID.db" >/dev/null
	mkdir -p "$T/s3fs" "$T/seed"
	echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >"$T/passwd"; chmod 600 "$T/passwd"
	s3fs "$BUCKET_NAME" "$T/s3fs" -o passwd_file="$T/passwd",url="$AWS_ENDPOINT_URL_S3",use_path_request_style,nomixupload
	at_exit "fusermount3 -u $T/s3fs || fusermount3 -uz $T/s3fs"
	t=$(date +%s%N)
	cp "$T/s3fs/org-data/$ORG_ID.db" "$T/seed/org.db"
	down=$(ms "$t"); t1=$(date +%s%N)
	sed -i "s|^db = .*|db = $T/seed/org.db|" "$T/sched.ini"
	ferry -q -c "$T/sched.ini" -o schedule.compact=never run 2>"$T/seed.err"   # the guides do not compact
	sch=$(ms "$t1"); t1=$(date +%s%N)
	cp "$T/seed/org.db" "$T/s3fs/org-data/$ORG_ID.db"; sync
	up=$(ms "$t1")
	seed=$(ms "$t")
	echo "seed path, s3fs cp down+schedule+cp up: $seed ms (cp down $down, schedule $sch, cp up $up)"
	fusermount3 -u "$T/s3fs"
	rm -f "$T/passwd"
fi
echo
echo "ratios (this run):"
awk -v w="$warm" -v a="$alone" 'BEGIN { printf "  warm pipeline / schedule alone     %.2f (target <= 1.5)\n", w / a }'
[ -z "$raw_cold" ] || awk -v p="$cold_push" -v r="$raw_cold" -v q="$next2_push" -v s="$raw_next2" 'BEGIN {
	printf "  cold push / raw upload             %.2f (every page changed; target <= 1.2)\n", p / r
	if (s > 0) printf "  day-after push / raw upload        %.2f (every part uploaded, server_copy = false)\n", q / s }'
[ -n "$seed" ] && awk -v c="$cold" -v w="$warm" -v s="$seed" 'BEGIN {
	printf "  seed path / ferry cold             %.2f\n", s / c
	printf "  seed path / ferry warm             %.2f\n", s / w }'
true
