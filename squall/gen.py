"""Generator-based coroutines (``@gen.coroutine``) and helpers for combining awaitables.

A decorated generator runs under a ``Runner`` which resumes it each time the future it
yielded finishes. Native ``async def`` coroutines work everywhere these do.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import functools
import inspect
import logging
import sys
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from functools import singledispatch
from typing import Any, TypeVar

from squall.concurrent import (
    Future,
    chain_future,
    future_add_done_callback,
    future_set_exc_info,
    future_set_exception_unless_cancelled,
    future_set_result_unless_cancelled,
    is_future,
)
from squall.ioloop import IOLoop
from squall.util import TimeoutError

__all__ = [
    "BadYieldError",
    "KeyReuseError",
    "LeakedCallbackError",
    "Multi",
    "Return",
    "ReturnValueIgnoredError",
    "Runner",
    "TimeoutError",
    "UnknownKeyError",
    "WaitIterator",
    "convert_yielded",
    "coroutine",
    "is_coroutine_function",
    "maybe_future",
    "moment",
    "multi",
    "multi_future",
    "sleep",
    "with_timeout",
]

_T = TypeVar("_T")

_app_log = logging.getLogger("squall.application")


# Four of gen's exceptions belonged to the callback/key API that Tornado removed; they
# stay importable (and catchable) for old code, but nothing here raises them.


class KeyReuseError(Exception):
    """Unused: kept for code that still catches it."""


class UnknownKeyError(Exception):
    """Unused: kept for code that still catches it."""


class LeakedCallbackError(Exception):
    """Unused: kept for code that still catches it."""


class ReturnValueIgnoredError(Exception):
    """Unused: kept for code that still catches it."""


class BadYieldError(Exception):
    """A coroutine yielded something that is neither a future nor an awaitable."""


class Return(Exception):
    """Raise ``Return(value)`` to return a value from a generator coroutine (legacy style)."""

    def __init__(self, value: Any = None) -> None:
        super().__init__()
        self.value = value
        # Keep args in line with StopIteration so both carry the value the same way.
        self.args = (value,)


class _NullFuture:
    """An always-finished, result-less stand-in for a future (cheaper than a real one)."""

    __slots__ = ()

    def result(self) -> None:
        return None

    def exception(self) -> None:
        return None

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def add_done_callback(self, callback: Callable[[Any], None], **_: Any) -> None:
        callback(self)


# Yield ``moment`` (or None) from a generator coroutine to let the loop run one iteration.
moment: Any = _NullFuture()
# What a finished Runner points at, so it never holds on to a real future.
_null_future: Any = _NullFuture()


def _value_from_stopiteration(error: BaseException) -> Any:
    value = getattr(error, "value", None)
    if value is not None:
        return value
    args = getattr(error, "args", ())
    return args[0] if args else None


def _create_future() -> Future[Any]:
    future: Future[Any] = Future()
    # In debug mode asyncio records where each future was created; point at the caller of
    # the coroutine rather than at this module.
    traceback = getattr(future, "_source_traceback", None)
    while traceback and traceback[-1].filename == __file__:
        del traceback[-1]
    return future


def _fail(future: Future[Any], error: BaseException) -> None:
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
    else:
        future_set_exception_unless_cancelled(future, error)


def coroutine(func: Callable[..., Any]) -> Callable[..., Future[Any]]:
    """Turn a generator function into a coroutine that returns a Future.

    The generator yields futures or awaitables (or lists/dicts of them) and receives their
    results. Plain functions are wrapped too: their result or exception lands on the Future.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Future[Any]:
        future = _create_future()
        # Each call runs in a copy of the caller's context, like an asyncio task.
        ctx_run = contextvars.copy_context().run
        try:
            result = ctx_run(func, *args, **kwargs)
        except (Return, StopIteration) as stop:
            result = _value_from_stopiteration(stop)
        except BaseException as error:
            if not isinstance(error, (Exception, asyncio.CancelledError)):
                raise
            _fail(future, error)
            # The exception's traceback holds this frame; let the frame drop the future.
            try:
                return future
            finally:
                future = None  # type: ignore[assignment]
        else:
            if isinstance(result, Generator):
                try:
                    yielded = ctx_run(next, result)
                except (StopIteration, Return) as stop:
                    future_set_result_unless_cancelled(future, _value_from_stopiteration(stop))
                except BaseException as error:
                    if not isinstance(error, (Exception, asyncio.CancelledError)):
                        raise
                    _fail(future, error)
                else:
                    runner = Runner(ctx_run, result, future, yielded)
                    # The future keeps the runner alive (nothing else references it while
                    # it waits); the callback is dropped once the future finishes.
                    future.add_done_callback(lambda _: runner)
                # This frame may end up in the traceback of an exception the future holds:
                # dropping the locals avoids a future <-> frame cycle that only gc could undo.
                result = yielded = None
                try:
                    return future
                finally:
                    future = None  # type: ignore[assignment]
        future_set_result_unless_cancelled(future, result)
        return future

    wrapper.__wrapped__ = func  # type: ignore[attr-defined]
    wrapper.__tornado_coroutine__ = True  # type: ignore[attr-defined]
    return wrapper


