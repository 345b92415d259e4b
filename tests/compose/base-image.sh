#!/usr/bin/env bash
# Build a local stand-in base image IMAGE (default edgegrad-local/debian-python:bookworm) from a
# Debian minbase root file system with Debian's python3 (+ venv) and redis-server, for machines
# that cannot pull python:3.11-slim and redis:7.2-alpine. Needs root, debootstrap and a Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian). Does nothing if IMAGE exists.
set -euo pipefail
image=${1:-edgegrad-local/debian-python:bookworm}
if docker image inspect "$image" > /dev/null 2>&1; then
    echo "base image $image: present"; exit 0
fi
root=$(mktemp -d /var/tmp/edgegrad-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,redis-server bookworm "$root" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$root.log" 2>&1 || { tail -20 "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'WORKDIR /data' --change 'CMD ["bash"]' - "$image" > /dev/null
echo "base image $image: built from debootstrap in $(( $(date +%s) - start )) s ($(docker run --rm "$image" python3 --version), $(docker run --rm "$image" redis-server --version | cut -d' ' -f1-3))"
