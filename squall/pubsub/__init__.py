"""Publish/subscribe across processes and machines, one API over several backends.

::

    hub = squall.pubsub.connect("redis+stream://127.0.0.1:6379")
    msg_id = await hub.publish("room", "hello")
    async with hub.subscribe("room", since=cursor) as sub:
        async for event in sub:
            if isinstance(event, squall.pubsub.Gap):
                ...  # messages after event.last_id may be missing
            else:
                cursor = event.id
    await hub.history("room", since=cursor, limit=50)
    await hub.close()

Backends, chosen by the URL's scheme:

- ``memory://`` (the default): one process, no server; each channel keeps its last
  ``maxlen`` (1000) messages for ``history`` and ``since``.
- ``redis://host:port/db``: Redis PUBLISH/SUBSCRIBE. At most once; ids are a counter per
  channel so gaps show. Nothing is kept: ``history`` is always empty.
- ``redis+stream://host:port/db``: Redis Streams. Ids are global and ordered, so a
  subscriber resumes from its last id with nothing lost and nothing twice.

The Redis backends need the ``redis`` package (``pip install 'squall[redis]'``); their
options (see `RedisOptions`) come from the URL's query or keyword arguments of `connect`.
Each hub keeps one subscriber connection for all its subscriptions, reconnects with capped
back-off (logged on ``squall.pubsub``) and reports what it could not recover as a `Gap`.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from squall.pubsub._hub import Hub, Subscription
from squall.pubsub._types import (
    Data,
    Event,
    Gap,
    Message,
    OverflowPolicy,
    PublishError,
    PubSubError,
    SubscriberOverflow,
    id_key,
)

__all__ = [
    "Data",
    "Event",
    "Gap",
    "Hub",
    "Message",
    "OverflowPolicy",
    "PubSubError",
    "PublishError",
    "SubscriberOverflow",
    "Subscription",
    "connect",
    "id_key",
]


def connect(url: str = "memory://", **options: Any) -> Hub:
    """A hub for ``url``. Connections are made when first needed, so this never blocks.

    ``options`` override the URL's query: ``maxlen`` for every backend; for Redis also
    ``prefix``, ``health_interval``, ``health_timeout``, ``timeout``, ``backoff_base`` and
    ``backoff_max`` (see `squall.pubsub._redis.RedisOptions`).
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "memory":
        from squall.pubsub._memory import MemoryHub

        query: dict[str, Any] = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        query.update(options)
        if "maxlen" in query:
            query["maxlen"] = int(query["maxlen"])
        return MemoryHub(url, **query)
    if scheme == "redis":
        from squall.pubsub._redis import RedisHub

        return RedisHub(url, **options)
    if scheme == "redis+stream":
        from squall.pubsub._stream import StreamHub

        return StreamHub(url, **options)
    raise ValueError(
        f"unknown squall.pubsub URL {url!r}: use memory://, redis:// or redis+stream://"
    )
