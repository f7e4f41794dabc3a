#!/usr/bin/env bash
# tests/bench/schedule.sh: benchmark of the schedule stage (RULES.md, README.md, summary) on a generated org DB:
# cold and warm runs, load/compute/write ms, contacts/s, peak RSS, pages changed by the warm
# run, and the calibration floor (tests/tools/sched_floor) measured in the same run. "warm" is
# the rerun as deployed (the fingerprint shortcut); "warm, full" is the same rerun with
# fingerprint = 0, which reads and compares every row (a rerun after any change costs that);
# "next day" is the daily run (today + 1) on the warm database, three times from copies.
#   bash tests/bench/schedule.sh            1,000,000 contacts (DB cached under /tmp)
#   SCHED_BENCH_CONTACTS=100000 bash tests/bench/schedule.sh
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
B=${FERRY_BUILD:-$SRC/build}
N=${SCHED_BENCH_CONTACTS:-1000000}
SEED=${SCHED_BENCH_SEED:-1}
TODAY=2024-10-01
CACHE=${SCHED_BENCH_CACHE:-/tmp/ferry-bench-schedule}
for f in "$B/ferry" "$B/plugins/schedule.so" "$B/tests/tools/sched_floor"; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "missing $f: run make first" >&2; exit 2; }
done
if [ ! -x /usr/bin/time ]; then
	echo "installing GNU time for peak RSS" >&2
	apt-get install -y time >/dev/null 2>&1 || { echo "need /usr/bin/time (apt-get install time)" >&2; exit 2; }
fi
mkdir -p "$CACHE"
W=$(mktemp -d /tmp/ferry-bench-sched.XXXXXX)
trap 'rm -rf "$W"' EXIT
src_db=$CACHE/contacts-$N-seed$SEED.db
if [ ! -s "$src_db" ] || [ "$SRC/tests/gen_orgdb.py" -nt "$src_db" ]; then
	t0=$(date +%s%N)
	python3 "$SRC/tests/gen_orgdb.py" "$src_db.tmp" --contacts "$N" --seed "$SEED" --no-schedules
	mv "$src_db.tmp" "$src_db"
	echo "# generated $N contacts in $((($(date +%s%N) - t0) / 1000000)) ms: $src_db" >&2
fi
cat >"$W/p.ini" <<INI
[pipeline]
state_dir = $W/state

[stage schedule]
plugin = schedule
state_rules = $SRC/conf/state_rules.csv
zip_states = $SRC/conf/zip3_states.csv
INI

# run_stage NAME [ARGS]: one timed `ferry run schedule` on $W/org.db; sets S_* from its summary line
run_stage() {
	local name=$1
	shift
	/usr/bin/time -v -o "$W/$name.time" "$B/ferry" -c "$W/p.ini" run schedule --db "$W/org.db" \
		--today "${DAY:-$TODAY}" --run-id "bench-$name" "$@" 2>"$W/$name.err" ||
		{ tail "$W/$name.err" >&2; echo "$name run failed" >&2; exit 1; }
	local line
	line=$(grep -h ' summary ' "$W/$name.err" || true)
	[ -n "$line" ] || { echo "no summary line in $name output" >&2; exit 1; }
	eval "$(echo "$line" | tr ' ' '\n' | grep -E '^(load_ms|compute_ms|write_ms|contacts_per_s|rows|inserted|unchanged|updated|deleted|moved)=' | sed "s/^/S_${name}_/")"
	eval "RSS_$name=$(awk -F': ' '/Maximum resident/ {print $2}' "$W/$name.time")"
	eval "WALL_$name='$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$W/$name.time")'"
	eval "CPU_$name='$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f s (user %.2f + sys %.2f)", u + s, u, s}' "$W/$name.time")'"
}

