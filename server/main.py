"""``edgegrad server``: the gRPC front end."""

from __future__ import annotations

import argparse
import asyncio
import sys

from edgegrad.errors import InvalidInput
from edgegrad.logs import LOG_LEVELS
from edgegrad.settings import ENV_NAMES, Settings

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad server`` (each defaults to its environment variable)."""
    parser.add_argument("--listen", metavar="HOST:PORT", help=f"address to serve on (env {ENV_NAMES['listen']},"
                        " default [::]:50051)")
    parser.add_argument("--redis-url", help=f"Redis holding jobs (env {ENV_NAMES['redis_url']})")
    parser.add_argument("--queue", help=f"rq queue name (env {ENV_NAMES['queue']})")
    parser.add_argument("--tls-cert", help=f"PEM certificate chain (env {ENV_NAMES['tls_cert']})")
    parser.add_argument("--tls-key", help=f"PEM private key (env {ENV_NAMES['tls_key']})")
    parser.add_argument("--auth-token-file", help=f"accepted bearer tokens, 'TENANT TOKEN' a line (env"
                        f" {ENV_NAMES['auth_token_file']}; or set {ENV_NAMES['auth_token']})")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    parser.add_argument("--no-job-events", dest="job_events", action="store_false",
                        help="no INFO line per job event unless --log-level is INFO or DEBUG (edgegrad up's way)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / Ctrl-C; exit 2 on a bad setting."""
    from edgegrad.logs import configure_logging
    from edgegrad.metrics import serve_metrics

    from .app import serve
    from .auth import load_tokens

    try:
        settings = Settings.from_env(listen=args.listen, redis_url=args.redis_url, queue=args.queue,
                                     tls_cert=args.tls_cert, tls_key=args.tls_key,
                                     auth_token_file=args.auth_token_file)
        load_tokens(settings)
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise InvalidInput("tls: give both a certificate and a key")
        configure_logging(settings, args.log_level, "server", job_events=args.job_events)
        metrics_url = serve_metrics(settings)
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if metrics_url:
        print(f"edgegrad server metrics at {metrics_url}", flush=True)

    def ready(app) -> None:
        print(f"edgegrad server listening on port {app.port}", flush=True)

    try:
        asyncio.run(serve(settings, ready=ready))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
