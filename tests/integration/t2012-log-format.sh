#!/usr/bin/env bash
# t2012: what an operator reads in a log: --log-format=json makes every line JSON, ferryfs's
# too (the mount stage passes the format and -q/-v down), with numbers as numbers; plain
# lines are logfmt (a value with blanks or quotes is quoted, inner quotes and backslashes
# escaped) and read back to the exact value.
. "$(dirname "$0")/../lib.sh"
need_fuse
moto_start

M=$T/mnt
printf 'hello from s3\n' >"$T/hello.txt"
(cd "$T" && ferry s3 put hello.txt org-data/hello.txt >/dev/null 2>&1) || fail "upload failed"
pipeline_ini "$T/p.ini"
cat >>"$T/p.ini" <<INI
[stage mount]
plugin = mount
mountpoint = $M
prefix = org-data

[stage look]
plugin = exec
shell = true
command = cat "\$FERRY_FACT_MOUNT_MOUNTPOINT/hello.txt" > $T/seen && tr '\\000' ' ' < /proc/\$FERRY_FACT_MOUNT_PID/cmdline > $T/argv
INI

# JSON: every line of stderr is one JSON object, ferryfs's included
ferry --log-format=json -c "$T/p.ini" run >"$T/out" 2>"$T/json.err" || { cat "$T/json.err" >&2; fail "json run failed"; }
assert_eq "hello from s3" "$(cat "$T/seen")" "file read through the mount"
assert_contains "$T/argv" " --log-format=json"
python3 - "$T/json.err" <<'PY' || { cat "$T/json.err" >&2; fail "JSON lines"; }
import json, sys
lines = []
for n, l in enumerate(open(sys.argv[1]), 1):
    try:
        lines.append(json.loads(l))
    except ValueError:
        sys.exit("line %d is not JSON: %r" % (n, l))
fs = [l for l in lines if l["stage"] == "ferryfs"]
assert any(l["msg"] == "mounted" for l in fs), fs
m = [l for l in fs if l["msg"] == "mounted"][0]
# numbers as numbers, text as text
assert isinstance(m["pid"], int) and isinstance(m["cache_max"], int), m
assert m["prefix"] == "org-data/" and isinstance(m["mountpoint"], str), m
assert any(l["msg"] == "unmounting" for l in fs), fs
ok = [l for l in lines if l["msg"] == "run ok"]
assert ok and all(isinstance(l["ms"], int) for l in ok), ok
PY
no_mount() { ! grep -q " $M " /proc/mounts || fail "still mounted: $M"; }
no_mount

# -q reaches ferryfs: nothing but warnings and errors, from either
ferry -q -c "$T/p.ini" run >"$T/out" 2>"$T/q.err" || { cat "$T/q.err" >&2; fail "-q run failed"; }
assert_contains "$T/argv" " -q"
[ ! -s "$T/q.err" ] || { cat "$T/q.err" >&2; fail "-q printed lines"; }
no_mount

# -v reaches ferryfs: its debug lines (the fetch of hello.txt) are in the log
ferry -v -c "$T/p.ini" run >"$T/out" 2>"$T/v.err" || { cat "$T/v.err" >&2; fail "-v run failed"; }
assert_contains "$T/argv" " -v"
grep -E "^[^ ]+ debug ferryfs fetch key=org-data/hello.txt " "$T/v.err" >/dev/null ||
	{ cat "$T/v.err" >&2; fail "no debug line of ferryfs"; }
no_mount

# plain lines are logfmt: blanks, quotes and backslashes survive a round trip
cat >"$T/q.ini" <<'INI'
[stage say]
plugin = exec
command = printf 'say "hi there" \ done'
INI
printf '[pipeline]\nstate_dir = %s/state\n' "$T" | cat - "$T/q.ini" >"$T/q2.ini"
ferry -c "$T/q2.ini" run --dry-run >"$T/out" 2>"$T/plain.err" || { cat "$T/plain.err" >&2; fail "dry run failed"; }
python3 - "$T/plain.err" <<'PY' || { cat "$T/plain.err" >&2; fail "logfmt lines"; }
import re, sys
# logfmt: key=bare or key="quoted with \" and \\ escapes"
pair = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"=]*)')
for l in open(sys.argv[1]):
    if " would run " not in l:
        continue
    kv = {}
    rest = l.split(" would run ", 1)[1].rstrip("\n")
    pos = 0
    for m in pair.finditer(rest):
        assert rest[pos:m.start()].strip() == "", (rest, pos)
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        kv[m.group(1)] = v
        pos = m.end()
    assert rest[pos:].strip() == "", rest
    assert kv["argv"] == r'[printf] [say "hi there" \ done]', kv
    assert kv["op"] == "command", kv
    break
else:
    sys.exit("no 'would run' line")
PY
assert_contains "$T/plain.err" 'argv="[printf] [say \"hi there\" \\ done]"'
valgrind_verdict
