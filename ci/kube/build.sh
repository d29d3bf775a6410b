#!/usr/bin/env bash
# Builds the test control plane — kube-apiserver, kube-controller-manager and
# etcd — from this module (ci/kube/go.mod) into a cache keyed on the Kubernetes
# version:
#
#   ${SKIFF_KUBE_CACHE:-$HOME/.cache/skiff}/k8s-<version>/bin
#
# Only a missing binary is built. Each is built to a temporary name in that
# directory and renamed into place, so a reader never sees half a binary; a
# lock on the directory makes two runs that race build each binary once (the
# second waits, then finds it there).
#
# A cold build takes about 22 minutes of 2 cores and 3.2 GB of memory
# (docs/kubernetes.md); it runs under nice (SKIFF_KUBE_NICE, default 10) so
# that it does not disturb latency-sensitive jobs on the same machine.
#
# The cache is keyed on the Kubernetes version alone: after changing another
# version in ci/kube/go.mod (etcd's), remove the directory.
#
# Usage: ci/kube/build.sh [--print-dir]
#   --print-dir  print the bin directory and exit, building nothing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}

version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")
if [[ ! $version =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]]; then
	echo "build.sh: no k8s.io/kubernetes version in $here/go.mod" >&2
	exit 1
fi
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
bin="${SKIFF_KUBE_CACHE:-$HOME/.cache/skiff}/k8s-$version/bin"

if [[ ${1:-} == --print-dir ]]; then
	echo "$bin"
	exit 0
fi

# name and package of each binary, the quickest first.
targets=(
	"etcd go.etcd.io/etcd/server/v3"
	"kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
	"kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
)

missing() {
	local t
	for t in "${targets[@]}"; do
		[[ -x $bin/${t%% *} ]] || return 0
	done
	return 1
}

if ! missing; then
	echo "kube binaries $version: cached in $bin"
	exit 0
fi

mkdir -p "$bin"
exec 9>"$bin/.lock"
if ! flock -n 9; then
	echo "kube binaries $version: another build holds $bin/.lock; waiting for it"
	flock 9
fi

# Clients reject a server that reports no version: set it as the release
# build does, in both packages that carry it.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean"
done

total_start=$SECONDS
built=0
for t in "${targets[@]}"; do
	name=${t%% *}
	pkg=${t#* }
	if [[ -x $bin/$name ]]; then
		echo "kube binaries $version: $name cached"
		continue
	fi
	tmp="$bin/.$name.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	echo "kube binaries $version: building $name ($pkg) into $bin"
	start=$SECONDS
	(cd "$here" && CGO_ENABLED=0 nice -n "${SKIFF_KUBE_NICE:-10}" \
		"$GO" build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg")
	mv -f "$tmp" "$bin/$name"
	trap - EXIT
	echo "kube binaries $version: built $name in $((SECONDS - start)) s"
	built=$((built + 1))
done
echo "kube binaries $version: $built built in $((SECONDS - total_start)) s, in $bin"
