"""Draining many servers at once (a worker usually has one)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def drain(servers: Iterable[Any], timeout: float = 30.0, reason: str = "shutdown") -> None:
    """Drains every server together: see ``HTTPServer.drain``.

    ``reason`` is "shutdown" (WebSockets closed with 1001, going away) or "reload"/"recycle"
    (1012, service restart: come back in a moment, another worker will answer).
    """
    await asyncio.gather(*(server.drain(timeout, reason=reason) for server in servers))


def shorten(servers: Iterable[Any], timeout: float) -> None:
    """Cuts running drains short: what is left is closed within ``timeout`` seconds."""
    for server in servers:
        if server is not None:
            server._shorten_drain(timeout)
