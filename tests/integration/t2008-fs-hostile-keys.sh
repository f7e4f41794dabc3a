#!/usr/bin/env bash
# Keys that are not usable file names ("..", ".", control characters, empty components)
# never show up as directory entries: a listing cannot walk out of its directory.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start
echo data >"$T/f"
s3() { ferry -q -c /dev/null s3 "$@" >/dev/null; }
s3 put "$T/f" "d/ok.txt" || fail "put ok.txt"
s3 put "$T/f" "d/../escape.txt" || fail "put d/../escape.txt"
s3 put "$T/f" "d/./dot.txt" || fail "put d/./dot.txt"
s3 put "$T/f" "d//empty.txt" || fail "put d//empty.txt"
s3 put "$T/f" "d/ctl$(printf '\001')name" || fail "put a key with a control character"

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME"
names=$(cd "$M/d" && ls -a | tr '\n' ' ')
assert_eq ". .. ok.txt " "$names" "entries of d/"
[ "$(cat "$M/d/ok.txt")" = data ] || fail "ok.txt unreadable"
[ ! -e "$M/escape.txt" ] || fail "d/../escape.txt appeared outside d/"
assert_contains "$T/ffs.log" "skipped a key that is not a usable file name"
