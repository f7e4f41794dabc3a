#!/bin/bash
# t1107: lock race through core/lock.c (tests/tools/lockrace): one holder per round, no overlaps.
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


RACE=$FERRY_BUILD/tests/tools/lockrace
[ -x "$RACE" ] || fail "lockrace not built ($RACE)"
moto_start_serial

"$RACE" -m round -n 4 -r 20 -k race/round.lock -T 300 >"$T/r1" 2>"$T/e1" || { cat "$T/r1" "$T/e1" >&2; fail "round race failed"; }
cat "$T/r1" >&2
assert_contains "$T/r1" "holds=20 rounds_not_one_holder=0 overlaps=0 bad_generation=0 errors=0"

"$RACE" -m takeover -n 4 -r 10 -k race/takeover.lock -T 300 >"$T/r2" 2>"$T/e2" || { cat "$T/r2" "$T/e2" >&2; fail "takeover race failed"; }
cat "$T/r2" >&2
assert_contains "$T/r2" "holds=10 rounds_not_one_holder=0 overlaps=0 bad_generation=0 errors=0"

"$RACE" -m wait -n 4 -r 10 -b 20 -c 200 -k race/wait.lock -T 300 >"$T/r3" 2>"$T/e3" || { cat "$T/r3" "$T/e3" >&2; fail "waiting race failed"; }
cat "$T/r3" >&2
assert_contains "$T/r3" "holds=40 overlaps=0 errors=0"

s3x list race/ | grep -q . && fail "race left a lock behind: $(s3x list race/)"
assert_no_secrets "$T"
