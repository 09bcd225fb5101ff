"""The command connection of a Redis hub: one connection, pipelined.

Commands (publish, history, checks) queue up and one writer task sends everything queued
in one write; one reader task reads the replies in order. So many publishes are in flight
at once on one connection, and a command is never sent twice: a connection that fails
fails the commands written on it (`Lost`), and the ones not yet written wait for the next
connection. redis-py packs the commands and parses the replies.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, Callable

from squall.pubsub._types import PubSubError

_BATCH = 512  # commands per write at most


class Lost(Exception):
    """The connection failed after the command was written: it may have been executed."""


class CommandLink:
    """Runs commands on one pipelined connection made by ``connect`` (a redis-py
    ``Connection`` factory); ``timeout`` bounds how long a command may wait for its reply.
    """

    def __init__(self, connect: Callable[[], Any], timeout: float, errors: tuple[type[Exception], ...],
                 response_error: type[Exception]) -> None:
        self._connect = connect
        self._timeout = timeout
        self._errors = errors
        self._response_error = response_error
        self._queue: deque[tuple[tuple[Any, ...], asyncio.Future[Any]]] = deque()
        self._in_flight: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._deadline: asyncio.TimerHandle | None = None
        self._closed = False

    async def execute(self, *args: Any) -> Any:
        """Sends one command and returns its reply (raises redis-py's errors, or `Lost`)."""
        if self._closed:
            raise PubSubError("the hub is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        return await future

    def drop_if_idle(self) -> None:
        """Closes the connection when nothing is in flight (the server went away)."""
        if self._conn is not None and not self._in_flight:
            self._drop(self._conn, None)

    async def close(self) -> None:
        self._closed = True
        closed = PubSubError("the hub is closed")
        while self._queue:
            _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(closed)
        if self._conn is not None:
            self._drop(self._conn, closed)
        for task in (self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass

    async def _write(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            conn = self._conn
            if conn is not None and not self._in_flight:
                # an idle connection may have died meanwhile (its close not yet read): a
                # few loop turns let the reader see it, so that nothing is written on it
                for _ in range(3):
                    await asyncio.sleep(0)
                    if self._conn is not conn:
                        break
                conn = self._conn
            if conn is None:
                conn = self._connect()
                try:
                    await conn.connect()
                except self._errors as error:
                    await conn.disconnect(nowait=True)
                    while self._queue:  # never written: the callers may try again
                        _, future = self._queue.popleft()
                        if not future.done():
                            future.set_exception(error)
                    continue
                self._conn = conn
                self._reader = asyncio.ensure_future(self._read(conn))
            batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
            while self._queue and len(batch) < _BATCH:
                args, future = self._queue.popleft()
                if not future.done():  # (a caller that gave up before it was sent)
                    batch.append((args, future))
            if not batch:
                continue
            now = loop.time()
            for _, future in batch:
                self._in_flight.append((future, now))
            if self._deadline is None:
                self._deadline = loop.call_later(self._timeout, self._check_deadline)
            try:
                await conn.send_packed_command(
                    conn.pack_commands([args for args, _ in batch]), check_health=False
                )
            except self._errors as error:
                self._drop(conn, Lost(f"the connection failed while sending: {error}"))

    async def _read(self, conn: Any) -> None:
        while True:
            try:
                reply = await conn.read_response(timeout=math.inf, disconnect_on_error=False)
            except self._response_error as error:  # an error reply: that command's
                self._settle(error, failed=True)
                continue
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                if conn is self._conn:
                    self._drop(conn, Lost(f"the connection failed: {error or type(error).__name__}"))
                return
            if not self._in_flight:
                self._drop(conn, Lost("a reply nobody asked for"))
                return
            self._settle(reply)

    def _settle(self, value: Any, failed: bool = False) -> None:
        if not self._in_flight:
            return
        future, _ = self._in_flight.popleft()
        if not future.done():
            if failed:
                future.set_exception(value)
            else:
                future.set_result(value)

    def _check_deadline(self) -> None:
        self._deadline = None
        if not self._in_flight or self._conn is None:
            return
        loop = asyncio.get_running_loop()
        _, sent = self._in_flight[0]
        waited = loop.time() - sent
        if waited >= self._timeout:
            self._drop(self._conn, asyncio.TimeoutError(
                f"no answer within {self._timeout} s"))
        else:
            self._deadline = loop.call_later(self._timeout - waited, self._check_deadline)

    def _drop(self, conn: Any, error: BaseException | None) -> None:
        """Forgets ``conn``; what was written on it fails with ``error``."""
        if conn is self._conn:
            self._conn = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
        self._reader = None
        failure = error if error is not None else Lost("the connection was closed")
        while self._in_flight:
            future, _ = self._in_flight.popleft()
            if not future.done():
                future.set_exception(failure)
        asyncio.ensure_future(conn.disconnect(nowait=True))
