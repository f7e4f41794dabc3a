#!/usr/bin/env bash
# entrypoint.sh refuses to start ferry when a required variable is missing or malformed:
# exit 2, one line naming each variable, no value (credentials) ever printed.
. "$(dirname "$0")/../lib.sh"
ENTRY=$SRC_DIR/entrypoint.sh
[ -x "$FERRY_BIN" ] || skip "ferry not built"
[ -e "$FERRY_BUILD/plugins/exec.so" ] || skip "exec plugin not built"
ferry_on_path

# A pipeline that proves whether ferry ran: it leaves $T/ran behind.
cat >"$T/p.ini" <<INI
[pipeline]
name = entry-env
state_dir = $T/state

[stage mark]
plugin = exec
command = touch $T/ran
INI
export FERRY_CONFIG=$T/p.ini
export BUCKET_NAME=ferry-entry-bucket ORG_ID=4242
REQUIRED="BUCKET_NAME ORG_ID AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY"

entry() { env --default-signal=INT "$ENTRY" "$@"; }

# Positive control first: with everything set ferry runs, so the refusals below can fail.
rc=0
entry >"$T/out" 2>"$T/err" || rc=$?
assert_eq 0 $rc "entrypoint with a complete environment"
[ -e "$T/ran" ] || fail "ferry did not run the pipeline"
assert_contains "$T/err" "info entrypoint starting ferry"

n=0
for v in $REQUIRED; do
	for how in unset empty; do
		rm -f "$T/ran"
		rc=0
		if [ $how = unset ]; then
			env -u "$v" --default-signal=INT "$ENTRY" >"$T/out.$v.$how" 2>"$T/err.$v.$how" || rc=$?
		else
			env "$v=" --default-signal=INT "$ENTRY" >"$T/out.$v.$how" 2>"$T/err.$v.$how" || rc=$?
		fi
		assert_eq 2 $rc "exit status with $v $how"
		assert_contains "$T/err.$v.$how" "missing environment variable '$v'"
		[ ! -e "$T/ran" ] || fail "ferry ran although $v was $how"
		# exactly one complaint: the others were fine
		assert_eq 1 "$(grep -c 'missing environment variable' "$T/err.$v.$how")" "complaints with $v $how"
		n=$((n + 1))
	done
done
note "$n missing-variable cases refused"

# All missing at once: every one named, one line each.
rc=0
env -u BUCKET_NAME -u ORG_ID -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY --default-signal=INT \
	"$ENTRY" >"$T/out.all" 2>"$T/err.all" || rc=$?
assert_eq 2 $rc "exit status with nothing set"
for v in $REQUIRED; do assert_contains "$T/err.all" "'$v'"; done
# Where the secrets belong is said, with no value.
assert_contains "$T/err.all" "fly secrets set AWS_SECRET_ACCESS_KEY=..."

# Malformed values are refused by name, without echoing the value.
rc=0
ORG_ID=../../etc/x entry >"$T/out.org" 2>"$T/err.org" || rc=$?
assert_eq 2 $rc "exit status with ORG_ID containing '/'"
assert_contains "$T/err.org" "bad environment variable 'ORG_ID'"
assert_not_contains "$T/err.org" "../../etc/x"
rc=0
AWS_ENDPOINT_URL_S3=ftp://127.0.0.1:1 entry >"$T/out.ep" 2>"$T/err.ep" || rc=$?
assert_eq 2 $rc "exit status with a non-http endpoint"
assert_contains "$T/err.ep" "bad environment variable 'AWS_ENDPOINT_URL_S3'"
rc=0
FERRY_MODE=bogus entry >"$T/out.mode" 2>"$T/err.mode" || rc=$?
assert_eq 2 $rc "exit status with an unknown FERRY_MODE"
assert_contains "$T/err.mode" "bad FERRY_MODE 'bogus'"
[ ! -e "$T/ran" ] || fail "ferry ran despite a refused environment"

# FERRY_REQUIRED_ENV replaces the list (e.g. a pipeline of exec stages only).
rc=0
FERRY_REQUIRED_ENV="FERRY_T5001_NEEDED" entry >"$T/out.req" 2>"$T/err.req" || rc=$?
assert_eq 2 $rc "exit status with a custom required variable unset"
assert_contains "$T/err.req" "missing environment variable 'FERRY_T5001_NEEDED'"
rc=0
env -u BUCKET_NAME -u ORG_ID -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY FERRY_REQUIRED_ENV= \
	--default-signal=INT "$ENTRY" >"$T/out.none" 2>"$T/err.none" || rc=$?
assert_eq 0 $rc "exit status with no required variables"
[ -e "$T/ran" ] || fail "ferry did not run with FERRY_REQUIRED_ENV empty"

# ferry's own refusal (a config that does not exist) comes back as the entrypoint's status.
rc=0
FERRY_CONFIG=$T/nope.ini entry >"$T/out.cfg" 2>"$T/err.cfg" || rc=$?
assert_eq 2 $rc "exit status with a missing config"
assert_contains "$T/err.cfg" "$T/nope.ini"

assert_no_secrets "$T"
valgrind_verdict
