#!/usr/bin/env bash
# tests/container/run.sh: builds ferry's image from the repository's Dockerfile with podman and
# runs it against a moto_server on the host, as a user would. Prints PASS/FAIL per case and
# "N passed, N failed"; exits non-zero on any failure (77: no engine possible here).
#
#   bash tests/container/run.sh [--rebuild]
#
# Set-up (cached in $FERRY_CONTAINER_CACHE, default /var/cache/ferry-container):
#   - Debian's podman and runc; containers.conf with default_ulimits = [] (the runtime may not
#     raise RLIMIT_NPROC/NOFILE on these machines) and runtime runc (crun refuses hybrid
#     cgroups here), given through CONTAINERS_CONF;
#   - the base images the Dockerfile names, debian:12 and debian:12-slim, made locally with
#     `debootstrap --variant=minbase bookworm` and `podman import` (nothing is pulled from a
#     registry); the slim one with the slim image's dpkg exclusions (docs, man pages, locales)
#     so that the runtime image's size is honest.
# Cases: the default pipeline on a generated org (exit 0, schedule on S3, no lock, no mount);
# a missing variable (exit 2, the entrypoint's message); `podman stop` mid-run (exit 143, lock
# released); FERRY_MODE=serve with `podman exec ... ferry run --dry-run` and a manual schedule
# published by `ferry run push`; FERRY_MODE=work over 3 orgs (a run record each).
. "$(dirname "$0")/../lib.sh"
set -u
CACHE=${FERRY_CONTAINER_CACHE:-/var/cache/ferry-container}
IMAGE=localhost/ferry:test
REBUILD=
[ "${1:-}" = --rebuild ] && REBUILD=1
[ "$(id -u)" = 0 ] || skip "needs root"
[ -c /dev/fuse ] || skip "no /dev/fuse"

