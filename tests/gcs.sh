# tests/gcs.sh: the GCS XML-API test server for integration tests (source after lib.sh and
# moto_start). tests/gcsserver.py sits in front of moto_server and behaves as GCS documents
# its conditions (an emulation written from GCS's documentation, not GCS: see its header).
#   gcs_start [--careless] [--write-rate-limit]
#                 start it; exports GCS_PORT, AWS_ENDPOINT_URL_S3 (pointing at it) and
#                 FERRY_S3_DIALECT=gcs; --careless: a store that ignores every condition
#   gcs_stop      stop it now (also done at exit); endpoint back to moto, dialect unset

gcs_start() {
	[ -n "${MOTO_PORT:-}" ] || fail "gcs_start needs moto_start first"
	local ready=$T/gcs.ready
	rm -f "$ready"
	python3 "$TESTS_DIR/gcsserver.py" --upstream "http://127.0.0.1:$MOTO_PORT" --port 0 \
		--ready-file "$ready" "$@" >>"$T/gcs.log" 2>&1 &
	GCS_PID=$!
	at_exit "kill $GCS_PID; wait $GCS_PID"
	wait_ready "$GCS_PID" "$ready" "$T/gcs.log" gcsserver
	read -r GCS_PORT _ <"$ready"
	export GCS_PORT AWS_ENDPOINT_URL_S3=http://127.0.0.1:$GCS_PORT FERRY_S3_DIALECT=gcs
}

gcs_stop() {
	[ -n "${GCS_PID:-}" ] || return 0
	kill "$GCS_PID" 2>/dev/null
	wait "$GCS_PID" 2>/dev/null
	GCS_PID=
	unset FERRY_S3_DIALECT
	export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT
}
