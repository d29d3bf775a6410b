#!/usr/bin/env bash
# Builds Skiff's container images (build/Dockerfile): skiff-proxy,
# skiff-init, skiff-controller and skiff-demo, tagged
# $REGISTRY/<name>:$VERSION. Needs a Docker engine; without one it says so
# in one line and exits 2, as the kind environment does.
#
# Environment: REGISTRY (ghcr.io/skiff-mesh, mesh/kubemeta.DefaultRegistry),
# VERSION (ci/version.sh: the git description of this tree), DOCKER
# (docker; podman works too).
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${REGISTRY:-ghcr.io/skiff-mesh}
VERSION=${VERSION:-$(./ci/version.sh)}
DOCKER=${DOCKER:-docker}

if ! command -v "$DOCKER" >/dev/null 2>&1; then
  echo "make images: needs a Docker engine: $DOCKER is not installed (the images are described by build/Dockerfile)" >&2
  exit 2
fi
if ! why=$("$DOCKER" version --format '{{.Server.Version}}' 2>&1); then
  echo "make images: needs a Docker engine: $DOCKER version failed: $(printf '%s\n' "$why" | grep -m 1 .)" >&2
  exit 2
fi

for target in proxy init controller demo; do
  image="$REGISTRY/skiff-$target:$VERSION"
  echo "== $image"
  "$DOCKER" build -f build/Dockerfile --target "$target" -t "$image" .
done
