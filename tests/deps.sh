#!/usr/bin/env bash
# tests/deps.sh: install what building and testing ferry needs on Debian 12, if missing.
#   bash tests/deps.sh          build + test dependencies
#   bash tests/deps.sh bench    also the peers of the benchmarks (s3fs, rclone, hyperfine)
# Runs apt-get only when something is missing (and only as root; otherwise it says what).
set -u
pkgs="build-essential pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev libssl-dev
      libsqlite3-dev sqlite3 libinih-dev libexpat1-dev libjansson-dev libmicrohttpd-dev curl ca-certificates
      python3 python3-pip python3-yaml procps psmisc tini"
[ "${1:-}" = bench ] && pkgs="$pkgs s3fs rclone hyperfine time"
[ "${1:-}" = check ] && pkgs="$pkgs valgrind clang"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "ferry: missing Debian packages:$missing (run as root: apt-get install$missing)" >&2
		exit 1
	fi
	echo "ferry: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $missing >&2 || {
		echo "ferry: apt-get install failed" >&2; exit 1; }
fi
if ! python3 -c 'import moto.server' 2>/dev/null; then
	echo "ferry: python moto is missing; installing it with pip (moto[server])" >&2
	pip install -q 'moto[server]>=5' 2>/dev/null || pip3 install -q --break-system-packages 'moto[server]>=5' >&2 || {
		echo "ferry: cannot install moto: tests that need an S3 server will be skipped" >&2; }
fi
exit 0
