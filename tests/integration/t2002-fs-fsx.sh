#!/usr/bin/env bash
# fsx through ferryfs: random pwrite/pread/truncate/fsync/close-reopen checked against a
# reference file on local disk. Seeds are fixed (FSX_SEED overrides) so a failure replays.
# FSX_OPS (default 20000) sets the length of the main run.
. "$(dirname "$0")/../lib.sh"
need_fuse
FSX=$FERRY_BUILD/tests/tools/fsx
[ -x "$FSX" ] || skip "fsx not built"
moto_start

M=$T/mnt
ferryfs_mount "$M" "$BUCKET_NAME"
seed=${FSX_SEED:-20251126}

# small file, many operations: commits by PUT, cold re-reads after every reopen
"$FSX" -s "$seed" -n "${FSX_OPS:-20000}" -l 262144 -i 65536 -F 5 -R 5 "$M/small.bin" "$T/small.ref" \
	>"$T/fsx1.out" 2>&1 || { cat "$T/fsx1.out" >&2; tail -20 "$T/ffs.log" >&2; fail "fsx (small) failed, seed $seed"; }
cat "$T/fsx1.out" >&2

# a file across the 8 MiB part size: multipart commits mixing uploaded and copied parts
"$FSX" -s "$((seed + 1))" -n 200 -l $((24 * 1048576)) -i 131072 -F 40 -R 40 "$M/big.bin" "$T/big.ref" \
	>"$T/fsx2.out" 2>&1 || { cat "$T/fsx2.out" >&2; tail -20 "$T/ffs.log" >&2; fail "fsx (multipart) failed, seed $((seed + 1))"; }
cat "$T/fsx2.out" >&2

python3 - "$M/.ferryfs-stats" <<'PY' || fail "expected multipart commits with part copies"
import json, sys
d = json.load(open(sys.argv[1]))
print("# stats:", d, file=sys.stderr)
assert d["mpu_complete"] > 0 and d["mpu_part_copy"] > 0 and d["conflicts"] == 0 and d["errors"] == 0
PY
fusermount3 -u "$M"
wait $FFS_PID || fail "ferryfs exited non-zero"
# what S3 holds is exactly the reference
sig() { curl -fs --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/small.bin" -o "$T/small.obj"; touch "$T/small.obj"
sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/big.bin" -o "$T/big.obj"; touch "$T/big.obj"
cmp "$T/small.ref" "$T/small.obj" || fail "small.bin object differs from the reference"
cmp "$T/big.ref" "$T/big.obj" || fail "big.bin object differs from the reference"
exit 0
