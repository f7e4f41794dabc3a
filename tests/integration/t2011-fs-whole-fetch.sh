#!/usr/bin/env bash
# Whole-file fetch: once a reader has spent about half as long reading a file of at most
# fetch_whole bytes at random as fetching the rest would take, ferryfs fetches the rest of
# the pinned object in the background, and later random reads are cache hits that send no
# request. user.ferry.fetch=ranged (set by pull and push) and a file over fetch_whole fetch
# only what is read. An object replaced during the fetch never gives mixed bytes, and a
# close or an exit during a fetch stops it cleanly.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

MiB=1048576
head -c $((24 * MiB)) /dev/urandom >"$T/a"
head -c $((24 * MiB)) /dev/urandom >"$T/b"
head -c $((96 * MiB)) /dev/urandom >"$T/big"
for k in a r x; do s3_raw_put $k.bin "$T/a" || fail "cannot upload $k.bin"; done
s3_raw_put big.bin "$T/big" || fail "cannot upload big.bin"

# Random reads checked against the source, each more than 4 MiB from the one before (so
# none counts as sequential and starts a read-ahead window).
cat >"$T/rr.py" <<'PY'
import errno, json, os, random, sys, time

class Reader:
    def __init__(self, path, src, stats, seed=7):
        self.ref = open(src, "rb").read()
        self.stats = stats
        self.fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        self.rnd = random.Random(seed)
        self.i = 0

    def st(self):
        return json.load(open(self.stats))

    def one(self):
        half = len(self.ref) // 2
        # upper half first: a read within 4 MiB of offset 0 would count as sequential
        o = (1 - self.i % 2) * half + self.rnd.randrange(0, (half - (5 << 20)) // 4096) * 4096
        self.i += 1
        if os.pread(self.fd, 4096, o) != self.ref[o:o + 4096]:
            raise SystemExit("random read at %d differs" % o)

    def until_whole(self, start, most=400):
        """Random reads until a whole-file fetch has started; returns how many."""
        for n in range(1, most + 1):
            self.one()
            if self.st()["whole_fetches"] > start:
                return n
        raise SystemExit("no whole-file fetch after %d random reads: %r" % (most, self.st()))
PY
export PYTHONPATH=$T

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# default: random reads start a whole fetch; once it is in, 300 more reads are hits and
# send no GET, and the file came down once
out=$(python3 - "$M/a.bin" "$T/a" "$M/.ferryfs-stats" <<'PY'
import os, random, sys, time
from rr import Reader
r = Reader(*sys.argv[1:])
n = r.until_whole(0)
print("# whole fetch after %d random reads" % n, file=sys.stderr)
deadline = time.monotonic() + 120
while r.st()["cache_bytes"] < len(r.ref):
    if time.monotonic() > deadline:
        raise SystemExit("whole file not fetched: %r" % r.st())
    time.sleep(0.05)
before = r.st()
for o in random.Random(3).sample(range(0, len(r.ref), 4096), 300):
    if os.pread(r.fd, 4096, o) != r.ref[o:o + 4096]:
        raise SystemExit("read at %d differs" % o)
after = r.st()
import json
print(json.dumps(before))
print(json.dumps(after))
PY
) || fail "reader failed: $out"
before=$(sed -n 1p <<<"$out"); after=$(sed -n 2p <<<"$out")
assert_eq 1 "$(field "$after" whole_fetches)" "whole-file fetches"
assert_eq "$(field "$before" get)" "$(field "$after" get)" "GETs during the 300 reads after the fetch"
# 300 distinct pages; the kernel's page cache may answer a few (read-around of a neighbour)
[ $(($(field "$after" cache_hits) - $(field "$before" cache_hits))) -ge 280 ] ||
	fail "reads after the fetch were not cache hits: $before -> $after"
down=$(field "$after" bytes_down)
[ "$down" -ge $((24 * MiB)) ] && [ "$down" -le $((25 * MiB)) ] ||
	fail "bytes_down $down: want the file once (24 MiB, plus the reads before the fetch)"

# user.ferry.fetch=ranged: 60 random reads (a handful started a fetch above) fetch only
# their own pages
python3 - "$M/r.bin" "$T/a" "$M/.ferryfs-stats" <<'PY' || fail "ranged reads"
import os, sys, time
from rr import Reader
r = Reader(*sys.argv[1:], seed=11)
os.setxattr(r.fd, "user.ferry.fetch", b"ranged")
b = r.st()
for _ in range(60):
    r.one()
time.sleep(1)                           # a whole fetch, if one started, would show by now
a = r.st()
assert a["whole_fetches"] == b["whole_fetches"], (b, a)
# 60 pages; now and then the kernel reads around one and a read-ahead window follows
assert a["bytes_down"] - b["bytes_down"] < 4 << 20, (b, a)
PY
ferryfs_umount "$M"

# a file over fetch_whole: no whole fetch
ferryfs_mount "$M" "$BUCKET_NAME" "fetch_whole=8MiB"
python3 - "$M/x.bin" "$T/a" "$M/.ferryfs-stats" <<'PY' || fail "file over fetch_whole"
import sys, time
from rr import Reader
r = Reader(*sys.argv[1:], seed=13)
for _ in range(60):
    r.one()
time.sleep(1)
s = r.st()
assert s["whole_fetches"] == 0 and s["bytes_down"] < 4 << 20, s
PY
ferryfs_umount "$M"

# replaced during the fetch: every read gives the old bytes or fails, never new or mixed
ferryfs_mount "$M" "$BUCKET_NAME"
python3 - "$M/x.bin" "$T/a" "$M/.ferryfs-stats" "$T/b" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/x.bin" "$AWS_ACCESS_KEY_ID" <<'PY' || fail "replaced during the fetch"
import errno, os, random, subprocess, sys
from rr import Reader
path, old, stats, new, url, key = sys.argv[1:]
r = Reader(path, old, stats, seed=17)
r.until_whole(0)
subprocess.run(["curl", "-fs", "-X", "PUT", "-H", "Authorization: AWS4-HMAC-SHA256 Credential=%s/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" % key,
                "--data-binary", "@" + new, url, "-o", "/dev/null"], check=True)
ok = bad = 0
for o in random.Random(5).sample(range(0, len(r.ref), 4096), 400):
    try:
        got = os.pread(r.fd, 4096, o)
    except OSError as e:
        assert e.errno in (errno.ESTALE, errno.EIO), e
        bad += 1
        continue
    assert got == r.ref[o:o + 4096], "read at %d is not the pinned version" % o
    ok += 1
print("# after the replacement: %d reads gave the pinned version, %d failed" % (ok, bad), file=sys.stderr)
PY
ferryfs_umount "$M"

# a close during a fetch stops it with the open state; SIGTERM while a file is held open
# with its fetch running stops it at exit: clean exits
ferryfs_mount "$M" "$BUCKET_NAME"
python3 - "$M/big.bin" "$T/big" "$M/.ferryfs-stats" <<'PY' || fail "random reads then close"
import sys
from rr import Reader
r = Reader(*sys.argv[1:], seed=19)
r.until_whole(0)
PY
# the kernel sends RELEASE after close returns: wait until the open state is gone
for _ in $(seq 200); do grep -q '"cache_bytes":0,' "$M/.ferryfs-stats" && break; sleep 0.05; done
assert_contains "$M/.ferryfs-stats" '"cache_bytes":0,'
python3 - "$M/big.bin" "$T/big" "$M/.ferryfs-stats" "$T/opened" <<'PY' 2>/dev/null &
import sys, time
from rr import Reader
r = Reader(*sys.argv[1:4], seed=23)
r.until_whole(1)
open(sys.argv[4], "w").close()
time.sleep(60)
PY
holder=$!
at_exit "kill $holder 2>/dev/null"
for _ in $(seq 600); do [ -e "$T/opened" ] && break; sleep 0.05; done
[ -e "$T/opened" ] || fail "holder did not start a whole fetch"
kill -TERM "$FFS_PID"
rc=0; wait "$FFS_PID" || rc=$?
assert_eq 0 "$rc" "ferryfs exit status after SIGTERM mid-fetch"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
fusermount3 -u "$M" 2>/dev/null || true
grep -q "still running at exit" "$T/ffs.log" && fail "a whole-file fetch outlived the exit"
assert_contains "$(grep 'unmounting stats=' "$T/ffs.log" | tail -n 1)" '\"whole_fetches\":2}'
echo "ok"
