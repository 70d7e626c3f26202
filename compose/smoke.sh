#!/usr/bin/env bash
# Smoke test of the compose stack on a machine without a registry or a GPU:
#   installs Docker (Debian's docker.io + docker-compose) and starts dockerd if needed, builds the
#   test images from a local Debian base (compose/test/), brings up docker-compose.yml with
#   docker-compose.test.yml (host networking, loopback only) with TLS certificates it makes with
#   openssl, waits for health, checks the stack is secure by default (nothing of it listens beyond
#   loopback; Triton refuses a model unload; the proxy speaks no plain HTTP and upgrades the
#   dashboard's WebSocket for its own origin only; DICOM refuses plain TCP, a called AE title not
#   ours and CR01's certificate calling as PACS), sends a patient's prior and current study with
#   DCMTK's storescu over TLS, checks both results with `priorwatch results --json` inside the
#   stack, the dashboard's /_stcore/health over HTTPS and a signed report over MLLP/TLS (AA; plain
#   TCP gets no ACK), then tears everything down.
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
export PW_HTTPS_PORT=${PW_HTTPS_PORT:-28443} PW_NODE_WORKER_HTTP_PORT=${PW_NODE_WORKER_HTTP_PORT:-21191}
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
# TLS for the stack (mounted as /etc/priorwatch/tls): a throwaway CA, this host's server certificate
# (the node's DICOM and MLLP ports, the proxy), client certificates for a scanner (CN CR01) and the RIS.
make_certs() {
    local d=$1
    mkdir -p "$d" && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=PriorWatch smoke CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null || return 1
    leaf() {  # name subject-CN subjectAltName
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null \
            && printf 'subjectAltName=%s\n' "$3" >"$d/$1.ext" \
            && openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
                -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
    }
    leaf server localhost "DNS:localhost,IP:127.0.0.1" && leaf cr01 CR01 "DNS:cr01" && leaf ris ris.example "DNS:ris.example"
}
make_certs "$STAGE/tls" || { echo "SMOKE FAIL certificates (openssl)"; cleanup_stage; exit 1; }
export PRIORWATCH_TLS_DIR="$STAGE/tls"
build() {  # name dockerfile context
    docker build -q --network host -t "priorwatch-test/$1:latest" -f "$2" "$3" >"$STAGE/build-$1.log" 2>&1 \
        || { tail -30 "$STAGE/build-$1.log" >&2; return 1; }
}
build postgres "$HERE/test/Dockerfile.postgres" "$HERE/test" && build redis "$HERE/test/Dockerfile.redis" "$HERE/test" \
    && build proxy "$HERE/test/Dockerfile.proxy" "$HERE/test" && build app "$HERE/test/Dockerfile.app" "$STAGE/ctx" || { echo "SMOKE FAIL image build"; cleanup_stage; exit 1; }
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
# HTTPS verified against the smoke's CA (the proxy's certificate names localhost and 127.0.0.1).
https_ok() { python3 -c "import ssl,urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=3, \
context=ssl.create_default_context(cafile=sys.argv[2]))" "$1" "$STAGE/tls/ca.crt" 2>/dev/null; }
DASHBOARD_HTTPS="https://127.0.0.1:$PW_HTTPS_PORT/_stcore/health"
if [ -z "$FAIL" ]; then
    ok=0
    for _ in $(seq 1 180); do
        if http_ok "http://127.0.0.1:$PW_NODE_HTTP_PORT/readyz" && http_ok "http://127.0.0.1:$PW_WORKER_HTTP_PORT/readyz" \
                && https_ok "$DASHBOARD_HTTPS"; then ok=1; break; fi
        sleep 1
    done
    [ $ok = 1 ] || fail "services not healthy (node /readyz, worker /readyz, dashboard /_stcore/health over HTTPS)"
fi
step healthy

