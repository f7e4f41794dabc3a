#!/usr/bin/env bash
# tests/bench/fs.sh: ferryfs against s3fs, rclone mount and raw curl on one moto_server (or
# s3rver with FS_SERVER=s3rver, installed from npm on first use), in one run: sequential write + fsync, cold sequential
# read, cold 4 KiB random reads, small-file creation; prints MiB/s (or ops/s) and ratios.
#   BENCH_MB=256 BENCH_RAND="20 200 2000" BENCH_FILES=1000 BENCH_PEERS="s3fs rclone" bash tests/bench/fs.sh
#   BENCH_RAND: random-read runs of that many 4 KiB reads each, one column per count (a
#   reader that stops early and one that goes on are different cases: see ferryfs's
#   whole-file fetch in core/fs/README.md)
#   BENCH_FSX_OPS=100000 also runs fsx for that many operations on ferryfs (0 = skip).
#   FFS_OPTS=fetch_whole=0 adds -o options to ferryfs's mounts (BENCH_PEERS= for ferryfs alone).
#   BENCH_REPS=3: raw GET/PUT, writes, cold reads and random reads are measured that many
#   times (each on a fresh mount) and the median is shown; small files once.
. "$(dirname "$0")/../lib.sh"
need_fuse
SIZE_MB=${BENCH_MB:-256}
RANDS=${BENCH_RAND:-20 200 2000}
NFILES=${BENCH_FILES:-1000}
PEERS=${BENCH_PEERS-s3fs rclone}         # set and empty: ferryfs alone
FSX_OPS=${BENCH_FSX_OPS:-0}
REPS=${BENCH_REPS:-3}

SERVER=${FS_SERVER:-${BENCH_SERVER:-moto}}
if [ "$SERVER" = s3rver ]; then
	# s3rver 3.7.1 from npm, installed outside the repo on first use (S3RVER_DIR to choose where)
	S3RVER_DIR=${S3RVER_DIR:-/tmp/ferry-bench-s3rver}
	S3RVER=$S3RVER_DIR/node_modules/.bin/s3rver
	if [ ! -x "$S3RVER" ]; then
		command -v npm >/dev/null || skip "npm missing (needed to install s3rver@3.7.1)"
		note "installing s3rver@3.7.1 into $S3RVER_DIR"
		mkdir -p "$S3RVER_DIR"
		npm install --prefix "$S3RVER_DIR" --no-audit --no-fund s3rver@3.7.1 >"$T/npm.log" 2>&1 ||
			{ cat "$T/npm.log" >&2; skip "cannot install s3rver@3.7.1"; }
	fi
	mkdir -p "$T/s3rver"
	# s3rver's ListObjectsV2 continuation tokens use DES, which OpenSSL 3 (node >= 17) only
	# has in its legacy provider: without it every truncated listing answers 500
	NODE_OPTIONS=--openssl-legacy-provider "$S3RVER" -d "$T/s3rver" -a 127.0.0.1 -p 0 --silent \
		--configure-bucket ferry-bench >"$T/s3rver.log" 2>&1 &
	SPID=$!
	at_exit "kill $SPID; wait $SPID"
	PORT=
	for _ in $(seq 200); do
		PORT=$(sed -n 's|.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$T/s3rver.log" | head -n 1)
		[ -n "$PORT" ] && curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
		kill -0 "$SPID" 2>/dev/null || { cat "$T/s3rver.log" >&2; fail "s3rver exited"; }
		sleep 0.1
	done
	[ -n "$PORT" ] || fail "s3rver did not start"
	export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
	export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PORT BUCKET_NAME=ferry-bench
else
	moto_start ferry-bench
fi

# s3rver refuses any request without x-amz-content-sha256; moto ignores it
sig() { curl -fs -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
now() { date +%s.%N; }
rate() { python3 -c 'import sys; n, a, b = map(float, sys.argv[1:]); print("%.1f" % (n / max(b - a, 1e-9)))' "$@"; }

head -c $((SIZE_MB * 1048576)) /dev/urandom >"$T/src"
declare -A R                          # R[fs.metric] = figure

median() { python3 -c 'import statistics, sys
v = sys.argv[1:]
print("ERR" if "ERR" in v else "%.1f" % statistics.median(map(float, v)))' "$@"; }

# raw curl: the ceiling
puts=(); gets=()
for _ in $(seq "$REPS"); do
	t0=$(now); sig -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary "@$T/src" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/raw.bin" -o /dev/null || fail "raw PUT failed"
	t1=$(now); puts+=("$(rate "$SIZE_MB" "$t0" "$t1")")
	t0=$(now); sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/raw.bin" -o /dev/null || fail "raw GET failed"
	t1=$(now); gets+=("$(rate "$SIZE_MB" "$t0" "$t1")")
done
R[curl.write]=$(median "${puts[@]}"); R[curl.read]=$(median "${gets[@]}")
R[curl.write_all]="${puts[*]}"; R[curl.read_all]="${gets[*]}"

M=$T/mnt
mkdir -p "$M"
FS_PID=
mount_fs() { # NAME SUBDIR
	local n=0
	case $1 in
	ferryfs)
		"$FERRYFS_BIN" "$BUCKET_NAME:$2" "$M" -f -o "cache_dir=$T/ffcache${FFS_OPTS:+,$FFS_OPTS}" 2>>"$T/ferryfs.log" &
		FS_PID=$! ;;
	s3fs)
		printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$T/s3fs.pass"
		chmod 600 "$T/s3fs.pass"
		secret_ok "$T/s3fs.pass"
		s3fs "$BUCKET_NAME:/$2" "$M" -f -o "url=$AWS_ENDPOINT_URL_S3,use_path_request_style,passwd_file=$T/s3fs.pass,endpoint=$AWS_REGION" \
			>>"$T/s3fs.log" 2>&1 &
		FS_PID=$! ;;
	rclone)
		RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$AWS_ENDPOINT_URL_S3 \
		RCLONE_CONFIG_B_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
		RCLONE_CONFIG_B_REGION=$AWS_REGION AWS_CA_BUNDLE= \
			env -u AWS_CA_BUNDLE rclone mount "B:$BUCKET_NAME/$2" "$M" --vfs-cache-mode writes --vfs-write-back 0s --s3-list-version 2 --cache-dir "$T/rccache" \
			2>>"$T/rclone.log" &
		FS_PID=$! ;;
	esac
	at_exit "fusermount3 -u $M; kill $FS_PID"
	until mountpoint -q "$M"; do
		n=$((n + 1)); [ $n -lt 200 ] || fail "$1 did not mount"
		sleep 0.1
	done
	# peers answer before their first listing is in; give them a moment (untimed)
	[ "$1" = ferryfs ] || { sleep 2; ls "$M" >/dev/null; }
}
umount_fs() {
	fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M"
	wait "$FS_PID" 2>/dev/null
	rm -rf "$T/rccache"
}

