#!/usr/bin/env bash
# -o cache_max bounds the cache files: reading a 12 MiB object through a 4 MiB cap keeps
# the cache's disk use (measured from outside, on ferryfs's open cache files) and its own
# count under the cap, with the bytes read intact; dirty data is never evicted, even when
# it alone is over the cap, and a commit after evictions uploads the right bytes.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

CAP=$((4 << 20))
SLACK=$((1 << 20))                     # eviction runs as chunks land: a few chunks late
head -c $((12 << 20)) /dev/urandom >"$T/big"
s3_raw_put big.bin "$T/big" || fail "cannot upload big.bin"

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME" "cache_max=4MiB"

# Highest disk use of ferryfs's cache files (blocks of the fds that point into the cache
# dir), sampled until $T/stop appears.
sampler() {
	python3 - "$FFS_PID" "$T/cache" "$T/stop" >"$T/sampled" <<'PY'
import os, sys, time
pid, cache, stop = sys.argv[1:]
peak = 0
while not os.path.exists(stop):
    total = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        break
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(cache + "/"):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_blocks * 512
        except OSError:
            pass
    peak = max(peak, total)
    time.sleep(0.005)
print(peak)
PY
}
sampler &
spid=$!
at_exit "touch $T/stop; kill $spid"

# random pages (cold), then a sequential pass, each on one open file
python3 - "$M/big.bin" "$T/big" <<'PY' || fail "random reads through the capped cache differ"
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)   # past the page cache
ref = open(sys.argv[2], "rb").read()
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
rnd = random.Random(7)
for _ in range(40):
    off = rnd.randrange(0, len(ref) // 4096) * 4096
    n = rnd.choice((4096, 4096, 65536, 1 << 20))
    assert os.pread(fd, n, off) == ref[off:off + n], off
os.close(fd)
PY
cmp "$T/big" "$M/big.bin" || fail "sequential read through the capped cache differs"
touch "$T/stop"
wait $spid
sampled=$(cat "$T/sampled")
stats=$(cat "$M/.ferryfs-stats")
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$stats" "$1"; }
note "disk peak sampled $sampled, counted peak $(field cache_peak), evicted $(field cache_evicted)"
[ "$(field cache_max)" = $CAP ] || fail "cache_max not applied: $stats"
[ "$sampled" -gt 0 ] || fail "the sampler saw no cache file"
[ "$sampled" -le $((CAP + SLACK)) ] || fail "cache files used $sampled bytes on disk, cap $CAP"
[ "$(field cache_peak)" -le $((CAP + SLACK)) ] || fail "cache held $(field cache_peak) bytes, cap $CAP"
[ "$(field cache_evicted)" -ge $((8 << 20)) ] || fail "too little evicted for a 12 MiB read: $stats"

# dirty bytes are kept over the cap: 1 MiB written in the middle of big.bin, then the
# whole file read through the same handle (evicting clean bytes around it), then fsync,
# which copies the untouched parts and uploads the dirty one from the cache file; and a
# new 6 MiB file (over the cap on its own) read back before and after its commit
python3 - "$M" "$T" <<'PY' || fail "dirty data over the cap"
import os, sys
m, t = sys.argv[1:]
ref = bytearray(open(f"{t}/big", "rb").read())
patch = os.urandom(1 << 20)
ref[10 << 20:11 << 20] = patch
fd = os.open(f"{m}/big.bin", os.O_RDWR)
os.pwrite(fd, patch, 10 << 20)
got = b"".join(os.pread(fd, 1 << 20, o) for o in range(0, len(ref), 1 << 20))
assert got == bytes(ref), "read back before the commit"
os.fsync(fd)
os.close(fd)
open(f"{t}/big.want", "wb").write(ref)
new = os.urandom(6 << 20)
fd = os.open(f"{m}/new.bin", os.O_RDWR | os.O_CREAT, 0o644)
for o in range(0, len(new), 1 << 20):
    os.pwrite(fd, new[o:o + (1 << 20)], o)
assert os.pread(fd, len(new), 0) == new, "new file read back before the commit"
os.fsync(fd)
os.close(fd)
open(f"{t}/new.want", "wb").write(new)
PY
s3_raw_get big.bin "$T/big.got" || fail "cannot get big.bin"
cmp "$T/big.want" "$T/big.got" || fail "big.bin on S3 is not the patched file"
s3_raw_get new.bin "$T/new.got" || fail "cannot get new.bin"
cmp "$T/new.want" "$T/new.got" || fail "new.bin on S3 differs"
stats=$(cat "$M/.ferryfs-stats")
[ "$(field mpu_part_copy)" -ge 1 ] || fail "the commit did not copy the untouched part: $stats"
assert_contains "$T/ffs.log" "cache over its cap"

# a bad value is refused before mounting
assert_exit 1 "$FERRYFS_BIN" "$BUCKET_NAME" "$T/mnt2" -f -o cache_max=1MiB 2>"$T/bad.log"
assert_contains "$T/bad.log" "option=cache_max"
