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
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

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


# A queue's ordering is its storage: each kind holds the items and knows which one leaves
# next, so Queue itself is the same for all three orders.


class _FifoItems(collections.deque[Any]):
    __slots__ = ()

    def push(self, item: Any) -> None:
        self.append(item)

    def take(self) -> Any:
        return self.popleft()


class _HeapItems(list[Any]):
    __slots__ = ()

    def push(self, item: Any) -> None:
        heapq.heappush(self, item)

    def take(self) -> Any:
        return heapq.heappop(self)


class _StackItems(list[Any]):
    __slots__ = ()

    def push(self, item: Any) -> None:
        self.append(item)

    def take(self) -> Any:
        return self.pop()


_Items = _FifoItems | _HeapItems | _StackItems


def _checked_maxsize(maxsize: int) -> int:
    if maxsize is None:
        raise TypeError("maxsize can't be None")
    if maxsize < 0:
        raise ValueError("maxsize can't be negative")
    return maxsize


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

    _items_type: ClassVar[type[_Items]] = _FifoItems

    def __init__(self, maxsize: int = 0) -> None:
        self._queue: _Items = self._items_type()
        # Waiters, oldest first; ones that timed out stay until a put or get sweeps them.
        self._getters: collections.deque[asyncio.Future[_T]] = collections.deque()
        self._putters: collections.deque[tuple[_T, asyncio.Future[None]]] = collections.deque()
        self._maxsize = _checked_maxsize(maxsize)
        # Items put but not yet marked done; join() waits for _finished.
        self._unfinished_tasks = 0
        self._finished = Event()
        self._finished.set()

    def put(self, item: _T, timeout: Timeout | None = None) -> asyncio.Future[None]:
        """Put ``item`` in the queue, waiting for room while it is full.

        The Future raises TimeoutError if ``timeout`` passes before there is room
        (the item is then not added).
        """
        done: asyncio.Future[None] = _new_future()
        self._drop_expired_waiters()
        if self._getters or not self.full():
            self.put_nowait(item)
            done.set_result(None)
        else:
            self._putters.append((item, done))
            _expire_at(done, timeout)
        return done

    def put_nowait(self, item: _T) -> None:
        """Put ``item`` in the queue, or raise :exc:`QueueFull`."""
        self._drop_expired_waiters()
        if self._getters:
            # Getters wait only on an empty queue. The item still goes through storage so
            # the order and the task count apply to it as to any other.
            getter = self._getters.popleft()
            self._admit(item)
            getter.set_result(self._queue.take())
        elif self.full():
            raise QueueFull
        else:
            self._admit(item)

    def get(self, timeout: Timeout | None = None) -> Awaitable[_T]:
        """Take an item, waiting while the queue is empty.

        The Future raises TimeoutError if ``timeout`` passes first.
        """
        got: asyncio.Future[_T] = _new_future()
        self._drop_expired_waiters()
        if self._putters or self._queue:
            got.set_result(self.get_nowait())
        else:
            self._getters.append(got)
            _expire_at(got, timeout)
        return got

    def get_nowait(self) -> _T:
        """Take an item, or raise :exc:`QueueEmpty`."""
        self._drop_expired_waiters()
        if self._putters:
            # Putters wait only on a full queue: the oldest one's item enters before one
            # leaves, so the storage order decides which comes out.
            item, putter = self._putters.popleft()
            self._admit(item)
            putter.set_result(None)
        elif not self._queue:
            raise QueueEmpty
        return self._queue.take()  # type: ignore[no-any-return]

    def task_done(self) -> None:
        """Mark one item taken by :meth:`get` as processed (see :meth:`join`).

        ValueError if called more times than items were put.
        """
        if not self._unfinished_tasks:
            raise ValueError("task_done() called too many times")
        self._unfinished_tasks -= 1
        if not self._unfinished_tasks:
            self._finished.set()

    def join(self, timeout: Timeout | None = None) -> Awaitable[None]:
        """Wait until every item put has been marked done with :meth:`task_done`."""
        return self._finished.wait(timeout)

    def __aiter__(self) -> _QueueIterator[_T]:
        return _QueueIterator(self)

    def qsize(self) -> int:
        """The number of items in the queue."""
        return len(self._queue)

    def full(self) -> bool:
        # maxsize 0 means unbounded: such a queue is never full.
        return 0 < self._maxsize <= self.qsize()

    def empty(self) -> bool:
        return self.qsize() == 0

    @property
    def maxsize(self) -> int:
        """The largest number of items the queue holds (0 means unbounded)."""
        return self._maxsize

    def _admit(self, item: _T) -> None:
        self._unfinished_tasks += 1
        self._finished.clear()
        self._queue.push(item)

    def _drop_expired_waiters(self) -> None:
        # After this the oldest waiter of each kind, if any, is still waiting.
        sweeps: tuple[tuple[collections.deque[Any], Callable[[Any], bool]], ...] = (
            (self._putters, _putter_done),
            (self._getters, _getter_done),
        )
        for waiters, is_done in sweeps:
            while waiters and is_done(waiters[0]):
                waiters.popleft()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} {self._describe()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__} {self._describe()}>"

    def _describe(self) -> str:
        parts = [f"maxsize={self.maxsize!r}"]
        if self._queue:
            parts.append(f"queue={list(self._queue)!r}")
        for label, waiters in (("getters", self._getters), ("putters", self._putters)):
            if waiters:
                parts.append(f"{label}[{len(waiters)}]")
        if self._unfinished_tasks:
            parts.append(f"tasks={self._unfinished_tasks}")
        return " ".join(parts)


def _putter_done(entry: tuple[Any, asyncio.Future[None]]) -> bool:
    return entry[1].done()


def _getter_done(getter: asyncio.Future[Any]) -> bool:
    return getter.done()


def _expire_at(waiter: asyncio.Future[Any], timeout: Timeout | None) -> None:
    if timeout is not None:
        _schedule_timeout(waiter, timeout, lambda: _expire_with_timeout_error(waiter))


class PriorityQueue(Queue[_T]):
    """A :class:`Queue` that hands out the lowest item first (typically a
    ``(priority, item)`` tuple)."""

    _items_type = _HeapItems


class LifoQueue(Queue[_T]):
    """A :class:`Queue` that hands out the most recently added item first."""

    _items_type = _StackItems
