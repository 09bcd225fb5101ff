"""What every backend shares: the Hub interface and the local fan-out to subscriptions."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import deque
from types import TracebackType
from typing import Union

from squall.pubsub._types import (
    OVERFLOW_POLICIES,
    Data,
    Event,
    Gap,
    Message,
    OverflowPolicy,
    PubSubError,
    SubscriberOverflow,
    id_key,
)

log = logging.getLogger("squall.pubsub")

_Item = Union[Message, str]  # a queued message, or the reason of a gap at that point
_Key = tuple[int, int]


class Subscription:
    """One subscriber's view of a channel: an async iterator of `Message` and `Gap`.

    Made by `Hub.subscribe`; live between ``async with`` entry and exit (or `start` and
    `aclose`). Messages wait in a queue of at most ``max_queue``; when it is full the
    oldest is dropped and a `Gap` is delivered in its place (``overflow="drop-oldest"``),
    or the subscription ends with `SubscriberOverflow` (``overflow="disconnect"``).
    Iteration stops when the subscription or its hub is closed.
    """

    def __init__(
        self,
        hub: Hub,
        channel: str,
        since: str | None,
        max_queue: int,
        overflow: OverflowPolicy,
    ) -> None:
        if not isinstance(channel, str) or not channel:
            raise ValueError("a channel is a non-empty str")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
        self.hub = hub
        self.channel = channel
        self.since = since
        self.max_queue = max_queue
        self.overflow: OverflowPolicy = overflow
        #: the id of the last message this subscription delivered (the resume cursor)
        self.last_id: str | None = since
        self._last_key: _Key | None = id_key(since) if since is not None else None
        self._queue: deque[_Item] = deque()
        self._dropped = False
        self._holding: list[_Item] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._closed = False
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel!r} last_id={self.last_id!r}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """How many events wait in the queue."""
        return len(self._queue) + self._dropped

    async def start(self) -> Subscription:
        """Attach to the hub: from here on every message published is queued."""
        if self._started:
            raise RuntimeError("a subscription starts once")
        self._started = True
        await self.hub._attach(self)
        return self

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Detach from the hub; iteration ends once the queue is read."""
        if not self._closed:
            self._closed = True
            self.hub._detach(self)
            self._wake()

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._closed:
                raise StopAsyncIteration
            await self._wait()

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when none is queued.

        Raises `SubscriberOverflow` once after a disconnecting overflow.
        """
        if self._dropped:
            self._dropped = False
            return Gap(self.channel, self.last_id, "overflow")
        if self._queue:
            item = self._queue.popleft()
            if type(item) is str:
                return Gap(self.channel, self.last_id, item)
            self.last_id = item.id  # type: ignore[union-attr]
            return item  # type: ignore[return-value]
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return None

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None if ``timeout`` seconds pass first or the subscription ends."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            event = self.get_nowait()
            if event is not None or self._closed:
                return event
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await self._wait(remaining)

    async def _wait(self, timeout: float | None = None) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await waiter
            else:
                await asyncio.wait((waiter,), timeout=timeout)
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the hub's side

    def _push(self, message: Message, key: _Key) -> None:
        if self._holding is not None:
            self._holding.append(message)
            return
        last = self._last_key
        if last is not None and key <= last:
            return  # delivered already (a replay overlapping the live feed)
        self._last_key = key
        self._append(message)

    def _push_gap(self, reason: str) -> None:
        if self._holding is not None:
            self._holding.append(reason)
            return
        if reason == "reset":
            self._last_key = None  # the server's ids start again
        self._append(reason)

    def _append(self, item: _Item) -> None:
        if self._closed:
            return
        queue = self._queue
        if len(queue) >= self.max_queue:
            if self.overflow == "disconnect":
                log.warning("subscriber to %r fell %d behind: disconnected", self.channel,
                            len(queue))
                queue.clear()
                self._error = SubscriberOverflow(
                    f"the subscriber to {self.channel!r} fell more than "
                    f"{self.max_queue} messages behind"
                )
                self.close()
                return
            queue.popleft()
            self._dropped = True
        queue.append(item)
        self._wake()

    def _hold(self) -> None:
        self._holding = []

    def _release(self, gap: str | None, backlog: list[Message]) -> None:
        held, self._holding = self._holding or [], None
        if gap is not None:
            self._push_gap(gap)
        for message in backlog:
            self._push(message, id_key(message.id))
        for item in held:
            if isinstance(item, str):
                self._push_gap(item)
            else:
                self._push(item, id_key(item.id))

    def _end(self) -> None:
        self._closed = True
        self._wake()


class Hub(abc.ABC):
    """Publishes to channels and fans their messages out to local subscriptions.

    Made by `squall.pubsub.connect`. Every backend keeps publishing order per channel and
    gives each message an id that sorts in that order (see `id_key`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._subs: dict[str, set[Subscription]] = {}
        self._listening: dict[str, asyncio.Future[None]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @abc.abstractmethod
    async def publish(self, channel: str, data: Data) -> str:
        """Sends ``data`` to ``channel``'s subscribers everywhere; returns its id.

        Raises `PublishError` when the message was not sent.
        """

    def subscribe(
        self,
        channel: str,
        since: str | None = None,
        *,
        max_queue: int = 1000,
        overflow: OverflowPolicy = "drop-oldest",
    ) -> Subscription:
        """A subscription to ``channel``; use it with ``async with``.

        With ``since`` (an id from an earlier message) it first delivers what the backend
        still holds after that id, then the live messages, each once and in order.
        """
        return Subscription(self, channel, since, max_queue, overflow)

    @abc.abstractmethod
    async def history(
        self, channel: str, since: str | None = None, limit: int = 100
    ) -> list[Message]:
        """Held messages, oldest first: the first ``limit`` after ``since``, or without
        ``since`` the last ``limit``."""

    async def close(self) -> None:
        """Ends every subscription and releases the connections."""
        if self._closed:
            return
        self._closed = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub._end()
        self._subs.clear()
        for future in self._listening.values():
            future.cancel()
        self._listening.clear()
        await self._shutdown()

    async def __aenter__(self) -> Hub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # for the backends

    def _check_open(self) -> None:
        if self._closed:
            raise PubSubError("the hub is closed")

    def _subscribers(self, channel: str) -> set[Subscription]:
        return self._subs.get(channel) or set()

    def _fanout(self, message: Message) -> None:
        subs = self._subs.get(message.channel)
        if subs:
            key = id_key(message.id)
            for sub in tuple(subs):
                sub._push(message, key)

    def _fanout_gap(self, channel: str, reason: str) -> None:
        for sub in tuple(self._subs.get(channel, ())):
            sub._push_gap(reason)

    async def _attach(self, sub: Subscription) -> None:
        self._check_open()
        channel = sub.channel
        subs = self._subs.setdefault(channel, set())
        subs.add(sub)
        if sub.since is not None:
            sub._hold()
        listening = self._listening.get(channel)
        try:
            if listening is None:
                listening = self._listening[channel] = asyncio.ensure_future(
                    self._listen(channel)
                )
            await asyncio.shield(listening)
            gap: str | None = None
            backlog: list[Message] = []
            if sub.since is not None:
                gap, backlog = await self._backlog(channel, sub.since)
        except BaseException:
            if listening is not None and listening.done() and (
                self._listening.get(channel) is listening
            ):
                del self._listening[channel]  # failed: the next subscriber tries again
            sub._closed = True
            self._detach(sub)
            raise
        sub._release(gap, backlog)

    def _detach(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.channel)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.channel]
            listening = self._listening.pop(sub.channel, None)
            if listening is not None and not listening.done():
                listening.cancel()
            if not self._closed:
                self._unlisten(sub.channel)

    async def _listen(self, channel: str) -> None:  # noqa: B027
        """Backend: make sure messages of ``channel`` reach `_fanout` from now on."""

    def _unlisten(self, channel: str) -> None:  # noqa: B027
        """Backend: ``channel`` has no local subscriber left."""

    async def _backlog(self, channel: str, since: str) -> tuple[str | None, list[Message]]:
        """Backend: a gap reason (or None) and the held messages after ``since``."""
        return None, []

    async def _shutdown(self) -> None:  # noqa: B027
        """Backend: release connections and tasks."""
