"""Coroutine synchronization primitives: Condition, Event, Semaphore, BoundedSemaphore, Lock.

They resemble :mod:`asyncio`'s primitives but follow Tornado's interface: every wait
accepts a ``timeout`` (a :class:`datetime.timedelta`, or an absolute deadline in
:meth:`IOLoop.time() <squall.ioloop.IOLoop.time>` terms) and returns a Future, so they are
usable from ``await``, ``yield`` in ``gen.coroutine`` and plain callbacks alike. None of
them is thread-safe: use them from the thread running the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import types
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["BoundedSemaphore", "Condition", "Event", "Lock", "Semaphore"]

Timeout = float | datetime.timedelta

# After this many waiters time out, waiter queues are swept of them; a sweep is linear,
# so doing it only now and then keeps timed waits cheap while bounding the garbage.
_SWEEP_EVERY = 100


def _new_future() -> asyncio.Future[Any]:
    try:
        return asyncio.get_running_loop().create_future()
    except RuntimeError:
        # Outside a running loop (a callback-style caller): bind to the current loop.
        return asyncio.Future()


def _schedule_timeout(
    future: asyncio.Future[Any], timeout: Timeout, on_expiry: Callable[[], None]
) -> None:
    """Call ``on_expiry`` at ``timeout`` unless ``future`` is resolved first."""
    loop = future.get_loop()
    if isinstance(timeout, datetime.timedelta):
        handle = loop.call_later(timeout.total_seconds(), on_expiry)
    else:
        # Absolute deadline: squall's IOLoop.time() is its asyncio loop's clock.
        handle = loop.call_at(timeout, on_expiry)
    future.add_done_callback(lambda _: handle.cancel())


class _TimeoutGarbageCollector:
    """Base for primitives whose waiter queue keeps timed-out waiters until a sweep."""

    def __init__(self) -> None:
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._timeouts = 0

    def _garbage_collect(self) -> None:
        self._timeouts += 1
        if self._timeouts > _SWEEP_EVERY:
            self._timeouts = 0
            self._waiters = collections.deque(w for w in self._waiters if not w.done())

    def _pop_live_waiter(self) -> asyncio.Future[Any] | None:
        """The oldest waiter not yet resolved (timed out or cancelled), or None."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _enqueue_waiter(
        self,
        waiter: asyncio.Future[Any],
        timeout: Timeout | None,
        on_timeout: Callable[[asyncio.Future[Any]], None],
    ) -> None:
        """Queue ``waiter``; at ``timeout``, resolve it with ``on_timeout`` unless already done."""
        self._waiters.append(waiter)
        if timeout is not None:

            def expire() -> None:
                if not waiter.done():
                    on_timeout(waiter)
                self._garbage_collect()

            _schedule_timeout(waiter, timeout, expire)


# Module-level so that queueing a waiter allocates no per-call closure for its timeout.
def _wake_unnotified(waiter: asyncio.Future[Any]) -> None:
    waiter.set_result(False)


def _fail_semaphore_acquire(waiter: asyncio.Future[Any]) -> None:
    waiter.set_exception(TimeoutError("Timeout acquiring semaphore"))


class Condition(_TimeoutGarbageCollector):
    """Lets coroutines wait until another one calls :meth:`notify` or :meth:`notify_all`.

    Unlike :class:`threading.Condition` there is no lock to hold around ``wait``.
    """

    def __repr__(self) -> str:
        waiting = f" waiters[{len(self._waiters)}]" if self._waiters else ""
        return f"<{type(self).__name__}{waiting}>"

    def wait(self, timeout: Timeout | None = None) -> Awaitable[bool]:
        """A Future that resolves to True when notified, or False if ``timeout`` passes."""
        waiter = _new_future()
        self._enqueue_waiter(waiter, timeout, _wake_unnotified)
        return waiter

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, oldest first."""
        woken = []
        for _ in range(n):
            waiter = self._pop_live_waiter()
            if waiter is None:
                break
            woken.append(waiter)
        # Resolve only after the queue is updated, so a waiter's callback that calls
        # notify() again sees a consistent queue.
        for waiter in woken:
            if not waiter.done():
                waiter.set_result(True)

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))


class Event:
    """A flag coroutines can wait on: :meth:`wait` blocks until :meth:`set` is called."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'set' if self._value else 'clear'}>"

    def is_set(self) -> bool:
        """True once :meth:`set` has been called (and not undone by :meth:`clear`)."""
        return self._value

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Reset the flag, so later :meth:`wait` calls block again."""
        self._value = False

    def wait(self, timeout: Timeout | None = None) -> Awaitable[None]:
        """A Future resolved when the flag is set; it raises TimeoutError at ``timeout``."""
        waiter: asyncio.Future[None] = _new_future()
        if self._value:
            waiter.set_result(None)
            return waiter
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)
        if timeout is not None:

            def expire() -> None:
                if not waiter.done():
                    waiter.set_exception(TimeoutError("Timeout waiting for event"))

            _schedule_timeout(waiter, timeout, expire)
        return waiter


async def _acquire_for_block(waiter: Awaitable[_ReleasingContextManager]) -> None:
    """Await an acquire; if cancelled after the slot was granted, give the slot back."""
    try:
        await waiter
    except asyncio.CancelledError:
        if isinstance(waiter, asyncio.Future) and waiter.done() and not waiter.cancelled():
            if waiter.exception() is None:
                waiter.result().__exit__(None, None, None)
        raise


class _ReleasingContextManager:
    """What ``acquire()`` resolves to: ``with (yield sem.acquire()):`` releases on exit."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> None:
        self._obj.release()


