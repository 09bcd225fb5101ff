"""``redis://``: Redis PUBLISH/SUBSCRIBE, at most once, for presence and typing notices.

Ids are ``"<epoch>-<seq>"`` per channel: a Lua script increments the channel's counter
and publishes in one step, and ``epoch`` (the server's clock in ms when the counter was
created) changes when Redis loses the counter, so ids keep increasing across a reset and
a jump in ``seq`` shows a gap. Pub/Sub keeps nothing: `RedisHub.history` always returns
an empty list, and ``since=`` only tells (with a `Gap`) whether messages were missed.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import hashlib
import logging
import random
import urllib.parse
from typing import Any

from squall.pubsub._commands import CommandLink, Lost
from squall.pubsub._hub import Hub
from squall.pubsub._types import Data, Message, PublishError, PubSubError, id_key

log = logging.getLogger("squall.pubsub")

_PUBLISH = """
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if seq == 1 or not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local id = epoch .. '-' .. seq
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
"""


def import_redis() -> Any:
    """redis-py's asyncio package, or a clear error when it is not installed."""
    try:
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
    except ImportError as error:
        raise PubSubError(
            "squall.pubsub's redis backends need the redis package: "
            "pip install 'squall[redis]'"
        ) from error
    return redis


@dataclasses.dataclass
class RedisOptions:
    """Connection settings, from the URL (``redis://[user:password@]host[:port][/db]``)
    and its query (``?health_interval=1&maxlen=5000``) or keyword arguments."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    #: prefix of every Redis key and channel name squall uses
    prefix: str = "squall:"
    #: streams: ``XADD ... MAXLEN ~ maxlen``
    maxlen: int = 10000
    #: seconds of silence on the subscriber connection before it is checked with a command
    health_interval: float = 5.0
    #: seconds the server has to answer that check (or to accept a connection)
    health_timeout: float = 2.0
    #: seconds a publish or history call may take
    timeout: float = 5.0
    #: reconnecting waits base * 2**attempt seconds (with jitter), at most backoff_max
    backoff_base: float = 0.1
    backoff_max: float = 5.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_options(url: str, overrides: dict[str, Any]) -> RedisOptions:
    parts = urllib.parse.urlsplit(url)
    options = RedisOptions()
    if parts.hostname:
        options.host = parts.hostname
    if parts.port:
        options.port = parts.port
    if parts.username:
        options.username = urllib.parse.unquote(parts.username)
    if parts.password:
        options.password = urllib.parse.unquote(parts.password)
    path = parts.path.strip("/")
    if path:
        try:
            options.db = int(path)
        except ValueError:
            raise ValueError(f"the database in {url!r} is not a number") from None
    given: dict[str, Any] = dict(urllib.parse.parse_qsl(parts.query))
    given.update(overrides)
    fields = {field.name: field for field in dataclasses.fields(RedisOptions)}
    for name, value in given.items():
        if name not in fields:
            raise ValueError(f"unknown squall.pubsub option {name!r}")
        current = getattr(options, name)
        kind = type(current) if current is not None else str
        try:
            setattr(options, name, kind(value))
        except (TypeError, ValueError):
            raise ValueError(f"squall.pubsub option {name}={value!r} is not a {kind.__name__}")
    if options.health_interval <= 0 or options.health_timeout <= 0 or options.timeout <= 0:
        raise ValueError("health_interval, health_timeout and timeout must be positive")
    if options.maxlen < 1:
        raise ValueError("maxlen must be at least 1")
    return options


class Backoff:
    """Capped exponential back-off with jitter."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class Unhealthy(Exception):
    """The server did not answer a health check in time."""


def encode(data: Data) -> bytes:
    """The stored form of a message's data: a type byte, then the bytes."""
    if isinstance(data, str):
        return b"s" + data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return b"b" + bytes(data)
    raise TypeError(f"data is str or bytes, not {type(data).__name__}")


