"""Queues for coordinating producer and consumer coroutines.

:class:`Queue` is first in, first out; :class:`PriorityQueue` hands out the smallest item
first; :class:`LifoQueue` the most recently added. Like :mod:`squall.locks` they are not
thread-safe, and their blocking methods return Futures and accept a ``timeout``
(a :class:`datetime.timedelta` or an absolute :meth:`IOLoop.time()
<squall.ioloop.IOLoop.time>` deadline).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
from collections.abc import Awaitable
from typing import Any, Generic, TypeVar

from squall.locks import Event, Timeout, _new_future, _schedule_timeout

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "QueueEmpty", "QueueFull"]

_T = TypeVar("_T")


class QueueEmpty(Exception):
    """Raised by :meth:`Queue.get_nowait` when the queue has no items."""


class QueueFull(Exception):
    """Raised by :meth:`Queue.put_nowait` when the queue is at its maximum size."""


def _expire_with_timeout_error(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _QueueIterator(Generic[_T]):
    __slots__ = ("_queue",)

    def __init__(self, queue: Queue[_T]) -> None:
        self._queue = queue

    def __anext__(self) -> Awaitable[_T]:
        return self._queue.get()


class Queue(Generic[_T]):
    """A queue of items for coroutines, bounded when ``maxsize`` is positive.

    :meth:`put` waits while the queue is full, :meth:`get` while it is empty. Each item
    taken should be followed by :meth:`task_done`, so :meth:`join` can tell when all the
    work is finished. ``async for item in queue`` loops over items forever.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if maxsize is None:
            raise TypeError("maxsize can't be None")
        if maxsize < 0:
            raise ValueError("maxsize can't be negative")
        self._maxsize = maxsize
        self._init()
        self._getters: collections.deque[asyncio.Future[_T]] = collections.deque()
        self._putters: collections.deque[tuple[_T, asyncio.Future[None]]] = collections.deque()
        self._unfinished_tasks = 0
        self._finished = Event()
        self._finished.set()

    @property
    def maxsize(self) -> int:
        """The largest number of items the queue holds (0 means unbounded)."""
        return self._maxsize

    def qsize(self) -> int:
        """The number of items in the queue."""
        return len(self._queue)

    def empty(self) -> bool:
        return not self._queue

    def full(self) -> bool:
        if self._maxsize == 0:
            return False
        return self.qsize() >= self._maxsize

    def put(self, item: _T, timeout: Timeout | None = None) -> asyncio.Future[None]:
        """Put ``item`` in the queue, waiting for room while it is full.

        The Future raises TimeoutError if ``timeout`` passes before there is room
        (the item is then not added).
        """
        future: asyncio.Future[None] = _new_future()
        try:
            self.put_nowait(item)
        except QueueFull:
            self._putters.append((item, future))
            if timeout is not None:
                _schedule_timeout(future, timeout, lambda: _expire_with_timeout_error(future))
        else:
            future.set_result(None)
        return future

    def put_nowait(self, item: _T) -> None:
        """Put ``item`` in the queue, or raise :exc:`QueueFull`."""
        self._drop_expired_waiters()
        while self._getters:
            getter = self._getters.popleft()
            if getter.done():
                continue
            # A getter only waits on an empty queue: pass the item through the queue so
            # subclasses' ordering and bookkeeping still apply.
            self._put_item(item)
            getter.set_result(self._get())
            return
        if self.full():
            raise QueueFull
        self._put_item(item)

    def get(self, timeout: Timeout | None = None) -> Awaitable[_T]:
        """Take an item, waiting while the queue is empty.

        The Future raises TimeoutError if ``timeout`` passes first.
        """
        future: asyncio.Future[_T] = _new_future()
        try:
            future.set_result(self.get_nowait())
        except QueueEmpty:
            self._getters.append(future)
            if timeout is not None:
                _schedule_timeout(future, timeout, lambda: _expire_with_timeout_error(future))
        return future

    def get_nowait(self) -> _T:
        """Take an item, or raise :exc:`QueueEmpty`."""
        self._drop_expired_waiters()
        while self._putters:
            item, putter = self._putters.popleft()
            if putter.done():
                continue
            # Putters only wait on a full queue: admit the oldest before taking an item,
            # so the subclass's ordering decides what comes out.
            self._put_item(item)
            putter.set_result(None)
            return self._get()
        if self._queue:
            return self._get()
        raise QueueEmpty

    def task_done(self) -> None:
        """Mark one item taken by :meth:`get` as processed (see :meth:`join`).

        ValueError if called more times than items were put.
        """
        if self._unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished_tasks -= 1
        if self._unfinished_tasks == 0:
            self._finished.set()

    def join(self, timeout: Timeout | None = None) -> Awaitable[None]:
        """Wait until every item put has been marked done with :meth:`task_done`."""
        return self._finished.wait(timeout)

    def __aiter__(self) -> _QueueIterator[_T]:
        return _QueueIterator(self)

    # Storage hooks, overridden by the ordered subclasses.

    def _init(self) -> None:
        self._queue: Any = collections.deque()

    def _get(self) -> _T:
        return self._queue.popleft()

    def _put(self, item: _T) -> None:
        self._queue.append(item)

    def _put_item(self, item: _T) -> None:
        self._unfinished_tasks += 1
        self._finished.clear()
        self._put(item)

    def _drop_expired_waiters(self) -> None:
        # Timed-out waiters stay queued until a put or get sweeps them from the front.
        while self._putters and self._putters[0][1].done():
            self._putters.popleft()
        while self._getters and self._getters[0].done():
            self._getters.popleft()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} {self._describe()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__} {self._describe()}>"

    def _describe(self) -> str:
        parts = [f"maxsize={self.maxsize!r}"]
        if getattr(self, "_queue", None):
            parts.append(f"queue={self._queue!r}")
        if self._getters:
            parts.append(f"getters[{len(self._getters)}]")
        if self._putters:
            parts.append(f"putters[{len(self._putters)}]")
        if self._unfinished_tasks:
            parts.append(f"tasks={self._unfinished_tasks}")
        return " ".join(parts)


class PriorityQueue(Queue[_T]):
    """A :class:`Queue` that hands out the lowest item first (typically a
    ``(priority, item)`` tuple)."""

    def _init(self) -> None:
        self._queue = []

    def _put(self, item: _T) -> None:
        heapq.heappush(self._queue, item)

    def _get(self) -> _T:
        return heapq.heappop(self._queue)


class LifoQueue(Queue[_T]):
    """A :class:`Queue` that hands out the most recently added item first."""

    def _init(self) -> None:
        self._queue = []

    def _put(self, item: _T) -> None:
        self._queue.append(item)

    def _get(self) -> _T:
        return self._queue.pop()