say() { printf '%s container: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
mkdir -p "$CACHE"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
	say "installing podman, runc, debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		podman runc debootstrap uidmap slirp4netns fuse-overlayfs >"$CACHE/apt.log" 2>&1 ||
		{ tail -5 "$CACHE/apt.log"; fail "cannot install podman"; }
fi
cat >"$CACHE/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$CACHE/containers.conf

# base IMAGE SLIM: debootstrap a bookworm minbase once (cached as a tarball), import it
base() {
	local name=$1 slim=$2 tarball=$CACHE/${1//:/-}-v2.tar root t0
	if [ ! -s "$tarball" ]; then
		root=$CACHE/root-${name//:/-}
		rm -rf "$root"
		t0=$(date +%s)
		say "debootstrap $name (minutes; cached afterwards in $tarball)"
		debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
			>"$CACHE/debootstrap.log" 2>&1 || { tail -5 "$CACHE/debootstrap.log"; fail "debootstrap $name"; }
		if [ "$slim" = 1 ]; then
			cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EXCL'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EXCL
			find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null
			rm -rf "$root"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/* 2>/dev/null
		fi
		# as Docker's debian images: no package lists, no .debs kept after an install
		cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CLEAN
		rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
		tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
		rm -rf "$root"
		say "debootstrap $name done in $(($(date +%s) - t0)) s, $(du -m "$tarball" | cut -f1) MiB"
	fi
	if [ -n "$REBUILD" ] || [ "$(podman image inspect -f '{{.Comment}}' "localhost/$name" 2>/dev/null)" != "$(basename "$tarball")" ]; then
		podman import -q -m "$(basename "$tarball")" - "localhost/$name" <"$tarball" >/dev/null ||
			fail "podman import $name"
	fi
}
base debian:12 0
base debian:12-slim 1

if [ -n "$REBUILD" ] || ! podman image exists "$IMAGE" ||
	[ "$(podman image inspect -f '{{index .Labels "ferry.source"}}' "$IMAGE" 2>/dev/null)" != "$(cd "$SRC_DIR" && git rev-parse HEAD 2>/dev/null)-$(cd "$SRC_DIR" && git status --porcelain | sha1sum | cut -c1-8)" ]; then
	t0=$(date +%s)
	say "podman build of $SRC_DIR/Dockerfile (about 2 minutes; progress in $CACHE/build.log)"
	label="$(cd "$SRC_DIR" && git rev-parse HEAD 2>/dev/null)-$(cd "$SRC_DIR" && git status --porcelain | sha1sum | cut -c1-8)"
	(cd "$SRC_DIR" && podman build --network host --pull=never --label "ferry.source=$label" \
		-t "$IMAGE" -f Dockerfile . >"$CACHE/build.log" 2>&1) &
	bpid=$!
	while kill -0 $bpid 2>/dev/null; do
		sleep 10
		kill -0 $bpid 2>/dev/null && say "building: $(($(date +%s) - t0)) s, last step: $(grep -E 'STEP [0-9]' "$CACHE/build.log" | tail -1 | cut -c1-70)"
	done
	wait $bpid || { tail -20 "$CACHE/build.log"; fail "podman build failed"; }
	say "image built in $(($(date +%s) - t0)) s"
fi
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
say "image $IMAGE: $((size / 1048576)) MiB"
echo "$size" >"$CACHE/image-size"

moto_start
pass=0 nfail=0
case_result() { # case_result NAME OK? DETAIL
	if [ "$2" = 0 ]; then pass=$((pass + 1)); echo "PASS container/$1"
	else nfail=$((nfail + 1)); echo "FAIL container/$1: $3"; fi
}
ENVS=(-e BUCKET_NAME -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION
	-e "AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MOTO_PORT")
RUNF=(--rm --network host --device /dev/fuse --cap-add SYS_ADMIN --security-opt label=disable)
at_exit "podman rm -f -t 0 ferry-serve ferry-stop >/dev/null 2>&1"
s3() { ORG_ID=host ferry -q s3 "$@"; }     # conf/pipeline.ini's [s3], on the host
gen() { python3 "$TESTS_DIR/gen_orgdb.py" --contacts "$2" --seed "$1" --today 2026-03-02 "$T/org$1.db" >/dev/null; }
no_host_mount() { ! grep -q "fuse.ferryfs" /proc/mounts; }

# 1. the default pipeline on a generated org
gen 1 2000 && s3 put "$T/org1.db" org-data/1.db >/dev/null
etag_of() { s3 head "$1" 2>/dev/null | sed -n 's/^etag: *//p'; }
before=$(etag_of org-data/1.db)
rc=0; podman run "${RUNF[@]}" "${ENVS[@]}" -e ORG_ID=1 "$IMAGE" >"$T/c1.out" 2>"$T/c1.err" || rc=$?
s3 get org-data/1.db "$T/after1.db" >/dev/null 2>&1
rows=$(sqlite3 "$T/after1.db" "SELECT count(*) FROM email_schedules" 2>/dev/null || echo 0)
ok=1
[ $rc = 0 ] && [ "$rows" -gt 0 ] && ! s3 head org-data/1.db.lock >/dev/null 2>&1 && no_host_mount &&
	[ "$(etag_of org-data/1.db)" != "$before" ] && ok=0
case_result default-pipeline $ok "exit $rc, $rows schedule rows: $(tail -3 "$T/c1.err")"

# 2. a missing variable: exit 2 and the entrypoint's message, before ferry runs
rc=0; podman run "${RUNF[@]}" -e BUCKET_NAME -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY "$IMAGE" \
	>"$T/c2.out" 2>"$T/c2.err" || rc=$?
ok=1; [ $rc = 2 ] && grep -q "missing environment variable 'ORG_ID'" "$T/c2.err" && ok=0
case_result missing-variable $ok "exit $rc: $(cat "$T/c2.err")"

# 3. podman stop mid-run: ferry unwinds, exit 143, the lock released. A slow stage makes
#    "mid-run" certain: an exec stage sleeping after lock and mount.
cat >"$T/slow.ini" <<'INI'
[pipeline]
name = slow
state_dir = /var/lib/ferry
[s3]
endpoint = ${AWS_ENDPOINT_URL_S3}
region = us-east-1
bucket = ${BUCKET_NAME}
[stage lock]
plugin = lock
key = org-data/${ORG_ID}.db.lock
[stage mount]
plugin = mount
mountpoint = /mnt/bucket
[stage wait]
plugin = exec
command = sleep 60
[stage unlock]
plugin = unlock
INI
podman run "${RUNF[@]}" --name ferry-stop "${ENVS[@]}" -e ORG_ID=1 -v "$T/slow.ini:/etc/ferry/slow.ini:ro" \
	-e FERRY_CONFIG=/etc/ferry/slow.ini "$IMAGE" >"$T/c3.out" 2>"$T/c3.err" &
cpid=$!
# the lock object appears, then the mount: give it a second more, then stop
n=0; until s3 head org-data/1.db.lock >/dev/null 2>&1 || [ $n -ge 300 ]; do sleep 0.1; n=$((n + 1)); done
sleep 1.5
held=1; s3 head org-data/1.db.lock >/dev/null 2>&1 && held=0
podman stop -t 30 ferry-stop >/dev/null 2>&1
rc=0; wait $cpid || rc=$?
ok=1; [ $held = 0 ] && [ $rc = 143 ] && ! s3 head org-data/1.db.lock >/dev/null 2>&1 && no_host_mount && ok=0
case_result stop-mid-run $ok "lock held during the run: $([ $held = 0 ] && echo yes || echo no), exit $rc: $(tail -4 "$T/c3.err")"

# 4. FERRY_MODE=serve: an operator's SSH session (podman exec) runs a dry run, then a manual
#    schedule for another day, then `ferry run push` publishes it
podman run -d "${RUNF[@]}" --name ferry-serve "${ENVS[@]}" -e ORG_ID=1 -e FERRY_MODE=serve "$IMAGE" >/dev/null
pe() { podman exec ferry-serve "$@"; }
rc=0; pe ferry run --dry-run >"$T/c4a.out" 2>"$T/c4a.err" || rc=$?
ok=1; [ $rc = 0 ] && grep -q "dry-run" "$T/c4a.err" && ok=0
case_result serve-dry-run $ok "exit $rc: $(tail -3 "$T/c4a.err")"
rc=0
pe ferry run >/dev/null 2>"$T/c4b.err" &&
	pe ferry run schedule --today 2026-06-01 --run-id manual >/dev/null 2>>"$T/c4b.err" &&
	pe ferry run push >/dev/null 2>"$T/c4c.err" || rc=$?
s3 get org-data/1.db "$T/after4.db" >/dev/null 2>&1
manual=$(sqlite3 "$T/after4.db" "SELECT count(*) FROM email_schedules WHERE scheduler_run_id = 'manual'" 2>/dev/null || echo 0)
ok=1; [ $rc = 0 ] && [ "$manual" -gt 0 ] && grep -q "bringing in lock, mount, unlock for push" "$T/c4c.err" &&
	! s3 head org-data/1.db.lock >/dev/null 2>&1 && ok=0
case_result serve-rerun-push $ok "exit $rc, $manual rows of the manual run on S3: $(tail -3 "$T/c4c.err")"
podman rm -f -t 5 ferry-serve >/dev/null 2>&1
no_host_mount; case_result serve-no-mount-left $? "a ferryfs mount is left on the host"

# 5. FERRY_MODE=work: one pass over 3 orgs, a run record each
for o in 11 12 13; do gen $o 300 && s3 put "$T/org$o.db" "org-data/$o.db" >/dev/null; done
s3 rm org-data/1.db >/dev/null
rc=0; podman run "${RUNF[@]}" "${ENVS[@]}" -e FERRY_MODE=work "$IMAGE" >"$T/c5.out" 2>"$T/c5.err" || rc=$?
period=$(date -u +%F)
recs=0; for o in 11 12 13; do s3 head "ferry-runs/$o/$period.json" >/dev/null 2>&1 && recs=$((recs + 1)); done
ok=1; [ $rc = 0 ] && [ $recs = 3 ] && ok=0
case_result work-mode $ok "exit $rc, $recs of 3 run records: $(tail -3 "$T/c5.err")"

echo "image size: $((size / 1048576)) MiB"
echo "$pass passed, $nfail failed"
[ $nfail = 0 ]
