#!/usr/bin/env bash
# generate.sh regenerates the Go code for job.proto into OUT (default: this
# directory). `make generate` calls it; check.sh calls it with a temp dir.
#
# Pinned tools:
#   protoc              Debian's protobuf-compiler 3.21.12 (proto3 only; no editions)
#   protoc-gen-go       google.golang.org/protobuf, version pinned by the `tool` directive in go.mod
#   protoc-gen-go-grpc  google.golang.org/grpc/cmd/protoc-gen-go-grpc, pinned likewise
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here}"
want_protoc="libprotoc 3.21.12"

if ! command -v protoc >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "generate.sh: protoc missing; installing Debian's protobuf-compiler" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler >/dev/null ||
			{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler >/dev/null; }
	else
		echo "generate.sh: protoc not found: apt-get install -y protobuf-compiler" >&2
		exit 1
	fi
fi
got="$(protoc --version)"
if [ "$got" != "$want_protoc" ]; then
	echo "generate.sh: protoc is '$got', want '$want_protoc' (Debian's protobuf-compiler); output would drift" >&2
	exit 1
fi

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
# Build the plugins at the versions go.mod pins (tool directives).
(cd "$root" && go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go)
(cd "$root" && go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc)

mkdir -p "$out"
PATH="$bin:$PATH" protoc \
	--proto_path="$here" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	"$here/job.proto"
