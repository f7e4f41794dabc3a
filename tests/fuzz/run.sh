#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS: builds each tests/fuzz/fuzz_NAME.c with libFuzzer (clang,
# ASan+UBSan) together with libferry's sources and the supervisor's INI parser, runs it SECONDS on a copy of
# tests/fuzz/corpus/NAME, and prints executions and findings. New crashes are saved under
# build/fuzz/ and fail the run; add them to the corpus once fixed.
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build/fuzz
mkdir -p "$out"
command -v clang >/dev/null || { echo "fuzz: clang missing (apt-get install clang)"; exit 1; }
pkgs="libcurl openssl sqlite3 inih expat jansson"
lib_src="$(ls core/lib/*.c) core/cfg.c"
pass=0 failn=0
for t in tests/fuzz/fuzz_*.c; do
	name=$(basename "$t" .c)
	short=${name#fuzz_}
	echo "== $name"
	if ! clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -Icore -Icore/lib $(pkg-config --cflags $pkgs) \
		-o "$out/$name" "$t" $lib_src $(pkg-config --libs $pkgs) -lm -lpthread -ldl 2>"$out/$name.build.log"; then
		cat "$out/$name.build.log"; failn=$((failn + 1)); continue
	fi
	corpus=$out/corpus-$short
	mkdir -p "$corpus"
	[ -d "tests/fuzz/corpus/$short" ] && cp -n tests/fuzz/corpus/$short/* "$corpus/" 2>/dev/null
	if "$out/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$out/$name-" "$corpus" >"$out/$name.log" 2>&1; then
		pass=$((pass + 1))
		grep -E '^(#[0-9]+\s+DONE|Done [0-9]+ runs)' "$out/$name.log" | tail -1
	else
		failn=$((failn + 1))
		tail -30 "$out/$name.log"
	fi
done
echo "$pass passed, $failn failed"
[ "$failn" -eq 0 ]
