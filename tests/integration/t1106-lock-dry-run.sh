#!/bin/bash
# t1106: dry-run of lock/unlock says which request it would make and changes nothing (S3, state dir).
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
write_ini "$T/b.ini" b

before=$(tree_digest "$T/state-a")
ferry -c "$T/a.ini" run --dry-run >"$T/o1" 2>"$T/e1" || { cat "$T/e1" >&2; fail "dry-run failed"; }
assert_contains "$T/e1" "lock is free; would create it"
assert_contains "$T/e1" "PUT $LOCK If-None-Match: *"
assert_contains "$T/e1" "would release"
assert_eq "" "$(s3x list)" "bucket after a dry-run"
assert_eq "$before" "$(tree_digest "$T/state-a")" "state dir after a dry-run"

# held by another pipeline: dry-run says it would wait, and touches nothing
ferry -c "$T/b.ini" run lock 2>"$T/e2" || fail "b could not lock"
etag=$(s3x etag "$LOCK")
ferry -c "$T/a.ini" run --dry-run >"$T/o3" 2>"$T/e3" || { cat "$T/e3" >&2; fail "dry-run (held) failed"; }
assert_contains "$T/e3" "lock is held; would wait for it"
assert_contains "$T/e3" "ferry b"
assert_eq "$etag" "$(s3x etag "$LOCK")" "lock after a dry-run"
assert_eq "$LOCK" "$(s3x list)" "bucket after a dry-run (held)"

ferry -c "$T/b.ini" run unlock 2>/dev/null || fail "b could not unlock"
assert_no_secrets "$T"
valgrind_verdict
