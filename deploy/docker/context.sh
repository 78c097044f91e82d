#!/usr/bin/env bash
# Lays out a Docker build context for one Hodei image, so the FROM scratch
# Dockerfiles beside this script build without the network:
#
#   deploy/docker/context.sh agent  BINARY DIR   # hodei-agent + busybox-static
#   deploy/docker/context.sh server BINARY DIR   # hodei
#
# BINARY must be static (CGO_ENABLED=0). DIR is created (or emptied) and
# receives the Dockerfile, a rootfs/ tree that the Dockerfile copies to /
# and an empty owned/ that becomes the unprivileged user's directory (/work,
# /data): COPY --chown sets the owner of a directory only when it creates it. `make image` and provider/docker/dockertest both call it, so this is
# the one place that decides what goes into an image.
set -euo pipefail

usage() { echo "usage: $0 agent|server BINARY DIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
kind=$1 bin=$2 dir=$3
here=$(cd "$(dirname "$0")" && pwd)

static() {
  # A dynamically linked binary would fail in scratch with a baffling
  # "no such file or directory": refuse it here instead.
  if LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; then
    echo "$0: $1 is dynamically linked; build it with CGO_ENABLED=0 (busybox: apt-get install busybox-static)" >&2
    exit 1
  fi
}

[ -f "$bin" ] || { echo "$0: $bin: no such file" >&2; exit 1; }
static "$bin"
rm -rf "$dir"
mkdir -p "$dir/rootfs/usr/local/bin" "$dir/rootfs/tmp" "$dir/rootfs/etc"
chmod 1777 "$dir/rootfs/tmp"
# The images run as 65532 (hodei), not root; name it for id, whoami, ls -l.
printf 'root:x:0:0:root:/root:/bin/sh\nhodei:x:65532:65532:hodei:/home/hodei:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/rootfs/etc/passwd"
printf 'root:x:0:\nhodei:x:65532:\nnobody:x:65534:\n' >"$dir/rootfs/etc/group"

case $kind in
agent)
  busybox=${BUSYBOX:-/bin/busybox}
  [ -x "$busybox" ] || { echo "$0: $busybox missing: apt-get install busybox-static" >&2; exit 1; }
  static "$busybox"
  cp "$bin" "$dir/rootfs/usr/local/bin/hodei-agent"
  mkdir -p "$dir/rootfs/bin" "$dir/rootfs/sbin" "$dir/rootfs/usr/bin" "$dir/rootfs/usr/sbin" "$dir/owned"
  cp "$busybox" "$dir/rootfs/bin/busybox"
  # One symlink per applet at busybox's own idea of its path (bin/sh,
  # usr/bin/env, ...), all pointing at /bin/busybox.
  "$busybox" --list-full | while read -r applet; do
    case $applet in bin/busybox | linuxrc) continue ;; esac
    ln -sf /bin/busybox "$dir/rootfs/$applet"
  done
  [ -L "$dir/rootfs/bin/sh" ] || { echo "$0: busybox has no sh applet" >&2; exit 1; }
  ;;
server)
  cp "$bin" "$dir/rootfs/usr/local/bin/hodei"
  mkdir -p "$dir/owned"
  ;;
*) usage ;;
esac
cp "$here/$kind.Dockerfile" "$dir/Dockerfile"
