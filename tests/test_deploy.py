"""docker-compose.yml and the Dockerfile, checked as far as this machine allows (Docker itself is not run)."""

from __future__ import annotations

import os
import re

import pytest

from edgegrad.cli.commands import build_parser
from edgegrad.settings import ENV_NAMES

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(os.path.join(ROOT, "docker-compose.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _env_defaults(service: dict) -> dict[str, str]:
    """Environment of a service with ``${VAR:-default}`` replaced by its default."""
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in service["environment"].items()}


def test_services_are_redis_server_and_worker(compose: dict) -> None:
    assert set(compose["services"]) == {"redis", "server", "worker"}


def test_redis_keeps_an_append_only_file_on_a_volume_and_has_a_health_check(compose: dict) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]


@pytest.mark.parametrize("name", ["server", "worker"])
def test_commands_are_real_edgegrad_entry_points(compose: dict, name: str) -> None:
    service = compose["services"][name]
    command = service["command"]
    assert command[0] == "edgegrad" and command[1] == name
    assert service.get("entrypoint") == [], "the command is the whole command line"
    args = build_parser(command[1:]).parse_args(command[1:])
    assert callable(args.handler) and args.handler.__module__ == f"edgegrad.{name}.main"


@pytest.mark.parametrize("name", ["server", "worker"])
def test_every_setting_is_an_environment_variable_with_the_code_default(compose: dict, name: str) -> None:
    from edgegrad.settings import Settings

    service = compose["services"][name]
    env = service["environment"]
    assert set(env) == set(ENV_NAMES.values()), "compose must pass every setting (and only those)"
    defaults = _env_defaults(service)
    settings = Settings.from_env(defaults)
    assert settings.redis_url == "redis://redis:6379/0"
    for field, var in ENV_NAMES.items():
        if var != "REDIS_URL":
            assert getattr(settings, field) == getattr(Settings(), field), var


def test_server_health_check_uses_grpc_health(compose: dict) -> None:
    check = compose["services"]["server"]["healthcheck"]
    test = check["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    compile(code, "healthcheck", "exec")
    assert "grpc_health.v1" in code and "SERVING" in code
    assert "EDGEGRAD_LISTEN" in code


def test_workers_scale_without_fixed_names_or_ports(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs neither"
    assert worker["image"] == compose["services"]["server"]["image"]
    assert "healthcheck" in worker, "the image's gRPC health check must not apply to workers"


def test_dockerfile_installs_the_package_and_runs_the_cli() -> None:
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as fh:
        text = fh.read()
    assert re.search(r"^FROM python:3\.1\d", text, re.M)
    assert "pip install ." in text
    assert 'ENTRYPOINT ["edgegrad"]' in text
    for folder in ("edgegrad", "server", "worker", "client"):
        assert re.search(rf"^COPY {folder} ", text, re.M), f"the image needs {folder}/"
    assert "HEALTHCHECK" in text and "grpc_health.v1" in text
