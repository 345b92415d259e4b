"""``edgegrad worker``: run one job worker until SIGTERM / Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys

import redis

from edgegrad.errors import InvalidInput
from edgegrad.logs import LOG_LEVELS
from edgegrad.settings import ENV_NAMES, Settings

__all__ = ["add_arguments", "run", "limit_blas_threads"]

_blas_limit = None  #: kept for the worker's life: BLAS threads stay limited while it runs


def limit_blas_threads() -> None:
    """Give BLAS no more threads than the engine's own (the ``threads`` setting, when set).

    Several workers on one host each get a share of its cores; BLAS would otherwise start a
    thread per core in every worker, and the workers' threads would fight over the cores.
    """
    global _blas_limit
    if Settings.read("threads"):
        from threadpoolctl import threadpool_limits

        from edgegrad.engine.memory import thread_count

        _blas_limit = threadpool_limits(limits=thread_count(), user_api="blas")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad worker`` (each defaults to its environment variable)."""
    parser.add_argument("--redis-url", help=f"Redis to take jobs from (env {ENV_NAMES['redis_url']})")
    parser.add_argument("--queue", help=f"rq queue name (env {ENV_NAMES['queue']})")
    parser.add_argument("--name", help="worker name, unique per worker (default: host.pid.<random>, new each start)")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    parser.add_argument("--no-job-events", dest="job_events", action="store_false",
                        help="no INFO line per job event unless --log-level is INFO or DEBUG (edgegrad up's way)")


def run(args: argparse.Namespace) -> int:
    """Run the worker; returns the exit status (2 for a bad setting or a Redis that refuses it).

    A Redis that does not answer yet is waited for, and an outage later on is ridden out."""
    from edgegrad.jobs.worker_store import WorkerStore, worker_redis
    from edgegrad.logs import configure_logging
    from edgegrad.metrics import serve_metrics

    from .jobs import set_store
    from .naming import NameInUse, clear_stale_registration, default_name
    from .outage import REDIS_DOWN, Outage
    from .runner import make_worker

    logging.basicConfig(level=args.log_level, format="%(asctime)s worker %(levelname)s %(message)s")
    try:
        settings = Settings.from_env(redis_url=args.redis_url, queue=args.queue)
        configure_logging(settings, args.log_level, "worker", job_events=args.job_events)
        connection = worker_redis(settings)  # rq's connection and the store's: result chunks go out uncopied
        try:
            connection.ping()
        except REDIS_DOWN as exc:  # not up yet (or restarting): wait for it, as for an outage later on
            if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
                raise
            Outage(connection, logging.getLogger("edgegrad.worker")).wait(exc)
        metrics_url = serve_metrics(settings)
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except (redis.RedisError, ValueError) as exc:  # a malformed URL, a wrong password, ...
        print(f"error: redis: cannot use {getattr(args, 'redis_url', None) or 'REDIS_URL'} ({exc})",
              file=sys.stderr)
        return 2
    if metrics_url:
        print(f"edgegrad worker metrics at {metrics_url}", file=sys.stderr, flush=True)
    limit_blas_threads()
    name = args.name or default_name()
    set_store(WorkerStore(settings, connection, name=name))
    worker = make_worker(settings, connection, name=name)
    try:
        cleared = clear_stale_registration(worker)
    except NameInUse as exc:
        print(f"error: worker: {exc}", file=sys.stderr)
        return 2
    if cleared:
        logging.getLogger("edgegrad.worker").warning("replacing the registration of a dead worker named %s: %s",
                                                     name, cleared)
    worker.work(burst=args.burst, logging_level=args.log_level, with_scheduler=False)
    return 0
