#!/usr/bin/env bash
# Builds the `rivulet` Docker image without pulling anything:
#   1. once, a Debian bookworm base image: debootstrap --variant=minbase into a temp dir, then
#      `docker import` (skipped when `docker image inspect` already finds it)
#   2. the release binary, on the host: cargo build --release -p rivulet-broker
#   3. the rivulet image from deploy/Dockerfile, with a build context holding only the binary.
#
# Usage: bash deploy/build-image.sh [--no-build] [--rebuild-base] [--base-only]
#   --no-build      use the existing target/release/rivulet as is
#   --rebuild-base  re-create the base image even if it exists
#   --base-only     stop after the base image
# Environment:
#   RIVULET_IMAGE       image to build            (default rivulet:latest)
#   RIVULET_BASE_IMAGE  base image name           (default rivulet-base:bookworm)
#   DEBIAN_MIRROR       mirror for debootstrap    (default: the first URI in apt's sources,
#                                                  else http://deb.debian.org/debian)
# Needs: root (or sudo) for debootstrap, docker, and debootstrap itself
# (`apt-get install debootstrap`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${RIVULET_IMAGE:-rivulet:latest}"
BASE_IMAGE="${RIVULET_BASE_IMAGE:-rivulet-base:bookworm}"
SUITE=bookworm
BUILD=1
REBUILD_BASE=0
BASE_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    --base-only) BASE_ONLY=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build-image.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'build-image.sh: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running? are you in the docker group?)"

# Runs a command as root (debootstrap needs it).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- 1. the base image -----------------------------------------------------------------------
mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v security | grep -o 'https\?://[^ ]*debian/\?' | head -n1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ "$REBUILD_BASE" -eq 0 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE exists; reusing it (--rebuild-base to re-create)"
else
  command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
  ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/rivulet-rootfs.XXXXXX")"
  trap 'as_root rm -rf "$ROOTFS"' EXIT
  MIRROR="$(mirror)"
  say "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes, once)"
  as_root debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2; die "debootstrap failed (full log: $ROOTFS.log)"; }
  rm -f "$ROOTFS.log"
  # Trim what a container never uses: apt lists and caches, docs, man pages.
  as_root rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
  say "docker import -> $BASE_IMAGE"
  as_root tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$ROOTFS"
  trap - EXIT
fi
[ "$BASE_ONLY" -eq 1 ] && { say "done (--base-only)"; exit 0; }

# --- 2. the binary ---------------------------------------------------------------------------
BIN="$ROOT/target/release/rivulet"
if [ "$BUILD" -eq 1 ]; then
  say "cargo build --release -p rivulet-broker"
  (cd "$ROOT" && cargo build --release -p rivulet-broker)
fi
[ -x "$BIN" ] || die "$BIN does not exist; run without --no-build"

# The binary links glibc (and friends) dynamically; they must come from the base image.
if ldd "$BIN" | grep -q 'not found'; then
  ldd "$BIN" >&2
  die "$BIN has unresolved shared libraries on this host"
fi
if [ -r /etc/os-release ] && ! grep -q "VERSION_CODENAME=$SUITE" /etc/os-release; then
  echo "warning: this host is not Debian $SUITE; the binary's glibc may be newer than the" \
       "image's (check that 'docker run --rm $IMAGE --version' works)" >&2
fi

# --- 3. the rivulet image --------------------------------------------------------------------
CONTEXT="$(mktemp -d "${TMPDIR:-/tmp}/rivulet-image.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
cp "$BIN" "$CONTEXT/rivulet"
# Keep the symbols for backtraces but drop the debug info (hundreds of MB with debug = 1).
strip --strip-debug "$CONTEXT/rivulet" 2>/dev/null || true
say "docker build -> $IMAGE"
docker build -q -f "$ROOT/deploy/Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  -t "$IMAGE" "$CONTEXT" >/dev/null

# The image must be able to run the binary (catches a glibc mismatch with the base).
docker run --rm --entrypoint /usr/local/bin/rivulet "$IMAGE" --version >/dev/null \
  || die "the image cannot run rivulet (shared library mismatch with $BASE_IMAGE?)"
say "built $IMAGE ($(docker run --rm --entrypoint /usr/local/bin/rivulet "$IMAGE" --version))"