pages() { # pages BEFORE AFTER: "changed total" (page size from the header)
	python3 - "$1" "$2" <<'PY'
import sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
hdr = b.read(100); b.seek(0)
ps = int.from_bytes(hdr[16:18], "big"); ps = 65536 if ps == 1 else ps
changed = total = 0
while True:
    x, y = a.read(ps), b.read(ps)
    if not x and not y:
        break
    total += 1
    changed += x != y
print(changed, total)
PY
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$src_db" "$W/org.db"
sync
run_stage cold
cp "$src_db" "$W/floor.db"
sync
floor=$("$B/tests/tools/sched_floor" "$W/org.db" "$W/floor.db")
floor_ms=${floor#floor_ms=}
floor_ms=${floor_ms%% *}
rm -f "$W/floor.db"
cp "$W/org.db" "$W/before-warm.db"
sync
run_stage warm
grep -q '(fingerprint)' "$W/warm.err" || echo "# note: the warm run did not take the fingerprint shortcut" >&2
read -r changed total < <(pages "$W/before-warm.db" "$W/org.db")
run_stage full -o schedule.fingerprint=0
read -r changed_full total_full < <(pages "$W/before-warm.db" "$W/org.db")
# the next day starts from the database and sidecars the day before left (cold run's
# fingerprint and rows sidecar; the warm and full runs wrote nothing), as a nightly run does;
# run 4 has no rows sidecar: email_schedules is read whole
for f in org.db org.db.ferry-sched org.db.ferry-sched-rows; do
	cp "$W/$f" "$W/before-next${f#org}" 2>/dev/null || echo "# note: no $f after the cold run" >&2
done
next_rows=""
for i in 1 2 3 4; do
	for f in .db .db.ferry-sched .db.ferry-sched-rows; do
		rm -f "$W/org$f"
		[ -e "$W/before-next$f" ] && cp "$W/before-next$f" "$W/org$f"
	done
	[ "$i" = 4 ] && rm -f "$W/org.db.ferry-sched-rows"
	sync
	DAY=$(date -d "$TODAY + 1 day" +%F) run_stage "next$i"
	eval "l=\$S_next${i}_load_ms c=\$S_next${i}_compute_ms w=\$S_next${i}_write_ms"
	eval "wall=\$WALL_next$i cpu=\$CPU_next$i rss=\$RSS_next$i"
	label=$i
	[ "$i" = 4 ] && label="4, no rows sidecar"
	next_rows="$next_rows| next day ($label) | $l | $c | $w | $((l + c + w)) | | $(eval echo "\$S_next${i}_inserted inserted, \$S_next${i}_deleted deleted, \$S_next${i}_updated updated, \$S_next${i}_moved moved") | $((rss / 1024)) MiB | $wall | $cpu |
"
done
read -r changed_next total_next < <(pages "$W/before-next.db" "$W/org.db")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cold_ms=$((S_cold_load_ms + S_cold_compute_ms + S_cold_write_ms))
warm_ms=$((S_warm_load_ms + S_warm_compute_ms + S_warm_write_ms))
full_ms=$((S_full_load_ms + S_full_compute_ms + S_full_write_ms))
ratio=$(python3 -c "print('%.2f' % ($cold_ms / $floor_ms))")
pct=$(python3 -c "print('%.3f' % (100.0 * $changed / $total))")
rss_cold_mib=$((RSS_cold / 1024))
rss_warm_mib=$((RSS_warm / 1024))
rss_full_mib=$((RSS_full / 1024))
cat <<EOF
## schedule stage, $N contacts ($(date -u +%Y-%m-%d), $(nproc) cores, load average $load_before -> $load_after)

| run | load ms | compute ms | write ms | total ms | contacts/s | rows | peak RSS | wall | CPU |
|---|---|---|---|---|---|---|---|---|---|
| cold | $S_cold_load_ms | $S_cold_compute_ms | $S_cold_write_ms | $cold_ms | $S_cold_contacts_per_s | $S_cold_rows inserted | $rss_cold_mib MiB | $WALL_cold | $CPU_cold |
| warm | $S_warm_load_ms | $S_warm_compute_ms | $S_warm_write_ms | $warm_ms | $S_warm_contacts_per_s | $S_warm_unchanged unchanged, $S_warm_updated updated, $S_warm_inserted inserted, $S_warm_deleted deleted | $rss_warm_mib MiB | $WALL_warm | $CPU_warm |
| warm, full (fingerprint = 0) | $S_full_load_ms | $S_full_compute_ms | $S_full_write_ms | $full_ms | $S_full_contacts_per_s | $S_full_unchanged unchanged, $S_full_updated updated, $S_full_inserted inserted, $S_full_deleted deleted | $rss_full_mib MiB | $WALL_full | $CPU_full |
$next_rows
- calibration floor (sched_floor: same rows, same schema, one transaction, same page cache): $floor_ms ms
- cold / floor = **$ratio** (target <= 1.3)
- warm total = **$warm_ms ms** (target <= 2000), pages changed by the warm run: **$changed of $total ($pct %)** (target <= 1 %)
- warm with the full read and compare (fingerprint = 0): $full_ms ms, pages changed: $changed_full of $total_full
- next day (today + 1, target <= 3 s for load + compute + write): pages changed $changed_next of $total_next
- peak RSS: cold $rss_cold_mib MiB, warm $rss_warm_mib MiB, warm full $rss_full_mib MiB (target <= 512 MiB)
EOF
