"""Twisted interoperability: run Twisted on squall's asyncio loop and yield Deferreds.

Importing this module requires Twisted. It registers ``Deferred`` with
``squall.gen.convert_yielded``, so coroutines can ``yield`` (or ``await`` through
``convert_yielded``) a Deferred.
"""

from __future__ import annotations

import sys
from typing import Any

try:
    import twisted.internet.asyncioreactor  # type: ignore[import-not-found]
    from twisted.internet.defer import Deferred  # type: ignore[import-not-found]
    from twisted.python import failure  # type: ignore[import-not-found]
except ImportError as missing:
    raise ImportError(
        "squall.platform.twisted needs Twisted, which is not installed (pip install twisted)"
    ) from missing

from squall import gen
from squall.concurrent import Future, future_set_exc_info

__all__ = ["install"]


def install() -> None:
    """Make Twisted's asyncio reactor the global reactor, so Twisted runs on squall's loop.

    Call it before anything imports ``twisted.internet.reactor``.
    """
    twisted.internet.asyncioreactor.install()


@gen.convert_yielded.register(Deferred)
def _convert_deferred(deferred: Deferred) -> Future[Any]:
    future: Future[Any] = Future()

    def on_failure(reason: failure.Failure) -> None:
        try:
            reason.raiseException()
        except Exception:
            future_set_exc_info(future, sys.exc_info())

    deferred.addCallbacks(future.set_result, on_failure)
    return future
