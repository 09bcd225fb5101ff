"""Server-sent events: `EventSourceHandler` streams ``text/event-stream`` to a browser's
``EventSource``, one flush per event, with heartbeat comments and ``Last-Event-ID`` resume.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from squall import _lifecycle
from squall._web.handler import RequestHandler

if TYPE_CHECKING:
    from squall.pubsub import Hub, Message, OverflowPolicy, Subscription

__all__ = ["EventSourceHandler", "format_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FROM_LAST_EVENT_ID = object()  # send_subscription's default ``since``


def format_event(
    data: Union[str, bytes],
    event: Optional[str] = None,
    id: Optional[str] = None,
    retry: Optional[int] = None,
) -> bytes:
    """One event in ``text/event-stream`` framing.

    Each line of ``data`` (split at CR, LF or CRLF) becomes a ``data:`` line; ``bytes`` must
    be UTF-8. ``event`` and ``id`` are single lines (``ValueError`` otherwise); ``retry`` is
    the client's reconnection delay in milliseconds.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    elif not isinstance(data, str):
        raise TypeError(f"event data is str or bytes, not {type(data).__name__}")
    parts = []
    if event is not None:
        _check_field("event", event)
        parts.append(f"event: {event}\n")
    if id is not None:
        _check_field("id", id)
        if "\0" in id:
            raise ValueError("an event id cannot contain NUL (browsers ignore such ids)")
        parts.append(f"id: {id}\n")
    if retry is not None:
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise ValueError("retry is a number of milliseconds (an int >= 0)")
        parts.append(f"retry: {retry}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def _check_field(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"the event's {name} is a str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"the event's {name} cannot contain a line break: {value!r}")


class EventSourceHandler(RequestHandler):
    """A handler whose response is an event stream.

    Write ``get`` (usually ``async``) and call `send_event` per event; the stream ends when
    ``get`` returns, or when the client goes away: then `closed` is true, `wait_closed`
    returns and subscriptions made by `send_subscription` end, so ``get`` can return
    without leaving anything behind. `send_subscription` streams a ``squall.pubsub``
    channel, resuming after ``Last-Event-ID``.

    ``heartbeat_interval`` (seconds, None for none) sends a comment line when nothing else
    was sent for that long, which keeps proxies from closing an idle stream and lets the
    server notice a client that has gone.
    """

    heartbeat_interval: Optional[float] = 15.0

    _sse_started = False
    _sse_closed = False
    _sse_heartbeat: Optional[asyncio.TimerHandle] = None
    _sse_closed_future: Optional[asyncio.Future[None]] = None
    _sse_subscriptions: Optional[set[Subscription]] = None

    @property
    def started(self) -> bool:
        """True once the response head went out (after that, errors cannot change it)."""
        return self._sse_started

    @property
    def closed(self) -> bool:
        """True once the client has gone away or the stream has ended."""
        return self._sse_closed

    @property
    def last_event_id(self) -> Optional[str]:
        """The id of the last event the client saw: the ``Last-Event-ID`` header that
        ``EventSource`` sends when it reconnects, else a ``lastEventId`` query argument
        (for a first connection that resumes, as the browser cannot set the header)."""
        value = self.request.headers.get("Last-Event-ID")
        if value is None:
            value = self.get_query_argument("lastEventId", None)
        return value or None

    def start_events(self, retry: Optional[int] = None) -> "asyncio.Future[None]":
        """Sends the response head now (``send_event`` does it on first use), so that the
        client's ``onopen`` fires before the first event; ``retry`` as in `send_event`."""
        if self._sse_started:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        self._sse_started = True
        # a draining server ends the stream (the browser reconnects, to another worker)
        context = getattr(self.request.connection, "context", None)
        _lifecycle.track_upgraded(self, getattr(context, "server", None))
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # (nginx: pass each event on at once)
        if retry is not None:
            if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
                raise ValueError("retry is a number of milliseconds (an int >= 0)")
            self.write(f"retry: {retry}\n\n".encode())
        self._schedule_heartbeat()
        return self.flush()

    def send_event(
        self,
        data: Union[str, bytes],
        event: Optional[str] = None,
        id: Optional[str] = None,
        retry: Optional[int] = None,
    ) -> "asyncio.Future[None]":
        """Writes one event and flushes it; the future resolves once it is sent.

        After the client went away the event is dropped (the future is already done).
        """
        frame = format_event(data, event=event, id=id, retry=retry)
        return self._send(frame)

    def send_comment(self, text: str = "") -> "asyncio.Future[None]":
        """A comment line (ignored by ``EventSource``)."""
        return self._send(b"".join(b": " + line.encode("utf-8") + b"\n"
                                   for line in _LINE_BREAK.split(text)) + b"\n")

    def _send(self, frame: bytes) -> "asyncio.Future[None]":
        if self._sse_closed or self._finished:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        if not self._sse_started:
            self.start_events()
        self.write(frame)
        self._schedule_heartbeat()
        return self.flush()

    async def wait_closed(self) -> None:
        """Returns when the client has gone away."""
        if self._sse_closed:
            return
        if self._sse_closed_future is None:
            self._sse_closed_future = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._sse_closed_future)

    async def send_subscription(
        self,
        hub: Hub,
        channel: str,
        since: Any = _FROM_LAST_EVENT_ID,
        *,
        event: Optional[str] = None,
        gap_event: Optional[str] = "gap",
        transform: Optional[Callable[[Message], Union[str, bytes]]] = None,
        max_queue: int = 1000,
        overflow: OverflowPolicy = "drop-oldest",
    ) -> None:
        """Streams ``channel`` as events until the client goes away (or the hub closes).

        Each message becomes an event whose ``id`` is the message id, so a reconnecting
        ``EventSource`` resumes where it left off: ``since`` defaults to `last_event_id`.
        ``transform`` turns a message into the event's data (default: ``message.data``).
        A `squall.pubsub.Gap` becomes an event named ``gap_event`` whose data is the last id
        delivered (None to skip gaps). A ``Last-Event-ID`` that is no message id gets 400.
        """
        from squall._web.errors import HTTPError
        from squall.iostream import StreamClosedError
        from squall.pubsub import Gap, id_key

        if since is _FROM_LAST_EVENT_ID:
            since = self.last_event_id
            if since is not None:
                try:
                    id_key(since)
                except ValueError:
                    raise HTTPError(400, reason="Last-Event-ID is not a message id") from None
        if self._sse_closed:
            return
        subscription = hub.subscribe(channel, since=since, max_queue=max_queue,
                                     overflow=overflow)
        async with subscription:
            if self._sse_subscriptions is None:
                self._sse_subscriptions = set()
            self._sse_subscriptions.add(subscription)
            try:
                if self._sse_closed:
                    return
                await self.start_events()
                async for item in subscription:
                    if isinstance(item, Gap):
                        if gap_event is not None:
                            await self.send_event(item.last_id or "", event=gap_event)
                        continue
                    data = item.data if transform is None else transform(item)
                    await self.send_event(data, event=event, id=item.id)
            except StreamClosedError:
                pass  # the client went away mid-write
            finally:
                self._sse_subscriptions.discard(subscription)

    def _schedule_heartbeat(self) -> None:
        if self._sse_heartbeat is not None:
            self._sse_heartbeat.cancel()
            self._sse_heartbeat = None
        interval = self.heartbeat_interval
        if interval and not self._sse_closed:
            loop = asyncio.get_running_loop()
            self._sse_heartbeat = loop.call_later(interval, self._heartbeat)

    def _heartbeat(self) -> None:
        self._sse_heartbeat = None
        if self._sse_closed or self._finished:
            return
        self.write(b": heartbeat\n\n")
        self._schedule_heartbeat()
        future = self.flush()
        future.add_done_callback(_ignore_error)

    def _drain_close(self, code: int, reason: str) -> None:
        self._sse_end()  # subscriptions end, get() returns and the response finishes

    def _drain_abort(self) -> None:
        self._sse_end()

    def _sse_end(self) -> None:
        _lifecycle.forget_upgraded(self)
        self._sse_closed = True
        if self._sse_heartbeat is not None:
            self._sse_heartbeat.cancel()
            self._sse_heartbeat = None
        for subscription in list(self._sse_subscriptions or ()):
            subscription.close()  # its ``async for`` ends; ``get`` returns
        waiter = self._sse_closed_future
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_connection_close(self) -> None:
        self._sse_end()
        super().on_connection_close()

    def on_finish(self) -> None:
        self._sse_end()
        super().on_finish()


def _ignore_error(future: "asyncio.Future[None]") -> None:
    if not future.cancelled():
        future.exception()  # (a heartbeat to a client that has gone: nothing to do)