def is_coroutine_function(func: Any) -> bool:
    """Whether ``func`` was decorated with ``@coroutine``."""
    return getattr(func, "__tornado_coroutine__", False)


def _unwrap(future: Any) -> tuple[Any, BaseException | None]:
    """``(value, None)`` or ``(None, error)`` for a finished future, without raising."""
    try:
        return future.result(), None
    except (Exception, asyncio.CancelledError) as error:
        return None, error
    finally:
        # The error's traceback holds this frame: let it not hold the future (and so the
        # error itself) as well.
        future = None


class Runner:
    """Drives one generator coroutine: resumes it whenever its pending future finishes."""

    def __init__(
        self,
        ctx_run: Callable[..., Any],
        gen: Generator[Any, Any, Any],
        result_future: Future[Any],
        first_yielded: Any,
    ) -> None:
        self.io_loop = IOLoop.current()
        self.running = self.finished = False
        self.ctx_run = ctx_run
        self.gen: Generator[Any, Any, Any] | None = gen
        self.result_future: Future[Any] | None = result_future
        self.future: Any = _null_future
        # Converting the yielded value may create a task, which must inherit the context
        # the generator runs in.
        if not self.ctx_run(self.handle_yield, first_yielded):
            return
        # As in coroutine(): keep this frame free of references to what run() produces.
        gen = result_future = first_yielded = None  # type: ignore[assignment]
        self.ctx_run(self.run)

    def run(self) -> None:
        """Resume the generator as long as the future it waits on is finished."""
        if self.running or self.finished:
            return
        self.running = True
        try:
            while self._step():
                pass
        finally:
            self.running = False

    def _step(self) -> bool:
        """Hand the generator its pending future's outcome; True to go on stepping."""
        pending = self.future
        if pending is None:
            raise Exception("No pending future")
        if not pending.done():
            return False
        self.future = None
        value, error = _unwrap(pending)
        pending = None
        gen = self.gen
        assert gen is not None
        try:
            yielded = gen.send(value) if error is None else gen.throw(error)
        except (StopIteration, Return) as stop:
            self._conclude(_value_from_stopiteration(stop), None)
            return False
        except (Exception, asyncio.CancelledError) as failure:
            self._conclude(None, failure)
            return False
        finally:
            # Neither the value nor a thrown error should outlive this step in the frame.
            value = error = None
        return self.handle_yield(yielded)

    def _conclude(self, value: Any, error: BaseException | None) -> None:
        # The Runner lets go of everything first: the error's traceback may reach it.
        self.finished = True
        self.future = _null_future
        self.gen = None
        outcome, self.result_future = self.result_future, None
        assert outcome is not None
        if error is None:
            future_set_result_unless_cancelled(outcome, value)
        else:
            _fail(outcome, error)

    def handle_yield(self, yielded: Any) -> bool:
        """Adopt a yielded value as the pending future; True if it is already finished."""
        try:
            pending = convert_yielded(yielded)
        except BadYieldError as bad:
            # The generator gets the error thrown in at its yield, as for a failed future.
            pending = Future()
            pending.set_exception(bad)
        self.future = pending
        if pending is moment:
            # ``yield`` / ``yield gen.moment``: let the loop run one turn first.
            self.io_loop.add_callback(self.ctx_run, self.run)
            return False
        if pending is None:
            raise Exception("no pending future")
        if pending.done():
            return True
        self.io_loop.add_future(pending, self._resume_in_context)
        return False

    def _resume_in_context(self, _: Any) -> None:
        self.ctx_run(self.run)

    def handle_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        """Throw an exception into the generator if it is suspended; True if it was."""
        if self.running or self.finished:
            return False
        failed: Future[Any] = Future()
        future_set_exc_info(failed, (typ, value, tb))
        self.future = failed
        self.ctx_run(self.run)
        return True