def decode(stored: bytes) -> Data:
    if stored[:1] == b"s":
        return stored[1:].decode("utf-8")
    return stored[1:]


def check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not channel:
        raise ValueError("a channel is a non-empty str")


class RedisBase(Hub):
    """What both Redis backends share: options, the command connection, the subscriber
    connection's reconnect loop with back-off, logging."""

    kind = "redis"

    def __init__(self, url: str, **overrides: Any) -> None:
        super().__init__(url)
        self.options = parse_options(url, overrides)
        self._redis = import_redis()
        self._errors: tuple[type[Exception], ...] = (
            self._redis.RedisError,
            OSError,
            asyncio.TimeoutError,
            Lost,
        )
        self._link = CommandLink(
            self._command_connection, self.options.timeout, self._errors,
            self._redis.ResponseError,
        )
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(self.options.backoff_base, self.options.backoff_max)

    def _command_connection(self) -> Any:
        options = self.options
        return self._redis.asyncio.Connection(
            host=options.host,
            port=options.port,
            db=options.db,
            username=options.username,
            password=options.password,
            socket_timeout=options.timeout,
            socket_connect_timeout=options.timeout,
            client_name="squall-pubsub",
        )

    def _connection(self) -> Any:
        """A new subscriber connection (Pub/Sub, or the stream reader)."""
        options = self.options
        return self._redis.asyncio.Connection(
            host=options.host,
            port=options.port,
            db=options.db,
            username=options.username,
            password=options.password,
            socket_timeout=options.health_timeout,
            socket_connect_timeout=options.health_timeout,
            client_name="squall-pubsub-listener",
        )

    def _start_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        """Connect, run a session until it fails, wait, again; until the hub closes."""
        recovering = False
        while not self._closed:
            conn = self._connection()
            try:
                await conn.connect()
            except self._errors as error:
                delay = self._backoff.next()
                log.warning(
                    "%s: cannot connect to %s (%s); attempt %d, next in %.2f s",
                    self.kind, self.options.address, _describe(error),
                    self._backoff.attempt, delay,
                )
                await conn.disconnect(nowait=True)
                await asyncio.sleep(delay)
                recovering = True
                continue
            try:
                await self._session(conn, recovering)
                return  # ended by close()
            except Exception as error:
                if self._closed:
                    return
                delay = self._backoff.next()
                expected = isinstance(error, self._errors + (Unhealthy, PubSubError))
                log.log(
                    logging.WARNING if expected else logging.ERROR,
                    "%s: lost the connection to %s (%s); reconnecting in %.2f s",
                    self.kind, self.options.address, _describe(error), delay,
                    exc_info=not expected,
                )
                recovering = True
            finally:
                await conn.disconnect(nowait=True)
            await self._on_disconnect()
            await asyncio.sleep(delay)

    def _connected(self, recovering: bool, what: str) -> None:
        if recovering:
            log.warning(
                "%s: reconnected to %s after %d attempt(s); %s",
                self.kind, self.options.address, self._backoff.attempt, what,
            )
        self._backoff.reset()

    @abc.abstractmethod
    async def _session(self, conn: Any, recovering: bool) -> None:
        """Backend: use the subscriber connection until it fails."""

    async def _on_disconnect(self) -> None:
        """Also drop the command connection when idle: it shares the server's fate."""
        self._link.drop_if_idle()

    def _publish_error(self, channel: str, error: BaseException) -> PublishError:
        if isinstance(error, Lost):
            return PublishError(
                f"not confirmed for {channel!r}: {self.options.address}: {error} (it may "
                "have been delivered)",
                maybe_sent=True,
            )
        if isinstance(error, (self._redis.TimeoutError, asyncio.TimeoutError)):
            return PublishError(
                f"not sent to {channel!r}: {self.options.address} did not answer within "
                f"{self.options.timeout} s (if it is only slow it may still deliver it)",
                maybe_sent=True,
            )
        return PublishError(f"not sent to {channel!r}: {self.options.address}: "
                            f"{_describe(error)}")

    async def _command(self, *args: Any) -> Any:
        try:
            return await self._link.execute(*args)
        except self._errors as error:
            raise PubSubError(f"{args[0]} failed at {self.options.address}: "
                              f"{_describe(error)}") from error

    async def _shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        await self._link.close()