randread() { # FILE N SEED -> seconds
	python3 - "$@" <<'PY'
import os, random, sys, time
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
rnd = random.Random(seed)
offs = [rnd.randrange(0, size // 4096) * 4096 for _ in range(n)]
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
t = time.monotonic()
for o in offs:
    if len(os.pread(fd, 4096, o)) != 4096:
        raise SystemExit("short read")
print(time.monotonic() - t)
PY
}

for fs in ferryfs $PEERS; do
	command -v "$fs" >/dev/null || [ "$fs" = ferryfs ] || { note "skipping $fs (not installed)"; continue; }
	writes=()
	for r in $(seq "$REPS"); do
		# a new object each time (so rclone's background upload cannot be mistaken for done)
		sig -X DELETE "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$fs/seq.bin" -o /dev/null || true
		mount_fs "$fs" "$fs"
		t0=$(now)
		dd if="$T/src" of="$M/seq.bin" bs=1M conv=fsync status=none || fail "$fs: sequential write failed"
		# rclone uploads after close, in the background: the write is done once S3 has it
		until sig -I "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$fs/seq.bin" 2>/dev/null | tr -d '\r' |
			grep -qi "^content-length: $((SIZE_MB * 1048576))$"; do sleep 0.2; done
		t1=$(now); writes+=("$(rate "$SIZE_MB" "$t0" "$t1")")
		[ "$fs" = ferryfs ] && R[ferryfs.rss_write]=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$FS_PID/status")
		umount_fs
	done
	R[$fs.write]=$(median "${writes[@]}"); R[$fs.write_all]="${writes[*]}"
	reads=(); rands=()
	for r in $(seq "$REPS"); do
		mount_fs "$fs" "$fs"
		# timed like the raw GET (into /dev/null), then checked untimed
		t0=$(now)
		if cat "$M/seq.bin" >/dev/null && t1=$(now) && cmp "$T/src" "$M/seq.bin"; then
			reads+=("$(rate "$SIZE_MB" "$t0" "$t1")")
		else
			[ "$fs" = ferryfs ] && fail "ferryfs: read back differs"
			reads+=(ERR); note "$fs: read back differs"
		fi
		[ "$fs" = ferryfs ] && R[ferryfs.rss]=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$FS_PID/status")
		umount_fs
	done
	R[$fs.read]=$(median "${reads[@]}"); R[$fs.read_all]="${reads[*]}"
	for nr in $RANDS; do
		rands=()
		for r in $(seq "$REPS"); do
			mount_fs "$fs" "$fs"
			if secs=$(randread "$M/seq.bin" "$nr" $((41 + r))); then
				rands+=("$(rate "$nr" 0 "$secs")")
			else
				[ "$fs" = ferryfs ] && fail "ferryfs: random reads failed"
				rands+=(ERR); note "$fs: random reads failed"
			fi
			umount_fs
		done
		R[$fs.rand$nr]=$(median "${rands[@]}"); R[$fs.rand${nr}_all]="${rands[*]}"
	done
	mount_fs "$fs" "$fs"
	t0=$(now)
	mkdir -p "$M/small"
	python3 - "$M/small" "$NFILES" <<'PY' || fail "$fs: small files failed"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open("%s/f%05d" % (d, i), "wb") as f:
        f.write(os.urandom(1024))
PY
	t1=$(now); R[$fs.small]=$(rate "$NFILES" "$t0" "$t1")
	if [ "$fs" = ferryfs ] && [ "$FSX_OPS" -gt 0 ]; then
		t0=$(now)
		"$FERRY_BUILD/tests/tools/fsx" -s 4242 -n "$FSX_OPS" -l 1048576 -F 5 -R 5 "$M/fsx.bin" "$T/fsx.ref" \
			>"$T/fsx.out" 2>&1 || { cat "$T/fsx.out"; fail "fsx failed"; }
		t1=$(now)
		R[ferryfs.fsx]="$(tail -1 "$T/fsx.out") in $(python3 -c "print(round($t1 - $t0))") s"
	fi
	[ "$fs" = ferryfs ] && cp "$M/.ferryfs-stats" "$T/ffstats.json"
	umount_fs
done

ratio() {
	python3 -c 'import sys
try:
    print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))
except (ValueError, ZeroDivisionError):
    print("-")' "${R[$1]:-}" "${R[$2]:-}"
}
echo "ferryfs benchmark: server=$SERVER ${FFS_OPTS:+ferryfs -o $FFS_OPTS }size=${SIZE_MB}MiB random_reads=${RANDS// /,} small_files=$NFILES reps=$REPS ($(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
hdr="| fs       |  write MiB/s |   read MiB/s |"; sep="|----------|--------------|--------------|"
for nr in $RANDS; do hdr+=$(printf ' %16s |' "rand x$nr rd/s"); sep+="------------------|"; done
echo "$hdr  small files/s |"; echo "$sep----------------|"
for fs in curl ferryfs $PEERS; do
	line=$(printf '| %-8s | %12s | %12s |' "$fs" "${R[$fs.write]:--}" "${R[$fs.read]:--}")
	for nr in $RANDS; do line+=$(printf ' %16s |' "${R[$fs.rand$nr]:--}"); done
	printf '%s %14s |\n' "$line" "${R[$fs.small]:--}"
