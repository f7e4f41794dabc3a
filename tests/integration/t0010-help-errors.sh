#!/usr/bin/env bash
# Help an operator can use, and errors that say what to fix:
# - `ferry help CMD` and `CMD --help` for every command, never executing anything (check
#   --help must not probe S3, status --help must not print status); `help stages`, `help
#   stage NAME` with keys, types and defaults; "did you mean" for commands, stages, plugins;
# - a missing ']' named as such; an unknown plugin with file:line and the plugins there;
#   an exec program that does not exist refused by check (file:line, key); a wrong bucket
#   named with the setting and `ferry s3 mb`; `ferry s3 mb` creates it; a refused connection
#   fails fast; a copied pipeline INI finds the shipped rule tables; a bad table path
#   names key and line.
. "$(dirname "$0")/../lib.sh"
moto_start

cat >"$T/p.ini" <<INI
[pipeline]
name = t0010
state_dir = $T/state

[s3]
endpoint = http://127.0.0.1:1
bucket = nowhere

[stage one]
plugin = exec
command = touch $T/ran
INI
for c in run list status check s3 lock work help; do
	ferry -c "$T/p.ini" help "$c" >"$T/h1" 2>&1 || fail "help $c"
	ferry -c "$T/p.ini" "$c" --help >"$T/h2" 2>&1 || fail "$c --help"
	assert_contains "$T/h1" "usage: ferry"
	cmp -s "$T/h1" "$T/h2" || fail "help $c and $c --help differ"
done
[ ! -e "$T/ran" ] || fail "a --help ran the pipeline"
[ ! -e "$T/state" ] || fail "a --help made the state_dir"
# check --help with an unreachable endpoint: instant, no probe
ferry -c "$T/p.ini" check --help >"$T/h" 2>&1 || fail "check --help"
assert_not_contains "$T/h" "probe of"
assert_not_contains "$T/h" "stage one"
ferry -c "$T/p.ini" status --help >"$T/h" 2>&1 || fail "status --help"
assert_not_contains "$T/h" "no run journal"
ferry -c "$T/p.ini" run one --help >"$T/h" 2>&1 || fail "run one --help"
[ ! -e "$T/ran" ] || fail "run one --help ran the stage"

ferry help stages >"$T/hs" 2>&1 || fail "help stages"
for p in exec lock mount pull push schedule snapshot unlock; do
	grep -q "^  $p\$" "$T/hs" || { cat "$T/hs"; fail "help stages lacks $p"; }
done
assert_contains "$T/hs" "(needs: lock mount)"
ferry help stage push >"$T/hp" 2>&1 || fail "help stage push"
assert_contains "$T/hp" "lease_need (duration, default 2m)"
assert_contains "$T/hp" "needs held while it runs: lock mount"
ferry -c "$T/p.ini" help stage one >"$T/ho" 2>&1 || fail "help stage one (an INI stage)"
assert_contains "$T/ho" "stage plugin exec"
assert_contains "$T/ho" "command (string, required)"

rc=0; ferry stauts 2>"$T/e" || rc=$?
assert_eq 2 $rc "mistyped command"
assert_contains "$T/e" "unknown command 'stauts' (did you mean 'status'?)"
rc=0; ferry -c "$T/p.ini" run onr 2>"$T/e" || rc=$?
assert_eq 2 $rc "mistyped stage"
assert_contains "$T/e" "no stage 'onr' in '$T/p.ini' (did you mean 'one'?)"
rc=0; ferry help stage pusj 2>"$T/e" || rc=$?
assert_eq 2 $rc "mistyped plugin"
assert_contains "$T/e" "(did you mean 'push'?)"

