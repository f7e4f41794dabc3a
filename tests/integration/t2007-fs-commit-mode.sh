#!/usr/bin/env bash
# user.ferry.commit=fsync on an open file: close(2) no longer commits, only fsync(2) does,
# and a writer killed half-way leaves the object as it was (the kernel's close of a dead
# process's descriptors must not publish a half-written object). Default mode: close commits.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME"
head -c 300000 /dev/urandom >"$T/base"
cp "$T/base" "$M/f.bin" || fail "cannot create f.bin"
etag0=$(getfattr --only-values -n user.ferry.etag "$M/f.bin" 2>/dev/null || python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.ferry.etag").decode())' "$M/f.bin")

python3 - "$M/f.bin" <<'PY' || fail "commit modes"
import errno, os, sys
p = sys.argv[1]
# bad values and names are refused
fd = os.open(p, os.O_RDWR)
for name, val, want in (("user.ferry.commit", b"later", errno.EINVAL), ("user.other", b"x", errno.ENOTSUP)):
    try:
        os.setxattr(fd, name, val)
        sys.exit(f"setxattr {name}={val} succeeded")
    except OSError as e:
        assert e.errno == want, (name, e)
# fsync mode: a write then close does not commit
os.setxattr(fd, "user.ferry.commit", b"fsync")
os.pwrite(fd, b"A" * 4096, 8192)
os.close(fd)
PY
ferry -q -c /dev/null s3 get f.bin "$T/got1" >/dev/null || fail "get after close"
cmp -s "$T/got1" "$T/base" || fail "close committed in fsync mode"
cmp -s "$M/f.bin" "$T/base" || fail "the mount shows a write that was never committed"

python3 - "$M/f.bin" <<'PY' || fail "fsync commit"
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.setxattr(fd, "user.ferry.commit", b"fsync")
os.pwrite(fd, b"B" * 4096, 8192)
os.fsync(fd)
os.close(fd)
PY
ferry -q -c /dev/null s3 get f.bin "$T/got2" >/dev/null || fail "get after fsync"
python3 - "$T/base" "$T/got2" <<'PY' || fail "fsync did not commit the write"
import sys
a = bytearray(open(sys.argv[1], "rb").read()); a[8192:8192 + 4096] = b"B" * 4096
assert open(sys.argv[2], "rb").read() == bytes(a)
PY
cp "$T/got2" "$T/base2"

# a writer killed between its writes and its fsync leaves the object untouched
python3 - "$M/f.bin" "$T/ready" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
os.setxattr(fd, "user.ferry.commit", b"fsync")
os.pwrite(fd, b"C" * 65536, 0)
open(sys.argv[2], "w").close()
time.sleep(60)
PY
wpid=$!
n=0; until [ -e "$T/ready" ]; do n=$((n + 1)); [ $n -lt 100 ] || fail "writer did not start"; sleep 0.1; done
kill -9 $wpid; wait $wpid 2>/dev/null
sleep 0.5
ferry -q -c /dev/null s3 get f.bin "$T/got3" >/dev/null || fail "get after kill"
cmp -s "$T/got3" "$T/base2" || fail "a killed writer's half-done change was committed"
assert_contains "$T/ffs.log" "discarding uncommitted changes"
# and the same mount serves the object again, not the discarded bytes from the page cache
cmp -s "$M/f.bin" "$T/base2" || fail "the mount still shows the discarded write"
cmp -s "$M/f.bin" "$T/base2" || fail "the mount still shows the discarded write (second read)"

# default mode: close commits
printf 'hello' | dd of="$M/f.bin" bs=1 seek=0 conv=notrunc status=none || fail "default write"
ferry -q -c /dev/null s3 get f.bin "$T/got4" >/dev/null || fail "get after default close"
assert_eq "hello" "$(head -c 5 "$T/got4")" "close commits by default"
[ -n "$etag0" ] || fail "no etag xattr"