# 4. Secure by default ---------------------------------------------------------------------
TLS_CR01=(+tls "$STAGE/tls/cr01.key" "$STAGE/tls/cr01.crt" +cf "$STAGE/tls/ca.crt")
if [ -z "$FAIL" ]; then
    # Nothing of the stack listens beyond loopback (host networking: a container's port is the host's).
    ids=$(docker ps -q --no-trunc --filter "label=com.docker.compose.project=$PROJECT" | tr '\n' ' ')
    open=$(ss -ltnpH | python3 -c '
import ipaddress, re, sys
ids = sys.argv[1].split()


def loopback(addr):  # 127.0.0.1, [::1], [::ffff:127.0.0.1] (gRPC binds that way); not * or 0.0.0.0
    try:
        ip = ipaddress.ip_address(addr.strip("[]").split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


for line in sys.stdin:
    local = line.split()[3]
    if loopback(local.rsplit(":", 1)[0]):
        continue
    for pid in re.findall(r"pid=(\d+)", line):
        try:
            cgroup = open(f"/proc/{pid}/cgroup").read()
        except OSError:
            continue
        if any(i in cgroup for i in ids):
            print(local)
            break
' "$ids" | sort -u | tr '\n' ' ')
    [ -z "$open" ] || fail "the stack listens beyond loopback: $open"
    n_listen=$(ss -ltnpH | grep -c "127.0.0.1:\($PW_DICOM_PORT\|$PW_HL7_PORT\|$PW_HTTPS_PORT\|$PW_TRITON_HTTP_PORT\) ")
    [ "$n_listen" -ge 4 ] || fail "expected DICOM, HL7, HTTPS and Triton listening on 127.0.0.1 ($n_listen found)"
fi
if [ -z "$FAIL" ]; then
    # Triton: no model control, so a process that reaches its HTTP port cannot unload the model.
    code=$(curl -s -o "$STAGE/unload.json" -w '%{http_code}' -X POST \
        "http://127.0.0.1:$PW_TRITON_HTTP_PORT/v2/repository/models/registration/unload")
    echo "smoke: Triton unload -> HTTP $code $(head -c 200 "$STAGE/unload.json")"
    [ "$code" != 200 ] || fail "Triton unloaded the model (HTTP 200)"
    ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PW_TRITON_HTTP_PORT/v2/models/registration/ready")
    [ "$ready" = 200 ] || fail "Triton's registration model is not ready after the unload attempt (HTTP $ready)"
fi
if [ -z "$FAIL" ]; then
    # The dashboard: HTTPS through the proxy (checked above); the proxy answers no plain HTTP.
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PW_HTTPS_PORT/_stcore/health")
    [ "$code" != 200 ] || fail "the proxy answered plain HTTP"
    # Streamlit's WebSocket through the proxy: upgraded for the public URL's origin, 403 for another.
    ws() { curl --http1.1 -s -o /dev/null -m 3 -w '%{http_code}' --cacert "$STAGE/tls/ca.crt" -H "Connection: Upgrade" \
        -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
        -H "Origin: $1" "https://127.0.0.1:$PW_HTTPS_PORT/_stcore/stream"; }
    ours=$(ws "https://127.0.0.1:$PW_HTTPS_PORT") other=$(ws "https://elsewhere.example")
    echo "smoke: dashboard WebSocket through the proxy: own origin -> $ours, another origin -> $other"
    [ "$ours" = 101 ] && [ "$other" = 403 ] || fail "dashboard WebSocket through the proxy (own origin $ours, another $other)"
fi
refused() {  # what expected-words storescu-args...: a store that must fail, saying why (when words given)
    local what=$1 want=$2 out
    shift 2
    if out=$(TCP_NODELAY=1 /usr/bin/storescu "$@" 127.0.0.1 "$PW_DICOM_PORT" "$PROBE" 2>&1); then
        fail "DICOM stored $what"
    elif [ -n "$want" ] && ! grep -q "$want" <<<"$out"; then
        fail "DICOM refused $what, but not with '$want': $(tail -3 <<<"$out")"
    fi
}
step secure

# 5. Two studies of one patient (prior, then current) with DCMTK's storescu over TLS -------

if [ -z "$FAIL" ]; then
    docker run --rm --network none -v "$STAGE/studies:/out" priorwatch-test/app:latest python3 -c '
from pydicom import dcmread
from comparison.synthetic import make_pair
p = make_pair("/out", "PWSMOKE1", seed=3)
print(p.prior_study_uid, p.current_study_uid, dcmread(p.current_paths[0], stop_before_pixels=True).AccessionNumber)
for name, paths in (("prior", p.prior_paths), ("current", p.current_paths)):
    open(f"/out/{name}.list", "w").write("\n".join(str(x) for x in paths))
' >"$STAGE/uids" || fail "making the test studies"
fi
if [ -z "$FAIL" ]; then
    read -r PRIOR_UID CURRENT_UID ACCESSION <"$STAGE/uids"
    # Refused before anything is stored (the results below would count a stray study).
    PROBE=$(sed -n "1s#^/out#$STAGE/studies#p" "$STAGE/studies/prior.list")
    refused "over plain TCP" "" -aet CR01 -aec PRIORWATCH
    refused "for a called AE title not ours" "Called AE Title Not Recognized" -aet CR01 -aec ANYTHING "${TLS_CR01[@]}"
    refused "from CR01's certificate calling as PACS" "Calling AE Title Not Recognized" -aet PACS -aec PRIORWATCH "${TLS_CR01[@]}"
fi
if [ -z "$FAIL" ]; then
    for which in prior current; do
        files=$(sed "s#^/out#$STAGE/studies#" "$STAGE/studies/$which.list")
        # shellcheck disable=SC2086
        TCP_NODELAY=1 /usr/bin/storescu -aet CR01 -aec PRIORWATCH "${TLS_CR01[@]}" 127.0.0.1 "$PW_DICOM_PORT" $files \
            || { fail "storescu over TLS ($which)"; break; }
        sleep 1
    done
fi
step send

# 6. Results inside the stack, the dashboard over HTTPS, a signed report over MLLP/TLS -----
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
    https_ok "$DASHBOARD_HTTPS" || fail "dashboard /_stcore/health over HTTPS"
    python3 -c "import urllib.request,sys; t=urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(); \
sys.exit(0 if 'priorwatch_studies_completed 2.0' in t or 'priorwatch_studies_completed_total 2.0' in t else 1)" \
        "http://127.0.0.1:$PW_NODE_HTTP_PORT/metrics" || fail "node /metrics does not count 2 completed studies"
fi
step results
if [ -z "$FAIL" ]; then
    python3 - "$PW_HL7_PORT" "$STAGE/tls" "$ACCESSION" <<'EOF' || fail "HL7 MLLP over TLS"
import socket, ssl, sys
port, d, accession = int(sys.argv[1]), sys.argv[2], sys.argv[3]
obr = [""] * 33
obr[0], obr[1], obr[2], obr[3], obr[4] = "OBR", "1", "ORD1", accession, "XR CHEST^Chest X-ray"
obr[7], obr[22], obr[25], obr[32] = "20250301090000", "20250301101000", "F", "DRSMITH&Smith&Anna"
msg = "\r".join(["MSH|^~\\&|RIS|HOSP|PRIORWATCH|HOSP|20250301101500||ORU^R01|SMOKE1|P|2.5.1",
                 "PID|1||PWSMOKE1||DOE^JANE||19600101|F", "|".join(obr),
                 "OBX|1|TX|IMP^Impression||No interval change.||||||F"]).encode()
framed = b"\x0b" + msg + b"\x1c\r"


def exchange(sock):
    sock.sendall(framed)
    buf = b""
    while not buf.endswith(b"\x1c\r"):
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # plain TCP: no ACK
    plain = exchange(raw)
ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
ctx.load_cert_chain(f"{d}/ris.crt", f"{d}/ris.key")
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        ack = exchange(sock).decode("utf-8", "replace")
msa = [seg for seg in ack.strip("\x0b\x1c\r").split("\r") if seg.startswith("MSA|")]
print(f"smoke: HL7 over plain TCP -> {len(plain)} bytes back; over TLS -> {msa[0] if msa else ack[:120]!r}")
sys.exit(0 if not plain and msa and msa[0].startswith("MSA|AA|SMOKE1") else 1)
EOF
fi
step hl7

teardown; trap - EXIT
step down
TOTAL=$(( $(date +%s) - T0 ))
summary="docker ${T[docker]}s base ${T[base]}s build ${T[build]}s up ${T[up]}s healthy ${T[healthy]}s secure ${T[secure]}s send ${T[send]}s results ${T[results]}s hl7 ${T[hl7]}s down ${T[down]}s total ${TOTAL}s"
if [ -z "$FAIL" ]; then
    echo "SMOKE PASS: 2 studies over DICOM TLS -> 2 results (prior no_prior, current compared with it), node/worker ready, dashboard healthy over HTTPS, signed report AA over MLLP/TLS; refused: plain DICOM, a called AE not ours, CR01's certificate as PACS, Triton unload, plain HTTP to the proxy, the dashboard's WebSocket from another origin; nothing listens beyond loopback; $summary"
    exit 0
fi
echo "SMOKE FAIL: $FAIL; $summary"
exit 1
