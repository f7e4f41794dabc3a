#!/usr/bin/env bash
# The loader refuses a plugin built for another ABI and one without the descriptor, with
# a clear message and exit 2; `ferry check` reports every missing plugin as one line.
. "$(dirname "$0")/../lib.sh"

tp=$FERRY_BUILD/tests/plugins
[ -f "$tp/badabi.so" ] || fail "test plugins not built"
cat >"$T/p.ini" <<INI
[pipeline]
state_dir = $T/state
plugin_dir = $tp

[stage x]
plugin = badabi
INI
rc=0; ferry -c "$T/p.ini" run 2>"$T/err" || rc=$?
assert_eq 2 $rc "wrong ABI"
assert_contains "$T/err" "stage 'x': plugin '$tp/badabi.so' was built for stage ABI 99, this ferry speaks ABI 2; rebuild the plugin"

# a descriptor from before needs/provides/ends were appended still loads and runs
sed -i 's/plugin = badabi/plugin = oldabi/' "$T/p.ini"
rc=0; ferry -c "$T/p.ini" run x 2>"$T/err" || rc=$?
assert_eq 0 $rc "shorter ABI 2 descriptor"
assert_contains "$T/err" "oldabi ran"
rm -rf "$T/state"

sed -i 's/plugin = oldabi/plugin = nosym/' "$T/p.ini"
rc=0; ferry -c "$T/p.ini" run 2>"$T/err" || rc=$?
assert_eq 2 $rc "missing descriptor"
assert_contains "$T/err" "plugin '$tp/nosym.so' exports no 'ferry_stage_v1' descriptor"

# check: a line per missing plugin, no crash, exit 2
cat >"$T/p2.ini" <<INI
[pipeline]
state_dir = $T/state

[stage one]
plugin = notbuilt1

[stage two]
plugin = exec
command = true

[stage three]
plugin = notbuilt2
INI
rc=0; ferry -c "$T/p2.ini" check >"$T/out" 2>"$T/err" || rc=$?
assert_eq 2 $rc "check with missing plugins"
assert_contains "$T/err" "stage 'one': no plugin 'notbuilt1' in "
assert_contains "$T/err" "stage 'three': no plugin 'notbuilt2' in "
assert_contains "$T/out" "stage two              plugin exec       ok"
assert_contains "$T/out" "stage one              plugin notbuilt1  NOT OK"
[ ! -e "$T/state" ] || fail "check created state_dir"
valgrind_verdict
