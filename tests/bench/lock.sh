#!/bin/bash
# tests/bench/lock.sh: lock figures on moto: uncontended acquire (requests, ms), handoff after release, races.
#   PROCS=16 ROUNDS=200 bash tests/bench/lock.sh     (defaults; figures go to stdout)
. "$(dirname "$0")/../lib.sh"

# moto_start_serial [BUCKET]: moto_start, but moto's WSGI app serialised by one lock.
# moto 5.2.1 checks If-None-Match / If-Match and then writes without a lock
# (moto/s3/responses.py, put_object), so concurrent conditional PUTs can both succeed;
# S3 makes them atomic. Races against moto are only meaningful serialised.
moto_start_serial() {
	local bucket=${1:-ferry-test} n=0
	python3 -c 'import moto' 2>/dev/null || skip "python moto missing"
	MOTO_PORT=$(free_port)
	python3 - "$MOTO_PORT" >"$T/moto.log" 2>&1 <<'PY' &
import signal, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
app = DomainDispatcherApplication(create_backend_app)
one = threading.Lock()
def serial(environ, start_response):
    with one:
        return list(app(environ, start_response))
run_simple('127.0.0.1', int(sys.argv[1]), serial, threaded=True)
PY
	MOTO_PID=$!
	at_exit "kill $MOTO_PID; wait $MOTO_PID"
	while ! curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; do
		kill -0 "$MOTO_PID" 2>/dev/null && [ $n -lt 150 ] || { cat "$T/moto.log" >&2; fail "moto (serialised) did not start"; }
		sleep 0.1
		n=$((n + 1))
	done
	export MOTO_PORT AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT BUCKET_NAME=$bucket
	moto_mkbucket "$bucket"
}

PROCS=${PROCS:-16}
ROUNDS=${ROUNDS:-200}
SOLO=${SOLO:-100}
HANDOFFS=${HANDOFFS:-20}
RACE=$FERRY_BUILD/tests/tools/lockrace
[ -x "$RACE" ] || fail "lockrace not built ($RACE): make $RACE"
# MOTO=plain races against stock moto_server (see moto_start_serial for why it can fail)
if [ "${MOTO:-serial}" = plain ]; then moto_start; else moto_start_serial; fi

echo "# lock bench on moto_server (${MOTO:-serial}) $(python3 -c 'import moto; print(moto.__version__)'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
bad=0
run() { "$RACE" -T 1200 "$@" || bad=1; }

echo "## uncontended acquire + release, one process, $SOLO times"
run -m solo -r "$SOLO" -H 0 -k bench/solo.lock
echo "## handoff: ms from the holder's release to the waiter holding it (plugin defaults 250ms/2s)"
run -m handoff -r "$HANDOFFS" -b 250 -c 2000 -k bench/handoff.lock
echo "## handoff with backoff 50ms/500ms"
run -m handoff -r "$HANDOFFS" -b 50 -c 500 -k bench/handoff2.lock
echo "## race: $PROCS processes x $ROUNDS rounds, all try at once on a free lock"
run -m round -n "$PROCS" -r "$ROUNDS" -H 1 -k bench/round.lock
echo "## takeover race: $PROCS processes x $((ROUNDS / 4)) rounds on an expired lock"
run -m takeover -n "$PROCS" -r $((ROUNDS / 4)) -H 1 -k bench/takeover.lock
echo "## waiting race: $PROCS processes x $((ROUNDS / 10)) acquisitions each (backoff 50ms/500ms)"
run -m wait -n "$PROCS" -r $((ROUNDS / 10)) -H 1 -b 50 -c 500 -w 900000 -k bench/wait.lock
exit $bad
