#!/bin/bash
# tests/container/check.sh: checks the Dockerfile's steps without a container engine, in debootstrap chroots; prints the image-size estimate.
#
# A manual / bench script, NOT part of `make test`: it needs root, debootstrap and the
# Debian mirror, and takes minutes (debootstrap once, apt layers once, then a full
# `make` of the tree at every run).
#
#   bash tests/container/check.sh [--no-cache] [--keep]
#
# What it does: tests/container/dockerfile_chroot.py interprets the Dockerfile itself
# (every FROM / ENV / WORKDIR / COPY / RUN, in order): each FROM debian:12[-slim] starts
# from a bookworm minbase made by debootstrap (cached under $FERRY_CONTAINER_CACHE,
# default /var/tmp/ferry-container; -slim also gets the slim image's dpkg excludes), the
# apt layers are cached like Docker's, COPY reads this checkout. Then, inside the runtime
# chroot: ferry --version, ferry --help, ldd of every binary and plugin, the ENTRYPOINT
# (tini -> ferry-entrypoint) with an empty environment (must exit 2 naming the missing
# variable), `ferry list` of the installed default config, no build tools left, and a
# smoke run: the ENTRYPOINT runs the default pipeline against moto_server on loopback
# with a FUSE mount inside the chroot (skipped without moto or /dev/fuse).
# Finally the installed size (du), the estimate of the image's size.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${FERRY_CONTAINER_CACHE:-/var/tmp/ferry-container}
WORK=$CACHE/work
KEEP=
NOCACHE=
for a in "$@"; do
	case $a in
	--keep) KEEP=1 ;;
	--no-cache) NOCACHE=--no-cache ;;
	-h | --help) sed -n "2,21p" "$0"; exit 0 ;;
	*) echo "check.sh: unknown option '$a'" >&2; exit 2 ;;
	esac
done

[ "$(id -u)" = 0 ] || { echo "check.sh: needs root (chroot, mount)" >&2; exit 77; }
command -v debootstrap >/dev/null || { echo "check.sh: debootstrap missing: apt-get install debootstrap" >&2; exit 77; }
command -v python3 >/dev/null || { echo "check.sh: python3 missing" >&2; exit 77; }

RT=
MOTO_PID=
# Every mount under the runtime root (proc, a FUSE mount a failed smoke run left), deepest first.
umount_rt() {
	local m
	[ -n "$RT" ] || return 0
	for m in $(awk -v r="$RT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}
finish() {
	local rc=$?
	if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; fi
	umount_rt
	if [ -z "$KEEP" ] && [ -d "$WORK" ]; then
		# Only when nothing is mounted below (a bound /proc must never be deleted through).
		if ! awk -v w="$WORK" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
			rm -rf "$WORK"
		fi
	fi
	exit $rc
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

t0=$(date +%s)
INFO=$CACHE/info.json
python3 "$SRC/tests/container/dockerfile_chroot.py" --dockerfile "$SRC/Dockerfile" --context "$SRC" \
	--cache "$CACHE" --work "$WORK" --info "$INFO" $NOCACHE || { echo "FAIL: the Dockerfile's steps did not all succeed"; exit 1; }
t1=$(date +%s)
ok "all Dockerfile steps ran ($((t1 - t0)) s)"

RT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][-1]["root"])' "$INFO")
ENTRY=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["entrypoint"] or []))' "$INFO")
mount -t proc proc "$RT/proc"

# Run a command in the runtime chroot with the image's environment only.
in_rt() {
	chroot "$RT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root FERRY_CONFIG=/etc/ferry/pipeline.ini "$@"
}

if out=$(in_rt ferry --version 2>&1); then ok "ferry --version: $out"; else bad "ferry --version exited $?: $out"; fi
if out=$(in_rt ferry --help 2>&1); then
	ok "ferry --help ($(printf '%s\n' "$out" | wc -l) lines):"
	printf '%s\n' "$out" | sed 's/^/    | /'
else
	bad "ferry --help exited $?: $out"
fi

missing=$(in_rt sh -c 'for f in /usr/bin/ferry /usr/bin/ferryfs /usr/lib/ferry/*.so; do
	[ -e "$f" ] || continue; ldd "$f" | sed -n "s|^|$f: |; /not found/p"; done' 2>&1)
if [ -z "$missing" ]; then ok "ldd: every library of ferry, ferryfs and the plugins resolves"; else bad "ldd: $missing"; fi
plugins=$(in_rt sh -c 'cd /usr/lib/ferry && ls *.so' 2>/dev/null | grep -v '^libferry.so$' | tr '\n' ' ')
if [ -n "$plugins" ]; then ok "plugins installed: $plugins"; else bad "no plugins under /usr/lib/ferry"; fi
if in_rt test -x /usr/bin/ferryfs; then ok "ferryfs installed"; else bad "/usr/bin/ferryfs missing"; fi

if [ "$ENTRY" = "/usr/bin/tini -s -- /usr/bin/ferry-entrypoint" ]; then ok "ENTRYPOINT: $ENTRY"; else bad "unexpected ENTRYPOINT '$ENTRY'"; fi
rc=0
out=$(chroot "$RT" /usr/bin/env -i PATH=/usr/bin:/bin $ENTRY 2>&1) || rc=$?
case "$rc:$out" in
2:*"'BUCKET_NAME'"*) ok "entrypoint with an empty environment: exit 2, names 'BUCKET_NAME'" ;;
*) bad "entrypoint with an empty environment: exit $rc: $out" ;;
esac

