#!/usr/bin/env bash
# generate.sh lints mesh/api's .proto files and generates their Go code with
# the generators pinned in tools/go.mod (buf, protoc-gen-go,
# protoc-gen-go-grpc), built through `go tool` and cached in GOCACHE.
#
# Usage: generate.sh [OUT]
#   OUT defaults to this directory: the .proto files are formatted in
#   place and the *.pb.go files replaced. With another OUT (the staleness
#   test passes a temporary directory) nothing here is written, and
#   unformatted .proto files are an error.
#
# Exit status 3 means the generators could not be built (typically no
# network and an empty module cache); anything else non-zero is a real
# failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools_mod="$here/../../tools/go.mod"
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# -modfile still needs a go.mod above the working directory: the main one.
cd "$here"

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for tool in buf protoc-gen-go protoc-gen-go-grpc; do
	# `go tool -n` builds the tool if needed and prints the cached binary's
	# path instead of running it.
	if ! path=$(GOWORK=off GOFLAGS= go tool -modfile="$tools_mod" -n "$tool" 2>"$bin/err"); then
		# The last line is the error; earlier ones are download progress.
		echo "generate.sh: cannot build $tool from tools/go.mod: $(grep . "$bin/err" | tail -n1)" >&2
		exit 3
	fi
	ln -s "$path" "$bin/$tool"
done
export PATH="$bin:$PATH"

buf lint
if [[ $out == "$here" ]]; then
	buf format --write
	# Remove what a deleted or renamed .proto file generated before.
	find . -path ./proto -prune -o -name '*.pb.go' -type f -exec rm -f {} +
else
	# Check only: never rewrite sources when generating elsewhere.
	if ! buf format --diff --exit-code; then
		echo "generate.sh: the .proto files are not formatted; run make generate" >&2
		exit 1
	fi
fi
buf generate --output "$out"
