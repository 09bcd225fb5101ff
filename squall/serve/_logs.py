"""Logging for ``squall serve``: progress lines, the access log, text or JSON lines."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any, Callable, Optional

serve_log = logging.getLogger("squall.serve")
_access_log = logging.getLogger("squall.access")

# The record attributes logging itself sets; anything else came in through ``extra``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, pid, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ReopenableFileHandler(logging.FileHandler):
    """A file handler that can start a new file after logrotate moved the old one (USR1)."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                try:
                    self.stream.close()
                finally:
                    self.stream = None  # type: ignore[assignment]
            self.stream = self._open()
        finally:
            self.release()


def _formatter(log_format: str, role: str) -> logging.Formatter:
    if log_format == "json":
        return JSONFormatter()
    return logging.Formatter(
        f"[%(asctime)s {role} %(process)d] %(levelname)s %(name)s: %(message)s"
    )


def _handler_for(destination: str) -> logging.Handler:
    if destination == "-":
        return logging.StreamHandler(sys.stderr)
    return ReopenableFileHandler(os.path.abspath(destination), encoding="utf-8")


def configure(log_format: str, level: str, role: str, access_log: Optional[str]) -> None:
    """Sends squall's loggers to stderr (and the access log where asked) in one format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format, role))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    serve_log.setLevel(logging.INFO)
    for old in list(_access_log.handlers):
        _access_log.removeHandler(old)
        old.close()
    if access_log is None:
        _access_log.disabled = True
        return
    _access_log.disabled = False
    _access_log.setLevel(logging.INFO)
    access_handler = _handler_for(access_log)
    access_handler.setFormatter(
        JSONFormatter() if log_format == "json" else logging.Formatter("%(message)s")
    )
    _access_log.addHandler(access_handler)
    _access_log.propagate = False


def reopen_files() -> int:
    """Reopens every log file squall opened; returns how many."""
    count = 0
    for logger in (logging.getLogger(), _access_log):
        for handler in logger.handlers:
            if isinstance(handler, ReopenableFileHandler):
                handler.reopen()
                count += 1
    return count


def access_log_function(log_format: str) -> Callable[[Any], None]:
    """A ``log_function`` setting for an ``Application``: one access line per request.

    In JSON the request's fields become keys of the line's object.
    """

    def log_request(handler: Any) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if not _access_log.isEnabledFor(level):
            return
        request = handler.request
        duration_ms = round(1000.0 * request.request_time(), 3)
        if log_format == "json":
            _access_log.log(
                level,
                "%s %s %d",
                request.method,
                request.uri,
                status,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "status": status,
                    "duration_ms": duration_ms,
                    "remote_ip": request.remote_ip,
                    "protocol": request.protocol,
                    "http_version": request.version,
                    "host": request.host,
                    "user_agent": request.headers.get("User-Agent", ""),
                    "referer": request.headers.get("Referer", ""),
                },
            )
        else:
            _access_log.log(
                level,
                '%s - "%s %s %s" %d %.2fms',
                request.remote_ip,
                request.method,
                request.uri,
                request.version,
                status,
                duration_ms,
            )

    return log_request
