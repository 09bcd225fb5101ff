"""The event loop face squall's code talks to.

``IOLoop`` wraps one asyncio event loop (uvloop's when installed); there is at most one
``IOLoop`` per asyncio loop. The implementation lives in ``squall.platform.asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import math
import os
import random
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from inspect import isawaitable
from typing import Any, Literal, Protocol, TypeVar, overload

from squall.concurrent import Future, chain_future, future_add_done_callback, is_future
from squall.util import Configurable, TimeoutError, import_object

__all__ = ["IOLoop", "PeriodicCallback", "TimeoutError", "Configurable", "import_object"]

_T = TypeVar("_T")

_app_log = logging.getLogger("squall.application")
_gen_log = logging.getLogger("squall.general")


class _Selectable(Protocol):
    def fileno(self) -> int: ...

    def close(self) -> None: ...


def _gen() -> Any:
    # squall.gen imports this module; resolve it on first use.
    from squall import gen

    return gen


# Python 3.14 deprecates the public accessor; the private one reads the same policy silently.
_get_policy: Callable[[], asyncio.AbstractEventLoopPolicy] = getattr(
    asyncio.events, "_get_event_loop_policy", asyncio.get_event_loop_policy
)


def _event_loop_set_for_thread() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop set as current for this thread, without creating one."""
    policy = _get_policy()
    local = getattr(policy, "_local", None)
    if local is not None and hasattr(local, "_loop"):
        return local._loop  # type: ignore[no-any-return]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return policy.get_event_loop()
    except RuntimeError:
        return None


def _deprecated(message: str) -> None:
    # stacklevel 3: the warning names the caller of the deprecated IOLoop method.
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def _outcome_of(func: Callable[[], Any]) -> Future[Any]:
    """``func()``'s outcome as a Future: the one it returned (or the awaitable it returned,
    scheduled), else a Future already holding its value or its exception."""
    settled: Future[Any] = Future()
    try:
        returned = func()
        if returned is not None:
            returned = _gen().convert_yielded(returned)
    except Exception as error:
        settled.set_exception(error)
        return settled
    if is_future(returned):
        return returned  # type: ignore[no-any-return]
    settled.set_result(returned)
    return settled


