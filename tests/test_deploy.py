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


def _dockerfile() -> str:
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as fh:
        return fh.read()


def test_dockerfile_installs_the_package_and_runs_the_cli() -> None:
    text = _dockerfile()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.1\d-slim$", text, re.M), "the official slim image by default"
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    assert "pip install --no-deps --no-index --no-build-isolation ." in text
    assert 'ENTRYPOINT ["edgegrad"]' in text
    for folder in _package_folders():
        assert re.search(rf"^COPY {folder} \./{folder}$", text, re.M), f"the image needs {folder}/ (package-dir)"
    assert "HEALTHCHECK" in text and "grpc_health.v1" in text


def _package_folders() -> set[str]:
    """The folders pyproject.toml builds packages from (top level of each package-dir entry)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        package_dir = tomllib.load(fh)["tool"]["setuptools"]["package-dir"]
    return {path.split("/")[0] for path in package_dir.values()}


def test_dockerfile_installs_dependencies_before_copying_code_and_offline_from_a_wheelhouse() -> None:
    text = _dockerfile()
    deps = text.index("-c /build/constraints.txt -r /build/requirements.txt")
    assert text.index("COPY pyproject.toml constraints.txt /build/") < deps
    assert text.index("COPY wheelhouse/ /wheelhouse/") < deps
    code = min(text.index(f"COPY {folder} ") for folder in _package_folders())
    assert deps < text.index("COPY --from=deps") < code, "a code change must not reinstall the dependencies"
    assert "--no-index --find-links /wheelhouse" in text
    assert os.path.isdir(os.path.join(ROOT, "wheelhouse")), "COPY wheelhouse/ needs the folder (empty: PyPI)"


def test_compose_builds_from_the_same_base_image_and_publishes_no_redis_port(compose: dict) -> None:
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", _dockerfile(), re.M).group(1)
    for name in ("server", "worker"):
        args = compose["services"][name]["build"]["args"]
        assert re.fullmatch(r"\$\{EDGEGRAD_BASE_IMAGE:-(.+)\}", args["BASE_IMAGE"]).group(1) == default
    redis = compose["services"]["redis"]
    assert "ports" not in redis, "a Redis on the host's 6379 must not clash; workers use redis:6379 inside"
    assert redis["command"][redis["command"].index("--dir") + 1] == "/data", "the append-only file on the volume"
    assert all(compose["services"][n]["restart"] == "unless-stopped" for n in ("redis", "server", "worker"))


def test_workers_start_with_blas_threads_set_to_their_engine_threads() -> None:
    """Set before the worker starts (OpenBLAS reads it once); one set by the operator is kept."""
    from edgegrad.server.cluster import BLAS_THREAD_VARIABLES, blas_env

    env = blas_env({ENV_NAMES["threads"]: "1", "PATH": "/bin"})
    assert all(env[name] == "1" for name in BLAS_THREAD_VARIABLES) and env["PATH"] == "/bin"
    assert blas_env({ENV_NAMES["threads"]: "0"}) == {ENV_NAMES["threads"]: "0"}  # every core: BLAS's own choice
    assert blas_env({}) == {}
    kept = blas_env({ENV_NAMES["threads"]: "2", "OPENBLAS_NUM_THREADS": "4"})
    assert kept["OPENBLAS_NUM_THREADS"] == "4" and kept["OMP_NUM_THREADS"] == "2"


def _constraints() -> dict[str, str]:
    """constraints.txt as {normalized name: exact version}."""
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_tested_versions_pin_every_dependency_within_pyprojects_ranges() -> None:
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    pins = _constraints()
    wanted = [*project["dependencies"], *(r for extra in ("test", "torch", "draw")
                                          for r in project["optional-dependencies"][extra])]
    for text in wanted:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"constraints.txt has no pin for {req.name} (run scripts/constraints.sh)"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"


def test_every_install_path_uses_the_tested_versions() -> None:
    for path, needle in ((".ci/run", "-c constraints.txt -e"), ("scripts/demo.sh", "-c constraints.txt -e"),
                         ("scripts/wheelhouse.sh", "-c constraints.txt"), ("Dockerfile", "-c /build/constraints.txt")):
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            assert needle in fh.read(), f"{path} installs without constraints.txt"
