"""WebSocket (RFC 6455) server handlers and client connections, with permessage-deflate.

A :class:`WebSocketHandler` answers the HTTP upgrade, then detaches the stream from the
HTTP connection and takes over its reads. :func:`websocket_connect` opens a client
connection. Framing, masking, UTF-8 checks, size limits and compression live in the
sans-IO module ``squall._websocket_frames``; this module only moves bytes and calls the
application.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import collections
import functools
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from squall import _lifecycle, httputil, simple_httpclient
from squall._websocket_frames import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_UNSUPPORTED_DATA,
    FIN,
    MAX_CONTROL_PAYLOAD,
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_MASK,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    RSV1,
    RSV2,
    RSV3,
    RSV_MASK,
    DeflateParameters,
    MessageReader,
    MessageWriter,
    ProtocolError,
    _DecompressTooLargeError,
    _PerMessageDeflateCompressor,
    _PerMessageDeflateDecompressor,
    client_accept_deflate,
    client_deflate_offer,
    decode_close_payload,
    is_valid_key,
    new_key,
    server_negotiate_deflate,
)
from squall._websocket_frames import compute_accept_value as _compute_accept_value
from squall.escape import json_encode, utf8
from squall.httpclient import HTTPRequest, HTTPResponse, _RequestProxy
from squall.ioloop import IOLoop
from squall.iostream import IOStream, StreamClosedError
from squall.log import app_log, gen_log
from squall.web import RequestHandler

__all__ = [
    "WebSocketHandler",
    "WebSocketProtocol",
    "WebSocketProtocol13",
    "WebSocketClientConnection",
    "WebSocketError",
    "WebSocketClosedError",
    "websocket_connect",
    "_DecompressTooLargeError",
    "_PerMessageDeflateCompressor",
    "_PerMessageDeflateDecompressor",
]

_default_max_message_size = 10 * 1024 * 1024
# A peer that stops reading makes our writes pile up; past this many unsent bytes the
# connection is dropped ("websocket_max_write_buffer_size" setting).
_default_max_write_buffer_size = 16 * 1024 * 1024
# While a message handler is busy, at most this much unparsed input is buffered before the
# transport stops reading.
_READ_AHEAD_LIMIT = 64 * 1024
# Messages handled in one go before yielding to the event loop, so a flood of small frames
# that arrived together cannot starve other connections.
_MESSAGES_PER_TURN = 64
# How long to wait for the peer's close frame (or its TCP close) once ours is sent.
_CLOSE_TIMEOUT = 5.0
# The body of a refused upgrade is kept for the HTTPError only up to this size.
_ERROR_BODY_LIMIT = 65536


class WebSocketError(Exception):
    """Base class for WebSocket failures."""


class WebSocketClosedError(WebSocketError):
    """An operation was attempted on a closed WebSocket connection."""


@functools.lru_cache(maxsize=128)
def de_dupe_gen_log(level: int, message: str) -> None:
    """Log ``message`` on ``gen_log`` the first time it is seen (a bounded memory of them)."""
    gen_log.log(level, message)


class _WebSocketParams(NamedTuple):
    """The limits and options one connection runs with (server and client sides alike)."""

    max_message_size: int = _default_max_message_size
    # None leaves the write buffer unbounded.
    max_write_buffer_size: int | None = _default_max_write_buffer_size
    # None refuses permessage-deflate; a dict (possibly empty) allows it.
    compression_options: dict[str, Any] | None = None
    ping_interval: float | None = None
    ping_timeout: float | None = None


_MessageCallback = Callable[[None | str | bytes], None]


def _header_tokens(value: str | None) -> list[str]:
    if not value:
        return []
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def _joined_header(headers: httputil.HTTPHeaders, name: str) -> str | None:
    values = headers.get_list(name)
    if not values:
        return None
    return ", ".join(values)


# --- server ---------------------------------------------------------------------------------


class WebSocketHandler(RequestHandler):
    """Subclass and override :meth:`open`, :meth:`on_message` and :meth:`on_close`.

    Route it like any handler; a GET with a valid upgrade becomes a WebSocket. Settings
    read from the Application: ``websocket_ping_interval``, ``websocket_ping_timeout``,
    ``websocket_max_message_size`` and ``websocket_max_write_buffer_size``.
    """

    # A class default: RequestHandler.__init__ already calls set_header (via clear()).
    _upgraded = False

    def __init__(
        self, application: Any, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> None:
        super().__init__(application, request, **kwargs)
        self.ws_connection: WebSocketProtocol | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.open_args: tuple[Any, ...] = ()
        self.open_kwargs: dict[str, Any] = {}
        self._close_reported = False

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Validate the upgrade request and switch the connection to WebSocket."""
        self.open_args = args
        self.open_kwargs = kwargs
        headers = self.request.headers
        if self.request.version == "HTTP/1.0":
            # RFC 6455 4.1: the opening handshake is an HTTP/1.1 (or later) request.
            self._refuse(400, "WebSocket needs HTTP/1.1")
            return
        if "websocket" not in _header_tokens(headers.get("Upgrade")):
            self._refuse(400, 'Can "Upgrade" only to "WebSocket".')
            return
        if "upgrade" not in _header_tokens(_joined_header(headers, "Connection")):
            self._refuse(400, '"Connection" must be "Upgrade".')
            return
        origin = headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            self._refuse(403, "Cross origin websockets not allowed")
            return
        if headers.get("Sec-WebSocket-Version", "").strip() != "13":
            self.set_header("Sec-WebSocket-Version", "13")
            self._refuse(426, "")
            return
        key = headers.get("Sec-WebSocket-Key", "").strip()
        if not is_valid_key(key):
            self._refuse(400, "Missing or invalid Sec-WebSocket-Key")
            return
        protocol = self.get_websocket_protocol()
        if protocol is None:
            self.set_header("Sec-WebSocket-Version", "13")
            self._refuse(426, "")
            return
        self.ws_connection = protocol
        await protocol.accept_connection(self)

    def _refuse(self, status: int, message: str) -> None:
        gen_log.debug("refused WebSocket upgrade (%d): %s", status, message)
        self.set_status(status)
        if message:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(message)

    @property
    def ping_interval(self) -> float | None:
        """Seconds between keep-alive pings (``websocket_ping_interval``); None: no pings."""
        return self.settings.get("websocket_ping_interval", None)

    @property
    def ping_timeout(self) -> float | None:
        """Seconds to wait for a pong before closing (``websocket_ping_timeout``)."""
        return self.settings.get("websocket_ping_timeout", None)

    @property
    def max_message_size(self) -> int:
        """Largest message accepted, after decompression (``websocket_max_message_size``)."""
        size: int = self.settings.get("websocket_max_message_size", _default_max_message_size)
        return size

    def write_message(
        self, message: bytes | str | dict[str, Any], binary: bool = False
    ) -> Awaitable[None]:
        """Send a message: ``str`` as text, ``bytes`` as binary, a dict as JSON text.

        The returned awaitable resolves once the message has left squall's buffers; await
        it to keep pace with a slow client. Raises WebSocketClosedError once closed.
        """
        connection = self.ws_connection
        if connection is None:
            raise WebSocketClosedError()
        if isinstance(message, dict):
            message = json_encode(message)
        return connection.write_message(message, binary=binary)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """Pick one of the client's ``subprotocols`` (may be empty); None picks none."""
        return None

    @property
    def selected_subprotocol(self) -> str | None:
        """The subprotocol chosen by :meth:`select_subprotocol`."""
        assert self.ws_connection is not None
        return self.ws_connection.selected_subprotocol

    def get_compression_options(self) -> dict[str, Any] | None:
        """Return a dict (possibly empty) to allow permessage-deflate, None to refuse it.

        Keys: ``compression_level`` and ``mem_level`` (zlib), ``server_no_context_takeover``,
        ``client_no_context_takeover``, ``server_max_window_bits`` and
        ``client_max_window_bits`` (what the server asks for in the negotiation).
        """
        return None

    def open(self, *args: Any, **kwargs: Any) -> Awaitable[None] | None:
        """Called once the connection is open, with the URL's path arguments."""
        return None

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Handle a message; may be a coroutine, in which case messages wait for it.

        Handlers that take no messages need not override it: the connection is then
        closed with 1003 (unsupported data) when one arrives.
        """
        self.close(CLOSE_UNSUPPORTED_DATA, "this endpoint takes no messages")
        return None

    def ping(self, data: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes); the answer arrives in :meth:`on_pong`."""
        _send_ping(self.ws_connection, data)

    def on_pong(self, data: bytes) -> None:
        """Called with the payload of each pong received."""

    def on_ping(self, data: bytes) -> None:
        """Called with the payload of each ping received (already answered)."""

    def on_close(self) -> None:
        """Called once when the connection is closed; see ``close_code``/``close_reason``."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake with an optional status ``code`` and ``reason``."""
        if self.ws_connection is not None:
            self.ws_connection.close(code, reason)
            self.ws_connection = None

    def check_origin(self, origin: str) -> bool:
        """True to accept a connection from a browser page at ``origin``.

        Same-origin requests pass (``Sec-Fetch-Site`` when the browser sends it, else the
        Origin's host against the Host header), as do origins accepted by
        ``check_trusted_origin`` (the ``trusted_origins`` setting). Override to allow more.
        """
        fetch_site = self.request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None:
            if fetch_site.strip().lower() in ("same-origin", "none"):
                return True
        else:
            origin_host = urlsplit(origin.lower()).netloc
            if origin_host and origin_host == self.request.headers.get("Host", "").lower():
                return True
        # check_trusted_origin (a RequestHandler method) reads the trusted_origins setting.
        checker = getattr(self, "check_trusted_origin", None)
        if checker is not None:
            return bool(checker(origin))
        return _fallback_trusted(self, origin)

    def set_nodelay(self, value: bool) -> None:
        """Send small messages at once instead of letting TCP gather them."""
        assert self.ws_connection is not None
        self.ws_connection.set_nodelay(value)

    def on_connection_close(self) -> None:
        # Reached from the HTTP layer (the client left before the upgrade) and from the
        # protocol (the WebSocket ended); either way on_close runs exactly once.
        connection, self.ws_connection = self.ws_connection, None
        if connection is not None:
            connection.on_connection_close()
        if self._close_reported:
            return
        self._close_reported = True
        self.on_close()

    def on_ws_connection_close(
        self, close_code: int | None = None, close_reason: str | None = None
    ) -> None:
        self.close_code, self.close_reason = close_code, close_reason
        self.on_connection_close()

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        settings = self.settings
        limit = settings.get("websocket_max_write_buffer_size", _default_max_write_buffer_size)
        params = _WebSocketParams(
            self.max_message_size,
            limit,
            self.get_compression_options(),
            self.ping_interval,
            self.ping_timeout,
        )
        return WebSocketProtocol13(self, False, params)

    def _detach_stream(self) -> IOStream:
        """Send the 101 head queued by the protocol and take the stream over.

        The head goes out with ``flush`` rather than ``finish``: finishing would end the
        HTTP exchange, and the connection could close or read the next request before the
        stream is detached. Logging and ``on_finish`` then run as ``finish`` would run them.
        """
        self.flush()
        connection = self.request.connection
        stream: IOStream = RequestHandler.detach(self)
        set_close_callback = getattr(connection, "set_close_callback", None)
        if set_close_callback is not None:
            # The detached HTTP connection will never report a close; dropping our callback
            # breaks the handler -> request -> connection -> handler cycle.
            set_close_callback(None)
        self._upgraded = True
        self.application.log_request(self)
        self.on_finish()
        return stream

    # Once the connection is a WebSocket there is no HTTP response left to shape.

    def _not_after_upgrade(self, name: str) -> None:
        if self._upgraded:
            raise RuntimeError(f"{name}() is not supported on an open WebSocket")

    def write(self, chunk: Any) -> None:
        self._not_after_upgrade("write")
        super().write(chunk)

    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        self._not_after_upgrade("redirect")
        super().redirect(url, permanent, status)

    def set_header(self, name: str, value: Any) -> None:
        self._not_after_upgrade("set_header")
        super().set_header(name, value)

    def add_header(self, name: str, value: Any) -> None:
        self._not_after_upgrade("add_header")
        super().add_header(name, value)

    def clear_header(self, name: str) -> None:
        self._not_after_upgrade("clear_header")
        super().clear_header(name)

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        self._not_after_upgrade("set_cookie")
        super().set_cookie(name, value, *args, **kwargs)

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        self._not_after_upgrade("set_status")
        super().set_status(status_code, reason)

    def flush(self, include_footers: bool = False) -> Any:
        self._not_after_upgrade("flush")
        return super().flush(include_footers)

    def finish(self, chunk: Any = None) -> Any:
        self._not_after_upgrade("finish")
        return super().finish(chunk)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        if not self._upgraded:
            super().send_error(status_code, **kwargs)
            return
        # The 101 is already out: the only thing left to do is drop the connection.
        connection = self.ws_connection
        if connection is not None:
            connection._abort()


