"""Futures: squall's ``Future`` is ``asyncio.Future``; helpers bridge to ``concurrent.futures``."""

from __future__ import annotations

import asyncio
import functools
import logging
import types
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar, overload

__all__ = [
    "DummyExecutor",
    "FUTURES",
    "Future",
    "ReturnValueIgnoredError",
    "chain_future",
    "dummy_executor",
    "future_add_done_callback",
    "future_set_exc_info",
    "future_set_exception_unless_cancelled",
    "future_set_result_unless_cancelled",
    "is_future",
    "run_on_executor",
]

_T = TypeVar("_T")

# Same logger object as squall.log.app_log (kept by name so this module needs no import).
_app_log = logging.getLogger("squall.application")


class ReturnValueIgnoredError(Exception):
    """Raised when a callback's return value would be silently dropped."""


Future = asyncio.Future

FUTURES = (futures.Future, Future)


def is_future(x: Any) -> bool:
    """Whether ``x`` is an asyncio or ``concurrent.futures`` future."""
    return isinstance(x, FUTURES)


class DummyExecutor(futures.Executor):
    """An executor that runs each submitted call at once, in the caller's thread."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> futures.Future[_T]:
        future: futures.Future[_T] = futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


dummy_executor = DummyExecutor()


def run_on_executor(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Decorate a method so it runs on ``self.executor`` and returns an awaitable Future.

    Usable bare (``@run_on_executor``) or with ``executor="attribute_name"``.
    """

    if args and kwargs:
        raise ValueError("cannot combine positional and keyword args")
    if len(args) > 1:
        raise ValueError(f"expected 1 argument, got {len(args)}")
    pool_attribute = kwargs.get("executor", "executor")

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *call_args: Any, **call_kwargs: Any) -> Future[Any]:
            pool = getattr(self, pool_attribute)
            # The caller gets an asyncio Future fed from the executor's future, so it can
            # be awaited on the loop.
            outcome: Future[Any] = Future()
            chain_future(pool.submit(method, self, *call_args, **call_kwargs), outcome)
            return outcome

        return wrapper

    # Bare @run_on_executor gets the method itself; @run_on_executor(executor=...) does not.
    return decorate(args[0]) if args else decorate


def _copy_outcome(source: Any, target: Any) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


def chain_future(a: Any, b: Any) -> None:
    """When future ``a`` finishes, give its outcome to ``b`` (unless ``b`` is already done).

    Either may be an asyncio or a ``concurrent.futures`` future.
    """
    if isinstance(a, Future):
        future_add_done_callback(a, lambda done: _copy_outcome(done, b))
        return
    # A concurrent future finishes on another thread: copy on b's loop thread.
    from squall.ioloop import IOLoop

    IOLoop.current().add_future(a, lambda done: _copy_outcome(done, b))


def future_set_result_unless_cancelled(future: Any, value: Any) -> None:
    """Set ``value`` on ``future`` unless it was cancelled (then do nothing)."""
    if not future.cancelled():
        future.set_result(value)


def future_set_exception_unless_cancelled(future: Any, exc: BaseException) -> None:
    """Set ``exc`` on ``future``; if it was cancelled, log ``exc`` instead of losing it."""
    if not future.cancelled():
        future.set_exception(exc)
    else:
        _app_log.error("Exception after Future was cancelled", exc_info=exc)


def future_set_exc_info(
    future: Any,
    exc_info: tuple[type[BaseException] | None, BaseException | None, types.TracebackType | None],
) -> None:
    """Set the exception of a ``sys.exc_info()`` triple on ``future``."""
    if exc_info[1] is None:
        raise Exception("future_set_exc_info called with no exception")
    future_set_exception_unless_cancelled(future, exc_info[1])


@overload
def future_add_done_callback(
    future: futures.Future[_T], callback: Callable[[futures.Future[_T]], None]
) -> None: ...


@overload
def future_add_done_callback(
    future: asyncio.Future[_T], callback: Callable[[asyncio.Future[_T]], None]
) -> None: ...


def future_add_done_callback(future: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(future)`` when it is done; right now if it already is."""
    if isinstance(future, futures.Future):
        future.add_done_callback(callback)
    elif future.done():
        callback(future)
    else:
        future.add_done_callback(callback)
