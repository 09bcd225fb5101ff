"""Exceptions shared by the ASGI server and adapter."""

from __future__ import annotations


class ClientDisconnected(OSError):
    """``send()`` was called after the client went away.

    The ASGI spec asks for an ``OSError`` subclass here, so frameworks that catch
    ``OSError`` around ``send`` stop quietly.
    """


class LifespanFailure(RuntimeError):
    """The application's lifespan startup (or shutdown) failed."""


class ASGIProtocolError(RuntimeError):
    """The application sent an ASGI message that is not allowed at this point."""
