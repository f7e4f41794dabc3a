#!/bin/bash
# t1109: lock stage config errors (exit 2 with file:line and key, before anything runs) and the deadline/ttl rule.
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
write_ini "$T/a.ini" a

# the pipeline deadline must stay below the lock's ttl (DESIGN §2)
sed -i 's/^name = a$/name = a\ndeadline = 2h/' "$T/a.ini"
assert_exit 2 ferry -c "$T/a.ini" run 2>"$T/e1"
assert_contains "$T/e1" "a.ini:"
assert_contains "$T/e1" "ttl"
assert_contains "$T/e1" "deadline"
s3x exists "$LOCK" && fail "a refused config took the lock"
assert_exit 2 ferry -c "$T/a.ini" run -o lock.ttl=3h -o lock.margin=3h 2>"$T/e2"
assert_contains "$T/e2" "margin"
# within the margin: a warning, and the run goes ahead
ferry -c "$T/a.ini" run -o lock.ttl=2h30s 2>"$T/e3" || { cat "$T/e3" >&2; fail "deadline inside the margin refused"; }
assert_contains "$T/e3" "within the lock's safety margin"

write_ini "$T/b.ini" b
assert_exit 2 ferry -c "$T/b.ini" run -o lock.backoff_base=3s 2>"$T/e4"
assert_contains "$T/e4" "backoff_cap"
assert_exit 2 ferry -c "$T/b.ini" run -o lock.key=/abs 2>"$T/e5"
assert_contains "$T/e5" "key"
assert_exit 2 ferry -c "$T/b.ini" run -o lock.ttl=1s 2>"$T/e6"
assert_contains "$T/e6" "ttl"
assert_exit 2 ferry -c "$T/b.ini" run -o lock.max_wait=soon 2>"$T/e7"
assert_contains "$T/e7" "max_wait"
assert_eq "" "$(s3x list)" "bucket after refused configs"

# no credentials: a clear error, no crash, no secret
( unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; ferry -c "$T/b.ini" run >"$T/o8" 2>"$T/e8" ); rc=$?
[ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "run without credentials exited $rc"
assert_contains "$T/e8" "credentials"

assert_no_secrets "$T"
valgrind_verdict
