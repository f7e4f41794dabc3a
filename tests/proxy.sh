# tests/proxy.sh: the fault-injecting S3 proxy for integration tests (source after lib.sh
# and moto_start). proxy_start puts tests/s3proxy.py between ferry and moto_server and
# points AWS_ENDPOINT_URL_S3 at it; it is stopped at exit.
#   proxy_start                     start; exports PROXY_PORT, PROXY_CONTROL, AWS_ENDPOINT_URL_S3
#   proxy_rule '{"method":"PUT","action":"503","count":2}'   append a rule (JSON)
#   proxy_rules_clear               drop all rules
#   proxy_stats [FIELD...]          the counters as JSON, or one number, e.g.
#                                   proxy_stats methods PUT requests
#   proxy_reset                     drop rules and zero counters
#   proxy_rules_file JSON           write the rules file (the proxy rereads it on change;
#                                   it replaces what the file held before)
#   proxy_stop                      stop now (also done at exit); endpoint back to moto

proxy_start() {
	[ -n "${MOTO_PORT:-}" ] || fail "proxy_start needs moto_start first"
	local ready=$T/proxy.ready
	rm -f "$ready"
	PROXY_RULES=$T/proxy.rules
	python3 "$TESTS_DIR/s3proxy.py" --upstream "http://127.0.0.1:$MOTO_PORT" \
		--rules "$PROXY_RULES" --ready-file "$ready" >"$T/proxy.log" 2>&1 &
	PROXY_PID=$!
	at_exit "kill $PROXY_PID; wait $PROXY_PID"
	wait_ready "$PROXY_PID" "$ready" "$T/proxy.log" s3proxy
	read -r PROXY_PORT PROXY_CONTROL <"$ready"
	export PROXY_PORT PROXY_CONTROL
	export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PROXY_PORT
}

proxy_stop() {
	[ -n "${PROXY_PID:-}" ] || return 0
	kill "$PROXY_PID" 2>/dev/null
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=
	export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
}

_proxy_ctl() { # METHOD PATH [BODY]
	curl -fsS -X "$1" ${3:+--data-binary "$3"} "http://127.0.0.1:$PROXY_CONTROL$2" ||
		fail "s3proxy control $1 $2 failed"
}

proxy_rule() { _proxy_ctl POST /rules "$1" >/dev/null; }
proxy_rules_clear() { _proxy_ctl DELETE /rules >/dev/null; }
proxy_reset() { _proxy_ctl POST /reset >/dev/null; }
proxy_rules_file() { printf '%s\n' "$1" >"$PROXY_RULES.tmp" && mv "$PROXY_RULES.tmp" "$PROXY_RULES"; }

proxy_stats() {
	local json
	json=$(_proxy_ctl GET /stats)
	if [ $# -eq 0 ]; then
		printf '%s\n' "$json"
		return
	fi
	printf '%s' "$json" | python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v)' "$@"
}
