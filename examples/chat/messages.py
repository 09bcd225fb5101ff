"""The chat's message buffer, fed from a squall.pubsub hub.

Messages are published to the hub (``memory://`` in one process, Redis for several) and
come back through one subscription per process, which fills the recent history here and
tells the long polls and WebSocket clients of this process. A message's id is the hub's
id, so it works as a cursor in every process.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections import deque
from typing import Any, Protocol

import squall.pubsub
from squall.locks import Condition
from squall.pubsub import Gap, Hub, PubSubError, id_key

Message = dict[str, Any]
CHANNEL = "chat"
START = "0"  # the cursor before the first message

log = logging.getLogger("squall.application")


class Subscriber(Protocol):
    """A client told about each message as it arrives (a WebSocket connection)."""

    def send(self, message: Message) -> None: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def decode(event: squall.pubsub.Message) -> Message:
    """A hub message as the chat's message (its JSON plus the hub's id)."""
    fields = json.loads(event.data)
    return {"id": event.id, "from": fields["from"], "body": fields["body"],
            "time": fields["time"]}


class MessageBuffer:
    """Keeps the last ``capacity`` messages of the room, in the hub's order.

    `post` publishes; the messages come back (from this or any other process) through
    the buffer's subscription, and long polls (waiting on a Condition) and WebSocket
    subscribers hear about each of them in that order.
    """

    def __init__(self, hub: Hub | None = None, capacity: int = 200) -> None:
        self.hub = hub if hub is not None else squall.pubsub.connect("memory://")
        self.capacity = capacity
        self.messages: deque[Message] = deque(maxlen=capacity)
        self.condition = Condition()
        self.subscribers: set[Subscriber] = set()
        self.waiting_polls = 0
        self._started: asyncio.Future[None] | None = None
        self._feed: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> str:
        return self.messages[-1]["id"] if self.messages else START

    def since(self, cursor: str) -> list[Message]:
        """Messages newer than ``cursor`` that are still held, oldest first."""
        key = id_key(cursor)
        if not self.messages or id_key(self.messages[-1]["id"]) <= key:
            return []
        return [message for message in self.messages if id_key(message["id"]) > key]

    async def start(self) -> None:
        """Loads the recent history from the hub and follows the room (once)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self._feed = asyncio.ensure_future(self._follow())
        await asyncio.shield(self._started)

    async def post(self, sender: str, body: str) -> Message:
        """Publishes a message; raises `squall.pubsub.PublishError` when it was not sent.

        Returns once the message is in this buffer too (or after a few seconds)."""
        await self.start()
        data = json.dumps({"from": sender, "body": body, "time": time.time()})
        message_id = await self.hub.publish(CHANNEL, data)
        message = {"id": message_id, "from": sender, "body": body,
                   "time": json.loads(data)["time"]}
        deadline = time.monotonic() + 5
        while id_key(self.last_id) < id_key(message_id) and time.monotonic() < deadline:
            await self.condition.wait(timeout=datetime.timedelta(seconds=0.5))
        return message

    def add(self, message: Message) -> None:
        """Takes a message from the hub: keeps it and tells everyone waiting."""
        if self.messages and id_key(message["id"]) <= id_key(self.last_id):
            return  # had it already (a history refill overlapping the feed)
        self.messages.append(message)
        self.condition.notify_all()
        for subscriber in list(self.subscribers):
            subscriber.send(message)

    async def _follow(self) -> None:
        """The process's one subscription to the room; comes back after failures."""
        assert self._started is not None
        for _ in range(1_000_000):  # (bounded; in practice until the hub is closed)
            try:
                if not self.messages:
                    for held in await self.hub.history(CHANNEL, limit=self.capacity):
                        self.add(decode(held))
                since = None if self.last_id == START else self.last_id
                async with self.hub.subscribe(CHANNEL, since=since, max_queue=10_000) as feed:
                    if not self._started.done():
                        self._started.set_result(None)
                    async for event in feed:
                        if isinstance(event, Gap):
                            await self._refill(event)
                        else:
                            self.add(decode(event))
                if self.hub.closed:
                    return
            except PubSubError as error:
                if self.hub.closed:
                    return
                log.warning("chat: cannot follow the room (%s); again in 1 s", error)
                if not self._started.done():
                    self._started.set_result(None)  # serve what we have meanwhile
                await asyncio.sleep(1.0)

    async def _refill(self, gap: Gap) -> None:
        """After a gap, fetch what the hub still holds (nothing on plain ``redis://``)."""
        log.warning("chat: messages after %s may be missing (%s)", gap.last_id, gap.reason)
        since = gap.last_id if gap.reason != "reset" else None
        try:
            events = await self.hub.history(CHANNEL, since=since, limit=self.capacity)
        except PubSubError as error:
            log.warning("chat: cannot refill after the gap: %s", error)
            return
        for event in events:
            self.add(decode(event))

    async def wait_for_news(self, cursor: str, timeout: float) -> list[Message]:
        """Waits until there are messages after ``cursor`` or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        self.waiting_polls += 1
        try:
            while not self.since(cursor):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not await self.condition.wait(
                    timeout=datetime.timedelta(seconds=remaining)
                ):
                    break
        finally:
            self.waiting_polls -= 1
        return self.since(cursor)

    def wake_everyone(self) -> None:
        """Releases every waiting long poll (used on shutdown)."""
        self.condition.notify_all()

    async def close(self) -> None:
        """Closes the hub: the feed and every SSE stream end."""
        await self.hub.close()
        if self._feed is not None:
            self._feed.cancel()
            try:
                await self._feed
            except BaseException:
                pass
