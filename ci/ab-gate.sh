#!/usr/bin/env bash
# The A/B gate: this tree's skiff-proxy against a base build's, in one
# interleaved bench that also decides the absolute gate
# (skiff bench --gate --baseline-proxy-bin; docs/proxy.md, "The A/B gate").
#
# The base is $AB_BASE when set (any commit-ish), else the parent of the
# newest commit that changed a file of the proxy's build closure (the
# packages of this module that `go list -deps ./cmd/skiff-proxy` lists,
# their own files, not their subpackages'; go.mod and go.sum) and whose
# parent builds a different proxy, walking past commits that changed only
# comments or layout of Go files (ci/gosame): both proxies are built as the Makefile
# builds them (CGO_ENABLED=0, -trimpath) plus -buildvcs=false, so that two
# builds of the same source are byte-identical, and a commit that changed
# go.mod for the harness, or a comment, is walked past (up to $AB_WALK
# commits, 8 by default). Each base is built from a temporary git
# worktree, removed afterwards whatever happens.
#
# Without a base (a root commit, a shallow clone, a base that does not
# build) it says why in one line and runs the absolute gate alone.
#
# Usage: ci/ab-gate.sh [extra skiff bench flags…]; the bench's exit
# status is the script's (0 PASS, 99 FAIL, 98 INCONCLUSIVE, 1 error).
# Environment: AB_BASE, GO (go), SKIFF (bin/skiff), AB_BENCH_FLAGS
# (default: the CI form, --rate 500 --trials 6 --duration 5s).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
# How many of the closure's newest commits to walk back through while the
# base builds the same proxy as this tree.
AB_WALK=${AB_WALK:-8}
SKIFF=${SKIFF:-bin/skiff}
read -r -a bench_flags <<<"${AB_BENCH_FLAGS:---rate 500 --trials 6 --duration 5s}"
start=$SECONDS
module=$($GO list -m)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/skiff-ab-gate.XXXXXX")
worktree=""
cleanup() {
  if [ -n "$worktree" ]; then
    git worktree remove --force "$worktree" >/dev/null 2>&1 || true
    git worktree prune >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The proxy's build closure as git pathspecs: each package directory's
# own files, go.mod and go.sum.
closure=(go.mod go.sum)
root=$(pwd -P)
while IFS= read -r dir; do
  rel=${dir#"$root"}
  rel=${rel#/}
  if [ -z "$rel" ]; then
    closure+=(":(glob)*")
  else
    closure+=(":(glob)$rel/*")
  fi
done < <($GO list -deps -f '{{if .Module}}{{if eq .Module.Path "'"$module"'"}}{{.Dir}}{{end}}{{end}}' ./cmd/skiff-proxy | sort -u)

head_rev=$(git rev-parse --short HEAD)
base=""
if [ -n "${AB_BASE:-}" ]; then
  if base=$(git rev-parse --verify --quiet "${AB_BASE}^{commit}"); then
    echo "ab-gate: base $(git rev-parse --short "$base") (AB_BASE=$AB_BASE) against this tree (HEAD $head_rev)"
  else
    echo "ab-gate: AB_BASE=$AB_BASE is not a commit here; running the absolute gate alone" >&2
    base=""
  fi
else
  # The closure's commits, newest first: the base is the parent of the
  # first whose parent builds a different proxy (below).
  mapfile -t changes < <(git log --format=%H -n "$AB_WALK" -- "${closure[@]}")
  if [ ${#changes[@]} -eq 0 ]; then
    echo "ab-gate: no commit changed the proxy's build closure; running the absolute gate alone" >&2
  fi
fi
if [ -n "$(git status --porcelain --untracked-files=all -- "${closure[@]}" 2>/dev/null)" ]; then
  echo "ab-gate: this tree has uncommitted changes in the proxy's build closure; they are part of the build under test"
fi

build() { # build SRC_DIR OUT_DIR
  (cd "$1" && CGO_ENABLED=0 $GO build -trimpath -buildvcs=false -o "$2/" ./cmd/skiff-proxy)
}
mkdir -p "$tmp/head" "$tmp/base"
if ! build . "$tmp/head"; then
  echo "ab-gate: this tree's skiff-proxy does not build (above)" >&2
  exit 1
fi
base_flags=()
gosame=""
if $GO build -o "$tmp/gosame" ./ci/gosame 2>/dev/null; then
  gosame="$tmp/gosame"
fi
# try_base REV: build REV's proxy into $tmp/base; 0 when it differs from
# this tree's, 1 when it is the same binary, 2 when it cannot be built.
try_base() {
  local rev=$1
  rm -rf "$tmp/base" && mkdir -p "$tmp/base"
  if [ -n "$worktree" ]; then
    git worktree remove --force "$worktree" >/dev/null 2>&1 || true
    worktree=""
  fi
  worktree="$tmp/worktree"
  if ! git worktree add --detach --quiet "$worktree" "$rev"; then
    echo "ab-gate: could not check out $(git rev-parse --short "$rev") into a worktree" >&2
    worktree=""
    return 2
  fi
  if ! build "$worktree" "$tmp/base" >"$tmp/base-build.log" 2>&1; then
    echo "ab-gate: the base $(git rev-parse --short "$rev") does not build (below)" >&2
    sed -n '1,20p' "$tmp/base-build.log" >&2
    return 2
  fi
  if cmp -s "$tmp/head/skiff-proxy" "$tmp/base/skiff-proxy"; then
    return 1
  fi
  return 0
}
if [ -n "$base" ]; then
  # A base asked for is compared even when it is the same binary: an A/A
  # run is how the gate's false-alarm rate is measured.
  rc=0
  try_base "$base" || rc=$?
  if [ $rc -eq 2 ]; then
    echo "ab-gate: running the absolute gate alone" >&2
  else
    base_flags=(--baseline-proxy-bin "$tmp/base/skiff-proxy")
  fi
else
  for changed in "${changes[@]}"; do
    if ! parent=$(git rev-parse --verify --quiet "$changed^"); then
      echo "ab-gate: $(git rev-parse --short "$changed") changed the proxy's build closure but has no parent here (root commit or shallow clone); running the absolute gate alone" >&2
      break
    fi
    echo "ab-gate: trying base $(git rev-parse --short "$parent"), the parent of a commit that changed the proxy's build closure:"
    git log -1 --format='  %h %s' "$changed"
    mapfile -t files < <(git show --format= --name-only "$changed" -- "${closure[@]}")
    printf '    %s\n' "${files[@]:0:8}"
    # A commit that changed only comments or layout of Go files changes
    # the binary (its line table) and nothing the proxy does: walk back.
    if [ -n "$gosame" ] && ! printf '%s\n' "${files[@]}" | grep -qv '\.go$' && "$gosame" "$changed" "${files[@]}" >/dev/null; then
      echo "ab-gate: it changed only comments or layout (ci/gosame); walking back"
      continue
    fi
    rc=0
    try_base "$parent" || rc=$?
    if [ $rc -eq 0 ]; then
      base=$parent
      base_flags=(--baseline-proxy-bin "$tmp/base/skiff-proxy")
      echo "ab-gate: base $(git rev-parse --short "$base") against this tree (HEAD $head_rev)"
      break
    elif [ $rc -eq 2 ]; then
      echo "ab-gate: running the absolute gate alone" >&2
      break
    fi
    # The same binary (-buildvcs=false): that commit changed go.mod for
    # the harness, or a comment. Comparing a binary with itself can only
    # raise false alarms and costs CI 40 % of the bench: walk back.
    echo "ab-gate: it builds a proxy byte-identical to this tree's; walking back"
  done
  if [ ${#base_flags[@]} -eq 0 ] && [ ${#changes[@]} -gt 0 ]; then
    echo "ab-gate: no base with a different proxy among the closure's newest ${#changes[@]} commits; running the absolute gate alone"
  fi
fi
echo "ab-gate: bases built in $((SECONDS - start)) s"

status=0
"$SKIFF" bench --gate "${bench_flags[@]}" --proxy-bin "$tmp/head/skiff-proxy" "${base_flags[@]}" "$@" || status=$?
echo "ab-gate: done in $((SECONDS - start)) s (exit $status)"
exit $status
