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
mkdir -p "$M"
"$FERRYFS_BIN" "$BUCKET_NAME" "$M" -f -o "cache_dir=$T/cache" 2>>"$T/ffs.log" &
FFS_PID=$!
at_exit "fusermount3 -u $M; kill $FFS_PID; wait $FFS_PID"
n=0
until mountpoint -q "$M"; do
	n=$((n + 1)); [ $n -lt 100 ] || fail "ferryfs did not mount: $(cat "$T/ffs.log")"
	sleep 0.1
done
names=$(cd "$M/d" && ls -a | tr '\n' ' ')
assert_eq ". .. ok.txt " "$names" "entries of d/"
[ "$(cat "$M/d/ok.txt")" = data ] || fail "ok.txt unreadable"
[ ! -e "$M/escape.txt" ] || fail "d/../escape.txt appeared outside d/"
assert_contains "$T/ffs.log" "skipped a key that is not a usable file name"
