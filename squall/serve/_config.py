"""The options of ``squall serve``: one dataclass, filled by argparse or by hand."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any, Optional

from squall.process import cpu_count

LOOP_CHOICES = ("auto", "asyncio", "uvloop")
LOG_FORMATS = ("text", "json")
# ASGI (squall.asgi): what the app is, and whether its lifespan runs
INTERFACE_CHOICES = ("auto", "squall", "asgi")
LIFESPAN_CHOICES = ("auto", "on", "off")


@dataclasses.dataclass
class ServeConfig:
    """Everything the manager and its workers need to know, picklable as JSON.

    Times are in seconds; 0 (or None) switches a limit off.
    """

    app: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    uds: Optional[str] = None
    fd: Optional[int] = None
    workers: int = 1
    backlog: int = 2048
    reload: bool = False
    reload_dirs: list[str] = dataclasses.field(default_factory=list)
    graceful_timeout: float = 30.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    worker_lifetime: float = 0.0
    worker_max_rss: int = 0  # MiB
    timeout_worker_healthcheck: float = 10.0
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    xheaders: bool = False
    access_log: Optional[str] = None  # a path, "-" for stderr, None for no access log
    log_format: str = "text"
    log_level: str = "info"
    loop: str = "auto"
    factory: bool = False
    app_dir: str = "."
    interface: str = "auto"
    root_path: str = ""
    lifespan: str = "auto"

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else cpu_count()

    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))

    def check(self) -> None:
        """Raises ValueError for option combinations that cannot work."""
        if not self.app or ":" not in self.app:
            raise ValueError(f"the app must be given as MODULE:ATTR, not {self.app!r}")
        if self.uds is not None and self.fd is not None:
            raise ValueError("--uds and --fd exclude each other")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("--ssl-certfile and --ssl-keyfile go together")
        for path in (self.ssl_certfile, self.ssl_keyfile):
            if path and not os.path.exists(path):
                raise ValueError(f"no such file: {path}")
        if self.workers < 0:
            raise ValueError("--workers must be 0 (one per core) or more")
        if self.max_requests < 0 or self.max_requests_jitter < 0:
            raise ValueError("--max-requests and --max-requests-jitter must not be negative")
        if self.timeout_worker_healthcheck < 0 or self.graceful_timeout < 0:
            raise ValueError("timeouts must not be negative")
        if self.loop not in LOOP_CHOICES:
            raise ValueError(f"--loop must be one of {', '.join(LOOP_CHOICES)}")
        if self.interface not in INTERFACE_CHOICES:
            raise ValueError(f"--interface must be one of {', '.join(INTERFACE_CHOICES)}")
        if self.lifespan not in LIFESPAN_CHOICES:
            raise ValueError(f"--lifespan must be one of {', '.join(LIFESPAN_CHOICES)}")
        if self.root_path and not self.root_path.startswith("/"):
            raise ValueError("--root-path must start with '/'")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
        if self.loop == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                raise ValueError(
                    "--loop uvloop needs the uvloop package (pip install squall[fast])"
                )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="squall serve",
        description=(
            "Serve a squall application with a manager process and workers that share one "
            "listening socket: graceful drain, rolling reload on SIGHUP, health checks."
        ),
        epilog=(
            "Signals to the manager: TERM graceful stop; INT/QUIT fast stop (a second one "
            "kills); HUP rolling reload; TTIN/TTOU one worker more/less; USR1 reopen log files."
        ),
    )
    d = ServeConfig()
    add = parser.add_argument
    add(
        "app",
        help="MODULE:ATTR; ATTR is an Application, a delegate, a callable, an ASGI app or a "
        "factory",
    )
    where = parser.add_argument_group("where to listen")
    where.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    where.add_argument("--port", type=int, default=d.port, help="port (default %(default)s)")
    where.add_argument("--uds", help="listen on this Unix socket path instead")
    where.add_argument("--fd", type=int, help="listen on this already open socket descriptor")
    where.add_argument("--backlog", type=int, default=d.backlog, help="listen queue length")
    where.add_argument("--ssl-certfile", help="TLS certificate (PEM)")
    where.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    procs = parser.add_argument_group("processes")
    procs.add_argument(
        "--workers", type=int, default=d.workers, help="worker processes (0: one per core)"
    )
    procs.add_argument(
        "--reload", action="store_true", help="development: restart when a source file changes"
    )
    procs.add_argument(
        "--reload-dir",
        dest="reload_dirs",
        action="append",
        default=[],
        help="with --reload, also watch the .py files below this directory (repeatable)",
    )
    procs.add_argument(
        "--graceful-timeout",
        type=float,
        default=d.graceful_timeout,
        help="seconds a draining worker waits for in-flight work (default %(default)s)",
    )
    procs.add_argument(
        "--max-requests",
        type=int,
        default=d.max_requests,
        help="replace a worker after this many requests (0: never)",
    )
    procs.add_argument(
        "--max-requests-jitter",
        type=int,
        default=d.max_requests_jitter,
        help="add up to this many to --max-requests, per worker, so they do not all recycle at once",
    )
    procs.add_argument(
        "--worker-lifetime",
        type=float,
        default=d.worker_lifetime,
        help="replace a worker after this many seconds (0: never)",
    )
    procs.add_argument(
        "--worker-max-rss",
        type=int,
        default=d.worker_max_rss,
        help="replace a worker whose resident memory exceeds this many MiB (0: never)",
    )
    procs.add_argument(
        "--timeout-worker-healthcheck",
        type=float,
        default=d.timeout_worker_healthcheck,
        help="kill a worker whose event loop has not answered for this many seconds",
    )
    procs.add_argument(
        "--loop",
        choices=LOOP_CHOICES,
        default=d.loop,
        help="event loop (auto: uvloop if installed)",
    )
    app = parser.add_argument_group("the application")
    app.add_argument(
        "--factory", action="store_true", help="ATTR is a factory: call it to get the application"
    )
    app.add_argument(
        "--app-dir", default=d.app_dir, help="put this directory first on sys.path (default: .)"
    )
    app.add_argument("--xheaders", action="store_true", help="trust X-Real-Ip/X-Forwarded-*")
    app.add_argument(
        "--interface",
        choices=INTERFACE_CHOICES,
        default=d.interface,
        help="squall (Application, delegate, request callable) or asgi (an ASGI 3 app); "
        "auto tells them apart",
    )
    app.add_argument(
        "--root-path",
        default=d.root_path,
        help="ASGI: the path prefix a proxy strips before requests reach us",
    )
    app.add_argument(
        "--lifespan",
        choices=LIFESPAN_CHOICES,
        default=d.lifespan,
        help="ASGI: run the app's lifespan startup before serving and shutdown after the "
        "drain (auto: if the app supports it)",
    )
    logs = parser.add_argument_group("logging")
    logs.add_argument(
        "--access-log",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="log every request (to PATH, or to stderr without one)",
    )
    logs.add_argument("--log-format", choices=LOG_FORMATS, default=d.log_format)
    logs.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=d.log_level,
    )
    return parser


def parse_args(argv: Sequence[str]) -> ServeConfig:
    """The ``ServeConfig`` for a command line; exits with a usage message when it is wrong."""
    parser = build_parser()
    namespace = parser.parse_args(list(argv))
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    values: dict[str, Any] = {k: v for k, v in vars(namespace).items() if k in fields}
    config = ServeConfig(**values)
    try:
        config.check()
    except ValueError as exc:
        parser.error(str(exc))
    return config
