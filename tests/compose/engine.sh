#!/usr/bin/env bash
# Make a Docker engine and a compose tool answer here, or say in one line why not and exit 3.
# As root with apt-get, installs Debian's docker.io, containerd, docker-compose and debootstrap if
# missing, and starts a plain dockerd when none answers; its pid goes to the file $1 (so the
# caller stops it afterwards). Nothing is started or installed when an engine already answers.
set -uo pipefail
pidfile=${1:-}
skip() { echo "compose test: skipped: $*"; exit 3; }
have_compose() { docker compose version > /dev/null 2>&1 || command -v docker-compose > /dev/null; }

if ! { command -v docker > /dev/null && have_compose; }; then
    [ "$(id -u)" = 0 ] || skip "no docker/docker-compose and not root to install them"
    command -v apt-get > /dev/null || skip "no docker/docker-compose and no apt-get to install them"
    echo "compose test: installing docker.io containerd docker-compose debootstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io containerd docker-compose debootstrap \
        > /tmp/edgegrad-apt.log 2>&1 || skip "apt-get install failed: $(tail -1 /tmp/edgegrad-apt.log)"
fi
command -v docker > /dev/null && have_compose || skip "no docker or compose tool after installing"

if ! timeout 20 docker info > /dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || skip "no Docker engine answers and not root to start one"
    dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
    [ -x "$dockerd" ] || skip "no Docker engine answers and no dockerd binary"
    log=/tmp/edgegrad-dockerd.log
    "$dockerd" > "$log" 2>&1 &
    pid=$!
    [ -n "$pidfile" ] && echo "$pid" > "$pidfile"
    for _ in $(seq 60); do
        timeout 5 docker info > /dev/null 2>&1 && break
        kill -0 "$pid" 2> /dev/null || skip "dockerd exited at start: $(tail -1 "$log")"
        sleep 0.5
    done
    timeout 5 docker info > /dev/null 2>&1 || { kill "$pid"; skip "dockerd did not answer within 30 s"; }
    echo "compose test: started dockerd (pid $pid, log $log)"
fi
echo "compose test: Docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(docker compose version 2>/dev/null | head -1 || true)$(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
