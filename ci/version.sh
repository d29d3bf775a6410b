#!/usr/bin/env bash
# Prints the version images are tagged with: the git description of this
# tree (a tag, or tag-N-gSHA, or the short SHA; "-dirty" when it has
# uncommitted changes), made a valid image tag ([A-Za-z0-9_.-], at most
# 128 characters, not starting with . or -). Outside a git tree: "dev".
set -euo pipefail
cd "$(dirname "$0")/.."
v=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
v=$(printf '%s' "$v" | tr -c 'A-Za-z0-9_.-' '-')
v=${v#[.-]}
printf '%s\n' "${v:0:128}"