class IOLoop(Configurable):
    """An I/O event loop: callbacks, timers, fd handlers, futures.

    ``IOLoop()`` creates a new asyncio loop; ``IOLoop.current()`` returns the loop of the
    running (or current) asyncio loop, creating the wrapper on first use.
    """

    NONE = 0
    READ = 0x001
    WRITE = 0x004
    ERROR = 0x018

    # asyncio loop -> its IOLoop
    _ioloop_for_asyncio: dict[asyncio.AbstractEventLoop, IOLoop] = {}

    asyncio_loop: asyncio.AbstractEventLoop

    @classmethod
    def configure(cls, impl: Any, **kwargs: Any) -> None:
        """Choose the ``IOLoop`` subclass; it must be built on asyncio."""
        from squall.platform.asyncio import BaseAsyncIOLoop

        chosen = import_object(impl) if isinstance(impl, str) else impl
        # Every squall loop is a face over an asyncio loop; any other class has none to drive.
        if isinstance(chosen, type) and not issubclass(chosen, BaseAsyncIOLoop):
            raise RuntimeError("only AsyncIOLoop is allowed when asyncio is available")
        super().configure(chosen, **kwargs)

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        return IOLoop

    @classmethod
    def configurable_default(cls) -> type[Configurable]:
        # The platform module is imported at the end of this one.
        return _platform_asyncio.AsyncIOLoop

    def initialize(self, make_current: bool = True) -> None:  # type: ignore[override]
        if make_current:
            self._make_current()

    @staticmethod
    def instance() -> IOLoop:
        """Old name for ``IOLoop.current()``."""
        return IOLoop.current()

    def install(self) -> None:
        """Old name for ``make_current()``."""
        self.make_current()

    @staticmethod
    def clear_instance() -> None:
        """Old name for ``clear_current()``."""
        IOLoop.clear_current()

    @overload
    @staticmethod
    def current() -> IOLoop: ...

    @overload
    @staticmethod
    def current(instance: Literal[True] = True) -> IOLoop: ...

    @overload
    @staticmethod
    def current(instance: bool = True) -> IOLoop | None: ...

    @staticmethod
    def current(instance: bool = True) -> IOLoop | None:
        """The ``IOLoop`` of the running asyncio loop (or of this thread's current one).

        With ``instance`` false, return None instead of creating a loop or a wrapper.
        """
        loop = asyncio._get_running_loop()
        if loop is None:
            loop = _event_loop_set_for_thread()
            if loop is None:
                if not instance:
                    return None
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
        existing = IOLoop._ioloop_for_asyncio.get(loop)
        if existing is not None:
            return existing
        if not instance:
            return None
        from squall.platform.asyncio import AsyncIOMainLoop

        return AsyncIOMainLoop()

    def make_current(self) -> None:
        """Make this the current loop of the thread (deprecated: start the loop instead)."""
        _deprecated("make_current is deprecated; start the event loop first")
        self._make_current()

    @staticmethod
    def clear_current() -> None:
        """Unset this thread's current loop (deprecated)."""
        _deprecated("clear_current is deprecated")
        # Only a wrapper that exists has anything to undo; none is created for this.
        current = IOLoop.current(instance=False)
        if current is not None:
            current._clear_current_hook()

    def _clear_current_hook(self) -> None:
        """Called when this loop stops being current."""

    def close(self, all_fds: bool = False) -> None:
        """Close the loop; with ``all_fds`` also close every fd with a handler."""
        raise NotImplementedError()

    def _make_current(self) -> None:
        """Make this loop (its asyncio loop) the thread's current one."""
        raise NotImplementedError()

    def add_handler(self, fd: int | _Selectable, handler: Callable[..., None], events: int) -> None:
        """Call ``handler(fd, events)`` when ``fd`` (an int or object with ``fileno``) is ready."""
        raise NotImplementedError()

    def update_handler(self, fd: int | _Selectable, events: int) -> None:
        """Change the events watched for ``fd``."""
        raise NotImplementedError()

    def remove_handler(self, fd: int | _Selectable) -> None:
        """Stop watching ``fd`` (no error if it was not watched)."""
        raise NotImplementedError()

    def start(self) -> None:
        """Run until ``stop()`` is called."""
        raise NotImplementedError()

    def stop(self) -> None:
        """Make ``start()`` return after the current iteration."""
        raise NotImplementedError()

    def run_sync(self, func: Callable[[], Any], timeout: float | None = None) -> Any:
        """Start the loop, run ``func`` (sync or async) and return its result.

        With ``timeout`` (seconds), the operation is cancelled and ``TimeoutError`` raised
        when it takes longer.
        """
        outcome: Future[Any] | None = None
        timed_out = False
        running = True

        def begin() -> None:
            nonlocal outcome
            outcome = _outcome_of(func)
            self.add_future(outcome, stop_if_still_running)

        def stop_if_still_running(_: Any) -> None:
            # An operation abandoned by an earlier run_sync (timeout) may finish during a
            # later run of the loop; it must not stop that one.
            if running:
                self.stop()

        def give_up() -> None:
            nonlocal timed_out
            if running:
                timed_out = True
                if outcome is not None and not outcome.done():
                    outcome.cancel()
                self.stop()

        self.add_callback(begin)
        deadline = None if timeout is None else self.add_timeout(self.time() + timeout, give_up)
        try:
            self.start()
        finally:
            running = False
        if deadline is not None:
            self.remove_timeout(deadline)
        if outcome is not None and outcome.done():
            if timed_out and outcome.cancelled():
                raise TimeoutError(f"Operation timed out after {timeout} seconds")
            return outcome.result()
        if isinstance(outcome, asyncio.Task):
            # The caller learns of the abandoned operation from the exception below;
            # asyncio need not report the task again when it is collected.
            outcome.cancel()
            outcome._log_destroy_pending = False  # type: ignore[attr-defined]
        if timed_out:
            raise TimeoutError(f"Operation timed out after {timeout} seconds")
        raise RuntimeError("Event loop stopped before Future completed.")

    def time(self) -> float:
        """The loop's clock (monotonic seconds), the reference for timeouts."""
        return self.asyncio_loop.time()

    def add_timeout(
        self,
        deadline: float | datetime.timedelta,
        callback: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> object:
        """Run ``callback`` at ``deadline`` (a ``time()`` value or a timedelta from now)."""
        if isinstance(deadline, (int, float)):
            return self.call_at(deadline, callback, *args, **kwargs)
        if isinstance(deadline, datetime.timedelta):
            return self.call_at(self.time() + deadline.total_seconds(), callback, *args, **kwargs)
        raise TypeError(f"Unsupported deadline {deadline!r}")

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> object:
        """Run ``callback`` after ``delay`` seconds; returns a handle for ``remove_timeout``."""
        return self.call_at(self.time() + delay, callback, *args, **kwargs)

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> object:
        """Run ``callback`` at ``when`` (a ``time()`` value)."""
        raise NotImplementedError()

    def remove_timeout(self, timeout: object) -> None:
        """Cancel a pending timeout (no error if it already ran)."""
        raise NotImplementedError()

    def add_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``callback`` on the next iteration. Safe to call from any thread."""
        raise NotImplementedError()

    def add_callback_from_signal(
        self, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """Deprecated: use ``asyncio.AbstractEventLoop.add_signal_handler`` instead."""
        raise NotImplementedError()

    def spawn_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``callback`` on the next iteration, detached from the caller's stack."""
        self.add_callback(callback, *args, **kwargs)

    def add_future(self, future: Any, callback: Callable[[Any], None]) -> None:
        """Call ``callback(future)`` on this loop once ``future`` is done."""
        if isinstance(future, Future):
            future.add_done_callback(
                lambda done: self._run_callback(functools.partial(callback, done))
            )
        else:
            if not is_future(future):
                raise TypeError(f"expected a Future, got {future!r}")
            # A concurrent future completes on a worker thread; hop to the loop thread.
            future_add_done_callback(future, lambda done: self.add_callback(callback, done))

    def run_in_executor(
        self, executor: Executor | None, func: Callable[..., _T], *args: Any
    ) -> Awaitable[_T]:
        """Run ``func(*args)`` on ``executor`` (the default thread pool if None)."""
        if executor is None:
            executor = self._default_executor()
        submitted = executor.submit(func, *args)
        result: Future[_T] = Future()
        self.add_future(submitted, lambda done: chain_future(done, result))
        return result

    def _default_executor(self) -> Executor:
        executor: Executor | None = getattr(self, "_executor", None)
        if executor is None:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) * 5)
            self._executor: Executor = executor
        return executor

    def set_default_executor(self, executor: Executor) -> None:
        """Use ``executor`` when ``run_in_executor`` is given None."""
        self._executor = executor

    def _run_callback(self, callback: Callable[[], Any]) -> None:
        """Run a callback for the loop: its errors are logged, never raised into the loop."""
        try:
            returned = callback()
            if returned is not None:
                self._watch_returned(returned)
        except asyncio.CancelledError:
            pass
        except Exception:
            _app_log.error("Exception in callback %r", callback, exc_info=True)

    def _watch_returned(self, returned: Any) -> None:
        # A callback that returns a coroutine or a Future fails when that does, so its
        # error is logged then too; any other value is ignored.
        gen = _gen()
        try:
            pending = gen.convert_yielded(returned)
        except gen.BadYieldError:
            return
        self.add_future(pending, self._discard_future_result)

    def _discard_future_result(self, future: Any) -> None:
        # Raise the error, if any, so that _run_callback logs it.
        future.result()

    def split_fd(self, fd: int | _Selectable) -> tuple[int, int | _Selectable]:
        """``(int_fd, original)`` for an int fd or an object with ``fileno()``."""
        return (fd if isinstance(fd, int) else fd.fileno()), fd

    def close_fd(self, fd: int | _Selectable) -> None:
        """Close an int fd or a file-like object, ignoring errors."""
        with contextlib.suppress(OSError):
            os.close(fd) if isinstance(fd, int) else fd.close()


