#!/bin/bash
# t1108: four ferry processes race to take over one expired lock: exactly one wins, the rest exit 3.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
# s3py OP ARGS: direct S3 access for assertions through `ferry s3` (signed: moto refuses
# unsigned reads), with a config holding only [s3] so no pipeline INI is involved.
#   get KEY FILE | put KEY FILE | rm KEY | exists KEY | etag KEY | list [PREFIX]
s3py() {
	local op=$1 out rc=0
	local F=("$FERRY_BIN" -c "$T/s3only.ini" s3)
	shift
	[ -f "$T/s3only.ini" ] || printf '[s3]\nendpoint = ${AWS_ENDPOINT_URL_S3}\nbucket = ${BUCKET_NAME}\n' >"$T/s3only.ini"
	case $op in
	get) "${F[@]}" get "$1" "$2" 2>"$T/s3py.err" || return 1 ;;
	put) "${F[@]}" put "$2" "$1" >/dev/null 2>"$T/s3py.err" || fail "s3py put $1: $(cat "$T/s3py.err")" ;;
	rm) "${F[@]}" rm "$1" >/dev/null 2>"$T/s3py.err" || fail "s3py rm $1: $(cat "$T/s3py.err")" ;;
	exists|etag)
		out=$("${F[@]}" head "$1" 2>"$T/s3py.err") || rc=$?
		if [ $rc != 0 ]; then
			grep -q " 404 " "$T/s3py.err" && return 1
			fail "s3py head $1: $(cat "$T/s3py.err")"
		fi
		if [ "$op" = etag ]; then printf '%s\n' "$out" | awk '/^etag:/ { print $2 }'; fi
		return 0 ;;
	list)
		out=$("${F[@]}" ls -r "${1:-}" 2>"$T/s3py.err") || fail "s3py ls: $(cat "$T/s3py.err")"
		[ -z "$out" ] || printf '%s\n' "$out" | awk '{ print $4 }' ;;
	esac
}

# write_ini FILE NAME [LOCK-KEY-LINES]: a lock/unlock pipeline named NAME.
write_ini() {
	mkdir -p "$T/state-$2"
	cat >"$1" <<EOF
[pipeline]
name = $2
state_dir = $T/state-$2

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = \${BUCKET_NAME}

[stage lock]
plugin = lock
key = $LOCK
${3:-}

[stage unlock]
plugin = unlock
EOF
}

# body_field FILE FIELD: one field of a JSON lock body.
body_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# moto_start_serial [BUCKET]: moto_start, but moto's WSGI app serialised by one lock.
# moto 5.2.1 checks If-None-Match / If-Match and then writes without a lock
# (moto/s3/responses.py, put_object), so concurrent conditional PUTs can both succeed;
# S3 makes them atomic. Races against moto are only meaningful serialised.
moto_start_serial() {
	local bucket=${1:-ferry-test} n=0
	python3 -c 'import moto' 2>/dev/null || skip "python moto missing"
	MOTO_PORT=$(free_port)
	python3 - "$MOTO_PORT" >"$T/moto.log" 2>&1 <<'PY' &
import signal, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
app = DomainDispatcherApplication(create_backend_app)
one = threading.Lock()
def serial(environ, start_response):
    with one:
        return list(app(environ, start_response))
run_simple('127.0.0.1', int(sys.argv[1]), serial, threaded=True)
PY
	MOTO_PID=$!
	at_exit "kill $MOTO_PID; wait $MOTO_PID"
	while ! curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; do
		kill -0 "$MOTO_PID" 2>/dev/null && [ $n -lt 150 ] || { cat "$T/moto.log" >&2; fail "moto (serialised) did not start"; }
		sleep 0.1
		n=$((n + 1))
	done
	export MOTO_PORT AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT BUCKET_NAME=$bucket
	moto_mkbucket "$bucket"
}

moto_start_serial
for i in 1 2 3 4; do
	write_ini "$T/r$i.ini" "racer$i" "max_wait = 0s"
done

python3 - "$T/dead" <<'PY'
import json, sys, datetime
now = datetime.datetime.utcnow()
old = (now - datetime.timedelta(hours=2)).strftime('%Y-%m-%dT%H:%M:%SZ')
exp = (now - datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')
json.dump({'owner': 'ferry dead', 'instance_id': 'gone', 'pid': 1, 'nonce': 'ab' * 32,
           'generation': 7, 'acquired_at': old, 'expires_at': exp, 'ttl_s': 3600,
           'timestamp': old, 'timeout': 3600}, open(sys.argv[1], 'w'))
PY
s3py put "$LOCK" "$T/dead"

pids=()
for i in 1 2 3 4; do
	ferry -c "$T/r$i.ini" run lock 2>"$T/err$i" &
	pids+=($!)
done
wins=0 losses=0
for i in 1 2 3 4; do
	rc=0
	wait "${pids[$((i - 1))]}" || rc=$?
	case $rc in
	0) wins=$((wins + 1)) ;;
	3) losses=$((losses + 1)); assert_contains "$T/err$i" "cannot take lock" ;;
	*) cat "$T/err$i" >&2; fail "racer $i exited $rc" ;;
	esac
done
assert_eq 1 "$wins" "winners"
assert_eq 3 "$losses" "losers"
s3py get "$LOCK" "$T/now"
assert_eq 8 "$(body_field "$T/now" generation)" "generation after the takeover"

assert_no_secrets "$T"
valgrind_verdict
