#!/usr/bin/env bash
# Whole-file fetch: after a random read on a file of at most fetch_whole bytes, ferryfs
# fetches the rest of the pinned object in the background, and later random reads are
# cache hits that send no request. user.ferry.fetch=ranged (set by pull and push) and a
# file over fetch_whole fetch only what is read. An object replaced during the fetch never
# gives mixed bytes, and closing or unmounting during a fetch stops it cleanly.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

MiB=1048576
head -c $((24 * MiB)) /dev/urandom >"$T/a"
head -c $((24 * MiB)) /dev/urandom >"$T/b"
s3_raw_put a.bin "$T/a" || fail "cannot upload a.bin"
s3_raw_put r.bin "$T/a" || fail "cannot upload r.bin"
s3_raw_put x.bin "$T/a" || fail "cannot upload x.bin"

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME"

# reader FILE SRC: one random read, a wait until the whole file is in the cache, then 300
# random reads checked against SRC; prints the stats before and after those reads.
reader() {
	python3 - "$@" "$M/.ferryfs-stats" <<'PY'
import json, os, random, sys, time
path, src, stats = sys.argv[1:]
st = lambda: json.load(open(stats))
ref = open(src, "rb").read()
fd = os.open(path, os.O_RDONLY)
rnd = random.Random(7)
off = 10 * 1048576 + 4096 * 3           # past the first 4 MiB: a random read
if os.pread(fd, 4096, off) != ref[off:off + 4096]:
    raise SystemExit("first read differs")
deadline = time.monotonic() + 120
while st()["cache_bytes"] < len(ref):
    if time.monotonic() > deadline:
        raise SystemExit("whole file not fetched: %r" % st())
    time.sleep(0.05)
before = st()
for o in rnd.sample(range(0, len(ref), 4096), 300):
    if os.pread(fd, 4096, o) != ref[o:o + 4096]:
        raise SystemExit("random read at %d differs" % o)
after = st()
os.close(fd)
print(json.dumps(before))
print(json.dumps(after))
PY
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# default: fetched whole, then every read is a hit and no GET is sent
out=$(reader "$M/a.bin" "$T/a") || fail "reader failed: $out"
before=$(sed -n 1p <<<"$out"); after=$(sed -n 2p <<<"$out")
assert_eq 1 "$(field "$after" whole_fetches)" "whole-file fetches"
assert_eq "$(field "$before" get)" "$(field "$after" get)" "GETs during the 300 reads after the fetch"
# 300 distinct pages; the kernel's page cache may answer a few (read-around of a neighbour)
[ $(($(field "$after" cache_hits) - $(field "$before" cache_hits))) -ge 280 ] ||
	fail "reads after the fetch were not cache hits: $before -> $after"
down=$(field "$after" bytes_down)
[ "$down" -ge $((24 * MiB)) ] && [ "$down" -le $((25 * MiB)) ] ||
	fail "bytes_down $down: want the file once (24 MiB, plus the first read)"

# user.ferry.fetch=ranged: only what is read. The reads are more than 4 MiB apart, so
# none counts as sequential (which would start a read-ahead window).
python3 - "$M/r.bin" "$T/a" "$M/.ferryfs-stats" <<'PY' || fail "ranged reads"
import json, os, sys, time
path, src, stats = sys.argv[1:]
st = lambda: json.load(open(stats))
ref = open(src, "rb").read()
b = st()
fd = os.open(path, os.O_RDONLY)
os.setxattr(fd, "user.ferry.fetch", b"ranged")
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
for o in (20 << 20, 2 << 20, 14 << 20, 8 << 20, 23 << 20):
    assert os.pread(fd, 4096, o) == ref[o:o + 4096], o
time.sleep(1)                           # a whole fetch, if one started, would show by now
a = st()
os.close(fd)
assert a["whole_fetches"] == b["whole_fetches"], (b, a)
assert a["bytes_down"] - b["bytes_down"] <= 5 * 131072, (b, a)
PY
ferryfs_umount_check() {
	fusermount3 -u "$M" || fail "unmount failed"
	local rc=0; wait "$FFS_PID" || rc=$?
	assert_eq 0 "$rc" "ferryfs exit status"
}
ferryfs_umount_check

# a file over fetch_whole: no whole fetch
ferryfs_mount "$M" "$BUCKET_NAME" "fetch_whole=8MiB"
python3 - "$M/x.bin" "$T/a" "$M/.ferryfs-stats" <<'PY' || fail "file over fetch_whole"
import json, os, sys, time
path, src, stats = sys.argv[1:]
ref = open(src, "rb").read()
fd = os.open(path, os.O_RDONLY)
assert os.pread(fd, 4096, 5 << 20) == ref[5 << 20:(5 << 20) + 4096]
time.sleep(1)
s = json.load(open(stats))
os.close(fd)
assert s["whole_fetches"] == 0 and s["bytes_down"] < (1 << 20), s
PY
ferryfs_umount_check

# replaced during the fetch: every read gives the old bytes or fails, never new or mixed
ferryfs_mount "$M" "$BUCKET_NAME"
python3 - "$M/x.bin" "$T/a" "$T/b" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/x.bin" "$AWS_ACCESS_KEY_ID" <<'PY' || fail "replaced during the fetch"
import errno, os, random, subprocess, sys
path, old, new, url, key = sys.argv[1:]
ref = open(old, "rb").read()
fd = os.open(path, os.O_RDONLY)
o = 10 << 20                            # a random read: the whole fetch starts
assert os.pread(fd, 4096, o) == ref[o:o + 4096]
subprocess.run(["curl", "-fs", "-X", "PUT", "-H", "Authorization: AWS4-HMAC-SHA256 Credential=%s/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" % key,
                "--data-binary", "@" + new, url, "-o", "/dev/null"], check=True)
rnd = random.Random(5)
ok = bad = 0
for _ in range(400):
    o = rnd.randrange(0, len(ref) // 4096) * 4096
    try:
        got = os.pread(fd, 4096, o)
    except OSError as e:
        assert e.errno in (errno.ESTALE, errno.EIO), e
        bad += 1
        continue
    assert got == ref[o:o + 4096], "read at %d is not the pinned version" % o
    ok += 1
os.close(fd)
print("old bytes %d, failed %d" % (ok, bad))
PY
ferryfs_umount_check

# close right after a random read (the fetch stops with the open state), and SIGTERM
# while a file is held open with its fetch running (the fetch stops at exit): clean exits
head -c $((96 * MiB)) /dev/urandom >"$T/big"
s3_raw_put big.bin "$T/big" || fail "cannot upload big.bin"
ferryfs_mount "$M" "$BUCKET_NAME"
python3 -c 'import os,sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.pread(fd, 4096, 50 << 20); os.close(fd)' "$M/big.bin" ||
	fail "read then close"
# the kernel sends RELEASE after close returns: wait until the open state is gone
for _ in $(seq 200); do grep -q '"cache_bytes":0,' "$M/.ferryfs-stats" && break; sleep 0.05; done
assert_contains "$M/.ferryfs-stats" '"cache_bytes":0,'
python3 -c 'import os,sys,time; fd = os.open(sys.argv[1], os.O_RDONLY); os.pread(fd, 4096, 60 << 20); open(sys.argv[2], "w").close(); time.sleep(60)' \
	"$M/big.bin" "$T/opened" 2>/dev/null &
holder=$!
at_exit "kill $holder 2>/dev/null"
for _ in $(seq 200); do [ -e "$T/opened" ] && break; sleep 0.05; done
[ -e "$T/opened" ] || fail "holder did not read"
kill -TERM "$FFS_PID"
rc=0; wait "$FFS_PID" || rc=$?
assert_eq 0 "$rc" "ferryfs exit status after SIGTERM mid-fetch"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
fusermount3 -u "$M" 2>/dev/null || true
grep -q "still running at exit" "$T/ffs.log" && fail "a whole-file fetch outlived the exit"
assert_contains "$(grep 'unmounting stats=' "$T/ffs.log" | tail -n 1)" '"whole_fetches":2}'
echo "ok"
