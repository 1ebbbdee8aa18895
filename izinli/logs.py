"""Structured logging: one line per event (JSON or key=value). Messages and the fields passed in
`extra` are written; request bodies, query strings and headers never are."""
from __future__ import annotations

import json
import logging
import sys
import time

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "event": record.getMessage(), **_extras(record)}
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception text can carry data we must not write down.
            event["error"] = record.exc_info[0].__name__
        return json.dumps(event, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {extras}"
        return line.rstrip()


def configure(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that could echo SQL parameters or URLs stays at WARNING.
    for noisy in ("sqlalchemy", "alembic", "aiosqlite", "asyncio", "apscheduler", "aiogram"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
