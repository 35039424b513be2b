"""Logging set-up: human text, or one JSON object per line (``--log-format json``).

The server logs one access line per request, so a line's cost is a request's
cost: the set-up skips what no formatter here prints (the caller's file and
line, thread and process names), as the logging HOWTO's "Optimization" section
describes, and the formatters reuse the time stamp of the current second.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed in ``extra=`` and is logged as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _extras(record: logging.LogRecord) -> list[tuple[str, object]]:
    return [(k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")]


class _SecondStamp:
    """A time stamp's text for the second a record falls in, made once per second."""

    def __init__(self, render: str) -> None:
        self.render = render
        self.second = -1
        self.text = ""

    def __call__(self, created: float) -> tuple[str, float]:
        second = int(created)
        if second != self.second:
            self.text = datetime.fromtimestamp(second, UTC).strftime(self.render)
            self.second = second
        return self.text, created - second


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _SecondStamp("%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        stamp, fraction = self._stamp(record.created)
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(fraction * 1000):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__  # the class only: messages may carry secrets
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value...``."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _SecondStamp("%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record))
        line = f"{self._stamp(record.created)[0]} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{line} {extras}" if extras else line


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Route connectord's and uvicorn's logs through one handler in the chosen format."""
    # No formatter here prints them; each costs a lookup per record (the caller's frame
    # walks the stack). The logging HOWTO's "Optimization" section names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # connectord.access logs each request
    logging.getLogger("alembic").setLevel(logging.WARNING)
