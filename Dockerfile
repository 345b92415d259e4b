# edgegrad: one image for the gRPC server and the workers (the command picks the role).
#   docker build -t edgegrad .                                   # python:3.11-slim, packages from PyPI
#   bash scripts/wheelhouse.sh && docker build -t edgegrad .     # offline: only the wheels in wheelhouse/
#   docker build --build-arg BASE_IMAGE=my-registry/python:3.11 -t edgegrad .
#   docker run edgegrad server        |   docker run edgegrad worker
# The base image needs python3 with the venv module (and useradd); its Python must match the
# wheels' when a wheelhouse is used.
ARG BASE_IMAGE=python:3.11-slim

# Stage 1: the dependencies, in a virtualenv, at the versions CI tested (constraints.txt). It is rebuilt
# only when pyproject.toml, constraints.txt or the wheelhouse changes, never for a code change.
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt /build/
COPY wheelhouse/ /wheelhouse/
RUN set -eu; \
    python3 -m venv /opt/edgegrad; \
    python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/build/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /build/requirements.txt; \
    if ls /wheelhouse/*.whl > /dev/null 2>&1; then \
        echo "installing from the wheelhouse only (no index)"; set -- --no-index --find-links /wheelhouse; \
    else set --; fi; \
    /opt/edgegrad/bin/pip install "$@" -c /build/constraints.txt -r /build/requirements.txt "setuptools>=70.1"

# Stage 2: the runtime. The dependency layer comes first (cached), then the code.
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/edgegrad \
    PATH=/opt/edgegrad/bin:$PATH
RUN useradd --create-home --uid 10001 edgegrad
COPY --from=deps /opt/edgegrad /opt/edgegrad

WORKDIR /app
# every folder of [tool.setuptools] package-dir in pyproject.toml (tests/test_deploy.py checks it)
COPY pyproject.toml README.md ./
COPY edgegrad ./edgegrad
COPY server ./server
COPY worker ./worker
COPY client ./client
COPY protos ./protos
# the code only: no index, no dependency resolution, the build backend from the venv
RUN pip install --no-deps --no-index --no-build-isolation . && rm -rf build ./*.egg-info

USER edgegrad
EXPOSE 50051
# Health through grpc.health.v1 (the same check docker-compose.yml runs); plaintext only.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,sys,grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port=os.environ.get('EDGEGRAD_LISTEN','[::]:50051').rsplit(':',1)[1]; r=g.HealthStub(grpc.insecure_channel('127.0.0.1:'+port)).Check(h.HealthCheckRequest(service=''),timeout=3); sys.exit(0 if r.status==h.HealthCheckResponse.SERVING else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["edgegrad"]
CMD ["server"]
