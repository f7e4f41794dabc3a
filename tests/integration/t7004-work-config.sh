#!/usr/bin/env bash
# t7004: `ferry work` refuses a config it cannot run a fleet with (exit 2, file, line and key
# named) before touching any org; --dry-run lists every org through list pagination (1,100
# orgs), names hourly periods, and writes nothing, not even the state dir.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/work.sh"
work_exec_setup 2
export FERRY_STATE_DIR=$T/state

# bad_config EDIT MESSAGE [ARGS]: a copy of $PIPE changed by the sed script EDIT exits 2 with
# MESSAGE, and nothing was created
bad_config() {
	sed -e "$1" "$PIPE" >"$T/bad.ini"
	rc=0
	ferry -c "$T/bad.ini" work --once ${3:-} >"$T/out" 2>"$T/err" || rc=$?
	[ $rc = 2 ] || { cat "$T/err" >&2; fail "'$1' exited $rc, expected 2"; }
	assert_contains "$T/err" "$2"
	[ ! -e "$T/state" ] || fail "'$1' created the state dir"
}
line_of() { grep -n "$1" "$T/bad.ini" | head -1 | cut -d: -f1; }

bad_config '/^\[work\]/,$d' "no [work] section in '$T/bad.ini'"
bad_config 's|^orgs = .*|orgs = org-data/db|' "key 'orgs': 'org-data/db' must hold exactly one '*'"
assert_contains "$T/err" "$T/bad.ini:$(line_of '^orgs')"
bad_config '/^orgs/a period = 5h' "key 'period': must divide a day"
assert_contains "$T/err" "$T/bad.ini:$(line_of '^period')"
bad_config '/^orgs/a period = soon' "key 'period': bad duration 'soon'"
bad_config '/^orgs/a worker = 3' "key 'worker': unknown key in [work]"
bad_config '/^orgs/a workers = 0' "key 'workers': must be 1..64"
bad_config 's|^key = .*|key = org-data/all.lock|' "key 'key': does not depend on \${ORG_ID}"
assert_contains "$T/err" "$T/bad.ini:$(line_of '^key = ')"
bad_config '/^\[stage unlock\]/,/^$/d' "ferry work needs an enabled lock stage and an unlock stage"
bad_config 's|^\[stage act\]|[stage mount]\nplugin = mount\nmountpoint = /mnt/fixed\n\n&|' \
	"key 'mountpoint': is the same for every org, but workers > 1" "--workers 2"
bad_config 's|^\[stage act\]|[stage mount]\nplugin = mount\nmountpoint = /mnt/fixed\n\n&|' \
	"key 'mountpoint': is the same for every org" "-o work.workers=3"
bad_config '' "bad value '0' for --workers" "--workers 0"
bad_config '' "unknown argument '--nope' for work" "--nope"
# one worker may use a fixed mountpoint: the config is fine (dry run)
sed -e 's|^\[stage act\]|[stage mount]\nplugin = mount\nmountpoint = /mnt/fixed\n\n&|' "$PIPE" >"$T/one.ini"
ferry -c "$T/one.ini" work --dry-run >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; fail "one worker, fixed mountpoint"; }

# 1,100 orgs more (a LIST page holds 1,000 keys), one key whose id has a '.', and keys that
# only look alike
python3 - "$MOTO_PORT" "$BUCKET_NAME" "$AWS_ACCESS_KEY_ID" <<'PY'
import http.client, sys
port, bucket, key_id = sys.argv[1:]
c = http.client.HTTPConnection("127.0.0.1", int(port))
auth = "AWS4-HMAC-SHA256 Credential=%s/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" % key_id
keys = ["org-data/bulk%04d.db" % i for i in range(1100)]
keys += ["org-data/bad.id.db", "org-data/o1.db.lock", "org-data/nested/x.db", "other/o9.db"]
for k in keys:
    c.request("PUT", "/%s/%s" % (bucket, k), body=b"x", headers={"Authorization": auth})
    r = c.getresponse(); r.read()
    assert r.status == 200, (k, r.status)
PY
rm -rf "$T/state"
ferry -c "$PIPE" work --dry-run >"$T/out" 2>"$T/err" || { cat "$T/err" >&2; fail "dry run failed"; }
assert_contains "$T/out" "1102 orgs, 1102 due"
assert_eq 1102 "$(grep -cE '^(bulk[0-9]{4}|o[12]) +due$' "$T/out")" "orgs listed"
assert_contains "$T/err" "ignored count=2"   # bad.id and nested/x
[ ! -e "$T/state" ] || fail "the dry run created the state dir"
# hourly periods are named by their UTC hour
before=$(date -u +%Y-%m-%dT%H)
ferry -c "$PIPE" -o work.period=1h work --dry-run >"$T/out" 2>"$T/err" || fail "hourly dry run failed"
after=$(date -u +%Y-%m-%dT%H)
grep -qE "^period ($before|$after): " "$T/out" || fail "hourly period name: $(tail -1 "$T/out")"
