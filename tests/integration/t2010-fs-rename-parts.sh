#!/usr/bin/env bash
# Renames of objects above CopyObject's limit (5 GiB; lowered here with the test option
# copy_max=5MiB) copy in parts (UploadPartCopy ranges of the pinned source) and complete
# under the rename's condition; smaller ones stay one CopyObject. Changes still open on
# the source are committed first and travel with it.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

head -c $((12 << 20)) /dev/urandom >"$T/big"
head -c 300000 /dev/urandom >"$T/small"
s3_raw_put big.bin "$T/big" || fail "cannot upload big.bin"
s3_raw_put small.bin "$T/small" || fail "cannot upload small.bin"

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME" "copy_max=5MiB"
stats() { cat "$M/.ferryfs-stats"; }
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$(stats)" "$1"; }

# 12 MiB above a 5 MiB limit: parts of 5 + 5 + 2 MiB, no CopyObject
mv "$M/big.bin" "$M/moved.bin" || fail "rename of big.bin failed"
s3_raw_get moved.bin "$T/got" || fail "moved.bin missing on S3"
cmp "$T/big" "$T/got" || fail "moved.bin differs from big.bin"
if s3_raw_exists big.bin; then fail "big.bin still on S3 after the rename"; fi
assert_eq 3 "$(field mpu_part_copy)" "part copies"
assert_eq 1 "$(field mpu_complete)" "completed uploads"
assert_eq 0 "$(field copy)" "CopyObject calls"
cmp "$T/big" "$M/moved.bin" || fail "moved.bin reads back wrong through the mount"

# below the limit: one CopyObject
mv "$M/small.bin" "$M/small2.bin" || fail "rename of small.bin failed"
assert_eq 1 "$(field copy)" "CopyObject calls after a small rename"
assert_eq 3 "$(field mpu_part_copy)" "part copies after a small rename"

# a change still open on the source is committed, then copied in parts with it
python3 - "$M/moved.bin" "$M/final.bin" "$T" <<'PY' || fail "rename while open"
import os, sys
src, dst, t = sys.argv[1:]
ref = bytearray(open(f"{t}/big", "rb").read())
fd = os.open(src, os.O_RDWR)
os.pwrite(fd, b"Z" * 4096, 6 << 20)
ref[6 << 20:(6 << 20) + 4096] = b"Z" * 4096
os.rename(src, dst)
os.close(fd)
open(f"{t}/want", "wb").write(ref)
PY
s3_raw_get final.bin "$T/got" || fail "final.bin missing on S3"
cmp "$T/want" "$T/got" || fail "final.bin lacks the change made before the rename"
if s3_raw_exists moved.bin; then fail "moved.bin still on S3"; fi
# 3 + the commit's copy of the untouched 8-12 MiB part + 3
assert_eq 7 "$(field mpu_part_copy)" "part copies after the second big rename"

# the option is for tests, but still checked
assert_exit 1 "$FERRYFS_BIN" "$BUCKET_NAME" "$T/mnt2" -f -o copy_max=1MiB 2>"$T/bad.log"
assert_contains "$T/bad.log" "option=copy_max"

# SIGTERM while a directory and a file are open: ferryfs exits 0 and frees their handles
# (ASan / valgrind builds report a leak otherwise)
mkdir "$M/d" || fail "mkdir"
python3 - "$M" "$T/held" <<'PY' &
import os, sys, time
d = os.open(sys.argv[1] + "/d", os.O_RDONLY | os.O_DIRECTORY)
os.listdir(d)
f = os.open(sys.argv[1] + "/final.bin", os.O_RDONLY)
open(sys.argv[2], "w").close()
time.sleep(30)
PY
hpid=$!
at_exit "kill $hpid"
n=0; until [ -e "$T/held" ]; do n=$((n + 1)); [ $n -lt 200 ] || fail "holder did not start"; sleep 0.1; done
kill -TERM "$FFS_PID"
rc=0; wait "$FFS_PID" || rc=$?
kill $hpid 2>/dev/null
assert_eq 0 "$rc" "ferryfs exit status after SIGTERM with open handles"
