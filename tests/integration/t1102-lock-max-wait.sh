#!/bin/bash
# t1102: a held lock makes a second pipeline wait max_wait, then exit 3 naming holder and expiry; the lock stays intact.
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

moto_start
write_ini "$T/a.ini" holder
write_ini "$T/b.ini" waiter "max_wait = 1500ms
backoff_base = 100ms
backoff_cap = 400ms"

ferry -c "$T/a.ini" run lock 2>"$T/err1" || { cat "$T/err1" >&2; fail "holder could not lock"; }
before=$(s3x etag "$LOCK")
s3x get "$LOCK" "$T/body"
expires=$(body_field "$T/body" expires_at)

assert_exit 3 ferry -c "$T/b.ini" run 2>"$T/err2"
assert_contains "$T/err2" "cannot take lock '$LOCK'"
assert_contains "$T/err2" "held by 'ferry holder'"
assert_contains "$T/err2" "until $expires"
assert_not_contains "$T/err2" "released lock"
assert_eq "$before" "$(s3x etag "$LOCK")" "lock etag after the waiter gave up"

# once the holder releases, the waiter gets it
ferry -c "$T/a.ini" run unlock 2>"$T/err3" || { cat "$T/err3" >&2; fail "holder could not unlock"; }
ferry -c "$T/b.ini" run 2>"$T/err4" || { cat "$T/err4" >&2; fail "waiter failed after release"; }
assert_contains "$T/err4" "acquired lock"
s3x exists "$LOCK" && fail "lock left behind"

assert_no_secrets "$T"
valgrind_verdict
