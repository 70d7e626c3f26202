#!/usr/bin/env bash
# Smoke test of the compose stack on a machine without a registry or a GPU:
#   installs Docker (Debian's docker.io + docker-compose) and starts dockerd if needed, builds the
#   test images from a local Debian base (compose/test/), brings up docker-compose.yml with
#   docker-compose.test.yml (host networking, loopback only), waits for health, sends a patient's
#   prior and current study with DCMTK's storescu, checks both results with `priorwatch results
#   --json` inside the stack and the dashboard's /_stcore/health, then tears everything down.
# Exit 0 only if all of that held. Prints one summary line (SMOKE PASS|FAIL ...) with timings.
# Environment: PW_SITE_PACKAGES (an installed environment's site-packages to copy into the app
# image instead of downloading from PyPI; default: this checkout's .venv if present),
# PW_KEEP=1 (leave the stack up), PW_*_PORT (see docker-compose.test.yml).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
T0=$(date +%s)
declare -A T
FAIL=""
step() { T[$1]=$(( $(date +%s) - ${T_START:-$T0} )); T_START=$(date +%s); }
fail() { FAIL="$1"; echo "smoke: FAIL: $1" >&2; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export PW_PG_PORT=${PW_PG_PORT:-15432} PW_REDIS_PORT=${PW_REDIS_PORT:-16379}
export PW_DICOM_PORT=${PW_DICOM_PORT:-21112} PW_NODE_HTTP_PORT=${PW_NODE_HTTP_PORT:-21180}
export PW_WORKER_HTTP_PORT=${PW_WORKER_HTTP_PORT:-21190} PW_DASHBOARD_PORT=${PW_DASHBOARD_PORT:-28501}
export PW_TRITON_HTTP_PORT=${PW_TRITON_HTTP_PORT:-28000} PW_TRITON_GRPC_PORT=${PW_TRITON_GRPC_PORT:-28001}
export PW_TRITON_METRICS_PORT=${PW_TRITON_METRICS_PORT:-28002} PW_HL7_PORT=${PW_HL7_PORT:-22575}
export PW_NODE_TOKEN=${PW_NODE_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
PROJECT=pwsmoke
STAGE=$(mktemp -d /var/tmp/pw-smoke.XXXXXX)
T_START=$T0

# 1. Docker -------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; } \
        || ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/storescu ]; then
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        docker.io docker-compose debootstrap dcmtk >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    # No bridge: every container of this stack uses the host's network (loopback only).
    $SUDO sh -c 'nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/pw-dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info >/dev/null 2>&1 || { echo "SMOKE FAIL docker daemon did not start"; exit 1; }
if docker compose version >/dev/null 2>&1; then DC=(docker compose); else DC=(docker-compose); fi
step docker

# 2. Images -------------------------------------------------------------------------------
cleanup_stage() { rm -rf "$STAGE"; }
bash "$HERE/test/base-image.sh" || { echo "SMOKE FAIL base image"; cleanup_stage; exit 1; }
step base
mkdir -p "$STAGE/ctx/src" "$STAGE/ctx/site-packages" "$STAGE/studies"
( cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf - ) | tar -xf - -C "$STAGE/ctx/src"
SITE=${PW_SITE_PACKAGES:-$ROOT/.venv/lib/python3.11/site-packages}
if [ -d "$SITE" ]; then
    # What the registration stack needs; not torch/transformers (VLM) nor the browser-test driver.
    ( cd "$SITE" && tar -cf - --exclude='./torch' --exclude='./torch-*' --exclude='./playwright' \
        --exclude='./__editable__*' --exclude='./priorwatch-*' --exclude='./transformers' \
        --exclude='./triton' --exclude='./nvidia' --exclude='*/__pycache__' . ) | tar -xf - -C "$STAGE/ctx/site-packages"
fi
# pip in the build trusts what this machine's pip trusts (a site's proxy may re-sign TLS).
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$STAGE/ctx/build-ca.crt" 2>/dev/null || : >"$STAGE/ctx/build-ca.crt"
printf '%s\n' "$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$STAGE/pg_password"
build() {  # name dockerfile context
    docker build -q --network host -t "priorwatch-test/$1:latest" -f "$2" "$3" >"$STAGE/build-$1.log" 2>&1 \
        || { tail -30 "$STAGE/build-$1.log" >&2; return 1; }
}
build postgres "$HERE/test/Dockerfile.postgres" "$HERE/test" && build redis "$HERE/test/Dockerfile.redis" "$HERE/test" \
    && build app "$HERE/test/Dockerfile.app" "$STAGE/ctx" || { echo "SMOKE FAIL image build"; cleanup_stage; exit 1; }
rm -rf "$STAGE/ctx"
step build

# 3. The stack: production file + test override, less what a CPU-only, host-network machine
#    cannot have (the GPU reservation, published ports, the VLM folder mount).
export PRIORWATCH_PG_PASSWORD_FILE="$STAGE/pg_password"
( cd "$HERE" && "${DC[@]}" -f docker-compose.yml -f docker-compose.test.yml config ) > "$STAGE/merged.yml" \
    || { echo "SMOKE FAIL compose config"; cleanup_stage; exit 1; }
python3 - "$STAGE/merged.yml" "$STAGE/stack.yml" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
for name, svc in cfg["services"].items():
    svc.pop("ports", None)
    svc.pop("build", None)
    if name == "triton":
        svc.pop("deploy", None)
        svc.pop("volumes", None)
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
EOF
DCP=("${DC[@]}" -p "$PROJECT" -f "$STAGE/stack.yml")
teardown() {
    if [ "${PW_KEEP:-0}" != 1 ]; then
        "${DCP[@]}" logs --no-color >"$STAGE/stack.log" 2>&1 || true
        [ -n "$FAIL" ] && tail -60 "$STAGE/stack.log" >&2
        "${DCP[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
        cleanup_stage
    fi
}
trap teardown EXIT
"${DCP[@]}" up -d --no-build >"$STAGE/up.log" 2>&1 || { tail -20 "$STAGE/up.log" >&2; fail "compose up"; }
step up

http_ok() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=3)" "$1" 2>/dev/null; }
if [ -z "$FAIL" ]; then
    ok=0
    for _ in $(seq 1 180); do
        if http_ok "http://127.0.0.1:$PW_NODE_HTTP_PORT/readyz" && http_ok "http://127.0.0.1:$PW_WORKER_HTTP_PORT/readyz" \
                && http_ok "http://127.0.0.1:$PW_DASHBOARD_PORT/_stcore/health"; then ok=1; break; fi
        sleep 1
    done
    [ $ok = 1 ] || fail "services not healthy (node /readyz, worker /readyz, dashboard /_stcore/health)"
