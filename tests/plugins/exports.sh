#!/usr/bin/env bash
# tests/plugins/exports.sh [BUILD]: the libferry boundary, checked on the built binaries.
#   - libferry.so exports exactly the functions its public headers declare
#     (core/lib/ferry_*.h but ferry_ctx.h), no more (a stray export), no fewer (a stale map);
#   - libferry.so calls nothing of the supervisor (no undefined ferry_* symbol);
#   - the ferry binary exports exactly the stage API of ferry_ctx.h (core/ferry.dynlist);
#   - every plugin, ferryfs and ferry itself use only ferry_* symbols that a public header
#     declares (plugins: libferry's and the stage API; ferryfs and ferry: libferry's).
# The declarations come from the compiler (gcc -aux-info), not from reading C by hand.
# It first proves that its checks can fail, on a library made to break each rule.
set -u
cd "$(dirname "$0")/../.."
B=${1:-${FERRY_BUILD:-build}}
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# declared OUT HEADER...: the functions HEADERs declare, one per line, sorted.
declared() {
	local out=$1 h
	shift
	for h in "$@"; do echo "#include \"$(basename "$h")\""; done >"$tmp/decl.c"
	"$CC" -std=c11 -D_GNU_SOURCE -Icore/lib $(pkg-config --cflags libcurl openssl) \
		-fsyntax-only -aux-info "$tmp/decl.aux" "$tmp/decl.c" || { fail "cannot compile $*"; return; }
	: >"$out"
	for h in "$@"; do
		# "/* FILE:LINE:NC */ extern int name (args);": the word before the first "(";
		# a header's static (inline) functions are compiled into each user, not exported
		grep -F "$h:" "$tmp/decl.aux" | sed -E 's|^/\*[^*]*\*/ *||' | grep -v '^static ' |
			sed -nE 's/^([^(]*[^a-z0-9_(])?([a-z_][a-z0-9_]*) \(.*/\2/p'
	done | sort -u >"$out"
}

# exported OUT FILE: the functions and data FILE's dynamic symbol table defines.
exported() {
	nm -D --defined-only "$2" | awk '$2 ~ /^[TDBRVWi]$/ { print $3 }' | sed 's/@.*//' |
		grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$1"
}

# used OUT FILE: the symbols FILE needs from elsewhere that are ferry's: named ferry_*, or
# defined anywhere in libferry (internals included: $tmp/liball, from libferry.a).
used() {
	nm -D --undefined-only "$2" | awk '{ print $NF }' | sed 's/@.*//' | sort -u >"$tmp/undef"
	{ grep '^ferry_' "$tmp/undef"; comm -12 "$tmp/undef" "$tmp/liball"; } | sort -u >"$1"
}

# expect_none WHAT LIST: each line of LIST is a failure described by WHAT.
expect_none() {
	local n
	while read -r n; do
		[ -n "$n" ] && fail "$1: $n"
	done <"$2"
}

# check_lib LIB: libferry's rules on LIB.
check_lib() {
	exported "$tmp/lib.exp" "$1"
	comm -23 "$tmp/lib.exp" "$tmp/pub" >"$tmp/stray"
	expect_none "$1 exports a symbol no public header of core/lib/ declares" "$tmp/stray"
	comm -13 "$tmp/lib.exp" "$tmp/pub" >"$tmp/missing"
	expect_none "a public header declares a function $1 does not export (core/lib/libferry.map)" \
		"$tmp/missing"
	used "$tmp/lib.use" "$1"
	expect_none "$1 calls up into the supervisor (libferry must not)" "$tmp/lib.use"
}

# check_user WHO FILE ALLOWED: FILE uses only ferry_* symbols in ALLOWED.
check_user() {
	used "$tmp/u.use" "$2"
	comm -23 "$tmp/u.use" "$3" >"$tmp/u.bad"
	expect_none "$1 uses a symbol no public header declares" "$tmp/u.bad"
}

