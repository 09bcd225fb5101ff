"""Idle keep-alive connections kept by the HTTP client for reuse.

A connection enters the pool only once a response has been read completely on it and
both sides agreed to keep it open; the client decides that. The pool keeps it under a key
naming everything a request needs to share a connection (scheme, host, port, TLS settings,
proxy, local address), hands back the most recently used live one, and closes idle ones
when they expire, when the pool is over its bounds, or when the peer speaks or hangs up
while nobody is listening (a server may not send anything unsolicited on an idle HTTP/1.1
connection, so any byte means the connection is no longer in a known state).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from squall.log import gen_log

__all__ = ["ConnectionPool"]


class _IdleConnection:
    __slots__ = ("pool", "key", "stream", "timer")

    def __init__(self, pool: ConnectionPool, key: Hashable, stream: Any) -> None:
        self.pool = pool
        self.key = key
        self.stream = stream
        self.timer: asyncio.TimerHandle | None = None

    def on_unexpected_data(self, data: bytes) -> None:
        if data:
            gen_log.debug("dropping idle connection that received %d unexpected bytes", len(data))
            self.pool._evict(self)

    def on_close(self) -> None:
        self.pool._forget(self)

    def on_expired(self) -> None:
        self.timer = None
        self.pool._evict(self)


class ConnectionPool:
    """Idle connections, most recently used first per key, bounded in count and idle time.

    ``max_idle`` bounds the whole pool (the least recently used connection goes first),
    ``max_idle_per_key`` each key, and ``idle_timeout`` (seconds, ``None`` for no limit) how
    long one may wait. Streams are squall ``IOStream`` objects.
    """

    __slots__ = ("max_idle", "max_idle_per_key", "idle_timeout", "_by_key", "_lru", "_closed")

    def __init__(
        self,
        max_idle: int = 32,
        max_idle_per_key: int = 8,
        idle_timeout: float | None = 60.0,
    ) -> None:
        self.max_idle = max_idle
        self.max_idle_per_key = max_idle_per_key
        self.idle_timeout = idle_timeout
        self._by_key: dict[Hashable, list[_IdleConnection]] = {}
        # Insertion order is release order, so the first entry is the least recently used.
        self._lru: OrderedDict[_IdleConnection, None] = OrderedDict()
        self._closed = False

    def __len__(self) -> int:
        return len(self._lru)

    def idle_count(self, key: Hashable) -> int:
        """How many idle connections are kept under ``key``."""
        return len(self._by_key.get(key, ()))

    def acquire(self, key: Hashable) -> Any | None:
        """Take a live idle connection for ``key`` out of the pool, or ``None``."""
        entries = self._by_key.get(key)
        while entries:
            entry = entries[-1]
            self._forget(entry)
            stream = entry.stream
            if stream.closed():
                continue
            stream._set_data_handler(None)
            stream.set_close_callback(None)
            return stream
        return None

    def release(self, key: Hashable, stream: Any) -> bool:
        """Offer a connection whose last exchange completed cleanly; closes it if not kept."""
        if self._closed or stream.closed() or self.max_idle <= 0 or self.max_idle_per_key <= 0:
            stream.close()
            return False
        entry = _IdleConnection(self, key, stream)
        stream.set_close_callback(entry.on_close)
        # Bytes already buffered are delivered before this returns and close the stream; a
        # connection in that state must not push out a good one, so check it first.
        stream._set_data_handler(entry.on_unexpected_data)
        if stream.closed():
            return False
        entries = self._by_key.get(key)
        if entries is not None and len(entries) >= self.max_idle_per_key:
            self._evict(entries[0])
        if len(self._lru) >= self.max_idle:
            self._evict(next(iter(self._lru)))
        self._by_key.setdefault(key, []).append(entry)
        self._lru[entry] = None
        if self.idle_timeout is not None:
            entry.timer = asyncio.get_running_loop().call_later(self.idle_timeout, entry.on_expired)
        return True

    def close(self) -> None:
        """Close every idle connection; later releases close their stream at once."""
        self._closed = True
        for entry in list(self._lru):
            self._evict(entry)

    def _forget(self, entry: _IdleConnection) -> None:
        if entry not in self._lru:
            return
        del self._lru[entry]
        entries = self._by_key.get(entry.key)
        if entries is not None:
            entries.remove(entry)
            if not entries:
                del self._by_key[entry.key]
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _evict(self, entry: _IdleConnection) -> None:
        self._forget(entry)
        stream = entry.stream
        stream.set_close_callback(None)
        stream._set_data_handler(None)
        stream.close()
