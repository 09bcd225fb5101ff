"""``memory://``: one process, no server. Each channel keeps its last ``maxlen`` messages."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from squall.pubsub._hub import Hub
from squall.pubsub._types import Data, Message, PubSubError, id_key

_REDIS_ONLY = {
    "prefix", "health_interval", "health_timeout", "timeout", "backoff_base", "backoff_max",
}


class MemoryHub(Hub):
    """Ids are one counter for the hub (``"1"``, ``"2"``, ...); ``history`` and ``since``
    replay from the last ``maxlen`` messages of each channel."""

    def __init__(self, url: str = "memory://", maxlen: int = 1000, **options: Any) -> None:
        # (the Redis backends' connection options mean nothing here and are ignored, so
        # that one set of options serves every URL)
        unknown = set(options) - _REDIS_ONLY
        if unknown:
            raise ValueError(f"unknown memory:// options: {', '.join(sorted(unknown))}")
        super().__init__(url)
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self.maxlen = maxlen
        self._ids = itertools.count(1)
        self._held: dict[str, deque[Message]] = {}
        self._evicted: dict[str, tuple[int, int]] = {}  # newest id no longer held

    async def publish(self, channel: str, data: Data) -> str:
        self._check_open()
        if not isinstance(channel, str) or not channel:
            raise ValueError("a channel is a non-empty str")
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"data is str or bytes, not {type(data).__name__}")
        message = Message(channel, str(next(self._ids)), data)
        held = self._held.get(channel)
        if held is None:
            held = self._held[channel] = deque(maxlen=self.maxlen)
        elif len(held) == self.maxlen:
            self._evicted[channel] = id_key(held[0].id)
        held.append(message)
        self._fanout(message)
        return message.id

    async def history(
        self, channel: str, since: str | None = None, limit: int = 100
    ) -> list[Message]:
        if self._closed:
            raise PubSubError("the hub is closed")
        return _after(self._held.get(channel, ()), since, limit)

    async def _backlog(self, channel: str, since: str) -> tuple[str | None, list[Message]]:
        held = self._held.get(channel) or ()
        evicted = self._evicted.get(channel)
        # the messages right after the cursor are no longer held
        gap = "trimmed" if evicted is not None and evicted > id_key(since) else None
        return gap, _after(held, since, len(held))


def _after(held: Any, since: str | None, limit: int) -> list[Message]:
    messages = list(held)
    if since is None:
        return messages[-limit:] if limit > 0 else []
    key = id_key(since)
    return [message for message in messages if id_key(message.id) > key][:max(limit, 0)]
