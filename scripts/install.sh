#!/usr/bin/env bash
# Installs everything PriorWatch needs on a fresh Debian machine: the real DICOM peers
# (DCMTK, Orthanc, dicom3tools), Chromium for the browser tests, and a virtualenv with the
# project, the torch 2.13.0 CPU wheel, transformers and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq \
    dcmtk orthanc orthanc-dicomweb dicom3tools chromium chromium-driver socat openssl >/dev/null
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -U pip
# torch==2.13.0+cpu is pinned in pyproject so pip takes the CPU wheel, never a CUDA build.
.venv/bin/pip install -q -e '.[ml,test]'
echo "installed: $(.venv/bin/priorwatch --help >/dev/null && echo priorwatch OK)"
