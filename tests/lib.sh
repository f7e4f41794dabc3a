# tests/lib.sh: shared helpers for integration tests (sourced by tests/integration/*.sh).
# Gives: a private temp dir ($T) removed at exit, moto_server on a free 127.0.0.1 port,
# the AWS_* environment pointing at it, assertions, and cleanup of mounts and servers on
# every exit path. A test exits 0 (pass), 77 (skip) or anything else (fail).
set -u
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(cd "$TESTS_DIR/.." && pwd)
FERRY_BUILD=${FERRY_BUILD:-$SRC_DIR/build}
FERRY_BIN=$FERRY_BUILD/ferry
FERRYFS_BIN=$FERRY_BUILD/ferryfs
T=$(mktemp -d "/tmp/ferry-test.${FERRY_TEST_RUN:+$FERRY_TEST_RUN.}XXXXXX")
chmod 700 "$T"
# valgrind's logs (make valgrind) live beside $T, not in it: tests hash $T
VG_LOGS=$T.vg
_cleanup_cmds=()

# Credentials used by every test: distinctive so a scan can prove they never leak.
export AWS_ACCESS_KEY_ID=AKIAFERRYTESTKEY0001
export AWS_SECRET_ACCESS_KEY=ferryTestSecret/DoNotLeak+0123456789abcdef
export AWS_REGION=us-east-1
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_PROFILE 2>/dev/null || true

_TEST_KEY_ID=$AWS_ACCESS_KEY_ID
_TEST_SECRET=$AWS_SECRET_ACCESS_KEY
_secret_ok=("/nonexistent")
# secret_ok FILE...: FILE holds the test credentials on purpose (not a leak).
secret_ok() { _secret_ok+=("$@"); }

# Run a command at exit (in reverse order of registration).
at_exit() { _cleanup_cmds=("$*" "${_cleanup_cmds[@]}"); }

_lib_exit() {
	local rc=$?
	local c
	for c in "${_cleanup_cmds[@]}"; do
		eval "$c" >/dev/null 2>&1 || true
	done
	# Never leave a mount behind under our temp dir.
	local m
	for m in $(awk -v t="$T" 'index($2, t) == 1 { print $2 }' /proc/mounts 2>/dev/null); do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	# Nothing a test leaves behind (journal, state, logs, caches) may hold the credentials,
	# except files the test wrote them into on purpose (secret_ok FILE).
	local leaks
	leaks=$(grep -rlaF -e "$_TEST_SECRET" -e "$_TEST_KEY_ID" "$T" "$VG_LOGS" 2>/dev/null |
		grep -vxF -f <(printf '%s\n' "${_secret_ok[@]}") || true)
	if [ -n "$leaks" ]; then
		echo "FAIL: test credentials found in: $leaks" >&2
		[ $rc -eq 0 ] && rc=1
	fi
	# valgrind's verdict on every wrapped process, the ones stopped by the cleanup too
	local f
	for f in "$VG_LOGS"/valgrind.*.log; do
		[ -s "$f" ] || continue
		cat "$f" >&2
		echo "FAIL: valgrind reported errors ($f)" >&2
		[ $rc -eq 0 ] && rc=1
	done
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "kept $T" >&2
	else
		rm -rf "$T" "$VG_LOGS"
	fi
	exit $rc
}
trap _lib_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
note() { echo "# $*" >&2; }

assert_eq() { # assert_eq EXPECTED ACTUAL [what]
	[ "$1" = "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}
assert_contains() { # assert_contains FILE-OR-TEXT NEEDLE
	if [ -f "$1" ]; then
		grep -qF -- "$2" "$1" || { sed 's/^/    | /' "$1" >&2; fail "'$1' lacks '$2'"; }
	else
		case "$1" in *"$2"*) ;; *) fail "text lacks '$2': $1" ;; esac
	fi
}
assert_not_contains() { # assert_not_contains FILE NEEDLE
	if grep -qF -- "$2" "$1"; then sed 's/^/    | /' "$1" >&2; fail "'$1' contains '$2'"; fi
}
assert_exit() { # assert_exit CODE CMD...: runs CMD, checks its exit status
	local want=$1; shift
	local got=0
	"$@" || got=$?
	[ "$got" = "$want" ] || fail "'$*' exited $got, expected $want"
}

