"""A docker-compose project of the repository's own docker-compose.yml, driven from the host."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def say(line: str) -> None:
    """One line of the test's report (run with ``-s`` to see them)."""
    print(f"\ncompose: {line}", flush=True)  # own line: pytest's progress dots do not end in one


def compose_command() -> list[str]:
    """``docker compose`` (v2) where it exists, else ``docker-compose`` (v1)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    """Run ``docker ARGS``; its stdout."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"docker {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def docker_logs(container: str) -> str:
    """A container's whole log (its stdout and stderr)."""
    done = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


class Stack:
    """One compose project: ``compose()`` runs the compose tool on it, the rest inspects its containers."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = {**os.environ, **env}
        self.port = int(env["EDGEGRAD_PORT"].rsplit(":", 1)[1])
        self.address = f"127.0.0.1:{self.port}"
        self.tool = compose_command()

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        """Run the compose tool on this project (output kept, shown when it fails)."""
        cmd = [*self.tool, "-p", self.project, "-f", os.path.join(ROOT, "docker-compose.yml"), *args]
        done = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(cmd[len(self.tool):])}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def containers(self, service: str | None = None, all: bool = False) -> list[str]:
        """Ids (12 hex digits, the containers' host names) of this project's containers."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return docker("ps", "-q", *(["-a"] if all else []), *filters).split()

    def inspect(self, container: str) -> dict:
        return json.loads(docker("inspect", container))[0]

    def redis_cli(self, *args: str) -> str:
        """``redis-cli ARGS`` inside the redis container."""
        (redis,) = self.containers("redis")
        return docker("exec", redis, "redis-cli", *args).strip()

    def registered_workers(self) -> list[str]:
        """Names of the rq workers registered on the edgegrad queue."""
        out = self.redis_cli("SMEMBERS", f"rq:workers:{self.env.get('EDGEGRAD_QUEUE', 'edgegrad')}")
        return sorted(line.removeprefix("rq:worker:") for line in out.splitlines() if line)

    def wait(self, what: str, check, timeout: float = 120, every: float = 0.2):
        """Poll ``check()`` until it returns something true; that value."""
        end = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                value = check()
                if value:
                    return value
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")

    def healthy(self, service: str) -> bool:
        ids = self.containers(service)
        return bool(ids) and all(self.inspect(c)["State"].get("Health", {}).get("Status") == "healthy" for c in ids)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks of the project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        return {"containers": docker("ps", "-aq", "--filter", label).split(),
                "volumes": docker("volume", "ls", "-q", "--filter", label).split(),
                "networks": docker("network", "ls", "-q", "--filter", label).split()}
