"""WebSocketHandler under an ASGI server.

The route's handler class runs as a subclass (made once per class) whose
``get_websocket_protocol`` returns ``ASGIWebSocketProtocol``, the documented hook for a
different protocol. The handler's own upgrade checks, ``check_origin`` and
``select_subprotocol`` run as usual on the request the scope describes; the 101 head it
writes becomes ``websocket.accept`` and a refusal becomes ``websocket.http.response`` (or
a close, which the server answers with 403). Messages arrive through the call's
``receive()``, one at a time as in squall (the next waits for ``on_message``).
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from typing import Any, Callable, Optional

from squall import httputil
from squall._asgi._adapter import ASGIAdapter, ASGIConnection, request_head
from squall._websocket_frames import CLOSE_INTERNAL_ERROR, CLOSE_NO_STATUS, CLOSE_NORMAL
from squall.log import app_log, gen_log
from squall.websocket import (
    WebSocketClosedError,
    WebSocketError,
    WebSocketHandler,
    WebSocketProtocol,
)

# how long to wait for the server's websocket.disconnect once our close is sent
_CLOSE_TIMEOUT = 5.0

# names the ASGI server writes in its 101 response itself
_HANDSHAKE_HEADERS = frozenset(
    [
        "Upgrade",
        "Connection",
        "Sec-Websocket-Accept",
        "Sec-Websocket-Extensions",
        "Sec-Websocket-Protocol",
        "Content-Type",
        "Content-Length",
        "Server",
    ]
)


class WebSocketPingUnavailable(WebSocketError):
    """``ping()`` under ASGI: the ASGI WebSocket protocol has no ping or pong message
    (the server pings on its own), so ``ping()`` raises this and ``on_pong``/``on_ping``
    are never called."""


class ASGIWebSocketConnection(ASGIConnection):
    """The handshake response of a WebSocketHandler, as ASGI websocket messages."""

    def __init__(self, scope: dict[str, Any], send: Callable[..., Any]) -> None:
        super().__init__(scope, send, 0, None)
        self.accepted = False
        self.opened = False
        self._denial = "websocket.http.response" in (scope.get("extensions") or {})

    def _start_message(self, code: int, raw: list[tuple[bytes, bytes]]) -> asyncio.Future[None]:
        if code == 101:
            self.accepted = True
            self._body_allowed = False
            return self._enqueue({"type": "websocket.accept", "headers": raw, "subprotocol": None})
        if self._denial:
            return self._enqueue(
                {"type": "websocket.http.response.start", "status": code, "headers": raw}
            )
        # without the denial extension, the server answers a close before accept with 403
        self._body_allowed = False
        return self._enqueue({"type": "websocket.close", "code": 1008, "reason": ""})

    def write_headers(
        self,
        start_line: Any,
        headers: httputil.HTTPHeaders,
        chunk: Optional[bytes] = None,
    ) -> asyncio.Future[None]:
        if start_line.code == 101:
            if self._headers_written:
                raise httputil.HTTPOutputError("the response head was already written")
            subprotocol = headers.get("Sec-WebSocket-Protocol")
            raw = self._raw_headers(headers, _HANDSHAKE_HEADERS)
            self._headers_written = True
            future = self._start_message(101, raw)
            self._outbox[-1][0]["subprotocol"] = subprotocol or None
            return future
        return super().write_headers(start_line, headers, chunk)

    def _body_message(self, chunk: bytes) -> dict[str, Any]:
        return {"type": "websocket.http.response.body", "body": chunk, "more_body": True}

    def _end_message(self) -> None:
        if self.accepted or not self._body_allowed:
            return
        outbox = self._outbox
        if outbox and outbox[-1][0]["type"] == "websocket.http.response.body":
            outbox[-1][0]["more_body"] = False
            return
        self._enqueue({"type": "websocket.http.response.body", "body": b"", "more_body": False})

    def detach(self) -> Any:
        # after the 101 there is no stream to hand over: the protocol speaks ASGI
        if not self.accepted:
            return super().detach()
        self._finished = True
        return None


class ASGIWebSocketProtocol(WebSocketProtocol):
    """A WebSocketHandler's connection as ASGI ``websocket.*`` messages."""

    def __init__(self, handler: Any, connection: ASGIWebSocketConnection) -> None:
        super().__init__(handler)
        self.connection = connection
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self._subprotocol: Optional[str] = None
        self._closed = False
        self._close_timer: Optional[asyncio.TimerHandle] = None
        # the call's task reading messages, and whether our close went unanswered
        self._reader: Optional[asyncio.Task[Any]] = None
        self._timed_out = False
        connection_protocols[connection] = self

    @property
    def selected_subprotocol(self) -> Optional[str]:
        return self._subprotocol

    async def accept_connection(self, handler: WebSocketHandler) -> None:
        offered = [str(p) for p in self.connection.scope.get("subprotocols") or ()]
        selected = handler.select_subprotocol(offered)
        if selected:
            if selected not in offered:
                raise ValueError(f"select_subprotocol returned {selected!r}, which was not offered")
            handler.set_header("Sec-WebSocket-Protocol", selected)
            self._subprotocol = selected
        handler.clear_header("Content-Type")
        handler.set_status(101)
        detach_stream = getattr(handler, "_detach_stream", None)
        if detach_stream is not None:
            # the head (as websocket.accept), the access log line and on_finish
            detach_stream()
        else:
            handler.flush()
            handler.detach()
            handler.application.log_request(handler)
            handler.on_finish()
        try:
            result = handler.open(*handler.open_args, **handler.open_kwargs)
            if result is not None:
                await result
        except (Exception, asyncio.CancelledError):
            handler.log_exception(*sys.exc_info())
            self._abort()
            return
        connection = self.connection
        connection.opened = True
        connection._wake_pump()

    def write_message(self, message: str | bytes, binary: bool = False) -> asyncio.Future[None]:
        if self.is_closing():
            raise WebSocketClosedError()
        if isinstance(message, str):
            event: dict[str, Any] = {"type": "websocket.send", "text": message}
            if binary:
                event = {"type": "websocket.send", "bytes": message.encode("utf-8")}
        elif isinstance(message, (bytes, bytearray, memoryview)):
            event = {"type": "websocket.send", "bytes": bytes(message)}
        else:
            raise TypeError(f"expected str or bytes, got {type(message).__name__}")
        future = self.connection._enqueue(event)
        return _closed_as_websocket_error(future)

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        if self.server_terminated or self._closed:
            return
        self.server_terminated = True
        self.connection._enqueue(
            {"type": "websocket.close", "code": code or CLOSE_NORMAL, "reason": reason or ""}
        )
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(_CLOSE_TIMEOUT, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        gen_log.debug("no websocket.disconnect after our close; ending the connection")
        self._timed_out = True
        self.disconnected(CLOSE_NO_STATUS, None)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.cancel()

    def is_closing(self) -> bool:
        return self._closed or self.server_terminated or self.client_terminated

    def write_ping(self, data: bytes) -> None:
        raise WebSocketPingUnavailable(
            "ping() is not available under ASGI: the protocol has no ping message "
            "(the ASGI server keeps the connection alive with its own pings)"
        )

    def start_pinging(self) -> None:
        """The ASGI server owns keep-alive pings."""

    def set_nodelay(self, x: bool) -> None:
        """The ASGI server owns the socket."""

    def _abort(self) -> None:
        if not self.server_terminated and not self._closed:
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def on_connection_close(self) -> None:
        self.client_terminated = True
        self.server_terminated = True

    def disconnected(self, code: Optional[int], reason: Optional[str]) -> None:
        """The ASGI server said ``websocket.disconnect``: the handler hears ``on_close``."""
        if self._closed:
            return
        self._closed = True
        self.client_terminated = True
        self.server_terminated = True
        timer = self._close_timer
        if timer is not None:
            timer.cancel()
            self._close_timer = None
        self.close_code = code
        self.close_reason = reason
        self.connection._on_disconnect()
        try:
            self.handler.on_ws_connection_close(code, reason)
        except Exception:
            app_log.error("Uncaught exception in on_close", exc_info=True)


def _closed_as_websocket_error(future: asyncio.Future[None]) -> asyncio.Future[None]:
    if future.done():
        if future.exception() is None:
            return future
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(WebSocketClosedError())
        failed.exception()
        return failed
    outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def relay(done: asyncio.Future[None]) -> None:
        if outcome.done():
            return
        if done.cancelled() or done.exception() is not None:
            outcome.set_exception(WebSocketClosedError())
            outcome.exception()
        else:
            outcome.set_result(None)

    future.add_done_callback(relay)
    return outcome


# connection -> its protocol, for the call that runs both (weak: gone with the call)
connection_protocols: weakref.WeakKeyDictionary[ASGIWebSocketConnection, ASGIWebSocketProtocol] = (
    weakref.WeakKeyDictionary()
)

_variants: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()


def _asgi_protocol(self: WebSocketHandler) -> Optional[WebSocketProtocol]:
    connection = self.request.connection
    if isinstance(connection, ASGIWebSocketConnection):
        return ASGIWebSocketProtocol(self, connection)
    return WebSocketHandler.get_websocket_protocol(self)


def asgi_variant(handler_class: type) -> type:
    """``handler_class`` with the ASGI protocol (one subclass per class, same name)."""
    variant = _variants.get(handler_class)
    if variant is None:
        variant = type(
            handler_class.__name__,
            (handler_class,),
            {
                "get_websocket_protocol": _asgi_protocol,
                "__module__": handler_class.__module__,
                "__qualname__": handler_class.__qualname__,
                "__doc__": handler_class.__doc__,
            },
        )
        _variants[handler_class] = variant
    return variant


def _with_upgrade_headers(headers: httputil.HTTPHeaders) -> None:
    # The ASGI server has done the handshake; what it checked is filled in where it did
    # not pass it on (HTTP/2 servers have no Upgrade header, for one), so the handler's
    # own checks see a valid upgrade.
    if "websocket" not in headers.get("Upgrade", "").lower():
        headers["Upgrade"] = "websocket"
    if "upgrade" not in ",".join(headers.get_list("Connection")).lower():
        headers["Connection"] = "Upgrade"
    headers["Sec-WebSocket-Version"] = "13"
    if "Sec-Websocket-Key" not in headers:
        headers["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="


async def run_websocket(
    adapter: ASGIAdapter,
    scope: dict[str, Any],
    receive: Callable[[], Any],
    send: Callable[..., Any],
) -> None:
    first = await receive()
    if first.get("type") != "websocket.connect":
        return
    conn = ASGIWebSocketConnection(scope, send)
    try:
        start_line, headers = request_head(scope, "GET")
    except (httputil.HTTPInputError, UnicodeDecodeError, TypeError, ValueError) as error:
        gen_log.info("Malformed WebSocket request from ASGI server: %s", error)
        await send({"type": "websocket.close", "code": 1008, "reason": ""})
        return
    _with_upgrade_headers(headers)
    application: Any = adapter.application
    find_handler = getattr(application, "find_handler", None)
    if find_handler is not None:
        request = httputil.HTTPServerRequest(
            connection=conn, server_connection=conn, start_line=start_line, headers=headers
        )
        delegate: Any = find_handler(request)
        handler_class = getattr(delegate, "handler_class", None)
        if isinstance(handler_class, type) and issubclass(handler_class, WebSocketHandler):
            delegate.handler_class = asgi_variant(handler_class)
    else:
        delegate = application.start_request(conn, conn)
    pending = delegate.headers_received(start_line, headers)
    if pending is not None:
        await pending
    delegate.finish()
    # until the handler accepted and open() is done, or it answered with a refusal
    await conn.pump(lambda: conn.opened or conn._finished)
    protocol = connection_protocols.get(conn)
    if not conn.opened or protocol is None:
        if not conn._disconnected and not conn._finished:
            await send({"type": "websocket.close", "code": 1011, "reason": ""})
        return
    pump = asyncio.get_running_loop().create_task(conn.pump(lambda: False))
    try:
        await _read_messages(protocol, receive)
    finally:
        if not pump.done():
            pump.cancel()


async def _read_messages(protocol: ASGIWebSocketProtocol, receive: Callable[[], Any]) -> None:
    handler = protocol.handler
    protocol._reader = asyncio.current_task()
    while not protocol._closed:
        try:
            message = await receive()
        except asyncio.CancelledError:
            if _ended_by_close_timeout(protocol):
                return
            raise
        kind = message.get("type")
        if kind == "websocket.disconnect":
            protocol.disconnected(message.get("code", CLOSE_NO_STATUS), message.get("reason"))
            return
        if kind != "websocket.receive" or protocol.server_terminated:
            continue
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        try:
            result = handler.on_message(data)
            if result is not None:
                await result
        except asyncio.CancelledError:
            if _ended_by_close_timeout(protocol):
                return
            handler.log_exception(*sys.exc_info())
            protocol._abort()
        except Exception:
            handler.log_exception(*sys.exc_info())
            protocol._abort()


def _ended_by_close_timeout(protocol: ASGIWebSocketProtocol) -> bool:
    if not protocol._timed_out:
        return False
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()  # (3.11+) the cancellation was ours, and it is handled
    return True
