#!/bin/bash
# t1105: `ferry lock status` and `ferry lock break [--yes]`.
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

ferry -c "$T/a.ini" lock status >"$T/s0" 2>"$T/e0" || fail "status of a free lock failed"
assert_contains "$T/s0" "key:         $LOCK"
assert_contains "$T/s0" "free"

ferry -c "$T/a.ini" run lock 2>"$T/e1" || { cat "$T/e1" >&2; fail "run lock failed"; }
ferry -c "$T/a.ini" lock status >"$T/s1" 2>"$T/e1" || fail "status failed"
assert_contains "$T/s1" "state:       held"
assert_contains "$T/s1" "holder:      ferry a"
assert_contains "$T/s1" "instance:    $(hostname)"
assert_contains "$T/s1" "generation:  1"
assert_contains "$T/s1" "pid:"
assert_contains "$T/s1" "by server time"
assert_contains "$T/s1" "legacy:      no"
etag=$(s3x etag "$LOCK")
assert_contains "$T/s1" "etag:        $etag"

# break without --yes refuses (exit 2) and leaves it
assert_exit 2 ferry -c "$T/a.ini" lock break 2>"$T/e2" >"$T/s2"
assert_contains "$T/e2" "--yes"
s3x exists "$LOCK" || fail "break without --yes removed the lock"

# --key names another lock; unknown verbs are usage errors
ferry -c "$T/a.ini" lock status --key other/x.lock >"$T/s3" 2>&1 || fail "status --key failed"
assert_contains "$T/s3" "key:         other/x.lock"
assert_contains "$T/s3" "free"
assert_exit 2 ferry -c "$T/a.ini" lock frobnicate

ferry -c "$T/a.ini" lock break --yes >"$T/s4" 2>"$T/e4" || { cat "$T/e4" >&2; fail "break --yes failed"; }
assert_contains "$T/s4" "removed lock '$LOCK'"
s3x exists "$LOCK" && fail "break --yes left the lock"
ferry -c "$T/a.ini" lock break --yes >"$T/s5" 2>&1 || fail "break of a free lock failed"
assert_contains "$T/s5" "nothing to break"

assert_no_secrets "$T"
valgrind_verdict
