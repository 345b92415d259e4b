"""Log lines of the server and the workers: text, or one JSON object a line (``EDGEGRAD_LOG_FORMAT=json``).

Job events (``edgegrad.joblog``) go to the ``edgegrad.jobs`` logger at INFO whatever ``--log-level``
says for the rest, so a service always has one line per job event (``--no-job-events``: they follow
``--log-level``, as under ``edgegrad up``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .errors import InvalidInput
from .settings import ENV_NAMES, Settings

__all__ = ["configure_logging", "JsonFormatter", "JOB_LOGGER", "LOG_FORMATS", "LOG_LEVELS"]

JOB_LOGGER = "edgegrad.jobs"
LOG_FORMATS = ("text", "json")
#: the --log-level choices of the server, the workers and ``edgegrad up``
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: attribute of a LogRecord that carries a job event's fields
EVENT_ATTR = "edgegrad_event"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, process, logger, message, and a job event's own fields."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        """The record as compact JSON."""
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line: dict[str, Any] = {"time": moment, "level": record.levelname, "process": self.process,
                                "logger": record.name}
        event = getattr(record, EVENT_ATTR, None)
        if event:
            line.update(event)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_logging(settings: Settings, level: str, process: str, job_events: bool = True) -> None:
    """Set up the root logger for ``process`` ("server" or "worker") in the configured format; job events
    at INFO whatever ``level`` says, unless ``job_events`` is False (then they follow ``level``)."""
    fmt = settings.log_format.strip().lower() or "text"
    if fmt not in LOG_FORMATS:
        raise InvalidInput(f"{ENV_NAMES['log_format']}: expected text or json, got {settings.log_format!r}")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(message)s"))
    # neither format shows where a line was logged from, or its thread or process: not looking them up
    # (the logging HOWTO's "Optimization") makes a job event about a third cheaper, three of them a job
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger(JOB_LOGGER).setLevel(logging.INFO if job_events else logging.NOTSET)
