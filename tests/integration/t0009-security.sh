#!/usr/bin/env bash
# t0009-security.sh: hostile configuration values are refused with file:line:key (control
# characters, '..' climbing out of a path or key prefix, absolute keys, bad bucket names);
# TLS verification can be turned off only for a loopback endpoint, with a warning; a
# world-readable INI holding a credential is warned about without echoing it; the lock warns
# when told not to probe for conditional writes; state_dir and journal are private.
. "$(dirname "$0")/../lib.sh"
cd "$T" || fail "no temp dir"
export T

# check_refused NAME EXPECTED-TEXT: `ferry -c NAME.ini check` exits 2 and says EXPECTED-TEXT
check_refused() {
	assert_exit 2 ferry -c "$T/$1.ini" check 2>"$T/$1.err"
	assert_contains "$T/$1.err" "$2"
}

# 1. a newline from the environment in any value (here an exec command line)
export EVIL=$'x\nFAKE LOG LINE'
printf '[pipeline]\nstate_dir = %s/st\n[stage e]\nplugin = exec\ncommand = echo ${EVIL}\n' "$T" >ctl.ini
check_refused ctl "ctl.ini:5: key 'command': control character 0x0a"

# 2. '..' from the environment climbing out of the mountpoint in a path...
export ORG=../../etc/passwd
cat >dotdot.ini <<'EOF'
[pipeline]
state_dir = ${T}/st
[stage pull]
plugin  = pull
origin  = /mnt/bucket/org-data/${ORG}.db
replica = ${T}/org.db
EOF
check_refused dotdot "dotdot.ini:5: key 'origin': path '/mnt/bucket/org-data/../../etc/passwd.db' has a '..' segment after its start"
# ... while leading '..' (relative to the INI's directory) stays allowed
export ORG=acme
assert_exit 0 ferry -c "$T/dotdot.ini" -o pull.replica=../org.db check

# 3. object keys: '..' out of the prefix, absolute, empty or '.' segments
for bad in 'org-data/../other.db.lock' '/org-data/x.lock' 'org-data//x.lock' 'org-data/./x.lock'; do
	printf '[pipeline]\nstate_dir = %s/st\n[stage lock]\nplugin = lock\nkey = %s\n' "$T" "$bad" >key.ini
	check_refused key "key.ini:5: key 'key': bad object key '$bad'"
done
export ORG=../other
printf '[pipeline]\nstate_dir = %s/st\n[stage lock]\nplugin = lock\nkey = org-data/${ORG}.lock\n' "$T" >key.ini
check_refused key "bad object key 'org-data/../other.lock': '..' path segment"
printf '[pipeline]\nstate_dir = %s/st\n[stage s]\nplugin = snapshot\nkey = db\ndest = ../x/{time}.db\n' "$T" >snap.ini
check_refused snap "snap.ini:6: key 'dest': bad object key '../x/{time}.db'"
printf '[pipeline]\nstate_dir = %s/st\n[stage m]\nplugin = mount\nmountpoint = %s/mnt\nprefix = org/../../other\n' "$T" "$T" >mnt.ini
check_refused mnt "mnt.ini:6: key 'prefix': bad object key 'org/../../other'"

# 4. TLS: verify_tls = false refused for a non-loopback endpoint (before any request)...
printf '[s3]\nendpoint = https://s3.example.com\nbucket = b\nverify_tls = false\n' >tls.ini
assert_exit 2 ferry -c "$T/tls.ini" s3 ls 2>tls.err
assert_contains tls.err "verify_tls = false is allowed only for a loopback endpoint"
assert_contains tls.err "not 's3.example.com'"
# ... and allowed with a warning for loopback (moto, plain http: the warning still shows)
moto_start
printf '[s3]\nendpoint = ${AWS_ENDPOINT_URL_S3}\nbucket = ${BUCKET_NAME}\nverify_tls = false\n' >tls2.ini
ferry -c "$T/tls2.ini" s3 ls >/dev/null 2>tls2.err || fail "s3 ls on loopback with verify_tls = false: $(cat tls2.err)"
assert_contains tls2.err "TLS certificate verification is disabled"
printf '[s3]\nendpoint = ${AWS_ENDPOINT_URL_S3}\nbucket = ${BUCKET_NAME}\n' >tls3.ini
ferry -c "$T/tls3.ini" s3 ls >/dev/null 2>tls3.err || fail "s3 ls: $(cat tls3.err)"
assert_not_contains tls3.err "verification is disabled"
# a bucket name that is really a path
BUCKET_NAME='b/../../x' assert_exit 2 ferry -c "$T/tls3.ini" s3 ls 2>bucket.err
assert_contains bucket.err "bad bucket name 'b/../../x'"

# 5. a credential written into a world-readable INI: warned (file, line, key), never echoed
cat >cred.ini <<EOF
[pipeline]
state_dir = $T/st
[stage e]
plugin = exec
command = env AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY true
EOF
secret_ok "$T/cred.ini"
chmod 644 cred.ini
ferry -c "$T/cred.ini" check >cred.out 2>cred.err || fail "check of cred.ini: $(cat cred.err)"
assert_contains cred.err "configuration file readable by other users holds a credential"
assert_contains cred.err "line=5 key=command mode=0644"
chmod 600 cred.ini
ferry -c "$T/cred.ini" check >cred2.out 2>cred2.err || fail "check of cred.ini (0600)"
assert_not_contains cred2.err "readable by other users"
# a ${VAR} reference is not a credential in the file
printf '[pipeline]\nstate_dir = %s/st\n[stage e]\nplugin = exec\ncommand = env K=${AWS_SECRET_ACCESS_KEY} true\n' "$T" >ref.ini
chmod 644 ref.ini
ferry -c "$T/ref.ini" check >/dev/null 2>ref.err || fail "check of ref.ini"
assert_not_contains ref.err "readable by other users"

# 6. the lock warns when it is told not to probe the endpoint
. "$TESTS_DIR/lock.sh"
LOCK=sec/org.db.lock
write_ini "$T/lock.ini" sec "require_conditional = false"
ferry -c "$T/lock.ini" run >lock.out 2>lock.err || fail "lock pipeline: $(cat lock.err)"
assert_contains lock.err "require_conditional = false: the endpoint is not probed"

# 7. state_dir 0700, journal 0600, whatever the umask
umask 022
printf '[pipeline]\nstate_dir = %s/st7\n[stage e]\nplugin = exec\ncommand = true\n' "$T" >st.ini
ferry -c "$T/st.ini" run >/dev/null 2>st.err || fail "exec pipeline: $(cat st.err)"
assert_eq 700 "$(stat -c %a "$T/st7")" "state_dir mode"
assert_eq 600 "$(stat -c %a "$T/st7/journal.json")" "journal mode"
echo "ok"