def _fallback_trusted(handler: RequestHandler, origin: str) -> bool:
    trusted = handler.settings.get("trusted_origins") or ()
    return origin.lower() in {str(item).lower() for item in trusted}


# --- the protocol -------------------------------------------------------------------------


class WebSocketProtocol(abc.ABC):
    """What the handler and client connection need from a WebSocket protocol version."""

    # "__dict__" stays so tests and subclasses may replace methods on one connection.
    __slots__ = (
        "handler",
        "stream",
        "client_terminated",
        "server_terminated",
        "__dict__",
        "__weakref__",
    )

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.stream: IOStream | None = None
        # client_terminated: the peer's close frame arrived; server_terminated: ours left.
        self.client_terminated = False
        self.server_terminated = False

    def on_connection_close(self) -> None:
        """The underlying stream closed."""
        self._abort()

    @abc.abstractmethod
    def _abort(self) -> None:
        """Drop the connection at once."""

    @abc.abstractmethod
    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake."""

    @abc.abstractmethod
    def is_closing(self) -> bool:
        """True once the connection is closing or closed."""

    @abc.abstractmethod
    async def accept_connection(self, handler: WebSocketHandler) -> None:
        """Answer the upgrade request of ``handler`` and run the connection."""

    @abc.abstractmethod
    def write_message(self, message: str | bytes, binary: bool = False) -> Awaitable[None]:
        """Send a message."""

    @property
    @abc.abstractmethod
    def selected_subprotocol(self) -> str | None:
        """The negotiated subprotocol."""

    @abc.abstractmethod
    def write_ping(self, data: bytes) -> None:
        """Send a ping."""

    @abc.abstractmethod
    def start_pinging(self) -> None:
        """Start the keep-alive pings, if configured."""

    @abc.abstractmethod
    def set_nodelay(self, x: bool) -> None:
        """Toggle TCP_NODELAY."""


def _failure_of(future: asyncio.Future[Any]) -> BaseException | None:
    """What a finished callback future failed with (a cancellation counts), or None."""
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception()


class WebSocketProtocol13(WebSocketProtocol):
    """RFC 6455 ("version 13"), with permessage-deflate from RFC 7692."""

    FIN = FIN
    RSV1 = RSV1
    RSV2 = RSV2
    RSV3 = RSV3
    RSV_MASK = RSV_MASK
    OPCODE_MASK = OPCODE_MASK

    __slots__ = (
        "mask_outgoing",
        "params",
        "close_code",
        "close_reason",
        "_reader",
        "_writer",
        # A plain slot fulfils the abstract property: nothing to compute on access.
        "selected_subprotocol",
        "_loop",
        "_written",
        "_blocked",
        "_paused",
        "_pong_future",
        "_pending_pong",
        "_ping_handle",
        "_last_ping_time",
        "_ping_outstanding_since",
        "_close_handle",
        "_connection_closed",
        "_max_write_buffer_size",
        "_backlogged",
    )

    def __init__(self, handler: Any, mask_outgoing: bool, params: _WebSocketParams) -> None:
        super().__init__(handler)
        self.mask_outgoing = mask_outgoing
        self.params = params
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._reader: MessageReader | None = None
        self._writer = MessageWriter(mask_outgoing=mask_outgoing)
        self.selected_subprotocol: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._written: asyncio.Future[None] | None = None
        self._blocked = False
        self._paused = False
        self._pong_future: Awaitable[None] | None = None
        self._pending_pong: bytes | None = None
        self._ping_handle: asyncio.TimerHandle | None = None
        self._last_ping_time = 0.0
        self._ping_outstanding_since: float | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        self._connection_closed = False
        self._max_write_buffer_size = params.max_write_buffer_size
        self._backlogged = False

    # -- counters (compression tests compare them) -----------------------------------------

    @property
    def _message_bytes_in(self) -> int:
        return self._reader.message_bytes if self._reader is not None else 0

    @property
    def _wire_bytes_in(self) -> int:
        return self._reader.wire_bytes if self._reader is not None else 0

    @property
    def _message_bytes_out(self) -> int:
        return self._writer.message_bytes

    @property
    def _wire_bytes_out(self) -> int:
        return self._writer.wire_bytes

    @staticmethod
    def compute_accept_value(key: str | bytes) -> str:
        """The ``Sec-WebSocket-Accept`` answer to a ``Sec-WebSocket-Key``."""
        return _compute_accept_value(key)

    # -- opening -------------------------------------------------------------------------

    async def accept_connection(self, handler: WebSocketHandler) -> None:
        """Send the 101 answer, take the stream over and run ``open``."""
        request_headers = handler.request.headers
        offered = [
            item.strip()
            for item in (_joined_header(request_headers, "Sec-WebSocket-Protocol") or "").split(",")
            if item.strip()
        ]
        selected = handler.select_subprotocol(offered)
        if selected:
            if selected not in offered:
                raise ValueError(f"select_subprotocol returned {selected!r}, which was not offered")
            handler.set_header("Sec-WebSocket-Protocol", selected)
            self.selected_subprotocol = selected
        deflate: DeflateParameters | None = None
        negotiated = server_negotiate_deflate(
            _joined_header(request_headers, "Sec-WebSocket-Extensions"),
            self.params.compression_options,
        )
        if negotiated is not None:
            handler.set_header("Sec-WebSocket-Extensions", negotiated[0])
            deflate = negotiated[1]
        handler.clear_header("Content-Type")
        handler.set_status(101)
        handler.set_header("Upgrade", "websocket")
        handler.set_header("Connection", "Upgrade")
        handler.set_header(
            "Sec-WebSocket-Accept",
            _compute_accept_value(request_headers["Sec-WebSocket-Key"].strip()),
        )
        stream = handler._detach_stream()
        self._attach(stream, deflate)
        # a draining server finds its WebSockets here, to close them with 1001/1012
        context = getattr(handler.request.connection, "context", None)
        _lifecycle.track_upgraded(self, getattr(context, "server", None))
        self.start_pinging()
        try:
            result = handler.open(*handler.open_args, **handler.open_kwargs)
            if result is not None:
                await result
        except (Exception, asyncio.CancelledError):
            self._callback_failed(*sys.exc_info())
            return
        self._start_reading()

    def _attach(self, stream: IOStream, deflate: DeflateParameters | None) -> None:
        self.stream = stream
        self._loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = self._loop.create_future()
        written.set_result(None)
        # Writes that leave at once all share this finished future: no allocation per message.
        self._written = written
        options = self.params.compression_options
        decompressor = None
        if deflate is not None:
            self._writer.compressor = deflate.compressor(options)
            decompressor = deflate.decompressor(self.params.max_message_size, options)
        self._reader = MessageReader(
            expect_masked=not self.mask_outgoing,
            max_message_size=self.params.max_message_size,
            decompressor=decompressor,
        )
        stream.set_close_callback(self.on_connection_close)

    def _start_reading(self) -> None:
        stream = self.stream
        if stream is None or stream.closed() or self._connection_closed:
            return
        stream._set_data_handler(self._on_data)

    # -- receiving -----------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        reader.feed(data)
        if self._blocked:
            if not self._paused and reader.buffered() > _READ_AHEAD_LIMIT:
                self._paused = True
                assert self.stream is not None
                self.stream._pause_reading()
            return
        self._process()

    def _process(self) -> None:
        reader = self._reader
        assert reader is not None
        for _ in range(_MESSAGES_PER_TURN):
            if self.client_terminated or self._connection_closed:
                return
            try:
                message = reader.next_message()
            except ProtocolError as error:
                self._fail(error.code, error.reason)
                return
            if message is None:
                if self._paused:
                    self._paused = False
                    assert self.stream is not None
                    self.stream._resume_reading()
                return
            result = self._handle_message(message[0], message[1])
            if result is not None:
                self._blocked = True
                result.add_done_callback(self._unblock)
                return
        self._blocked = True
        assert self._loop is not None
        self._loop.call_soon(self._unblock)

    def _unblock(self, _: Any = None) -> None:
        self._blocked = False
        if not self._connection_closed:
            self._process()

    def _handle_message(self, opcode: int, data: Any) -> asyncio.Future[Any] | None:
        """Dispatch one message or control frame; a Future when the handler is still busy."""
        if self.client_terminated:
            return None
        handler = self.handler
        if opcode == OPCODE_TEXT or opcode == OPCODE_BINARY:
            if self.server_terminated:
                # Once our close frame is out, the application wants no more messages.
                return None
            # What _invoke does, spelled out: this is the per-message path.
            try:
                outcome = handler.on_message(data)
            except (Exception, asyncio.CancelledError):
                self._callback_failed(*sys.exc_info())
                return None
            return None if outcome is None else self._wait_for_result(outcome)
        if opcode == OPCODE_PING:
            self._send_pong(data)
            return self._invoke(handler.on_ping, data)
        if opcode == OPCODE_PONG:
            self._ping_outstanding_since = None
            return self._invoke(handler.on_pong, data)
        if opcode == OPCODE_CLOSE:
            self.client_terminated = True
            self.close_code, self.close_reason = decode_close_payload(data)
            # Echo the status code, as RFC 6455 5.5.1 suggests.
            self.close(self.close_code)
        return None

    def _invoke(self, callback: Callable[[Any], Any], data: Any) -> asyncio.Future[Any] | None:
        """Call an application callback; a Future while a coroutine it returned runs.

        A callback that raises is the application's bug: it is logged and the connection
        dropped, as no later message could be handled in a known state.
        """
        try:
            outcome = callback(data)
        except (Exception, asyncio.CancelledError):
            self._callback_failed(*sys.exc_info())
            return None
        return None if outcome is None else self._wait_for_result(outcome)

    def _callback_failed(self, typ: Any, value: Any, tb: Any) -> None:
        self.handler.log_exception(typ, value, tb)
        self._abort()

    def _wait_for_result(self, result: Any) -> asyncio.Future[Any] | None:
        """A Future to wait for before the next message; None if ``result`` is done."""
        future: asyncio.Future[Any]
        if isinstance(result, asyncio.Future):
            if result.done():
                # E.g. a gen.coroutine that finished without waiting: no need to block.
                self._check_callback_result(result)
                return None
            future = result
        else:
            future = asyncio.ensure_future(result)
        future.add_done_callback(self._check_callback_result)
        return future

    def _check_callback_result(self, future: asyncio.Future[Any]) -> None:
        error = _failure_of(future)
        if error is not None:
            self._callback_failed(type(error), error, error.__traceback__)

    # -- sending -------------------------------------------------------------------------

    def write_message(self, message: str | bytes, binary: bool = False) -> Awaitable[None]:
        """Send a message; the result resolves once it has left squall's buffers."""
        if self.server_terminated or self.client_terminated or self.stream is None:
            raise WebSocketClosedError()
        if isinstance(message, str):
            payload = message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            payload = bytes(message)
        else:
            raise TypeError(f"expected str or bytes, got {type(message).__name__}")
        return self._send(self._writer.message(payload, binary))

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0) -> Awaitable[None]:
        return self._send(self._writer.frame(fin, opcode, data, flags))

    def _send(self, frame: bytes) -> Awaitable[None]:
        stream = self.stream
        if stream is None:
            raise WebSocketClosedError()
        if self._backlogged:
            # Only once a write has left bytes behind can the buffer be near its limit.
            limit = self._max_write_buffer_size
            if limit is not None and stream._pending_write_size() > limit:
                gen_log.info("closing a WebSocket whose peer is not reading (write buffer full)")
                self._abort()
                raise WebSocketClosedError("the peer is not reading; write buffer limit reached")
        try:
            stream._write_nowait(frame)
        except StreamClosedError:
            raise WebSocketClosedError()
        if not stream.writing():
            self._backlogged = False
            return self._written  # type: ignore[return-value]
        self._backlogged = True
        return self._flush_future(stream)

    def _flush_future(self, stream: IOStream) -> asyncio.Future[None]:
        flushed = stream.write(b"")
        assert self._loop is not None
        outcome: asyncio.Future[None] = self._loop.create_future()

        def relay(done: asyncio.Future[None]) -> None:
            if outcome.done():
                return
            if done.cancelled() or done.exception() is not None:
                outcome.set_exception(WebSocketClosedError())
                # on_close reports the closed connection; a caller that never awaits
                # this future should not also get a "never retrieved" log line.
                outcome.exception()
            else:
                outcome.set_result(None)

        flushed.add_done_callback(relay)
        return outcome

    def write_ping(self, data: bytes) -> None:
        """Send a ping frame carrying ``data``."""
        self._write_frame(True, OPCODE_PING, data)

    def _send_pong(self, data: bytes) -> None:
        if self.server_terminated or self.stream is None:
            return
        pending = self._pong_future
        if pending is not None:
            # A pong is still being written: only the most recent ping gets an answer.
            self._pending_pong = data
            return
        self._write_pong(data)

    def _write_pong(self, data: bytes) -> None:
        try:
            written = self._write_frame(True, OPCODE_PONG, data)
        except WebSocketClosedError:
            return
        if isinstance(written, asyncio.Future) and written.done():
            return
        self._pong_future = written
        asyncio.ensure_future(written).add_done_callback(self._on_pong_written)

    def _on_pong_written(self, _: Any) -> None:
        self._pong_future = None
        data = self._pending_pong
        if data is not None:
            self._pending_pong = None
            if not self.is_closing():
                self._write_pong(data)

    def set_nodelay(self, x: bool) -> None:
        assert self.stream is not None
        self.stream.set_nodelay(x)

    # -- keep-alive pings ----------------------------------------------------------------

    @property
    def ping_interval(self) -> float:
        interval = self.params.ping_interval
        return float(interval) if interval else 0.0

    @property
    def ping_timeout(self) -> float:
        timeout = self.params.ping_timeout
        if timeout is None:
            # By default a pong must arrive before the next ping is due.
            return self.ping_interval
        return float(timeout)

    @staticmethod
    def ping_sleep_time(*, last_ping_time: float, interval: float, now: float) -> float:
        """Seconds until the next ping is due."""
        return max(0.0, last_ping_time + interval - now)

    def start_pinging(self) -> None:
        """Send a ping every ``ping_interval`` seconds; close if pongs stop coming."""
        if self.ping_interval <= 0 or self._loop is None:
            return
        self._last_ping_time = self._loop.time()
        self._ping_handle = self._loop.call_later(self.ping_interval, self.periodic_ping)

    def periodic_ping(self) -> None:
        """One step of the keep-alive timer: time out, ping, and schedule the next step."""
        self._ping_handle = None
        if self.is_closing() or self._loop is None:
            return
        now = self._loop.time()
        interval = self.ping_interval
        timeout = self.ping_timeout
        outstanding = self._ping_outstanding_since
        if timeout > 0 and outstanding is not None and now - outstanding >= timeout:
            self._ping_timed_out()
            return
        # Timers may fire a hair early; a millisecond of slack avoids a spurious re-arm.
        if now - self._last_ping_time >= interval - 0.001:
            self._last_ping_time = now
            if outstanding is None:
                self._ping_outstanding_since = outstanding = now
            try:
                self.write_ping(b"")
            except WebSocketClosedError:
                return
        delay = self.ping_sleep_time(
            last_ping_time=self._last_ping_time, interval=interval, now=now
        )
        if timeout > 0 and outstanding is not None:
            delay = min(delay, max(0.0, outstanding + timeout - now))
        self._ping_handle = self._loop.call_later(delay, self.periodic_ping)

    def _ping_timed_out(self) -> None:
        gen_log.debug("WebSocket ping timed out; closing")
        self.close_code = CLOSE_NORMAL
        self.close_reason = "ping timed out"
        self.close(CLOSE_NORMAL, "ping timed out")
        # The peer is unresponsive, so there is no point waiting for its close frame.
        self._abort()

    # -- closing -------------------------------------------------------------------------

    def is_closing(self) -> bool:
        stream = self.stream
        return stream is None or stream.closed() or self.client_terminated or self.server_terminated

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a close frame (once) and close the stream when the handshake completes."""
        if not self.server_terminated:
            self.server_terminated = True
            stream = self.stream
            if stream is not None and not stream.closed():
                frame = self._writer.close(code, reason)
                try:
                    stream._write_nowait(frame)
                except StreamClosedError:
                    pass
        stream = self.stream
        if stream is None or stream.closed() or self._loop is None:
            return
        if self.client_terminated and not self.mask_outgoing:
            # Both close frames exchanged: the server closes TCP first (RFC 6455 7.1.1),
            # once what is still queued (our close frame included) has been sent; closing
            # with bytes queued would drop them.
            if stream.writing():
                stream.write(b"").add_done_callback(lambda _: stream.close())
                if self._close_handle is None:
                    self._close_handle = self._loop.call_later(_CLOSE_TIMEOUT, self._abort)
            else:
                stream.close()
        elif self._close_handle is None:
            self._close_handle = self._loop.call_later(_CLOSE_TIMEOUT, self._abort)

    def _drain_close(self, code: int, reason: str) -> None:
        # through the handler, so an application's close() override sees it too
        self.handler.close(code, reason)

    def _drain_abort(self) -> None:
        self._abort()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection after a protocol violation by the peer."""
        gen_log.debug("failing WebSocket connection: %d %s", code, reason)
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        if not self.server_terminated:
            self.close(code, reason)
        self._abort()

    def _abort(self) -> None:
        """Close the stream now, after an unrecoverable error."""
        if not self.server_terminated and self.stream is not None and not self.stream.closed():
            # Tell the peer why before hanging up.
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
        self.client_terminated = True
        self.server_terminated = True
        if self.stream is not None:
            self.stream.close()
        self.on_connection_close()

    def on_connection_close(self) -> None:
        if self._connection_closed:
            return
        self._connection_closed = True
        _lifecycle.forget_upgraded(self)
        self.client_terminated = True
        self.server_terminated = True
        for handle in (self._ping_handle, self._close_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._close_handle = None
        stream = self.stream
        if stream is not None:
            if not stream.closed():
                stream.close()
            # The stream's protocol holds our data handler: letting go of it breaks the
            # stream <-> protocol cycle, so both are freed without waiting for the GC.
            stream._set_data_handler(None)
        self.handler.on_ws_connection_close(self.close_code, self.close_reason)


# --- client ---------------------------------------------------------------------------------


def _client_ssl_options(request: Any) -> ssl.SSLContext | dict[str, Any]:
    if request.ssl_options is not None:
        return request.ssl_options  # type: ignore[no-any-return]
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=request.ca_certs)
    if not request.validate_cert:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if request.client_cert is not None:
        context.load_cert_chain(request.client_cert, request.client_key)
    return context