# Under make valgrind (FERRY_VALGRIND=1): $T/bin/ferry and $T/bin/ferryfs run the real
# binaries under valgrind (exec'd, so a pid is the program's own), logging to $VG_LOGS, and
# FERRYFS_BIN is that ferryfs; valgrind_verdict (also run at exit) fails on any log. A run
# meant to be SIGKILLed by a fault point (FERRY_FAILPOINT=NAME:kill) is checked for memory
# errors but not for leaks: valgrind may still report what its other threads held at the
# kill (seen: the MD5 context of a part upload in flight, t3006).
_vg_wrapper() { # NAME BINARY: prints the wrapper's path
	mkdir -p "$T/bin" "$VG_LOGS"
	cat >"$T/bin/$1" <<SH
#!/bin/sh
leaks=--leak-check=full
case "\${FERRY_FAILPOINT:-}" in *:kill*) leaks=--leak-check=no ;; esac
exec valgrind -q \$leaks --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \\
	--error-exitcode=97 --log-file="$VG_LOGS/valgrind.%p.log" "$2" "\$@"
SH
	chmod +x "$T/bin/$1"
	echo "$T/bin/$1"
}
_FERRY_RUN=$FERRY_BIN
if [ -n "${FERRY_VALGRIND:-}" ]; then
	_FERRY_RUN=$(_vg_wrapper ferry "$FERRY_BIN")
	FERRYFS_BIN=$(_vg_wrapper ferryfs "$FERRYFS_BIN")
fi

# The ferry binary (under valgrind when FERRY_VALGRIND=1).
ferry() { "$_FERRY_RUN" "$@"; }
# ferry_on_path: a `ferry` command in $T/bin, first on PATH, for scripts that run ferry
# themselves (entrypoint.sh), valgrind-wrapped like ferry() above.
ferry_on_path() {
	mkdir -p "$T/bin"
	[ -n "${FERRY_VALGRIND:-}" ] || ln -sf "$FERRY_BIN" "$T/bin/ferry"
	export PATH="$T/bin:$PATH"
}

# ferry_bg ARGS...: start ferry in the background (FERRY_PID is the ferry process itself,
# so signals reach it, not a wrapper shell).
ferry_bg() {
	"$_FERRY_RUN" "$@" &
	FERRY_PID=$!
}
# Fails the test when any valgrind log has content (call at the end of a test).
valgrind_verdict() {
	[ -n "${FERRY_VALGRIND:-}" ] || return 0
	local f
	for f in "$VG_LOGS"/valgrind.*.log; do
		[ -s "$f" ] && { cat "$f" >&2; fail "valgrind reported errors ($f)"; }
	done
	return 0
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# _moto_wait PID LOG: the server binds port 0 itself (no race with tests running side by
# side for a port picked in advance) and logs "Running on http://127.0.0.1:PORT"; wait for
# that line and for the server to answer, then set MOTO_PORT.
_moto_wait() {
	local pid=$1 log=$2 n=0
	MOTO_PORT=
	while [ $n -lt 300 ]; do
		kill -0 "$pid" 2>/dev/null || break
		[ -n "$MOTO_PORT" ] || MOTO_PORT=$(sed -n 's|.*Running on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$log" | head -n 1)
		if [ -n "$MOTO_PORT" ] && curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; then
			export MOTO_PORT AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
			return 0
		fi
		sleep 0.1
		n=$((n + 1))
	done
	cat "$log" >&2
	fail "moto_server did not start"
}

# moto_start [BUCKET]: starts moto_server on a free loopback port, creates BUCKET
# (default "ferry-test"), exports MOTO_PORT, AWS_ENDPOINT_URL_S3 and BUCKET_NAME.
moto_start() {
	local bucket=${1:-ferry-test}
	command -v python3 >/dev/null || skip "python3 missing"
	python3 -c 'import moto' 2>/dev/null || skip "python moto missing (pip install 'moto[server]')"
	python3 -m moto.server -H 127.0.0.1 -p 0 >"$T/moto.log" 2>&1 &
	MOTO_PID=$!
	at_exit "kill $MOTO_PID; wait $MOTO_PID"
	_moto_wait "$MOTO_PID" "$T/moto.log"
	export BUCKET_NAME=$bucket
	moto_mkbucket "$bucket"
}

# moto_start_serial [BUCKET]: moto_start, but moto's WSGI app serialised by one lock.
# moto 5.2.1 checks If-None-Match / If-Match and then writes without a lock
# (moto/s3/responses.py, put_object), so concurrent conditional PUTs can both succeed;
# S3 makes them atomic. Races against moto are only meaningful serialised.
moto_start_serial() {
	local bucket=${1:-ferry-test}
	python3 -c 'import moto' 2>/dev/null || skip "python moto missing"
	python3 - >"$T/moto.log" 2>&1 <<'PY' &
import signal, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
app = DomainDispatcherApplication(create_backend_app)
one = threading.Lock()
def serial(environ, start_response):
    with one:
        return list(app(environ, start_response))
run_simple('127.0.0.1', 0, serial, threaded=True)
PY
	MOTO_PID=$!
	at_exit "kill $MOTO_PID; wait $MOTO_PID"
	_moto_wait "$MOTO_PID" "$T/moto.log"
	export BUCKET_NAME=$bucket
	moto_mkbucket "$bucket"
}

# wait_ready PID FILE LOG NAME: a helper server started in the background (PID) writes FILE
# once it listens; fail with its LOG when it dies first or takes more than 10 s.
wait_ready() {
	local pid=$1 ready=$2 log=$3 name=$4 n=0
	while [ ! -s "$ready" ] && [ $n -lt 200 ]; do
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "$name died"; }
		sleep 0.05
		n=$((n + 1))
	done
	[ -s "$ready" ] || fail "$name did not start"
}

moto_mkbucket() { curl -fs -X PUT "http://127.0.0.1:$MOTO_PORT/$1" -o /dev/null || fail "cannot create bucket '$1'"; }

# Raw object access for assertions, straight to moto (not through a test proxy). moto
# refuses anonymous reads of objects written with credentials but does not verify
# signatures, so a well-formed Authorization header with a dummy signature is enough.
_s3_raw() {
	curl -fs -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" \
		"$@"
}
s3_raw_put() { _s3_raw -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" "http://127.0.0.1:$MOTO_PORT/$BUCKET_NAME/$1" -o /dev/null; }
s3_raw_get() { _s3_raw "http://127.0.0.1:$MOTO_PORT/$BUCKET_NAME/$1" -o "$2"; }
# 0 when the object exists, 1 when it does not; any other answer fails the test
s3_raw_exists() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' -I -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" \
		"http://127.0.0.1:$MOTO_PORT/$BUCKET_NAME/$1")
	case "$code" in 200) return 0 ;; 404) return 1 ;; *) fail "HEAD '$1' answered $code" ;; esac
}
s3_raw_rm() { _s3_raw -X DELETE "http://127.0.0.1:$MOTO_PORT/$BUCKET_NAME/$1" -o /dev/null; }

