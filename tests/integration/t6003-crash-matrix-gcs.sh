#!/usr/bin/env bash
# The crash matrix's push points in the gcs dialect, against the GCS XML-API test server:
# push's write is one PUT fenced by x-goog-if-generation-match; wherever ferry is killed,
# the object on the store is the old or the new version, whole, and the next run recovers
# (takes the lock over, succeeds, leaves no lock and no mount).
E2E_STORE=gcs exec bash "$(dirname "$0")/../reliability/crash_matrix.sh" 1 push.mid_write \
	push.before_fsync push.after_commit push.before_manifest