def multi(
    children: Sequence[Any] | Mapping[Any, Any],
    quiet_exceptions: type[Exception] | tuple[type[Exception], ...] = (),
) -> Future[Any]:
    """Wait for several futures/awaitables; resolve to a list (or dict) of their results.

    If any fails, the result is the first failure; later failures are logged unless they
    are instances of ``quiet_exceptions``.
    """
    return multi_future(children, quiet_exceptions=quiet_exceptions)


Multi = multi


def multi_future(
    children: Sequence[Any] | Mapping[Any, Any],
    quiet_exceptions: type[Exception] | tuple[type[Exception], ...] = (),
) -> Future[Any]:
    """Like ``multi``, for futures only (kept for older code)."""
    keys: list[Any] | None
    if isinstance(children, Mapping):
        keys = list(children.keys())
        child_futures = [convert_yielded(child) for child in children.values()]
    else:
        keys = None
        child_futures = [convert_yielded(child) for child in children]
    result = _create_future()
    if not child_futures:
        future_set_result_unless_cancelled(result, {} if keys is not None else [])
        return result
    pending = set(child_futures)

    def on_child_done(child: Any) -> None:
        pending.discard(child)
        if pending:
            return
        values = []
        for each in child_futures:
            try:
                values.append(each.result())
            except Exception as error:
                if result.done():
                    if not isinstance(error, quiet_exceptions):
                        _app_log.error("Multiple exceptions in yield list", exc_info=True)
                else:
                    future_set_exc_info(result, sys.exc_info())
            except asyncio.CancelledError as cancelled:
                # Like asyncio.gather: report the cancellation without cancelling the
                # combined future itself.
                if not result.done():
                    result.set_exception(cancelled)
        if not result.done():
            if keys is not None:
                future_set_result_unless_cancelled(result, dict(zip(keys, values, strict=True)))
            else:
                future_set_result_unless_cancelled(result, values)

    for child in set(child_futures):
        future_add_done_callback(child, on_child_done)
    return result


def maybe_future(x: Any) -> Future[Any]:
    """Return ``x`` if it is a future, else a finished future holding ``x``."""
    if is_future(x):
        return x  # type: ignore[no-any-return]
    future = _create_future()
    future.set_result(x)
    return future