# Fails when any file under the given paths holds a test credential.
assert_no_secrets() {
	local hits
	hits=$(grep -rlaF -e "$AWS_SECRET_ACCESS_KEY" -e "$AWS_ACCESS_KEY_ID" "$@" 2>/dev/null | grep -v '/moto.log$' || true)
	[ -z "$hits" ] || fail "credentials found in: $hits"
}

# A state dir's content, for "changed nothing" checks.
tree_digest() { (cd "$1" && find . -printf '%p %s %m %T@\n' | sort && find . -type f -exec sha256sum {} + | sort) 2>/dev/null | sha256sum | cut -d' ' -f1; }

# ferryfs_mount MOUNTPOINT SOURCE [OPTIONS]: ferryfs in the foreground as a background job
# (FFS_PID), its log in $T/ffs.log, unmounted and stopped at exit; waits until mounted.
ferryfs_mount() {
	local mp=$1 src=$2 opts=${3:-} n=0
	mkdir -p "$mp"
	"$FERRYFS_BIN" "$src" "$mp" -f -o "cache_dir=$T/cache${opts:+,$opts}" 2>>"$T/ffs.log" &
	FFS_PID=$!
	at_exit "fusermount3 -u $mp; kill $FFS_PID; wait $FFS_PID"
	until mountpoint -q "$mp"; do
		n=$((n + 1)); [ $n -lt 100 ] || fail "ferryfs did not mount: $(cat "$T/ffs.log")"
		kill -0 "$FFS_PID" 2>/dev/null || fail "ferryfs exited: $(cat "$T/ffs.log")"
		sleep 0.1
	done
}

# ferryfs_umount MOUNTPOINT: unmounts what ferryfs_mount mounted; ferryfs must exit 0.
ferryfs_umount() {
	fusermount3 -u "$1" || fail "unmount of $1 failed"
	local rc=0; wait "$FFS_PID" || rc=$?
	assert_eq 0 "$rc" "ferryfs exit status after unmount"
}

# Requires /dev/fuse and fusermount3 (else the test is skipped).
need_fuse() {
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	command -v fusermount3 >/dev/null || skip "fusermount3 missing"
	[ -x "$FERRYFS_BIN" ] || skip "ferryfs not built"
}

# schedule_ini FILE DB: a pipeline of the schedule stage alone on DB, state in $T/state,
# today pinned to 2026-03-02, the data files of conf/.
schedule_ini() {
	cat >"$1" <<INI
[pipeline]
state_dir = $T/state

[stage schedule]
plugin = schedule
db = $2
today = 2026-03-02
state_rules = $SRC_DIR/conf/state_rules.csv
zip_states = $SRC_DIR/conf/zip3_states.csv
INI
}

# pipeline_ini FILE [STATE_DIR]: the [pipeline] (state in STATE_DIR, default $T/state) and
# [s3] (moto, from the environment) sections; the test appends its stages (cat >>FILE).
pipeline_ini() {
	cat >"$1" <<INI
[pipeline]
state_dir = ${2:-$T/state}

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}

INI
}
