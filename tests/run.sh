#!/usr/bin/env bash
# tests/run.sh: runs every test (or a subset) and prints "N passed, N failed, N skipped".
#   bash tests/run.sh                 all: unit, plugins, integration
#   bash tests/run.sh unit|plugins|integration
#   bash tests/run.sh PATTERN...      tests whose name contains any PATTERN
#   TEST_JOBS=N bash tests/run.sh ... run up to N tests at once (default 1)
# Each test's output goes to $FERRY_BUILD/test-logs/NAME.log; failures print their log tail.
# Tests are independent (own temp dir, own moto on a port it picked itself, own mounts), so
# they may run side by side; each result line is printed when its test ends.
set -u
cd "$(dirname "$0")/.."
FERRY_BUILD=${FERRY_BUILD:-$PWD/build}
export FERRY_BUILD
LOGS=$FERRY_BUILD/test-logs
mkdir -p "$LOGS"
filters=("$@")
pass=0 failn=0 skipn=0
failed_names=()

want() { # want KIND NAME: does any filter select it (no filter: everything)
	local f
	[ ${#filters[@]} -eq 0 ] && return 0
	for f in "${filters[@]}"; do
		case "$f" in
		unit|plugins|integration) [ "$f" = "$1" ] && return 0 ;;
		*) case "$2" in *"$f"*) return 0 ;; esac ;;
		esac
	done
	return 1
}

JOBS=${TEST_JOBS:-1}
# Temp dirs of this run's tests are /tmp/ferry-test.RUN.*: the leftover checks below look at
# those only, not at other runs' on the same machine.
FERRY_TEST_RUN=r$$
export FERRY_TEST_RUN
RESULTS=$LOGS/.results.$$              # verdicts of this run (others may share $LOGS)
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
trap 'rm -rf "$RESULTS"' EXIT

run_test() { # run_test NAME LOG CMD...: run one test, print its line, record its verdict
	local name=$1 log=$2 rc start end ms secs verdict
	shift 2
	start=$(date +%s%N)
	timeout -k 10 "${FERRY_TEST_TIMEOUT:-900}" "$@" >"$log" 2>&1
	rc=$?
	end=$(date +%s%N)
	ms=$(((end - start) / 1000000))
	secs=$((ms / 1000)).$(((ms % 1000) / 100))
	case $rc in
	0) verdict=pass ;;
	77) verdict=skip ;;
	*) verdict=fail ;;
	esac
	{
		flock 9
		case $verdict in
		pass) printf 'PASS %-44s %6ss\n' "$name" "$secs" ;;
		skip) printf 'SKIP %-44s %s\n' "$name" "$(grep -m1 '^SKIP' "$log" | cut -c7-)" ;;
		fail) printf 'FAIL %-44s %6ss (exit %d)\n' "$name" "$secs" "$rc"
		      tail -n 25 "$log" | sed 's/^/    | /' ;;
		esac
	} 9>"$RESULTS/.print"
	echo "$verdict $name" >"$RESULTS/${name//\//_}"
}

run_one() { # run_one KIND NAME CMD...
	local kind=$1 name=$2
	shift 2
	want "$kind" "$name" || return 0
	if [ "$JOBS" -le 1 ]; then
		run_test "$name" "$LOGS/${name//\//_}.log" "$@"
		return
	fi
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n
	done
	run_test "$name" "$LOGS/${name//\//_}.log" "$@" &
}

for t in "$FERRY_BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	run_one unit "unit/$(basename "$t")" "$t"
done
run_one plugins "plugins/exports" bash tests/plugins/exports.sh "$FERRY_BUILD"
if [ -x "$FERRY_BUILD/tests/plugins/test_abi" ]; then
	run_one plugins "plugins/test_abi" "$FERRY_BUILD/tests/plugins/test_abi" "$FERRY_BUILD/plugins"
fi
for t in "$FERRY_BUILD"/tests/fuzz/replay_*; do
	[ -x "$t" ] || continue
	n=${t##*/replay_}
	[ -d "tests/fuzz/corpus/$n" ] || continue
	run_one unit "fuzz-replay/$n" "$t" "tests/fuzz/corpus/$n"
done
for t in tests/integration/t[0-9][0-9][0-9][0-9]-*.sh; do
	[ -f "$t" ] || continue
	run_one integration "integration/$(basename "$t" .sh)" bash "$t"
done

wait
for r in "$RESULTS"/*; do
	[ -f "$r" ] || continue
	read -r verdict name <"$r"
	case $verdict in
	pass) pass=$((pass + 1)) ;;
	skip) skipn=$((skipn + 1)) ;;
	*) failn=$((failn + 1)); failed_names+=("$name") ;;
	esac
done

# No test may leave a mount or a server behind.
if grep -q " /tmp/ferry-test\.$FERRY_TEST_RUN\." /proc/mounts 2>/dev/null; then
	echo "FAIL leftover mounts:"; grep " /tmp/ferry-test\.$FERRY_TEST_RUN\." /proc/mounts
	failn=$((failn + 1))
fi

# No test output may hold the test credentials (tests/lib.sh sets them for every test).
leaks=$(grep -rlaF -e 'ferryTestSecret/DoNotLeak+0123456789abcdef' -e 'AKIAFERRYTESTKEY0001' "$LOGS" 2>/dev/null || true)
if [ -n "$leaks" ]; then
	echo "FAIL credentials appear in test output: $leaks"
	failn=$((failn + 1))
fi

if [ ${#failed_names[@]} -gt 0 ]; then
	echo "failed: ${failed_names[*]}"
fi
echo "$pass passed, $failn failed, $skipn skipped"
[ "$failn" -eq 0 ] && [ $((pass + failn)) -gt 0 ]
