#!/usr/bin/env bash
# Makes the local Debian base image `priorwatch-test/debian:bookworm` with debootstrap (no image
# registry is reachable here; the Debian mirror apt already uses is). Idempotent: an existing
# image is kept.
set -euo pipefail
NAME=${PW_BASE_IMAGE:-priorwatch-test/debian:bookworm}
docker image inspect "$NAME" >/dev/null 2>&1 && exit 0
MIRROR=${PW_DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=$(mktemp -d /var/tmp/pw-debootstrap.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >/dev/null
rm -rf "$ROOT"/var/cache/apt/archives/*.deb
tar -C "$ROOT" -c . | docker import - "$NAME" >/dev/null