def with_timeout(
    timeout: float | datetime.timedelta,
    future: Any,
    quiet_exceptions: type[Exception] | tuple[type[Exception], ...] = (),
    *,
    message: str | Callable[[], str] | None = None,
) -> Future[Any]:
    """Wrap ``future`` so it fails with ``TimeoutError`` if not done by ``timeout``.

    ``timeout`` is a deadline in ``IOLoop.time()`` terms or a ``timedelta`` from now. The
    wrapped operation is not cancelled; a failure it reports after the timeout is logged
    unless it is one of ``quiet_exceptions``. ``message`` (or a callable producing it) is
    the text of the ``TimeoutError``.
    """
    inner = convert_yielded(future)
    result = _create_future()
    chain_future(inner, result)
    io_loop = IOLoop.current()

    def log_late_failure(done: Any) -> None:
        try:
            done.result()
        except asyncio.CancelledError:
            pass
        except Exception as error:
            if not isinstance(error, quiet_exceptions):
                _app_log.error("Exception in Future %r after timeout", done, exc_info=True)

    def on_timeout() -> None:
        if not result.done():
            text = message() if callable(message) else message
            result.set_exception(TimeoutError(text if text is not None else "Timeout"))
        future_add_done_callback(inner, log_late_failure)

    handle = io_loop.add_timeout(timeout, on_timeout)
    if isinstance(inner, Future):
        future_add_done_callback(inner, lambda _: io_loop.remove_timeout(handle))
    else:
        # A concurrent future may finish on another thread: cancel on the loop's thread.
        io_loop.add_future(inner, lambda _: io_loop.remove_timeout(handle))
    return result


def sleep(duration: float) -> Future[None]:
    """A Future that resolves to None after ``duration`` seconds."""
    future = _create_future()
    IOLoop.current().call_later(duration, future_set_result_unless_cancelled, future, None)
    return future


class WaitIterator:
    """Iterate over futures in the order they finish.

    ``current_future`` and ``current_index`` (position or keyword) tell which one the last
    ``next()`` returned. Use ``while not it.done(): await it.next()`` or ``async for``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and kwargs:
            raise ValueError("You must provide args or kwargs, not both")
        # future -> its keys (positions or names) not yet returned; a future passed more
        # than once is returned once per occurrence.
        self._unfinished: dict[Any, deque[Any]] = {}
        pairs = kwargs.items() if kwargs else enumerate(args)
        for key, each in pairs:
            self._unfinished.setdefault(each, deque()).append(key)
        awaited: Sequence[Any] = list(kwargs.values()) if kwargs else args
        self._finished: deque[Any] = deque()
        self.current_index: Any = None
        self.current_future: Any = None
        self._running_future: Future[Any] | None = None
        for each in awaited:
            future_add_done_callback(each, self._on_done)

    def done(self) -> bool:
        """True once every future has been returned by ``next()``."""
        if self._finished or self._unfinished:
            return False
        self.current_index = self.current_future = None
        return True

    def next(self) -> Future[Any]:
        """A future for the next input to finish."""
        self._running_future = Future()
        if self._finished:
            return self._deliver(self._finished.popleft())
        return self._running_future

    def _on_done(self, done: Any) -> None:
        if self._running_future is not None and not self._running_future.done():
            self._deliver(done)
        else:
            self._finished.append(done)

    def _deliver(self, done: Any) -> Future[Any]:
        running = self._running_future
        if running is None:
            raise Exception("no future is running")
        chain_future(done, running)
        self._running_future = None
        self.current_future = done
        keys = self._unfinished[done]
        self.current_index = keys.popleft()
        if not keys:
            del self._unfinished[done]
        return running

    def __aiter__(self) -> WaitIterator:
        return self

    def __anext__(self) -> Future[Any]:
        if self.done():
            raise StopAsyncIteration()
        return self.next()


def _wrap_awaitable(awaitable: Awaitable[Any]) -> Future[Any]:
    return asyncio.ensure_future(awaitable)


@singledispatch
def convert_yielded(yielded: Any) -> Any:
    """Turn something a coroutine yielded into a Future.

    Lists and dicts become ``multi``; awaitables are scheduled as tasks. Other types can be
    supported with ``convert_yielded.register``.
    """
    if yielded is None or yielded is moment:
        return moment
    if yielded is _null_future:
        return _null_future
    if isinstance(yielded, (list, dict)):
        return multi(yielded)
    if is_future(yielded):
        return yielded
    if inspect.isawaitable(yielded):
        return _wrap_awaitable(yielded)
    raise BadYieldError(f"yielded unknown object {yielded!r}")
