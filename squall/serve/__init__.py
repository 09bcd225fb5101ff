"""Production serving for squall: ``python -m squall serve MODULE:ATTR``.

A manager process owns the listening sockets and runs worker processes that share them.
Workers are replaced when they die, hang (their event loop stops sending heartbeats) or
reach a recycling limit; SIGHUP replaces them one by one, each new worker ready before the
old one drains, so a redeploy loses no request. ``drain`` is the library form of a
worker's graceful stop. See ``python -m squall serve --help`` and docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Optional

from squall._lifecycle import add_drain_callback, remove_drain_callback
from squall.serve._config import ServeConfig, build_parser, parse_args
from squall.serve._drain import drain

__all__ = [
    "ServeConfig",
    "add_drain_callback",
    "build_parser",
    "drain",
    "main",
    "parse_args",
    "remove_drain_callback",
    "run",
]


def run(config: ServeConfig) -> int:
    """Runs a manager with its workers until it is stopped; returns the exit status."""
    from squall.serve import _logs
    from squall.serve._manager import Manager
    from squall.serve._sockets import open_listeners

    _logs.configure(config.log_format, config.log_level, "manager", None)
    try:
        listeners = open_listeners(config)
    except (OSError, ValueError) as exc:
        _logs.serve_log.error("cannot listen: %s", exc)
        return 1
    return asyncio.run(Manager(config, listeners).run())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``squall serve`` with the arguments after ``serve`` (``sys.argv[1:]`` by default)."""
    return run(parse_args(sys.argv[1:] if argv is None else argv))
