#!/bin/bash
# t1108: four ferry processes race to take over one expired lock: exactly one wins, the rest exit 3.
. "$(dirname "$0")/../lib.sh"

LOCK=org-data/42.db.lock
# s3x OP ARGS: direct S3 access for assertions through `ferry s3` (signed: moto refuses
# unsigned reads), with a config holding only [s3] so no pipeline INI is involved.
#   get KEY FILE | put KEY FILE | rm KEY | exists KEY | etag KEY | list [PREFIX]
s3x() {
	local op=$1 out rc=0
	local F=("$FERRY_BIN" -c "$T/s3only.ini" s3)
	shift
	[ -f "$T/s3only.ini" ] || printf '[s3]\nendpoint = ${AWS_ENDPOINT_URL_S3}\nbucket = ${BUCKET_NAME}\n' >"$T/s3only.ini"
	case $op in
	get) "${F[@]}" get "$1" "$2" 2>"$T/s3x.err" || return 1 ;;
	put) "${F[@]}" put "$2" "$1" >/dev/null 2>"$T/s3x.err" || fail "s3x put $1: $(cat "$T/s3x.err")" ;;
	rm) "${F[@]}" rm "$1" >/dev/null 2>"$T/s3x.err" || fail "s3x rm $1: $(cat "$T/s3x.err")" ;;
	exists|etag)
		out=$("${F[@]}" head "$1" 2>"$T/s3x.err") || rc=$?
		if [ $rc != 0 ]; then
			grep -q " 404 " "$T/s3x.err" && return 1
			fail "s3x head $1: $(cat "$T/s3x.err")"
		fi
		if [ "$op" = etag ]; then printf '%s\n' "$out" | awk '/^etag:/ { print $2 }'; fi
		return 0 ;;
	list)
		out=$("${F[@]}" ls -r "${1:-}" 2>"$T/s3x.err") || fail "s3x ls: $(cat "$T/s3x.err")"
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
s3x put "$LOCK" "$T/dead"

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
s3x get "$LOCK" "$T/now"
assert_eq 8 "$(body_field "$T/now" generation)" "generation after the takeover"

assert_no_secrets "$T"
valgrind_verdict
