#!/usr/bin/env bash
# Bad pipeline files: each error names file, line and key, exits 2, and nothing runs.
. "$(dirname "$0")/../lib.sh"

n=0
# bad 'INI TEXT' 'EXPECTED MESSAGE' [ferry args...]
bad() {
	local ini=$1 want=$2 rc=0
	shift 2
	n=$((n + 1))
	printf '%b' "$ini" >"$T/bad$n.ini"
	ferry -c "$T/bad$n.ini" "$@" run >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = 2 ] || { cat "$T/err" >&2; fail "case $n: exit $rc, expected 2"; }
	grep -qF -- "$want" "$T/err" || { cat "$T/err" >&2; fail "case $n: missing '$want'"; }
	[ ! -e "$T/ran" ] || fail "case $n: a stage ran"
	[ ! -e "$T/state" ] || fail "case $n: state_dir was created"
}
ok_stage="[stage a]\nplugin = exec\ncommand = touch $T/ran\n"
hdr="[pipeline]\nstate_dir = $T/state\n"

unset FERRY_NOT_SET
bad "$hdr$ok_stage[stage b]\nplugin = exec\ncommand = echo \${FERRY_NOT_SET}\n" \
	"bad1.ini:8: key 'command': variable 'FERRY_NOT_SET' is not set"
bad "$hdr[stage a]\nplugin = exec\ncomand = touch x\ncommand = touch $T/ran\n" \
	"bad2.ini:5: key 'comand': unknown key in [stage a]"
bad "$hdr[stage a]\nplugin = exec\n" "bad3.ini:3: key 'command': missing required key in [stage a]"
bad "$hdr$ok_stage""timeout = 10 minutes\n" "bad4.ini:6: key 'timeout': bad duration '10 minutes'"
bad "$hdr$ok_stage$ok_stage" "bad5.ini:6: duplicate stage name 'a' (first at line 3)"
bad "$hdr$ok_stage[stages b]\nplugin = exec\n" "bad6.ini:6: unknown section [stages b]"
bad "$hdr$ok_stage""shell = sometimes\n" "bad7.ini:6: key 'shell': bad boolean 'sometimes'"
bad "[pipeline]\nstate_dir = $T/state\ndeadline = 5 years\n$ok_stage" "bad8.ini:3: key 'deadline': bad duration '5 years'"
bad "$hdr[stage a]\nplugin = nosuchplugin\ncommand = x\n" "bad9.ini:4: stage 'a': no plugin 'nosuchplugin' in "
bad "$hdr$ok_stage""command = again\n" "bad10.ini:6: key 'command': duplicate key in [stage a] (first at line 5)"
bad "$hdr[stage a]\ncommand = touch $T/ran\n" "bad11.ini:3: key 'plugin': missing required key in [stage a]"
bad "$hdr[stage a]\nplugin = exec\ncommand = echo 'unterminated\n" "bad12.ini:5: key 'command': unterminated single quote"
bad "$hdr$ok_stage""enabled = maybe\n" "bad13.ini:6: key 'enabled': bad boolean 'maybe'"
bad "$hdr$ok_stage[s3]\naws_secret_access_key = x\n" "bad14.ini:7: key 'aws_secret_access_key': unknown key in [s3]"
bad "$hdr$ok_stage" "-o nostage.command: no stage 'nostage'" -o nostage.command=x
bad "$hdr$ok_stage" "-o a.timeout: key 'timeout': bad duration 'forever'" -o a.timeout=forever
bad "$hdr$ok_stage""this is not ini\n" "bad17.ini:6: syntax error"
bad "$hdr$ok_stage""command2 = \${UNTERMINATED\n" "bad18.ini:6: key 'command2': unterminated '\${'"
bad "key = value\n$ok_stage" "bad19.ini:1: key 'key' outside any section"
bad "[pipeline]\nstate_dir = $T/state\nplugin_dir = $T/none\ncolour = blue\n$ok_stage" "bad20.ini:4: key 'colour': unknown key in [pipeline]"
long=$(printf 'x%.0s' $(seq 1 260))
bad "$hdr$ok_stage""cleanup = $long\n" "bad21.ini:6: line too long"
note "$n bad-INI cases checked"

# no [pipeline] section: ${state_dir} is the key's default, not "variable is not set"
printf '[stage a]\nplugin = exec\ncommand = echo ${state_dir}\n' >"$T/nopipe.ini"
ferry -c "$T/nopipe.ini" run --dry-run >"$T/out" 2>"$T/err" || fail "no [pipeline]: $(cat "$T/err")"
assert_contains "$T/err" "/var/lib/ferry"
assert_not_contains "$T/err" "is not set"

rc=0; ferry -c "$T/missing.ini" run 2>"$T/err" || rc=$?
assert_eq 2 $rc "missing config"
assert_contains "$T/err" "cannot open '$T/missing.ini': No such file or directory"
valgrind_verdict
