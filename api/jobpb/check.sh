#!/usr/bin/env bash
# check.sh fails when the committed *.pb.go differ from what generate.sh makes
# from job.proto with the pinned tools.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$here/generate.sh" "$tmp"
status=0
for f in "$tmp"/*.pb.go; do
	name="$(basename "$f")"
	if ! diff -u "$here/$name" "$f"; then
		echo "check.sh: api/jobpb/$name is stale: run make generate" >&2
		status=1
	fi
done
for f in "$here"/*.pb.go; do
	name="$(basename "$f")"
	if [ ! -e "$tmp/$name" ]; then
		echo "check.sh: api/jobpb/$name is not generated from job.proto: remove it" >&2
		status=1
	fi
done
[ "$status" = 0 ] && echo "check.sh: api/jobpb generated code is up to date"
exit "$status"
