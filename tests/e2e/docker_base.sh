#!/usr/bin/env bash
# Make the root filesystem of a local stand-in for python:3.11-slim-bookworm (no registry is
# reachable in CI): debootstrap's minbase Debian 12 plus Python 3.11, pip, venv and the host's CA
# certificates, as a tar file for `docker import`. Run as root by tests/e2e/test_docker.py:
#   docker_base.sh OUTPUT.tar
set -euo pipefail
out=$1
mirror=http://deb.debian.org/debian
root=$(mktemp -d "${out%/*}/rootfs.XXXXXX")
log=$root.log
trap 'rm -rf "$root" "$log"' EXIT
quiet() {  # run "$@" with its output in the log; show the log's tail if it fails
  "$@" >>"$log" 2>&1 || { tail -30 "$log" >&2; return 1; }
}

quiet debootstrap --variant=minbase bookworm "$root" "$mirror"
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"
quiet chroot "$root" apt-get update
# python-is-python3: the official image has `python`, which the Dockerfile's RUN steps and
# HEALTHCHECK call. minbase already has useradd (package passwd, Priority: required).
quiet env DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y --no-install-recommends \
  python3 python3-pip python3-venv python-is-python3 ca-certificates
# The build's pip must trust what the host trusts (a TLS-intercepting proxy's CA, if any).
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
quiet chroot "$root" update-ca-certificates
# The official image's pip installs into the system Python as root; Debian's is PEP 668
# "externally managed" and would refuse the Dockerfile's `python -m pip install`.
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
quiet chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root"/var/log/*.log
: >"$root/etc/resolv.conf"
tar -C "$root" --numeric-owner -cf "$out.tmp" . && mv "$out.tmp" "$out"
