"""The chat's message buffer: the recent history plus the ways to hear about new messages."""

from __future__ import annotations

import datetime
import itertools
import time
from collections import deque
from typing import Any, Protocol

from squall.locks import Condition

Message = dict[str, Any]


class Subscriber(Protocol):
    """A client told about each message as it arrives (a WebSocket connection)."""

    def send(self, message: Message) -> None: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class MessageBuffer:
    """Keeps the last ``capacity`` messages, each with an increasing id used as a cursor.

    Long-polling clients wait on a Condition; WebSocket clients subscribe themselves. Both
    are told about the same messages in the same order.
    """

    def __init__(self, capacity: int = 200) -> None:
        self.messages: deque[Message] = deque(maxlen=capacity)
        self.condition = Condition()
        self.subscribers: set[Subscriber] = set()
        self.waiting_polls = 0
        self._ids = itertools.count(1)

    @property
    def last_id(self) -> int:
        return self.messages[-1]["id"] if self.messages else 0

    def since(self, cursor: int) -> list[Message]:
        """Messages newer than ``cursor`` that are still held, oldest first."""
        if not self.messages or self.messages[-1]["id"] <= cursor:
            return []
        return [message for message in self.messages if message["id"] > cursor]

    def add(self, sender: str, body: str) -> Message:
        message = {"id": next(self._ids), "from": sender, "body": body, "time": time.time()}
        self.messages.append(message)
        self.condition.notify_all()
        for subscriber in list(self.subscribers):
            subscriber.send(message)
        return message

    async def wait_for_news(self, cursor: int, timeout: float) -> list[Message]:
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
