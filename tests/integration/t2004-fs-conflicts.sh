#!/usr/bin/env bash
# Conflicts with another S3 client: an object replaced while open for reading makes later
# reads fail (ESTALE or EIO), never a mix of versions; replaced while open for writing
# makes fsync and close fail (ESTALE) and leaves the other client's object intact, for a
# PUT-sized and a multipart-sized file and for a new file; O_EXCL is a conditional create.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

sig() { curl -fs --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
put_obj() { sig -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" \
	"$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o /dev/null || fail "cannot put '$1'"; }
get_obj() { rm -f "$2"; sig "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o "$2" && touch "$2"; }

# The other client writes in-process (boto3): a forked helper would close our fds at exec,
# and that close is a FLUSH, i.e. a commit, ahead of the conflicting write.
cat >"$T/other.py" <<'PY'
import os
import boto3
from botocore.config import Config

def other_client_put(url, body):
    bucket, key = url.rsplit("/", 2)[1:]
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
                      region_name=os.environ["AWS_REGION"],
                      config=Config(request_checksum_calculation="when_required",
                                    response_checksum_validation="when_required"))
    s3.put_object(Bucket=bucket, Key=key, Body=body)
PY
export PYTHONPATH=$T
M=$T/mnt
mkdir -p "$M"
"$FERRYFS_BIN" "$BUCKET_NAME" "$M" ${FFS_FLAGS:--f} -o "cache_dir=$T/cache" 2>"$T/ffs.log" &
FFS_PID=$!
at_exit "fusermount3 -u $M; kill $FFS_PID; wait $FFS_PID"
n=0
until mountpoint -q "$M"; do
	n=$((n + 1)); [ $n -lt 100 ] || fail "ferryfs did not mount: $(cat "$T/ffs.log")"
	sleep 0.1
done
MiB=1048576

# 1. replaced while open for reading
head -c $((24 * MiB)) /dev/urandom >"$T/r.v1"
head -c $((24 * MiB)) /dev/urandom >"$T/r.v2"
put_obj r.bin "$T/r.v1"
python3 - "$M/r.bin" "$T/r.v1" "$T/r.v2" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/r.bin" <<'PY' || fail "read conflict not detected cleanly"
import errno, os, sys
from other import other_client_put
path, v1, v2, url = sys.argv[1:5]
old, new = open(v1, "rb").read(), open(v2, "rb").read()
fd = os.open(path, os.O_RDONLY)
assert os.pread(fd, 4096, 0) == old[:4096], "first read is not version 1"
other_client_put(url, open(v2, 'rb').read())
off = 20 * 1048576
try:
    data = os.pread(fd, 65536, off)
except OSError as e:
    assert e.errno in (errno.ESTALE, errno.EIO), "unexpected errno %d" % e.errno
    print("# read after replacement failed with", errno.errorcode[e.errno], file=sys.stderr)
else:
    raise SystemExit("read after replacement returned data (%s)" %
                     ("version 2" if data == new[off:off + 65536] else
                      "version 1" if data == old[off:off + 65536] else "garbage"))
def read_all(fd):
    got = b""
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return got
        got += b
# an open while the stale handle is still open (as when the kernel's RELEASE of a close
# is not in yet) sees the new version whole
fd2 = os.open(path, os.O_RDONLY)
assert read_all(fd2) == new, "open beside a stale handle does not see version 2"
os.close(fd2)
os.close(fd)
# and so does a new open after it
fd = os.open(path, os.O_RDONLY)
got = read_all(fd)
os.close(fd)
assert got == new, "re-open does not see version 2"
PY

# 2. replaced while open for writing: small (one PUT) and multipart commits
for size in 100000 $((10 * MiB)); do
	head -c $size /dev/urandom >"$T/w.v1"
	head -c $size /dev/urandom >"$T/w.other"
	put_obj w.bin "$T/w.v1"
	python3 - "$M/w.bin" "$T/w.other" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/w.bin" <<'PY' || fail "write conflict ($size bytes) not reported"
import errno, os, sys
from other import other_client_put
path, other, url = sys.argv[1:4]
fd = os.open(path, os.O_RDWR)
os.pwrite(fd, b"ours" * 1024, 8192)
other_client_put(url, open(other, 'rb').read())
try:
    os.fsync(fd)
except OSError as e:
    assert e.errno == errno.ESTALE, "fsync failed with %s" % errno.errorcode[e.errno]
else:
    raise SystemExit("fsync succeeded over someone else's object")
try:
    os.close(fd)
except OSError as e:
    assert e.errno == errno.ESTALE, "close failed with %s" % errno.errorcode[e.errno]
else:
    raise SystemExit("close succeeded over someone else's object")
PY
	get_obj w.bin "$T/w.now" || fail "object gone"
	cmp "$T/w.other" "$T/w.now" || fail "the other client's object ($size bytes) was not kept intact"
	sleep 1.1   # let the kernel's entry cache expire before the next round
done

# 3. a new file that another client creates meanwhile: close fails, theirs stays
printf 'theirs\n' >"$T/n.other"
python3 - "$M/n.txt" "$T/n.other" "$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/n.txt" <<'PY' || fail "create conflict not reported"
import errno, os, sys
from other import other_client_put
path, other, url = sys.argv[1:4]
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"ours\n")
other_client_put(url, open(other, 'rb').read())
try:
    os.close(fd)
except OSError as e:
    assert e.errno == errno.ESTALE, "close failed with %s" % errno.errorcode[e.errno]
else:
    raise SystemExit("close created over someone else's new object")
PY
get_obj n.txt "$T/n.now" || fail "object gone"
cmp "$T/n.other" "$T/n.now" || fail "the other client's new object was overwritten"

# 4. O_EXCL: exclusive create of an existing name fails, of a new name succeeds
python3 - "$M" <<'PY' || fail "O_EXCL semantics"
import errno, os, sys
m = sys.argv[1]
try:
    os.open(m + "/n.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
except OSError as e:
    assert e.errno == errno.EEXIST
else:
    raise SystemExit("O_EXCL on an existing file succeeded")
fd = os.open(m + "/excl.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"mine\n")
os.close(fd)
PY
get_obj excl.txt "$T/excl.now" || fail "excl.txt missing"
assert_eq "mine" "$(cat "$T/excl.now")" "O_EXCL file content"
assert_contains "$T/ffs.log" "412 PreconditionFailed"
fusermount3 -u "$M"; wait $FFS_PID || fail "ferryfs exit status"
assert_no_secrets "$T"
exit 0
