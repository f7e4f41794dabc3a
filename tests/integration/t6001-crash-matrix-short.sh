#!/usr/bin/env bash
# The crash matrix (tests/reliability/crash_matrix.sh), one iteration on a point of each
# stage: the S3 object stays the old or the new version, the replica stays whole, the next
# run takes over the dead run's lock and succeeds. The full matrix (10 iterations, every
# point) is a bench: bash tests/reliability/crash_matrix.sh 10
exec bash "$(dirname "$0")/../reliability/crash_matrix.sh" 1 lock.after_run pull.before_commit \
	schedule.mid_write push.mid_write push.before_manifest unlock.before_run
