#!/usr/bin/env bash
# Builds (and with `test`, smoke-tests) the spikeserve container image with
# podman. Installs what it needs (Debian packages) and, since no registry is
# reachable here, builds the debian:bookworm base image once with
# debootstrap and caches its tarball in ~/.cache/spikeserve.
#
#   scripts/image.sh build [IMAGE]   # default IMAGE spikeserve:latest
#   scripts/image.sh test  [IMAGE]   # build, run, check, stop, remove
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
image="${2:-spikeserve:latest}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/spikeserve"
mkdir -p "$cache"  # the build log goes here even when the base is cached
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

tools=(podman buildah runc debootstrap fuse-overlayfs slirp4netns uidmap)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "image: installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The base image, from the cache or built with debootstrap from the
# machine's own Debian mirror.
if ! podman image exists docker.io/library/debian:bookworm; then
  tarball="$cache/debian-bookworm-rootfs.tar.gz"
  if [ ! -f "$tarball" ]; then
    # The repository apt itself uses for bookworm's main component (not a
    # third-party one whose URI merely contains "debian", such as Docker's).
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Codename: bookworm' \
      'Component: main' 'Created-By: Packages' 2>/dev/null | head -1 || true)
    mirror="${mirror%/}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    echo "image: building the debian:bookworm base from $mirror (about a minute)"
    rootfs=$(mktemp -d)
    trap '$SUDO rm -rf "$rootfs" "$tarball.tmp"' EXIT
    $SUDO debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://security.debian.org/debian-security bookworm-security main\n' \
      "$mirror" "$mirror" | $SUDO tee "$rootfs/etc/apt/sources.list" >/dev/null
    mkdir -p "$cache"
    $SUDO tar -C "$rootfs" --numeric-owner -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    $SUDO rm -rf "$rootfs"
    trap - EXIT
  fi
  gunzip -c "$tarball" | podman import - localhost/debian:bookworm >/dev/null
  podman tag localhost/debian:bookworm docker.io/library/debian:bookworm
fi

[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || bash scripts/fetch_model.sh
echo "image: building $image"
start=$(date +%s)
podman build --format docker --pull=never -t "$image" . >"$cache/image-build.log" 2>&1 \
  || { tail -40 "$cache/image-build.log"; exit 1; }
size=$(podman image inspect "$image" --format '{{.Size}}')
echo "image: $image built in $(( $(date +%s) - start )) s, $(( size / 1024 / 1024 )) MiB"

[ "$mode" = test ] || exit 0
exec /usr/bin/python3 tests/container/image_smoke_test.py --image "$image"