# a missing ']'
printf '[pipeline]\nstate_dir = %s/state\n\n[stage one\nplugin = exec\ncommand = true\n' "$T" >"$T/b1.ini"
rc=0; ferry -c "$T/b1.ini" check 2>"$T/e" || rc=$?
assert_eq 2 $rc "missing ]"
assert_contains "$T/e" "b1.ini:4: section header without its closing ']'"
# an unknown plugin: where, and what there is
printf '[pipeline]\nstate_dir = %s/state\n\n[stage one]\nplugin = exex\ncommand = true\n' "$T" >"$T/b2.ini"
rc=0; ferry -c "$T/b2.ini" run 2>"$T/e" || rc=$?
assert_eq 2 $rc "unknown plugin"
assert_contains "$T/e" "b2.ini:5: stage 'one': no plugin 'exex' in "
assert_contains "$T/e" "(did you mean 'exec'?); there: exec, lock, mount, pull, push, schedule, snapshot, unlock"
# an exec program that is not there: check says so, before anything runs
printf '[pipeline]\nstate_dir = %s/state\n\n[stage one]\nplugin = exec\ncommand = /nonexistent/prog --x\n' "$T" >"$T/b3.ini"
rc=0; ferry -c "$T/b3.ini" check >"$T/o" 2>"$T/e" || rc=$?
assert_eq 2 $rc "check of a missing program"
assert_contains "$T/e" "b3.ini:6: key 'command': program '/nonexistent/prog' does not exist"
sed -i 's|/nonexistent/prog --x|no-such-program-xyz|' "$T/b3.ini"
rc=0; ferry -c "$T/b3.ini" run 2>"$T/e" || rc=$?
assert_eq 2 $rc "run of a missing program"
assert_contains "$T/e" "program 'no-such-program-xyz' is not in PATH"

# a wrong bucket, then ferry s3 mb
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT BUCKET_NAME=not-made-yet
cat >"$T/s.ini" <<INI
[pipeline]
state_dir = $T/state

[s3]
endpoint = \${AWS_ENDPOINT_URL_S3}

[stage lock]
plugin = lock
key = org/1.db.lock
INI
rc=0; ferry -c "$T/s.ini" run >"$T/o" 2>"$T/e" || rc=$?
assert_eq 1 $rc "a missing bucket"
assert_contains "$T/e" "bucket 'not-made-yet' does not exist (the [s3] bucket setting or BUCKET_NAME names it; \`ferry s3 mb\` creates it)"
ferry -c "$T/s.ini" s3 mb >"$T/o" 2>"$T/e" || { cat "$T/e"; fail "s3 mb"; }
assert_contains "$T/o" "created: s3://not-made-yet"
ferry -c "$T/s.ini" s3 mb >"$T/o" 2>"$T/e" || { cat "$T/e"; fail "s3 mb again"; }
assert_contains "$T/o" "already there: s3://not-made-yet"
ferry -c "$T/s.ini" run >"$T/o" 2>"$T/e" || { tail "$T/e"; fail "run after mb"; }
# a refused connection: nothing was sent, so no 40 retries
port=$(free_port)
s=$(date +%s%N)
rc=0; AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port ferry -c "$T/s.ini" run >"$T/o" 2>"$T/e" || rc=$?
assert_eq 1 $rc "refused connection"
assert_contains "$T/e" "(nothing was sent; 3 attempts: is the endpoint http://127.0.0.1:$port up?)"
assert_not_contains "$T/e" "outcome unknown"

# a copied pipeline INI: the shipped tables are found; a wrong table path names its key
mkdir -p "$T/copy"
cp "$SRC_DIR/conf/pipeline.ini" "$T/copy/p.ini"
ORG_ID=1 FERRY_STATE_DIR=$T/cstate FERRY_MOUNTPOINT=$T/cmnt ferry -c "$T/copy/p.ini" -o s3.endpoint=http://127.0.0.1:$MOTO_PORT \
	check >"$T/o" 2>"$T/e" || { cat "$T/e"; fail "check of a copied pipeline INI"; }
grep -qE '^stage schedule +plugin schedule +ok' "$T/o" || { cat "$T/o" "$T/e"; fail "schedule of a copied INI"; }
line=$(grep -n '^zip_states' "$T/copy/p.ini" | cut -d: -f1)
sed -i 's|^zip_states *=.*|zip_states = tables/zip3.csv|' "$T/copy/p.ini"
rc=0; ORG_ID=1 FERRY_STATE_DIR=$T/cstate FERRY_MOUNTPOINT=$T/cmnt ferry -c "$T/copy/p.ini" check >"$T/o" 2>"$T/e" || rc=$?
assert_eq 2 $rc "a table path that is not there"
assert_contains "$T/e" "p.ini:$line: key 'zip_states': cannot open '$T/copy/tables/zip3.csv'"
