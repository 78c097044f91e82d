#!/usr/bin/env bash
# protogen.sh generates or checks the Go code of one protobuf package.
#
#   tools/protogen.sh generate DIR [OUT]   regenerate DIR/*.proto into OUT (default DIR)
#   tools/protogen.sh check DIR            fail when DIR's committed *.pb.go differ
#
# DIR is a package directory relative to the module root (hwp/hwppb,
# api/jobpb) holding one .proto file. `make generate` and
# `make check-generate` call it for each.
#
# Pinned tools:
#   protoc              Debian's protobuf-compiler 3.21.12 (proto3 only; no editions)
#   protoc-gen-go       google.golang.org/protobuf, version pinned by the `tool` directive in go.mod
#   protoc-gen-go-grpc  google.golang.org/grpc/cmd/protoc-gen-go-grpc, pinned likewise
set -euo pipefail

usage() { echo "usage: $0 generate DIR [OUT] | check DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd="$1" rel="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/$rel"
[ -d "$dir" ] || { echo "protogen.sh: $rel is not a directory under $root" >&2; exit 2; }
protos=("$dir"/*.proto)
[ ${#protos[@]} = 1 ] && [ -e "${protos[0]}" ] || { echo "protogen.sh: $rel must hold exactly one .proto file" >&2; exit 2; }
proto="$(basename "${protos[0]}")"

generate() {
	local out="$1" want_protoc="libprotoc 3.21.12"
	if ! command -v protoc >/dev/null 2>&1; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
			echo "protogen.sh: protoc missing; installing Debian's protobuf-compiler" >&2
			DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler >/dev/null ||
				{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler >/dev/null; }
		else
			echo "protogen.sh: protoc not found: apt-get install -y protobuf-compiler" >&2
			exit 1
		fi
	fi
	local got
	got="$(protoc --version)"
	if [ "$got" != "$want_protoc" ]; then
		echo "protogen.sh: protoc is '$got', want '$want_protoc' (Debian's protobuf-compiler); output would drift" >&2
		exit 1
	fi
	local bin
	bin="$(mktemp -d)"
	# Build the plugins at the versions go.mod pins (tool directives).
	(cd "$root" && go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go)
	(cd "$root" && go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc)
	mkdir -p "$out"
	PATH="$bin:$PATH" protoc \
		--proto_path="$dir" \
		--go_out="$out" --go_opt=paths=source_relative \
		--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
		"$dir/$proto"
	rm -rf "$bin"
}

case "$cmd" in
generate)
	generate "${3:-$dir}"
	;;
check)
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	generate "$tmp"
	status=0
	for f in "$tmp"/*.pb.go; do
		name="$(basename "$f")"
		if ! diff -u "$dir/$name" "$f"; then
			echo "protogen.sh: $rel/$name is stale: run make generate" >&2
			status=1
		fi
	done
	for f in "$dir"/*.pb.go; do
		name="$(basename "$f")"
		if [ ! -e "$tmp/$name" ]; then
			echo "protogen.sh: $rel/$name is not generated from $proto: remove it" >&2
			status=1
		fi
	done
	[ "$status" = 0 ] && echo "protogen.sh: $rel generated code is up to date"
	exit "$status"
	;;
*)
	usage
	;;
esac
