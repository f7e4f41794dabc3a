#!/usr/bin/env bash
# The mount stage: dry-run says what it would do and does nothing; run mounts (credentials
# only in the environment, never in ferryfs's argv), later stages see the bucket, cleanup
# unmounts and reaps; a stale mount ("Transport endpoint is not connected") is cleaned
# first; ferryfs SIGKILLed mid-read makes the reading stage fail, the pipeline unwinds and
# no mount is left behind.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

sig() { curl -fs --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
put_obj() { sig -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" \
	"$AWS_ENDPOINT_URL_S3/$BUCKET_NAME/$1" -o /dev/null || fail "cannot put '$1'"; }
no_mount_left() {
	! grep -qF " $M " /proc/mounts || fail "a mount is left at $M"
	local p
	for p in /proc/[0-9]*; do
		if grep -qaF -- "$M" "$p/cmdline" 2>/dev/null && grep -qa ferryfs "$p/cmdline" 2>/dev/null; then
			fail "a ferryfs process is left: $(tr '\0' ' ' <"$p/cmdline")"
		fi
	done
}

M=$T/mnt
printf 'hello from s3\n' >"$T/hello"
put_obj org-data/hello.txt "$T/hello"
cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region   = \${AWS_REGION}
bucket   = \${BUCKET_NAME}

[stage mount]
plugin     = mount
mountpoint = $M
prefix     = org-data
options    = attr_timeout=2

[stage look]
plugin = exec
shell  = true
command = cat "\$FERRY_FACT_MOUNT_MOUNTPOINT/hello.txt" > $T/seen && tr '\000' ' ' < /proc/\$FERRY_FACT_MOUNT_PID/cmdline > $T/argv
INI

# dry-run: concrete, and changes nothing
ferry -c "$T/p.ini" run --dry-run >"$T/dry.out" 2>"$T/dry.err" || fail "dry-run failed: $(cat "$T/dry.err")"
assert_contains "$T/dry.err" "would mount source=$BUCKET_NAME:org-data mountpoint=$M"
assert_contains "$T/dry.err" "options=\"cache_dir=$T/state/cache,endpoint=$AWS_ENDPOINT_URL_S3,region=$AWS_REGION,attr_timeout=2\""
[ ! -e "$M" ] || fail "dry-run created the mountpoint"

# run
ferry -c "$T/p.ini" run >"$T/run.out" 2>"$T/run.err" || fail "run failed: $(cat "$T/run.err")"
assert_eq "hello from s3" "$(cat "$T/seen")" "file read through the mount"
assert_contains "$T/argv" "-o cache_dir=$T/state/cache"
assert_not_contains "$T/argv" "$AWS_SECRET_ACCESS_KEY"
assert_not_contains "$T/argv" "$AWS_ACCESS_KEY_ID"
assert_contains "$T/run.err" "mount mounted source=$BUCKET_NAME:org-data mountpoint=$M"
assert_contains "$T/run.err" "mount unmounted mountpoint=$M"
assert_contains "$T/run.err" "ferryfs unmounting stats="
no_mount_left

# a stale mount: ferryfs killed -9 under an existing mount
"$FERRYFS_BIN" "$BUCKET_NAME" "$M" -f -o "cache_dir=$T/c2" 2>"$T/stale.log" &
STALE=$!
n=0
until mountpoint -q "$M"; do n=$((n + 1)); [ $n -lt 100 ] || fail "manual mount failed"; sleep 0.1; done
kill -9 $STALE; wait $STALE 2>/dev/null
stat "$M" >/dev/null 2>"$T/stat.err" && fail "mount is not stale after SIGKILL"
assert_contains "$T/stat.err" "Transport endpoint is not connected"
ferry -c "$T/p.ini" run >"$T/run2.out" 2>"$T/run2.err" || fail "run over a stale mount failed: $(cat "$T/run2.err")"
assert_contains "$T/run2.err" "cleaning stale mount"
assert_eq "hello from s3" "$(cat "$T/seen")" "read after stale-mount recovery"
no_mount_left

# ferryfs SIGKILLed mid-read (the reader takes >= 2.4 s, the kill comes at 0.3 s): the
# reading stage fails, the run unwinds, nothing is left
head -c $((48 * 1048576)) /dev/urandom >"$T/big"
put_obj org-data/big.bin "$T/big"
cat >>"$T/p.ini" <<INI

[stage reader]
plugin = exec
shell  = true
command = (for i in \$(seq 0 47); do dd if="\$FERRY_FACT_MOUNT_MOUNTPOINT/big.bin"
  of=/dev/null bs=1M count=1 skip=\$i status=none || exit 1; sleep 0.05; done) 2>$T/dd.err &
  sleep 0.3; kill -9 \$FERRY_FACT_MOUNT_PID; wait \$!
INI
rc=0; ferry -c "$T/p.ini" run >"$T/run3.out" 2>"$T/run3.err" || rc=$?
assert_eq 1 $rc "exit status when ferryfs dies mid-read"
assert_contains "$T/run3.err" "reader run failed"
assert_contains "$T/run3.err" "mount cleanup ok"
grep -q "Transport endpoint is not connected\|Software caused connection abort\|Input/output error" "$T/dd.err" ||
	fail "dd did not see the dead mount: $(cat "$T/dd.err")"
no_mount_left

# failpoints: a failure right after spawning, and right after the mount answered
for fp in mount.after_spawn mount.after_mount; do
	rc=0; FERRY_FAILPOINT=$fp ferry -c "$T/p.ini" run >"$T/fp.out" 2>"$T/fp.err" || rc=$?
	assert_eq 1 $rc "exit status with failpoint $fp"
	assert_contains "$T/fp.err" "failpoint $fp"
	assert_contains "$T/fp.err" "mount cleanup ok"
	no_mount_left
done
assert_no_secrets "$T"
exit 0
