"""``redis+stream://``: Redis Streams, one stream per channel; nothing lost, nothing twice.

``publish`` is ``XADD key MAXLEN ~ maxlen``; the id is Redis's (``"<ms>-<seq>"``). One
reader connection per hub runs ``XREAD BLOCK`` over every subscribed stream from a cursor
per stream, and is woken with ``CLIENT UNBLOCK`` (sent on the command connection) when the
set of streams changes. After a reconnect it reads on from its cursors; when the server
no longer holds a cursor's entry it reports a `Gap` (``"reset"`` when the stream was lost,
``"trimmed"`` when ``MAXLEN`` dropped entries the reader had not read).
"""

from __future__ import annotations

import asyncio
from typing import Any

from squall.pubsub._redis import RedisBase, Unhealthy, check_channel, decode, encode
from squall.pubsub._types import Data, Message, PubSubError, id_key

_START = "0-0"


def _data(fields: Any) -> Data | None:
    """An entry's data from its fields (a flat list from XREAD, a dict from XRANGE)."""
    if not fields:
        return None  # (an entry deleted while being read has none)
    if isinstance(fields, dict):
        kind, value = next(iter(fields.items()))
    else:
        kind, value = fields[0], fields[1]
    return decode(kind + value)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class StreamHub(RedisBase):
    """``redis+stream://``: ids are global and ordered per channel; ``since=`` and
    `history` replay from what the stream holds."""

    kind = "redis+stream"

    def __init__(self, url: str, **overrides: Any) -> None:
        super().__init__(url, **overrides)
        self._cursors: dict[str, str] = {}  # channel -> last id the reader has read
        self._reader_id: int | None = None
        self._blocked = False
        self._generation = 0
        self._changed = asyncio.Event()
        self._run_id: str | None = None

    def _key(self, channel: str) -> str:
        return self.options.prefix + "stream:" + channel

    async def publish(self, channel: str, data: Data) -> str:
        self._check_open()
        check_channel(channel)
        stored = encode(data)
        try:
            result = await self._link.execute(
                "XADD", self._key(channel), "MAXLEN", "~", self.options.maxlen, "*",
                stored[:1], stored[1:],
            )
        except self._errors as error:
            raise self._publish_error(channel, error) from error
        return _text(result)

    async def history(
        self, channel: str, since: str | None = None, limit: int = 100
    ) -> list[Message]:
        self._check_open()
        check_channel(channel)
        if limit <= 0:
            return []
        key = self._key(channel)
        if since is None:
            entries = await self._command("XREVRANGE", key, "+", "-", "COUNT", limit)
            entries = list(reversed(entries or []))
        else:
            id_key(since)  # refuses a malformed id
            entries = await self._command("XRANGE", key, "(" + since, "+", "COUNT", limit)
        return self._messages(channel, entries)

    def _messages(self, channel: str, entries: Any) -> list[Message]:
        messages = []
        for raw_id, fields in entries or ():
            data = _data(fields)
            if data is not None:
                messages.append(Message(channel, _text(raw_id), data))
        return messages

    async def _newest(self, channel: str) -> str:
        entries = await self._command("XREVRANGE", self._key(channel), "+", "-", "COUNT", 1)
        return _text(entries[0][0]) if entries else _START

    async def _listen(self, channel: str) -> None:
        if channel not in self._cursors:
            self._cursors[channel] = await self._newest(channel)
        self._start_task()
        self._changed.set()
        await self._unblock()

    def _unlisten(self, channel: str) -> None:
        self._cursors.pop(channel, None)  # an XREAD in flight still names it; ignored

    async def _unblock(self) -> None:
        """Wakes the reader's XREAD so that it reads the new set of streams."""
        generation = self._generation
        for _ in range(20):  # bounded: the XREAD may not have reached the server yet
            if not self._blocked or self._generation != generation or self._reader_id is None:
                return
            try:
                if await self._link.execute("CLIENT", "UNBLOCK", self._reader_id):
                    return
            except self._errors:
                return  # the reader's own checks notice a dead server
            await asyncio.sleep(0.005)

    async def _backlog(self, channel: str, since: str) -> tuple[str | None, list[Message]]:
        gap = await self._check_cursor(channel, since, server_changed=False)
        entries = await self._command(
            "XRANGE", self._key(channel), "(" + since, "+", "COUNT", self.options.maxlen
        )
        return gap, self._messages(channel, entries)

    async def _check_cursor(self, channel: str, cursor: str, server_changed: bool) -> str | None:
        """None when everything after ``cursor`` is still held, else the gap's reason."""
        if cursor == _START:
            return None
        key = self._key(channel)
        if await self._command("XRANGE", key, cursor, cursor):
            return None
        try:
            info = await self._link.execute("XINFO", "STREAM", key)
        except self._redis.ResponseError:
            return "reset"  # no such stream
        except self._errors as error:
            raise PubSubError(f"XINFO failed: {error}") from error
        if isinstance(info, list):
            info = dict(zip(info[::2], info[1::2], strict=False))
        fields = {_text(name): value for name, value in info.items()}
        cursor_key = id_key(cursor)
        last = fields.get("last-generated-id")
        if server_changed or last is None or id_key(_text(last)) < cursor_key:
            return "reset"
        added, length = fields.get("entries-added"), fields.get("length")
        if added is None or length is None:
            return "trimmed"  # (Redis before 7 cannot tell more)
        if int(added) == int(length):
            return "reset"  # nothing was ever trimmed: this stream never held the cursor
        return "trimmed"

    async def _server_run_id(self) -> str | None:
        info = await self._command("INFO", "server")
        if isinstance(info, dict):
            value = info.get("run_id")
            return None if value is None else _text(value)
        for line in _text(info).splitlines():
            if line.startswith("run_id:"):
                return line.partition(":")[2].strip()
        return None

    async def _recover(self) -> None:
        run_id = await self._server_run_id()
        server_changed = self._run_id is not None and run_id != self._run_id
        self._run_id = run_id
        for channel, cursor in list(self._cursors.items()):
            gap = await self._check_cursor(channel, cursor, server_changed)
            if gap is not None and channel in self._cursors:
                self._fanout_gap(channel, gap)
                if gap == "reset":
                    self._cursors[channel] = _START  # read the new stream from its start

    async def _session(self, conn: Any, recovering: bool) -> None:
        loop = asyncio.get_running_loop()
        options = self.options
        await conn.send_command("CLIENT", "ID")
        self._reader_id = int(await conn.read_response())
        try:
            if recovering:
                await self._recover()
            elif self._run_id is None:
                self._run_id = await self._server_run_id()
            self._connected(recovering, f"reading {len(self._cursors)} stream(s) on")
            block_ms = max(1, int(options.health_interval * 1000))
            limit = block_ms / 1000 + options.health_timeout
            while True:
                if not self._cursors:
                    self._changed.clear()
                    try:
                        await asyncio.wait_for(self._changed.wait(), options.health_interval)
                    except asyncio.TimeoutError:
                        await conn.send_command("PING")
                        await conn.read_response()  # (the connection's timeout applies)
                    continue
                self._changed.clear()
                channels = list(self._cursors)
                ids = [self._cursors[channel] for channel in channels]
                names = {self._key(channel).encode(): channel for channel in channels}
                self._generation += 1
                self._blocked = True
                try:
                    await conn.send_command(
                        "XREAD", "COUNT", 1000, "BLOCK", block_ms, "STREAMS", *names, *ids
                    )
                    sent = loop.time()
                    reply = await conn.read_response(timeout=limit)
                finally:
                    self._blocked = False
                if reply is None:
                    if loop.time() - sent >= limit:
                        raise Unhealthy(f"XREAD BLOCK got no answer within {limit:.1f} s")
                    continue  # timed out on the server, or unblocked
                if isinstance(reply, dict):
                    reply = list(reply.items())
                for raw_key, entries in reply:
                    channel = names.get(raw_key)
                    if channel is None or channel not in self._cursors:
                        continue
                    for raw_id, fields in entries:
                        message_id = _text(raw_id)
                        cursor = self._cursors.get(channel)
                        if cursor is not None and id_key(message_id) > id_key(cursor):
                            self._cursors[channel] = message_id
                        data = _data(fields)
                        if data is not None:
                            self._fanout(Message(channel, message_id, data))
        finally:
            self._reader_id = None