class PeriodicCallback:
    """Call ``callback`` every ``callback_time`` milliseconds (or a timedelta).

    ``jitter`` spreads calls by up to ``jitter/2`` of the interval either way. Overrunning
    calls skip missed slots rather than bunching up; a callback returning an awaitable is
    waited for before the next call is scheduled.
    """

    def __init__(
        self,
        callback: Callable[[], Any],
        callback_time: datetime.timedelta | float,
        jitter: float = 0,
    ) -> None:
        if isinstance(callback_time, datetime.timedelta):
            # Stored in milliseconds, the unit Tornado's API uses for a plain number.
            callback_time = callback_time / datetime.timedelta(milliseconds=1)
        elif callback_time <= 0:
            raise ValueError("Periodic callback must have a positive callback_time")
        self.callback = callback
        self.callback_time = callback_time
        self.jitter = jitter
        self._running = False
        self._timeout: object | None = None
        self._next_timeout = 0.0
        self.io_loop: IOLoop | None = None

    def start(self) -> None:
        """Begin calling (the first call is one interval from now)."""
        io_loop = IOLoop.current()
        assert io_loop is not None
        self.io_loop = io_loop
        self._running = True
        self._next_timeout = io_loop.time()
        self._schedule_next()

    def stop(self) -> None:
        """Stop calling."""
        self._running = False
        if self._timeout is not None and self.io_loop is not None:
            self.io_loop.remove_timeout(self._timeout)
            self._timeout = None

    def is_running(self) -> bool:
        """Whether the callback is scheduled."""
        return self._running

    def _run(self) -> None:
        if not self._running:
            return
        try:
            returned = self.callback()
        except Exception:
            _app_log.error("Exception in callback %r", self.callback, exc_info=True)
            self._schedule_next()
            return
        if returned is not None and isawaitable(returned):
            assert self.io_loop is not None
            pending = _gen().convert_yielded(returned)
            self.io_loop.add_future(pending, self._after_awaitable)
        else:
            self._schedule_next()

    def _after_awaitable(self, done: Any) -> None:
        try:
            done.result()
        except asyncio.CancelledError:
            pass
        except Exception:
            _app_log.error("Exception in callback %r", self.callback, exc_info=True)
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self._running:
            assert self.io_loop is not None
            self._update_next(self.io_loop.time())
            self._timeout = self.io_loop.add_timeout(self._next_timeout, self._run)

    def _update_next(self, current_time: float) -> None:
        interval = self.callback_time / 1000.0
        if self.jitter:
            interval *= 1 + self.jitter * (random.random() - 0.5)
        if self._next_timeout <= current_time:
            # Skip every slot already missed so a slow callback does not cause a burst.
            missed = math.floor((current_time - self._next_timeout) / interval)
            self._next_timeout += (missed + 1) * interval
        else:
            # The clock went backwards; keep the schedule moving forward regardless.
            self._next_timeout += interval


# Imported last: squall.platform.asyncio subclasses IOLoop, and importing it installs uvloop's
# loop policy when available, which must happen before any loop is created.
from squall.platform import asyncio as _platform_asyncio  # noqa: E402,F401
