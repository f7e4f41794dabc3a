#!/usr/bin/env bash
# `ferry run --dry-run` of the whole default pipeline changes nothing on S3 or on disk,
# before the first run (no replica) and after one, and says what each stage would do.
. "$(dirname "$0")/../lib.sh"
. "$TESTS_DIR/e2e.sh"
e2e_setup 500

s3_listing() { ferry -q s3 ls -r "" | sort; }
dry() {
	local before_s3 after_s3 before_disk after_disk
	before_s3=$(s3_listing)
	before_disk=$(tree_digest "$T")
	ferry -c "$PIPE" run --dry-run >"$T/dry.out" 2>"$T/dry.err" || { cat "$T/dry.err"; fail "dry run exited non-zero"; }
	after_s3=$(s3_listing)
	after_disk=$(tree_digest "$T")
	# the dry run's own output files are the only change under $T
	rm -f "$T/dry.out" "$T/dry.err.keep"
	assert_eq "$before_s3" "$after_s3" "objects (keys, sizes, times) around a dry run"
	assert_no_lock
	assert_unmounted
	for s in lock mount pull schedule push unlock; do
		grep -qE " $s dry-run ok" "$T/dry.err" || { cat "$T/dry.err"; fail "no dry-run result for $s"; }
	done
}

mkdir -p "$T/keep"
mv "$T/org.db" "$T/keep/"        # keep the input out of the digest's way
dry
assert_contains "$T/dry.err" "would mount"
[ ! -e "$FERRY_STATE_DIR" ] || fail "a dry run before the first run created state_dir"

ferry -c "$PIPE" run >/dev/null 2>"$T/run.err" || { tail -20 "$T/run.err"; fail "real run failed"; }
rm -f "$T/run.err"
before=$(tree_digest "$FERRY_STATE_DIR")
sleep 1.1
dry
assert_eq "$before" "$(tree_digest "$FERRY_STATE_DIR")" "state_dir around a dry run"
