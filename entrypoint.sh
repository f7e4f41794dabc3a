#!/bin/bash
# entrypoint.sh: the container's main process under tini: checks the environment, then runs the pipeline once (the default), runs a fleet worker's pass (FERRY_MODE=work) or stays up for SSH sessions (FERRY_MODE=serve).
#
#   entrypoint.sh [FERRY-ARGS...]      default: ferry -c "$FERRY_CONFIG" run
#                                      (FERRY_MODE=work: ferry -c "$FERRY_CONFIG" work --once)
#
# Environment:
#   FERRY_CONFIG        pipeline INI (default /etc/ferry/pipeline.ini)
#   FERRY_MODE          run (default): run the pipeline, exit with ferry's status, so an
#                       on-demand machine stops when the work is done;
#                       serve: stay up (signal-aware) for `fly ssh console` sessions in
#                       which an operator runs ferry status / ferry run STAGE / --dry-run
#                       work: one pass of a fleet worker over every due org of the INI's
#                       [work] section, then exit (conf/k8s/README.md): no ORG_ID, the
#                       worker sets it for each org
#   FERRY_REQUIRED_ENV  variables that must be set and non-empty (default
#                       "BUCKET_NAME ORG_ID AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY",
#                       without ORG_ID in work mode)
#
# Exit status (run and work modes): ferry's own (0, 1, 2, 3, 4, 130, 143; work:
# 0, 1, 2, 143); 2 when the environment is incomplete, before ferry starts.
#
# Why ferry runs in the background: bash runs no trap while it waits for a foreground
# child, so SIGTERM from the platform would sit unhandled until ferry died. With the
# child in the background and `wait`, the trap forwards the signal at once, ferry
# unwinds (releases the lock last) and exits 143/130, and that is our status too.
set -u

FERRY_CONFIG=${FERRY_CONFIG:-/etc/ferry/pipeline.ini}
FERRY_MODE=${FERRY_MODE:-run}
if [ "$FERRY_MODE" = work ]; then
	FERRY_REQUIRED_ENV=${FERRY_REQUIRED_ENV-BUCKET_NAME AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY}
else
	FERRY_REQUIRED_ENV=${FERRY_REQUIRED_ENV-BUCKET_NAME ORG_ID AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY}
fi
export FERRY_CONFIG

# Same shape as ferry's plain log lines ("ts level who msg k=v"), so one grep reads both.
log() {
	local lv=$1
	shift
	printf '%s %s entrypoint %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$lv" "$*" >&2
}

# check_env LEVEL: logs each problem at LEVEL; 1 when any. Only names are ever
# printed: values may be credentials.
check_env() {
	local lv=$1 v missing=0
	for v in $FERRY_REQUIRED_ENV; do
		case $v in
		*[!A-Za-z0-9_]* | [0-9]*)
			log "$lv" "bad name in FERRY_REQUIRED_ENV: '$v'"
			missing=1
			continue
			;;
		esac
		if [ -z "${!v:-}" ]; then
			case $v in
			AWS_* | *SECRET* | *TOKEN* | *KEY*)
				log "$lv" "missing environment variable '$v': set it with: fly secrets set $v=..."
				;;
			*)
				log "$lv" "missing environment variable '$v': set it in fly.toml [env] or the container's environment"
				;;
			esac
			missing=1
		fi
	done
	# ORG_ID becomes part of object keys (org-data/<ORG_ID>.db): no slashes, no "..".
	if [ -n "${ORG_ID:-}" ]; then
		case $ORG_ID in
		*[!A-Za-z0-9._-]* | .* | *..*)
			log "$lv" "bad environment variable 'ORG_ID': only letters, digits, '.', '_' and '-' are allowed, not starting with '.'"
			missing=1
			;;
		esac
	fi
	if [ -n "${AWS_ENDPOINT_URL_S3:-}" ]; then
		case $AWS_ENDPOINT_URL_S3 in
		http://?* | https://?*) ;;
		*)
			log "$lv" "bad environment variable 'AWS_ENDPOINT_URL_S3': expected an http:// or https:// URL"
			missing=1
			;;
		esac
	fi
	return $missing
}

child=
signalled=

forward() {
	signalled=$1
	if [ -n "$child" ]; then
		log info "forwarding signal to ferry" "signal=SIG$1 pid=$child"
		kill -s "$1" "$child" 2>/dev/null || true
	fi
}

run_mode() {
	local rc
	if [ $# -eq 0 ]; then
		set -- run
	fi
	trap 'forward TERM' TERM
	trap 'forward INT' INT
	trap 'forward HUP' HUP
	log info "starting ferry" "config=$FERRY_CONFIG args=$*"
	# Without job control bash starts background children with SIGINT ignored;
	# give ferry the default disposition back so a forwarded SIGINT reaches it.
	env --default-signal=INT,QUIT ferry -c "$FERRY_CONFIG" "$@" &
	child=$!
	# A signal came before $child was known: deliver it now.
	if [ -n "$signalled" ]; then
		forward "$signalled"
	fi
	# wait returns early (status > 128) each time a trapped signal arrives; keep
	# waiting until ferry is gone, then ask once more for its real exit status
	# (bash keeps it after reaping).
	while kill -0 "$child" 2>/dev/null; do
		wait "$child"
	done
	wait "$child"
	rc=$?
	log info "ferry exited" "status=$rc"
	exit "$rc"
}

serve_mode() {
	local sleeper sig=
	trap 'sig=TERM; kill "$sleeper" 2>/dev/null' TERM
	trap 'sig=INT; kill "$sleeper" 2>/dev/null' INT
	log info "serving: run ferry status, ferry run STAGE or ferry run --dry-run from an SSH session" "config=$FERRY_CONFIG"
	while [ -z "$sig" ]; do
		sleep 3600 &
		sleeper=$!
		wait "$sleeper"
	done
	kill "$sleeper" 2>/dev/null
	wait "$sleeper" 2>/dev/null
	log info "stopping" "signal=SIG$sig"
	case $sig in
	INT) exit 130 ;;
	*) exit 143 ;;
	esac
}

case $FERRY_MODE in
run)
	check_env error || exit 2
	run_mode "$@"
	;;
work)
	check_env error || exit 2
	if [ $# -eq 0 ]; then
		set -- work --once
	fi
	run_mode "$@"
	;;
serve)
	# An operator may need a shell to repair things even when a secret is missing.
	check_env warn || log warn "environment incomplete; ferry commands will fail until it is fixed"
	if [ $# -gt 0 ]; then
		log warn "arguments are ignored in serve mode" "args=$*"
	fi
	serve_mode
	;;
*)
	log error "bad FERRY_MODE '$FERRY_MODE': expected 'run', 'work' or 'serve'"
	exit 2
	;;
esac
