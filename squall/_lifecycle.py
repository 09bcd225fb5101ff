"""What a draining server reaches beyond its own HTTP connections.

Two registries, process-wide and dependency-free so the lowest layers can use them:
drain callbacks (an application's way to answer what it holds open, e.g. pending long
polls) and upgraded connections (WebSockets), which left HTTP behind but still belong to
the server whose socket they came from.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable
from typing import Any, Callable, Protocol

DrainCallback = Callable[[str], Any]

_drain_callbacks: list[DrainCallback] = []


class Upgraded(Protocol):
    """A long-lived connection a drain must end politely: a WebSocket (taken over from
    HTTP), or an event stream (an HTTP response that would otherwise never finish)."""

    def _drain_close(self, code: int, reason: str) -> None: ...

    def _drain_abort(self) -> None: ...


# upgraded connection -> the server it came through (weak: a closed connection disappears)
_upgraded: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def add_drain_callback(callback: DrainCallback) -> None:
    """Calls ``callback(reason)`` whenever a server starts draining.

    ``reason`` is "shutdown", "reload" or "recycle". The callback should answer what it
    keeps waiting (long polls, streams) so clients go elsewhere; it may return an awaitable,
    which the drain waits for (within its timeout).
    """
    if callback not in _drain_callbacks:
        _drain_callbacks.append(callback)


def remove_drain_callback(callback: DrainCallback) -> None:
    """Undoes ``add_drain_callback`` (no error if it was not added)."""
    try:
        _drain_callbacks.remove(callback)
    except ValueError:
        pass


def run_drain_callbacks(reason: str, log: Callable[..., None]) -> list[Awaitable[Any]]:
    """Runs every drain callback; returns the awaitables some of them gave back."""
    pending: list[Awaitable[Any]] = []
    for callback in list(_drain_callbacks):
        try:
            result = callback(reason)
        except Exception:
            log("Exception in drain callback %r", callback, exc_info=True)
            continue
        if inspect.isawaitable(result):
            pending.append(result)
    return pending


def track_upgraded(connection: Upgraded, server: Any) -> None:
    if server is not None:
        _upgraded[connection] = server


def forget_upgraded(connection: Upgraded) -> None:
    _upgraded.pop(connection, None)


def upgraded_on(server: Any) -> list[Upgraded]:
    """The upgraded connections still open that came through ``server``."""
    return [conn for conn, owner in list(_upgraded.items()) if owner is server]