# every global symbol of libferry's objects, exported or not
nm --defined-only "$B/libferry.a" 2>/dev/null | awk '$2 ~ /^[TDBRV]$/ { print $3 }' |
	sort -u >"$tmp/liball"
[ -s "$tmp/liball" ] || fail "no symbols in $B/libferry.a"
pub_headers=$(ls core/lib/ferry_*.h | grep -v '/ferry_ctx\.h$')
declared "$tmp/pub" $pub_headers
declared "$tmp/api" core/lib/ferry_ctx.h
sort -u "$tmp/pub" "$tmp/api" >"$tmp/all"
[ -s "$tmp/pub" ] && [ -s "$tmp/api" ] || { echo "FAIL: no declarations found"; exit 1; }
echo "public: $(wc -l <"$tmp/pub") libferry functions, $(wc -l <"$tmp/api") of the stage API"

# --- the checks can fail: a library that breaks each rule ------------------------------
cat >"$tmp/bad.c" <<'EOF'
int ferry_stray_export(void);
int ferry_stray_export(void) { return 1; }
int ferry_cfg_int(void);
int ferry_calls_up(void);
int ferry_calls_up(void) { return ferry_cfg_int(); }
int sigv4_sign(void);
int uses_internal(void);
int uses_internal(void) { return sigv4_sign(); }
EOF
"$CC" -shared -fPIC -o "$tmp/libbad.so" "$tmp/bad.c"
before=$fails
out=$(check_lib "$tmp/libbad.so"; echo "fails=$fails")
for want in "exports a symbol no public header of core/lib/ declares: ferry_stray_export" \
	    "does not export (core/lib/libferry.map): ferry_s3_get" \
	    "calls up into the supervisor (libferry must not): ferry_cfg_int"; do
	case "$out" in
	*"$want"*) ;;
	*) fail "the check missed a broken library: want '$want'" ;;
	esac
done
out=$(check_user bad "$tmp/libbad.so" "$tmp/pub"; echo "fails=$fails")
case "$out" in
*"bad uses a symbol no public header declares: ferry_cfg_int"*) ;;
*) fail "the check missed a plugin using an undeclared symbol" ;;
esac
case "$out" in
*"bad uses a symbol no public header declares: sigv4_sign"*) ;;
*) fail "the check missed a plugin using a libferry internal" ;;
esac
[ "$fails" -eq "$before" ] &&
	echo "ok: the checks catch a stray export, a stale map, a call up, an undeclared use, an internal's use"

# --- the real binaries ------------------------------------------------------------------
check_lib "$B/libferry.so"

exported "$tmp/ferry.exp" "$B/ferry"
grep '^ferry_' "$tmp/ferry.exp" >"$tmp/ferry.fexp" || true
comm -23 "$tmp/ferry.fexp" "$tmp/api" >"$tmp/x"
expect_none "ferry exports a symbol that is not the stage API of ferry_ctx.h" "$tmp/x"
comm -13 "$tmp/ferry.fexp" "$tmp/api" >"$tmp/x"
expect_none "ferry_ctx.h declares a function ferry does not export (core/ferry.dynlist)" "$tmp/x"

check_user ferry "$B/ferry" "$tmp/pub"
check_user ferryfs "$B/ferryfs" "$tmp/pub"
n=0
for so in "$B"/plugins/*.so; do
	check_user "plugin $(basename "$so")" "$so" "$tmp/all"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no plugin found in $B/plugins"

# libferry's sources include no supervisor header and not the stage API.
bad=$(grep -lE '#include "(ferry_ctx|run|cfg|cli|journal|pipeline|plugin)\.h"' core/lib/*.c core/lib/*.h |
	grep -v '^core/lib/ferry_ctx\.h$' || true)
[ -z "$bad" ] || fail "libferry sources include supervisor headers: $bad"

echo "checked libferry.so, ferry, ferryfs and $n plugins"
[ "$fails" -eq 0 ] && echo "ok" || { echo "$fails problem(s)"; exit 1; }