done
echo
echo "ferryfs/curl: write $(ratio ferryfs.write curl.write), read $(ratio ferryfs.read curl.read)"
for p in $PEERS; do
	line="ferryfs/$p: write $(ratio ferryfs.write $p.write), read $(ratio ferryfs.read $p.read)"
	for nr in $RANDS; do line+=", rand x$nr $(ratio ferryfs.rand$nr $p.rand$nr)"; done
	echo "$line, small $(ratio ferryfs.small $p.small)"
done
echo "runs (MiB/s or reads/s): curl write ${R[curl.write_all]}, read ${R[curl.read_all]}"
for fs in ferryfs $PEERS; do
	[ -n "${R[$fs.read_all]:-}" ] || continue
	line="runs: $fs write ${R[$fs.write_all]}, read ${R[$fs.read_all]}"
	for nr in $RANDS; do line+=", rand x$nr ${R[$fs.rand${nr}_all]}"; done
	echo "$line"
done
echo "ferryfs peak RSS: ${R[ferryfs.rss_write]:-?} MiB after the write, ${R[ferryfs.rss]:-?} MiB after the cold read"
[ -n "${R[ferryfs.fsx]:-}" ] && echo "fsx: ${R[ferryfs.fsx]}"
echo "ferryfs counters (last mount): $(cat "$T/ffstats.json" 2>/dev/null)"
exit 0
