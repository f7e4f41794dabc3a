#!/bin/bash
# tests/bench/lock.sh: lock figures on moto: uncontended acquire (requests, ms), handoff after release, races.
#   PROCS=16 ROUNDS=200 bash tests/bench/lock.sh     (defaults; figures go to stdout)
. "$(dirname "$0")/../lib.sh"


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
