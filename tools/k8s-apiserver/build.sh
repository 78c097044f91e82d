#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the Kubernetes provider's integration
# tests and prints the directory that holds them:
#
#   export HODEI_K8S_BIN=$(tools/k8s-apiserver/build.sh)   # or: make -s k8s-bins
#
# The directory is ${XDG_CACHE_HOME:-$HOME/.cache}/hodei/k8s/<sha256 of
# go.sum>/ (override the root with HODEI_K8S_CACHE). When both binaries are
# there the script does nothing (about 1 s); a go.sum change (version bump)
# builds into a new directory. Binaries are written under temporary names
# and renamed when complete, so a killed build is never taken as done.
#
# A cold build takes about 7 minutes of both cores on a 2-core machine and
# ~2.5 GB of build cache. That cache is kept apart from the user's GOCACHE
# (in <root>/gocache) so it never evicts the project's own entries, and it
# is deleted after a successful build: the next build only happens for a
# new version, which recompiles nearly everything anyway. Set
# HODEI_K8S_KEEP_GOCACHE=1 to keep it. The module cache (GOMODCACHE) is
# the normal shared one (~500 MB for this module).
#
# Progress goes to stderr; stdout carries only the directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${HODEI_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hodei/k8s}
sum=$(sha256sum "$here/go.sum" | cut -c1-64)
out=$root/$sum

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi

# The version ldflags: without them the server reports
# v0.0.0-master+$Format:%H$, which clients fail to parse.
ver=$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=${ver#v1.}
minor=${minor%%.*}
P=k8s.io/component-base/version
ldflags="-s -w -X $P.gitVersion=$ver -X $P.gitMajor=1 -X $P.gitMinor=$minor -X $P.gitTreeState=clean"

mkdir -p "$out"
export GOCACHE=$root/gocache GOFLAGS="${GOFLAGS:-} -mod=readonly"
cd "$here"
start=$(date +%s)
echo "building kube-apiserver $ver into $out (cold: ~7 min)" >&2
go build -trimpath -ldflags="$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
echo "building etcd" >&2
go build -trimpath -ldflags='-s -w' -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
mv "$out/etcd.tmp" "$out/etcd"
echo "built in $(( $(date +%s) - start ))s" >&2
if [ "${HODEI_K8S_KEEP_GOCACHE:-}" != 1 ]; then
  rm -rf "$GOCACHE"
fi
echo "$out"
