#!/usr/bin/env bash
# ferryfs alone: files of edge sizes written and read back byte-identical (warm and cold),
# cp -r of a tree, ls/find/du/stat agreeing with the objects, namespace operations, the
# etag xattr, the stats file, and unsupported operations failing loudly.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

# Signed object access (moto refuses unsigned object reads).
sig() { curl -fs --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
put_obj() { sig -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" \
	"$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o /dev/null || fail "cannot put '$1'"; }
get_obj() { rm -f "$2"; sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o "$2" && touch "$2"; }
obj_exists() { sig -I "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o /dev/null; }
obj_etag() { sig -I "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}'; }
stats() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$M/.ferryfs-stats" "$1"; }

M=$T/mnt
# put_max at its floor: new files over 8 MiB take the multipart path (one PUT by default)
ferryfs_mount "$M" "$BUCKET_NAME" put_max=8MiB

MiB=1048576
sizes="0 1 $((5*MiB-1)) $((5*MiB)) $((5*MiB+1)) $((8*MiB-1)) $((8*MiB)) $((8*MiB+1)) $((40*MiB))"
for s in $sizes; do
	head -c "$s" /dev/urandom >"$T/src.$s"
	cp "$T/src.$s" "$M/f.$s" || fail "write of $s bytes failed"
	cmp "$T/src.$s" "$M/f.$s" || fail "warm read of $s bytes differs"
done
# the objects themselves hold the bytes
for s in $sizes; do
	get_obj "f.$s" "$T/obj.$s" || fail "object f.$s missing"
	cmp "$T/src.$s" "$T/obj.$s" || fail "object f.$s differs from what was written"
done
assert_eq 2 "$(stats mpu_complete)" "new files over put_max (8 MiB + 1, 40 MiB) use multipart"

# cold reads through a fresh mount (default options): ranged GETs pinned to the ETag
ferryfs_umount "$M"
ferryfs_mount "$M" "$BUCKET_NAME"
for s in $sizes; do
	cmp "$T/src.$s" "$M/f.$s" || fail "cold read of $s bytes differs"
done
[ "$(stats get)" -ge 1 ] || fail "cold reads made no GET"
[ "$(stats bytes_down)" -ge $((40*MiB)) ] || fail "bytes_down too small: $(stats bytes_down)"
# by default a new file with nothing to copy server-side is one PUT up to put_max (256 MiB)
puts=$(stats put)
head -c $((24*MiB + 5)) /dev/urandom >"$T/src.new24"
# one open, write, close (cp's O_EXCL open adds a conditional create, dd's dup2 an early
# close: each commits the empty file first)
python3 -c 'import sys; open(sys.argv[1], "wb").write(open(sys.argv[2], "rb").read())' \
	"$M/f.new24" "$T/src.new24" || fail "write of the 24 MiB file failed"
assert_eq $((puts + 1)) "$(stats put)" "a new 24 MiB file is one PUT"
assert_eq 0 "$(stats mpu_complete)" "no multipart upload for it"
get_obj f.new24 "$T/obj.new24" && cmp "$T/src.new24" "$T/obj.new24" || fail "object f.new24 differs"

# objects written by others are seen
printf 'from outside\n' >"$T/outside"
put_obj dir1/outside.txt "$T/outside"
assert_eq "from outside" "$(cat "$M/dir1/outside.txt")" "object made by another client"

# stat / ls -l / du / find agree with the objects
assert_eq $((5*MiB+1)) "$(stat -c %s "$M/f.$((5*MiB+1))")" "stat size"
ls -l "$M" >"$T/ls" || fail "ls -l failed"
assert_contains "$T/ls" " $((40*MiB)) "
du -b "$M/f.$((8*MiB))" | grep -q "^$((8*MiB))" || fail "du -b disagrees"

# cp -r of a tree, then find sees every file with the right size and content
mkdir -p "$T/tree/a/b/c" "$T/tree/empty"
for i in $(seq 1 20); do head -c $((i * 1000)) /dev/urandom >"$T/tree/a/f$i"; done
head -c 3000000 /dev/urandom >"$T/tree/a/b/c/deep.bin"
: >"$T/tree/a/b/zero"
cp -r "$T/tree" "$M/tree" || fail "cp -r failed"
diff -r "$T/tree" "$M/tree" || fail "tree copy differs"
(cd "$T/tree" && find . -printf '%y %s %p\n' | grep -v '^d' | sort) >"$T/find.local"
(cd "$M/tree" && find . -printf '%y %s %p\n' | grep -v '^d' | sort) >"$T/find.mnt"
diff "$T/find.local" "$T/find.mnt" || fail "find disagrees"
sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME?list-type=2&prefix=tree/" >"$T/list.xml"
assert_contains "$T/list.xml" "<Key>tree/a/b/c/deep.bin</Key>"
assert_contains "$T/list.xml" "<Key>tree/empty/</Key>"
[ -d "$M/tree/empty" ] || fail "empty directory (marker) not visible"

# namespace: rename a file, an empty dir; non-empty dir gives EXDEV (mv copies); rmdir
mv "$M/tree/a/f1" "$M/tree/a/f1.moved" || fail "rename of a file failed"
cmp "$T/tree/a/f1" "$M/tree/a/f1.moved" || fail "renamed file differs"
[ ! -e "$M/tree/a/f1" ] || fail "rename left the source"
obj_exists tree/a/f1 && fail "rename left the source object"
mv "$M/tree/empty" "$M/tree/empty2" || fail "rename of an empty dir failed"
[ -d "$M/tree/empty2" ] || fail "renamed dir missing"
python3 - "$M/tree/a" "$M/tree/a2" <<'PY' || fail "rename of a non-empty dir should give EXDEV"
import errno, os, sys
try:
    os.rename(sys.argv[1], sys.argv[2])
except OSError as e:
    sys.exit(0 if e.errno == errno.EXDEV else 1)
sys.exit(1)
PY
rmdir "$M/tree/a" 2>/dev/null && fail "rmdir of a non-empty dir succeeded"
rm -r "$M/tree/a/b" || fail "rm -r failed"
[ ! -e "$M/tree/a/b" ] || fail "rm -r left the dir"
rmdir "$M/tree/empty2" || fail "rmdir failed"
obj_exists tree/empty2/ && fail "rmdir left the marker"

# truncate by path, extend, sparse write
head -c 100000 /dev/urandom >"$T/t"
cp "$T/t" "$M/t" && truncate -s 5000 "$M/t" && truncate -s 5000 "$T/t" || fail "truncate failed"
cmp "$T/t" "$M/t" || fail "truncate shrink differs"
truncate -s 300000 "$M/t" && truncate -s 300000 "$T/t"
printf 'tail' | dd of="$M/t" bs=1 seek=400000 conv=notrunc 2>/dev/null
printf 'tail' | dd of="$T/t" bs=1 seek=400000 conv=notrunc 2>/dev/null
cmp "$T/t" "$M/t" || fail "extend/sparse write differs"
get_obj t "$T/t.obj" && cmp "$T/t" "$T/t.obj" || fail "object after truncate differs"

# the etag xattr is the object's ETag
etag=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.ferry.etag").decode())' "$M/t")
hdr=$(obj_etag t)
assert_eq "$hdr" "$etag" "user.ferry.etag"
python3 -c 'import os,sys; assert "user.ferry.etag" in os.listxattr(sys.argv[1])' "$M/t" || fail "listxattr lacks the etag"

# unsupported operations fail, never silently
ln "$M/t" "$M/t.hard" 2>/dev/null && fail "hard link succeeded"
ln -s t "$M/t.sym" 2>/dev/null && fail "symlink succeeded"
chmod 600 "$M/t" 2>/dev/null && fail "chmod to another mode succeeded"
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.x", b"1")' "$M/t" 2>/dev/null && fail "setxattr succeeded"
mkfifo "$M/fifo" 2>/dev/null && fail "mkfifo succeeded"
( echo x >"$M/.ferryfs-stats" ) 2>/dev/null && fail "stats file is writable"

# stats: valid JSON with every counter
python3 - "$M/.ferryfs-stats" <<'PY' || fail "stats file is not the expected JSON"
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("get", "put", "head", "list", "delete", "copy", "mpu_part", "mpu_part_copy",
          "mpu_complete", "bytes_down", "bytes_up", "bytes_copied", "cache_hits"):
    assert isinstance(d[k], int), k
PY
statfs=$(stat -f -c '%b %a' "$M")
[ "${statfs%% *}" -gt 0 ] || fail "statfs reports no blocks"
ferryfs_umount "$M"
assert_contains "$T/ffs.log" "unmounting stats="
assert_no_secrets "$T"
exit 0