fi
step healthy

# 4. Two studies of one patient (prior, then current) with DCMTK's storescu -----------------
if [ -z "$FAIL" ]; then
    docker run --rm --network none -v "$STAGE/studies:/out" priorwatch-test/app:latest python3 -c '
from comparison.synthetic import make_pair
p = make_pair("/out", "PWSMOKE1", seed=3)
print(p.prior_study_uid, p.current_study_uid)
for name, paths in (("prior", p.prior_paths), ("current", p.current_paths)):
    open(f"/out/{name}.list", "w").write("\n".join(str(x) for x in paths))
' >"$STAGE/uids" || fail "making the test studies"
fi
if [ -z "$FAIL" ]; then
    read -r PRIOR_UID CURRENT_UID <"$STAGE/uids"
    for which in prior current; do
        files=$(sed "s#^/out#$STAGE/studies#" "$STAGE/studies/$which.list")
        # shellcheck disable=SC2086
        TCP_NODELAY=1 /usr/bin/storescu -aet CR01 -aec PRIORWATCH 127.0.0.1 "$PW_DICOM_PORT" $files \
            || { fail "storescu ($which)"; break; }
        sleep 1
    done
fi
step send

# 5. Results inside the stack --------------------------------------------------------------
if [ -z "$FAIL" ]; then
    got=""
    for _ in $(seq 1 180); do
        "${DCP[@]}" exec -T node priorwatch results --json >"$STAGE/results.json" 2>/dev/null
        got=$(python3 - "$STAGE/results.json" "$PRIOR_UID" "$CURRENT_UID" <<'EOF'
import json, sys
try:
    recs = json.load(open(sys.argv[1]))
except ValueError:
    recs = []
prior, cur = sys.argv[2], sys.argv[3]
by = {r["current_study_uid"]: r for r in recs}
ok = (len(recs) == 2 and by.get(prior, {}).get("status") == "no_prior"
      and by.get(cur, {}).get("status") == "done" and by[cur].get("prior_study_uid") == prior)
print("ok" if ok else f"{len(recs)} results")
EOF
)
        [ "$got" = ok ] && break
        sleep 1
    done
    [ "$got" = ok ] || fail "results: $got (want the prior as no_prior and the current compared with it)"
fi
if [ -z "$FAIL" ]; then
    http_ok "http://127.0.0.1:$PW_DASHBOARD_PORT/_stcore/health" || fail "dashboard /_stcore/health"
    python3 -c "import urllib.request,sys; t=urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(); \
sys.exit(0 if 'priorwatch_studies_completed 2.0' in t or 'priorwatch_studies_completed_total 2.0' in t else 1)" \
        "http://127.0.0.1:$PW_NODE_HTTP_PORT/metrics" || fail "node /metrics does not count 2 completed studies"
fi
step results

teardown; trap - EXIT
step down
TOTAL=$(( $(date +%s) - T0 ))
summary="docker ${T[docker]}s base ${T[base]}s build ${T[build]}s up ${T[up]}s healthy ${T[healthy]}s send ${T[send]}s results ${T[results]}s down ${T[down]}s total ${TOTAL}s"
if [ -z "$FAIL" ]; then
    echo "SMOKE PASS: 2 studies -> 2 results (prior no_prior, current compared with it), node/worker ready, dashboard healthy; $summary"
    exit 0
fi
echo "SMOKE FAIL: $FAIL; $summary"
exit 1
