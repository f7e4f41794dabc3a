#!/usr/bin/env bash
# A 1-page change to a 64 MiB object, then fsync: one 8 MiB part is uploaded, the eight
# untouched parts (5 MiB, then 8 MiB each: ferry_fsproto.h's layout) are copied server-side
# (UploadPartCopy), the commit is conditional on
# the ETag seen at open. Asserted with ferryfs's counters and the proxy's byte counters.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/proxy.sh"
need_fuse
moto_start
MiB=1048576
sig() { curl -fs --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
# the object exists before the mount (written straight to moto: the proxy is slow)
head -c $((64 * MiB)) /dev/urandom >"$T/db.bin"
sig -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$T/db.bin" \
	"$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/db.bin" -o /dev/null || fail "cannot put the 64 MiB object"
proxy_start

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME"
stat_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$M/.ferryfs-stats" "$1"; }

etag0=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.ferry.etag").decode())' "$M/db.bin")

before_up=$(stat_of bytes_up); before_part=$(stat_of mpu_part); before_copy=$(stat_of mpu_part_copy)
before_copied=$(stat_of bytes_copied)
proxy_reset
# one 4 KiB page at 20 MiB + 12 KiB (part 2: [13 MiB, 21 MiB)), the same change to the local copy
head -c 4096 /dev/urandom >"$T/page"
python3 - "$M/db.bin" "$T/db.bin" "$T/page" <<'PY' || fail "1-page write + fsync failed"
import os, sys
page = open(sys.argv[3], "rb").read()
off = 20 * 1048576 + 12288
for path in sys.argv[1:3]:
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, page, off)
    os.fsync(fd)
    os.close(fd)
PY
assert_eq 1 $(( $(stat_of mpu_part) - before_part )) "parts uploaded"
assert_eq 8 $(( $(stat_of mpu_part_copy) - before_copy )) "parts copied server-side"
assert_eq $((8 * MiB)) $(( $(stat_of bytes_up) - before_up )) "bytes uploaded by ferryfs"
assert_eq $((56 * MiB)) $(( $(stat_of bytes_copied) - before_copied )) "bytes copied server-side"
up=$(proxy_stats bytes_up)
note "proxy saw bytes_up=$up bytes_down=$(proxy_stats bytes_down) PUT=$(proxy_stats methods PUT requests)"
[ "$up" -ge $((8 * MiB)) ] && [ "$up" -lt $((9 * MiB)) ] || fail "proxy saw $up bytes up, want one 8 MiB part"
# the unwritten rest of the part was read (pinned), nothing else
down=$(proxy_stats bytes_down)
[ "$down" -lt $((9 * MiB)) ] || fail "proxy saw $down bytes down: more than the touched part"

etag1=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.ferry.etag").decode())' "$M/db.bin")
[ "$etag1" != "$etag0" ] || fail "etag xattr did not change after the commit"
proxy_stop
fusermount3 -u "$M"; wait $FFS_PID || fail "ferryfs exit status"
sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/db.bin" -o "$T/db.obj" || fail "cannot read back"
cmp "$T/db.bin" "$T/db.obj" || fail "object differs from the expected bytes"
hdr=$(sig -I "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/db.bin" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}')
assert_eq "$hdr" "$etag1" "etag xattr after commit"
exit 0
