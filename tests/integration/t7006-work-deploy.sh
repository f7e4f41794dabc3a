#!/usr/bin/env bash
# t7006: the fleet's deployment files: conf/k8s/*.yaml parse and say what conf/k8s/README.md
# promises (an Indexed Job of `ferry work --once` pods from a CronJob, the podFailurePolicy by
# exit code, the secret, /dev/fuse), fly.toml parses; entrypoint.sh FERRY_MODE=work runs one
# pass without ORG_ID and exits with the worker's status. No cluster runs here: the syntax
# and the shape are checked, not a deployment.
. "$(dirname "$0")/../lib.sh"
python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml missing"

python3 - "$SRC_DIR" <<'PY' || fail "conf/k8s manifests"
import glob, os, sys, tomllib, yaml
src = sys.argv[1]
docs = {}
for f in sorted(glob.glob(os.path.join(src, "conf/k8s/*.yaml"))):
    for d in yaml.safe_load_all(open(f)):
        assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), f
        docs[d["kind"]] = d
kust = docs["Kustomization"]
for r in kust["resources"]:
    assert os.path.exists(os.path.join(src, "conf/k8s", r)), r
cj = docs["CronJob"]
assert cj["apiVersion"] == "batch/v1"
job = cj["spec"]["jobTemplate"]["spec"]
assert cj["spec"]["concurrencyPolicy"] == "Forbid"
assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] >= 2
pod = job["template"]["spec"]
assert pod["restartPolicy"] == "Never"          # podFailurePolicy needs it
rules = job["podFailurePolicy"]["rules"]
def action(code):
    for r in rules:
        if code in r.get("onExitCodes", {}).get("values", []):
            assert r["onExitCodes"]["operator"] == "In"
            return r["action"]
assert action(2) == "FailJob" and action(143) == "Ignore" and action(1) == "Count", rules
assert any(c["type"] == "DisruptionTarget" for r in rules for c in r.get("onPodConditions", []))
c, = pod["containers"]
assert c["name"] == "ferry"
for r in rules:
    if "onExitCodes" in r:
        assert r["onExitCodes"]["containerName"] == "ferry"
assert c["args"] == ["work", "--once"], c["args"]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["FERRY_MODE"] == "work" and env["FERRY_METRICS_PORT"] == "9464"
refs = [e.get("secretRef", e.get("configMapRef"))["name"] for e in c["envFrom"]]
assert docs["Secret"]["metadata"]["name"] in refs and docs["ConfigMap"]["metadata"]["name"] in refs
assert set(docs["Secret"]["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
assert "ORG_ID" not in docs["ConfigMap"]["data"] and "BUCKET_NAME" in docs["ConfigMap"]["data"]
vols = {v["name"]: v for v in pod["volumes"]}
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
assert vols[mounts["/dev/fuse"]]["hostPath"] == {"path": "/dev/fuse", "type": "CharDevice"}
assert "SYS_ADMIN" in c["securityContext"]["capabilities"]["add"]
assert pod["terminationGracePeriodSeconds"] >= 60
fly = tomllib.load(open(os.path.join(src, "fly.toml"), "rb"))
assert fly["metrics"]["port"] == 9464 and fly["kill_signal"] == "SIGTERM"
PY
grep -q '^work)' "$SRC_DIR/entrypoint.sh" || fail "entrypoint.sh has no work mode"

# entrypoint.sh, FERRY_MODE=work: one pass over two orgs, no ORG_ID needed
. "$TESTS_DIR/work.sh"
work_exec_setup 2
ferry_on_path
unset ORG_ID
export FERRY_CONFIG=$PIPE FERRY_MODE=work FERRY_STATE_DIR=$T/state
rc=0
env --default-signal=INT "$SRC_DIR/entrypoint.sh" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 0 ] || { cat "$T/err" >&2; fail "entrypoint in work mode exited $rc"; }
assert_contains "$T/err" "info entrypoint starting ferry config=$PIPE args=work --once"
assert_contains "$T/err" "pass end period=$(date -u +%Y-%m-%d) ok=2 failed=0"
assert_contains "$T/err" "info entrypoint ferry exited status=0"
# a failing org: the entrypoint's status is the worker's, 1
touch "$T/fail.o1"
rc=0
env --default-signal=INT "$SRC_DIR/entrypoint.sh" work --once -o work.records=again/ >"$T/out" 2>"$T/err" || rc=$?
assert_eq 1 $rc "entrypoint status when an org fails"
# the credentials are still required; the variable's value is never printed
rc=0
env -u AWS_SECRET_ACCESS_KEY "$SRC_DIR/entrypoint.sh" >"$T/out" 2>"$T/err" || rc=$?
assert_eq 2 $rc "entrypoint without a secret key"
assert_contains "$T/err" "missing environment variable 'AWS_SECRET_ACCESS_KEY'"
valgrind_verdict
