# edgegrad: one image for the gRPC server and the workers (the command picks the role).
#   docker build -t edgegrad .
#   docker run edgegrad server        |   docker run edgegrad worker
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY edgegrad ./edgegrad
COPY server ./server
COPY worker ./worker
COPY client ./client
RUN pip install . && useradd --create-home --uid 10001 edgegrad

USER edgegrad
EXPOSE 50051
# Health through grpc.health.v1 (the same check docker-compose.yml runs); plaintext only.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,sys,grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port=os.environ.get('EDGEGRAD_LISTEN','[::]:50051').rsplit(':',1)[1]; r=g.HealthStub(grpc.insecure_channel('127.0.0.1:'+port)).Check(h.HealthCheckRequest(service=''),timeout=3); sys.exit(0 if r.status==h.HealthCheckResponse.SERVING else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["edgegrad"]
CMD ["server"]