async def _as_is(response: Any) -> Any:
    return response


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


class RedisHub(RedisBase):
    """``redis://``: one subscriber connection per hub for all channels, fanned out."""

    kind = "redis"

    def __init__(self, url: str, **overrides: Any) -> None:
        super().__init__(url, **overrides)
        self._script_sha = hashlib.sha1(_PUBLISH.encode()).hexdigest()
        self._conn: Any = None
        self._send_lock = asyncio.Lock()
        self._confirming: dict[str, list[asyncio.Future[None]]] = {}
        self._last: dict[str, tuple[int, int] | None] = {}  # last (epoch, seq) seen
        self._checking: dict[str, list[Message]] = {}  # messages held while checking

    def _name(self, channel: str) -> str:
        return self.options.prefix + channel

    def _seq_key(self, channel: str) -> str:
        return self.options.prefix + "seq:" + channel

    async def publish(self, channel: str, data: Data) -> str:
        self._check_open()
        check_channel(channel)
        payload = encode(data)
        keys_and_args = (1, self._seq_key(channel), self._name(channel), payload)
        try:
            try:
                result = await self._link.execute("EVALSHA", self._script_sha, *keys_and_args)
            except self._redis.exceptions.NoScriptError:  # a new server: send it whole once
                result = await self._link.execute("EVAL", _PUBLISH, *keys_and_args)
        except self._errors as error:
            raise self._publish_error(channel, error) from error
        return result.decode() if isinstance(result, bytes) else str(result)

    async def history(
        self, channel: str, since: str | None = None, limit: int = 100
    ) -> list[Message]:
        """Always empty: Redis Pub/Sub keeps no messages (use ``redis+stream://``)."""
        self._check_open()
        return []

    async def _current(self, channel: str) -> tuple[int, int] | None:
        epoch, seq = await self._command("HMGET", self._seq_key(channel), "epoch", "seq")
        if epoch is None or seq is None:
            return None
        return int(epoch), int(seq)

    async def _listen(self, channel: str) -> None:
        self._start_task()
        confirmed = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(channel, []).append(confirmed)
        conn = self._conn
        try:
            if conn is not None:  # (else the session subscribes when it connects)
                async with self._send_lock:
                    if channel in self._subs and conn is self._conn:
                        await conn.send_command("SUBSCRIBE", self._name(channel))
            # bounded: while Redis is away the subscription is made when it is back
            await asyncio.wait_for(confirmed, self.options.health_timeout * 2)
        except (self._errors + (asyncio.TimeoutError,)):
            return  # the session resubscribes after it reconnects
        if channel not in self._last or self._last[channel] is None:
            try:
                self._last[channel] = await self._current(channel)
            except PubSubError:
                pass

    def _unlisten(self, channel: str) -> None:
        self._last.pop(channel, None)
        self._checking.pop(channel, None)
        if self._conn is not None:
            asyncio.ensure_future(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        conn = self._conn
        try:
            async with self._send_lock:
                if channel not in self._subs and conn is self._conn and conn is not None:
                    await conn.send_command("UNSUBSCRIBE", self._name(channel))
        except Exception:  # (a connection closing meanwhile has no writer left)
            pass  # the session notices a broken connection itself

    async def _backlog(self, channel: str, since: str) -> tuple[str | None, list[Message]]:
        try:
            current = await self._current(channel)
        except PubSubError:
            return "missed", []
        key = id_key(since)
        if current is None or current[0] != key[0]:
            return "reset", []
        return ("missed" if current > key else None), []

    async def _session(self, conn: Any, recovering: bool) -> None:
        loop = asyncio.get_running_loop()
        options = self.options
        prefix = options.prefix.encode()
        cut = len(prefix)
        set_handler = getattr(getattr(conn, "_parser", None), "set_pubsub_push_handler", None)
        if set_handler is not None:
            set_handler(_as_is)  # (its default logs every message)
        self._conn = conn
        try:
            channels = list(self._subs)
            check = set(channels) if recovering else set()
            before = {channel: self._last.get(channel) for channel in check}
            for channel in check:
                self._checking.setdefault(channel, [])
            if channels:
                await conn.send_command("SUBSCRIBE", *(self._name(c) for c in channels))
            awaiting = set(channels)
            if not awaiting:
                self._connected(recovering, "no channel to resubscribe to")
            tick = min(options.health_interval, options.health_timeout, 1.0) / 2
            last_seen = loop.time()
            ping_sent: float | None = None
            while True:
                reply = await conn.read_response(timeout=tick, push_request=True)
                now = loop.time()
                if reply is not None:
                    last_seen = now
                    ping_sent = None
                    if isinstance(reply, list):
                        kind = reply[0]
                        if kind == b"message":
                            self._on_message(reply[1][cut:].decode("utf-8"), reply[2])
                        elif kind == b"subscribe":
                            channel = reply[1][cut:].decode("utf-8")
                            for confirmed in self._confirming.pop(channel, ()):
                                if not confirmed.done():
                                    confirmed.set_result(None)
                            if awaiting:
                                awaiting.discard(channel)
                                if not awaiting:
                                    self._connected(
                                        recovering, f"resubscribed to {len(channels)} channel(s)"
                                    )
                            if channel in check:
                                check.discard(channel)
                                asyncio.ensure_future(
                                    self._check_gap(channel, before.get(channel))
                                )
                    continue
                if ping_sent is not None:
                    if now - ping_sent > options.health_timeout:
                        raise Unhealthy(
                            f"no answer to PING within {options.health_timeout} s"
                        )
                elif now - last_seen >= options.health_interval:
                    async with self._send_lock:
                        await asyncio.wait_for(conn.send_command("PING"), options.health_timeout)
                    ping_sent = now
        finally:
            self._conn = None

    def _on_message(self, channel: str, payload: bytes) -> None:
        raw_id, _, stored = payload.partition(b" ")
        message = Message(channel, raw_id.decode("ascii"), decode(stored))
        held = self._checking.get(channel)
        if held is not None:
            held.append(message)
            return
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        channel = message.channel
        if channel not in self._subs:
            return
        key = id_key(message.id)
        last = self._last.get(channel)
        if last is not None:
            if key[0] != last[0]:
                self._fanout_gap(channel, "reset")
            elif key[1] > last[1] + 1:
                self._fanout_gap(channel, "missed")
        if last is None or key > last:
            self._last[channel] = key
        self._fanout(message)

    async def _check_gap(self, channel: str, before: tuple[int, int] | None) -> None:
        """After resubscribing: were messages published while we were away?"""
        try:
            current = await self._current(channel)
        except PubSubError:
            current = before  # cannot tell; the next message's id will
        held = self._checking.pop(channel, [])
        if channel not in self._subs:
            return
        if before is not None and (current is None or current[0] != before[0]):
            self._fanout_gap(channel, "reset")
            self._last[channel] = None
        elif current is not None and (before is None or current > before):
            # published while we were away; a gap unless those very messages arrived since
            arrived = {id_key(m.id)[1] for m in held if id_key(m.id)[0] == current[0]}
            first = before[1] + 1 if before is not None else 1
            if current[1] - first + 1 > len(arrived) or any(
                seq not in arrived for seq in range(first, current[1] + 1)
            ):
                self._fanout_gap(channel, "reconnect")
            self._last[channel] = current
        for message in held:
            self._deliver(message)


