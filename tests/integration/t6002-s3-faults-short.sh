#!/usr/bin/env bash
# The S3 fault matrix (tests/reliability/s3_faults.sh) over the whole pipeline, every fault
# kind: each run either succeeds through retries or fails with unwinding and a message, and
# never leaves a torn object, a lock or a mount.
exec bash "$(dirname "$0")/../reliability/s3_faults.sh"