class _AsyncWithOnly:
    """``async with`` for Semaphore and Lock, in terms of their acquire and release.

    A bare ``with`` is refused: it could not wait, so it would hold nothing.
    """

    _HINT = ""  # how to use the subclass, for the RuntimeError a bare ``with`` raises

    def acquire(self, timeout: Timeout | None = None) -> Awaitable[_ReleasingContextManager]:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> None:
        raise RuntimeError(self._HINT)

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        raise RuntimeError(self._HINT)

    async def __aenter__(self) -> None:
        await _acquire_for_block(self.acquire())

    async def __aexit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.release()


class Semaphore(_TimeoutGarbageCollector, _AsyncWithOnly):
    """A counter that :meth:`acquire` decrements, waiting while it is zero.

    Use it as ``async with sem:``, or ``with (yield sem.acquire()):`` in old-style
    coroutines. Waiters are served first come, first served.
    """

    _HINT = "use 'async with' (or 'with (yield sem.acquire())') for a Semaphore"
    # The most the counter may reach through release(); None for no bound.
    _ceiling: int | None = None

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        super().__init__()
        self._value = value

    def __repr__(self) -> str:
        state = f"unlocked,value:{self._value}" if self._value else "locked"
        waiting = f",waiters:{len(self._waiters)}" if self._waiters else ""
        return f"<{type(self).__name__} [{state}{waiting}]>"

    def release(self) -> None:
        """Increment the counter, handing the slot straight to the oldest waiter if any."""
        if self._ceiling is not None and self._value >= self._ceiling:
            raise ValueError("Semaphore released too many times")
        # A waiter only exists while the counter is 0, so a slot given to it never
        # touches the counter.
        waiter = self._pop_live_waiter()
        if waiter is None:
            self._value += 1
        else:
            waiter.set_result(_ReleasingContextManager(self))

    def acquire(self, timeout: Timeout | None = None) -> Awaitable[_ReleasingContextManager]:
        """Decrement the counter; the Future raises TimeoutError if ``timeout`` passes first."""
        waiter = _new_future()
        if self._value > 0:
            self._value -= 1
            waiter.set_result(_ReleasingContextManager(self))
            return waiter
        self._enqueue_waiter(waiter, timeout, _fail_semaphore_acquire)
        return waiter

    # Tornado's API names this parameter ``traceback`` here and ``tb`` on Lock.
    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        raise RuntimeError(self._HINT)


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` whose release raises ValueError above the initial value."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value=value)
        self._ceiling = value


class Lock(_AsyncWithOnly):
    """A mutual-exclusion lock for coroutines, acquired first come, first served.

    Use ``async with lock:``, or ``with (yield lock.acquire()):`` in old-style coroutines.
    """

    _HINT = "use 'async with' (or 'with (yield lock.acquire())') for a Lock"

    def __init__(self) -> None:
        # A one-slot semaphore: its counter is 1 while the lock is free.
        self._block = BoundedSemaphore(value=1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} _block={self._block}>"

    def acquire(self, timeout: Timeout | None = None) -> Awaitable[_ReleasingContextManager]:
        """Take the lock; the Future raises TimeoutError if ``timeout`` passes first."""
        return self._block.acquire(timeout)

    def release(self) -> None:
        """Release the lock, waking the next waiter; RuntimeError if it is not held."""
        if self._block._value:
            raise RuntimeError("release unlocked lock")
        self._block.release()