# The installed default config must load with the installed plugin directory.
rc=0
out=$(in_rt env BUCKET_NAME=b ORG_ID=1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y \
	AWS_ENDPOINT_URL_S3=http://127.0.0.1:9 ferry list 2>&1) || rc=$?
if [ $rc = 0 ]; then
	ok "ferry list of /etc/ferry/pipeline.ini:"
	printf '%s\n' "$out" | sed 's/^/    | /'
else
	bad "ferry list of /etc/ferry/pipeline.ini exited $rc:"
	printf '%s\n' "$out" | sed 's/^/    | /'
fi

for f in /usr/bin/gcc /usr/bin/make /src /out; do
	if in_rt test -e "$f"; then bad "build leftover in the runtime image: $f"; fi
done

umount_rt
total=$(du -sx --block-size=1M "$RT" | cut -f1)
own=$(cd "$RT" && du -sc --block-size=1K usr/bin/ferry usr/bin/ferryfs usr/bin/ferry-entrypoint usr/lib/ferry usr/share/ferry 2>/dev/null | tail -1 | cut -f1)
build_total=$(du -sx --block-size=1M "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][0]["root"])' "$INFO")" | cut -f1)

# Smoke run: the image's ENTRYPOINT, with the image's environment and WORKDIR, runs the
# default pipeline (/etc/ferry/pipeline.ini) against moto_server on the host's loopback,
# with a real FUSE mount inside the chroot; the schedule rows must be in the object after.
smoke() {
	local port i rc n wd
	python3 -c 'import moto, boto3' 2>/dev/null || { echo "skip: smoke run (python moto/boto3 missing)"; return 0; }
	[ -c /dev/fuse ] || { echo "skip: smoke run (no /dev/fuse)"; return 0; }
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	python3 -m moto.server -H 127.0.0.1 -p "$port" >"$CACHE/smoke-moto.log" 2>&1 &
	MOTO_PID=$!
	for i in $(seq 1 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$port/moto-api/" && break
		sleep 0.2
	done
	curl -fs -X PUT "http://127.0.0.1:$port/ferry-smoke" -o /dev/null || { bad "smoke: moto_server did not start"; return 0; }
	python3 "$SRC/tests/gen_orgdb.py" "$CACHE/smoke.db" --contacts 5000 --seed 8 >/dev/null
	# A content type, or moto parses the binary body as a form and may hang.
	curl -fs -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$CACHE/smoke.db" \
		"http://127.0.0.1:$port/ferry-smoke/org-data/42.db" -o /dev/null || { bad "smoke: upload failed"; return 0; }
	[ -c "$RT/dev/fuse" ] || mknod -m 0666 "$RT/dev/fuse" c 10 229
	mount -t proc proc "$RT/proc"
	wd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][-1]["workdir"])' "$INFO")
	mapfile -t img_env < <(python3 -c 'import json,sys; [print("%s=%s" % kv) for kv in json.load(open(sys.argv[1]))["stages"][-1]["env"].items()]' "$INFO")
	rc=0
	chroot "$RT" /usr/bin/env -i "${img_env[@]}" BUCKET_NAME=ferry-smoke ORG_ID=42 \
		AWS_ACCESS_KEY_ID=AKIAFERRYSMOKE0001 AWS_SECRET_ACCESS_KEY=ferrySmokeSecret/0123456789 \
		AWS_REGION=us-east-1 AWS_ENDPOINT_URL_S3="http://127.0.0.1:$port" \
		/bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$wd" $ENTRY >"$CACHE/smoke.log" 2>&1 || rc=$?
	if [ $rc = 0 ]; then
		ok "smoke run: the ENTRYPOINT ran the default pipeline against moto_server (exit 0):"
		grep -E '^(stage|lock|mount|pull|schedule|push|unlock) ' "$CACHE/smoke.log" | sed 's/^/    | /'
	else
		bad "smoke run: the ENTRYPOINT exited $rc:"
		grep -v 'warn schedule contacts' "$CACHE/smoke.log" | tail -25 | sed 's/^/    | /'
	fi
	if awk -v r="$RT/" 'index($2, r) == 1 && $3 ~ /fuse/ { found = 1 } END { exit !found }' /proc/mounts; then
		bad "smoke run: a FUSE mount was left under the runtime root"
	fi
	if grep -qF -e ferrySmokeSecret -e AKIAFERRYSMOKE0001 "$CACHE/smoke.log"; then bad "smoke run: credentials in the log"; fi
	n=$(AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y python3 - "$port" <<'PY' 2>&1
import sqlite3, sys, tempfile, boto3, botocore.config
c = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % sys.argv[1], region_name="us-east-1",
                 config=botocore.config.Config(response_checksum_validation="when_required"))
try:
    c.head_object(Bucket="ferry-smoke", Key="org-data/42.db.lock")
    print("lock object still there")
    sys.exit(1)
except c.exceptions.ClientError:
    pass
f = tempfile.NamedTemporaryFile(suffix=".db")
c.download_file("ferry-smoke", "org-data/42.db", f.name)
print(sqlite3.connect(f.name).execute("select count(*) from email_schedules").fetchone()[0])
PY
	) || { bad "smoke run: $n"; return 0; }
	ok "smoke run: org-data/42.db on S3 holds $n email_schedules rows, the lock is gone"
}
smoke
umount_rt
if [ -n "${MOTO_PID:-}" ]; then kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; fi
MOTO_PID=

echo "size: runtime image (debian:12-slim emulation + packages + ferry) ${total} MiB; ferry's own files ${own} KiB; build stage ${build_total} MiB (discarded)"
if [ $fails -eq 0 ]; then
	echo "container check: all passed ($(($(date +%s) - t0)) s)"
else
	echo "container check: $fails failed"
	exit 1
fi