class WebSocketClientConnection(simple_httpclient._HTTPConnection):
    """A client WebSocket; create it with :func:`websocket_connect`."""

    def __init__(
        self,
        request: HTTPRequest,
        on_message_callback: _MessageCallback | None = None,
        compression_options: dict[str, Any] | None = None,
        ping_interval: float | None = None, ping_timeout: float | None = None,
        max_message_size: int = _default_max_message_size,
        subprotocols: list[str] | None = None, resolver: Any = None,
    ) -> None:
        # The HTTP exchange here is a single upgrade request, so the general-purpose
        # connection machinery of the base class is not started.
        from squall.tcpclient import TCPClient

        self.io_loop = IOLoop.current()
        self.start_time = self.io_loop.time()
        self.start_wall_time = time.time()
        self.client = None
        self.request = request
        self.release_callback = None
        self.final_callback = None
        self.max_buffer_size = 104857600
        self.tcp_client = TCPClient(resolver=resolver)
        self.max_header_size = 65536
        self.max_body_size = 65536
        self.code = None
        self.headers = None
        self.reason = None
        self.chunks = []
        self.stream = None
        self.connection = None
        loop: asyncio.AbstractEventLoop = self.io_loop.asyncio_loop  # type: ignore[attr-defined]
        self._asyncio_loop = loop
        self.connect_future: asyncio.Future[WebSocketClientConnection] = (
            self._asyncio_loop.create_future()
        )
        self.read_queue: collections.deque[None | str | bytes] = collections.deque()
        self._read_waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._queue_space: asyncio.Future[None] | None = None
        self._closed = False
        self.key = new_key()
        self.protocol: WebSocketProtocol13 | None = None
        self.params = _WebSocketParams(
            max_message_size,
            compression_options=compression_options,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._on_message_callback = on_message_callback
        self._subprotocols = list(subprotocols or [])
        self._response_head_done = False
        self._close_delivered = False
        task = asyncio.ensure_future(self.run())
        task.add_done_callback(self._run_finished)

    def __del__(self) -> None:
        if getattr(self, "protocol", None) is not None and not self._closed:
            warnings.warn("Unclosed WebSocketClientConnection", ResourceWarning, stacklevel=1)

    @property
    def selected_subprotocol(self) -> str | None:
        """The subprotocol the server chose, or None."""
        return self.protocol.selected_subprotocol if self.protocol is not None else None

    # -- the handshake -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, send the upgrade request and check the answer."""
        request = self.request
        timeout = request.request_timeout
        try:
            if timeout:
                await asyncio.wait_for(self._handshake(), timeout)
            else:
                await self._handshake()
        except asyncio.TimeoutError:
            self._fail_connect(simple_httpclient.HTTPTimeoutError("Timeout during request"))
        except (Exception, asyncio.CancelledError) as error:
            self._fail_connect(error)

    def _run_finished(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            app_log.error("WebSocket client failed", exc_info=task.exception())

    def _fail_connect(self, error: BaseException) -> None:
        if self.stream is not None and self.protocol is None:
            self.stream.close()
        if not self.connect_future.done():
            self.connect_future.set_exception(error)
            self.connect_future.exception()  # nobody may be waiting; do not log it

    async def _handshake(self) -> None:
        request = self.request
        parts = urlsplit(request.url)
        scheme = parts.scheme.lower()
        if scheme in ("ws", "http"):
            secure = False
        elif scheme in ("wss", "https"):
            secure = True
        else:
            raise ValueError(f"unsupported WebSocket URL scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError(f"no host in WebSocket URL {request.url!r}")
        host, port = httputil.split_host_and_port(parts.netloc.rpartition("@")[2])
        if port is None:
            port = 443 if secure else 80
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        connect_timeout = request.connect_timeout
        connecting = self.tcp_client.connect(
            host,
            port,
            af=socket.AF_UNSPEC if request.allow_ipv6 is not False else socket.AF_INET,
            ssl_options=_client_ssl_options(request) if secure else None,
            max_buffer_size=self.max_buffer_size,
            source_ip=request.network_interface,
        )
        if connect_timeout:
            try:
                stream = await asyncio.wait_for(connecting, connect_timeout)
            except asyncio.TimeoutError:
                raise simple_httpclient.HTTPTimeoutError("Timeout while connecting")
        else:
            stream = await connecting
        self.stream = stream
        if self._closed:
            stream.close()
            raise WebSocketClosedError("closed while connecting")
        stream.set_nodelay(True)
        stream.write(self._request_bytes(parts, secure))
        head = await stream.read_until(b"\r\n\r\n", max_bytes=self.max_header_size)
        lines = head.decode("latin-1").split("\r\n", 1)
        start_line = httputil.parse_response_start_line(lines[0])
        headers = httputil.HTTPHeaders.parse(lines[1] if len(lines) > 1 else "")
        self.headers_received(start_line, headers)
        if self._response_head_done:
            return
        # Not an upgrade: read a (bounded) body for the error response, then fail.
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and 0 < int(length) <= _ERROR_BODY_LIMIT:
            self.data_received(await stream.read_bytes(int(length)))
        self.finish()

    def _request_bytes(self, parts: Any, secure: bool) -> bytes:
        request = self.request
        headers = httputil.HTTPHeaders()
        for name, value in httputil.HTTPHeaders(request.headers).get_all():
            headers.add(name, value)
        if "Host" not in headers:
            default_port = 443 if secure else 80
            netloc = parts.netloc.rpartition("@")[2]
            if parts.port == default_port:
                netloc = netloc.rsplit(":", 1)[0]
            headers["Host"] = netloc
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Key"] = self.key
        headers["Sec-WebSocket-Version"] = "13"
        if self._subprotocols:
            headers["Sec-WebSocket-Protocol"] = ",".join(self._subprotocols)
        if self.params.compression_options is not None:
            headers["Sec-WebSocket-Extensions"] = client_deflate_offer(
                self.params.compression_options
            )
        if request.user_agent:
            headers["User-Agent"] = request.user_agent
        elif "User-Agent" not in headers:
            headers["User-Agent"] = "squall-websocket"
        username = request.auth_username or parts.username
        if username is not None and "Authorization" not in headers:
            password = request.auth_password or parts.password or ""
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = "Basic " + token
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"GET {target} HTTP/1.1"]
        for name, value in headers.get_all():
            text = str(value)
            if "\r" in text or "\n" in text or "\0" in text:
                raise ValueError(f"illegal character in header {name!r}")
            lines.append(f"{name}: {text}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, httputil.ResponseStartLine)
        self.headers = headers
        if start_line.code != 101:
            self.code = start_line.code
            self.reason = start_line.reason
            return
        # An upgraded connection keeps code None, as in Tornado (code is an HTTP answer's,
        # and applications tell a WebSocket apart from an HTTP response by it).
        if "websocket" not in _header_tokens(headers.get("Upgrade")):
            raise WebSocketError("the server did not upgrade to WebSocket")
        if "upgrade" not in _header_tokens(_joined_header(headers, "Connection")):
            raise WebSocketError("the server's Connection header lacks Upgrade")
        if headers.get("Sec-WebSocket-Accept", "").strip() != _compute_accept_value(self.key):
            raise WebSocketError("invalid Sec-WebSocket-Accept")
        subprotocol = headers.get("Sec-WebSocket-Protocol")
        if subprotocol is not None and subprotocol not in self._subprotocols:
            raise WebSocketError(f"the server chose an unoffered subprotocol {subprotocol!r}")
        deflate: DeflateParameters | None = None
        extensions = _joined_header(headers, "Sec-WebSocket-Extensions")
        if extensions:
            if self.params.compression_options is None:
                raise WebSocketError("the server enabled an extension that was not offered")
            try:
                deflate = client_accept_deflate(extensions, self.params.compression_options)
            except ValueError as error:
                raise WebSocketError(str(error))
        protocol = self.get_websocket_protocol()
        protocol.selected_subprotocol = subprotocol
        assert self.stream is not None
        protocol._attach(self.stream, deflate)
        self.protocol = protocol
        self._response_head_done = True
        protocol.start_pinging()
        if not self.connect_future.done():
            self.connect_future.set_result(self)
        # Frames the server sent right after its 101 are still buffered in the stream; taking
        # reads over hands them to the protocol.
        protocol._start_reading()

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        """The server answered without upgrading: fail with its HTTP error."""
        assert self.code is not None
        from io import BytesIO

        response = HTTPResponse(
            self.request,  # type: ignore[arg-type]
            self.code,
            headers=self.headers,
            buffer=BytesIO(b"".join(self.chunks)),
            reason=self.reason,
            request_time=self.io_loop.time() - self.start_time,
            start_time=self.start_wall_time,
        )
        if self.stream is not None:
            self.stream.close()
        if response.error is not None:
            self._fail_connect(response.error)
        else:
            self._fail_connect(WebSocketError("Non-websocket response"))

    # -- messages ------------------------------------------------------------------------

    def write_message(
        self, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> Awaitable[None]:
        """Send a message (see WebSocketHandler.write_message)."""
        if self.protocol is None:
            raise WebSocketClosedError("the client connection is closed")
        if isinstance(message, dict):
            message = json_encode(message)
        return self.protocol.write_message(message, binary=binary)

    def read_message(
        self, callback: Callable[[asyncio.Future[Any]], None] | None = None
    ) -> Awaitable[None | str | bytes]:
        """The next message; None once the connection is closed.

        ``callback``, if given, is called with the future once it resolves.
        """
        assert self._on_message_callback is None, "read_message with on_message_callback"
        future: asyncio.Future[Any] = self._asyncio_loop.create_future()
        if self.read_queue:
            future.set_result(self.read_queue.popleft())
            self._release_queue_space()
        elif self._close_delivered:
            future.set_result(None)
        else:
            self._read_waiters.append(future)
        if callback is not None:
            self.io_loop.add_future(future, callback)
        return future

    def _release_queue_space(self) -> None:
        space = self._queue_space
        if space is not None and len(self.read_queue) <= 1:
            self._queue_space = None
            if not space.done():
                space.set_result(None)

    def on_message(self, message: None | str | bytes) -> Awaitable[None] | None:
        return self._on_message(message)

    def _on_message(self, message: None | str | bytes) -> Awaitable[None] | None:
        if self._on_message_callback is not None:
            self._on_message_callback(message)
            return None
        waiters = self._read_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(message)
                return None
        self.read_queue.append(message)
        if message is not None and len(self.read_queue) > 1:
            # Nobody is reading: hold further frames until the queue drains.
            if self._queue_space is None:
                self._queue_space = self._asyncio_loop.create_future()
            return self._queue_space
        return None

    def ping(self, data: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes); the pong goes to :meth:`on_pong`."""
        _send_ping(self.protocol, data)

    def on_pong(self, data: bytes) -> None:
        pass

    def on_ping(self, data: bytes) -> None:
        pass

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start the closing handshake (or give up connecting)."""
        self._closed = True
        if self.protocol is not None:
            self.protocol.close(code, reason)
            self.protocol = None
            return
        if self.stream is not None and not self._response_head_done:
            self.stream.close()
        self._deliver_close()

    def on_ws_connection_close(
        self, close_code: int | None = None, close_reason: str | None = None
    ) -> None:
        self.close_code, self.close_reason = close_code, close_reason
        self.on_connection_close()

    def on_connection_close(self) -> None:
        # A close before the handshake finished fails the pending websocket_connect.
        self._fail_connect(StreamClosedError())
        self._closed = True
        self._deliver_close()
        self.tcp_client.close()

    def _deliver_close(self) -> None:
        if not self._close_delivered:
            self._close_delivered = True
            self._on_message(None)

    def get_websocket_protocol(self) -> WebSocketProtocol13:
        return WebSocketProtocol13(self, mask_outgoing=True, params=self.params)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        assert typ is not None and value is not None
        app_log.error("Uncaught exception %s", value, exc_info=(typ, value, tb))


def websocket_connect(
    url: str | HTTPRequest,
    callback: Callable[[asyncio.Future[WebSocketClientConnection]], None] | None = None,
    connect_timeout: float | None = None,
    on_message_callback: _MessageCallback | None = None,
    compression_options: dict[str, Any] | None = None,
    ping_interval: float | None = None, ping_timeout: float | None = None,
    max_message_size: int = _default_max_message_size,
    subprotocols: list[str] | None = None, resolver: Any = None,
) -> Awaitable[WebSocketClientConnection]:
    """Open a client WebSocket to ``url`` (a ws:// or wss:// URL, or an HTTPRequest).

    Resolves to a :class:`WebSocketClientConnection`. Messages arrive through
    ``read_message`` or, if given, ``on_message_callback`` (None marks the close).
    ``compression_options`` (a dict, possibly empty) asks for permessage-deflate.
    """
    if not isinstance(url, HTTPRequest):
        url = HTTPRequest(url, connect_timeout=connect_timeout)
    else:
        assert connect_timeout is None, "connect_timeout belongs on the HTTPRequest"
        # The caller may have given a plain dict; the handshake adds to a copy of its own.
        url.headers = httputil.HTTPHeaders(url.headers)
    # Options the request leaves unset read as HTTPRequest's defaults.
    request: Any = _RequestProxy(url, HTTPRequest._DEFAULTS)
    connection = WebSocketClientConnection(
        request, on_message_callback, compression_options, ping_interval, ping_timeout,
        max_message_size, subprotocols, resolver,
    )
    if callback is not None:
        IOLoop.current().add_future(connection.connect_future, callback)
    return connection.connect_future


def _send_ping(protocol: Any, data: bytes | str) -> None:
    """Pings through ``protocol`` (a WebSocketProtocol13 or None) for handler and client."""
    payload = utf8(data)
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError("ping data is limited to 125 bytes")
    if protocol is None or protocol.is_closing():
        raise WebSocketClosedError()
    protocol.write_ping(payload)
