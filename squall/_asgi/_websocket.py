"""An HTTP/1.1 WebSocket upgrade as an ASGI ``websocket`` connection.

The handshake checks, accept keys and permessage-deflate negotiation, framing, UTF-8
checks, size limits, fragmentation and ping/pong are squall's own (``_websocket_frames``);
the application sees only whole messages. After ``websocket.accept`` the stream is
detached from HTTP (as ``WebSocketHandler`` does) and read here. A draining
``HTTPServer`` finds open sessions through ``squall._lifecycle`` and closes them with
1001 or 1012.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from squall import _lifecycle, httputil
from squall._asgi._errors import ASGIProtocolError, ClientDisconnected
from squall._asgi._http import as_bytes, await_write, response_headers, spawn, start_line_for
from squall._websocket_frames import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    MessageReader,
    MessageWriter,
    ProtocolError,
    compute_accept_value,
    decode_close_payload,
    is_sendable_close_code,
    is_valid_key,
    server_negotiate_deflate,
)
from squall.iostream import StreamClosedError

if TYPE_CHECKING:
    from squall._asgi._server import ASGIDelegate

app_log = logging.getLogger("squall.application")
gen_log = logging.getLogger("squall.general")

# Received messages the application has not taken yet, in bytes, past which frames are
# no longer parsed; unparsed input past the second bound pauses reading from the socket.
_QUEUE_LIMIT = 64 * 1024
_READ_AHEAD_LIMIT = 64 * 1024
# messages parsed in one go before other connections get a turn
_MESSAGES_PER_TURN = 64
# how long to wait for the peer's close frame once ours is out
CLOSE_TIMEOUT = 5.0
# pongs are skipped while this much output waits: a peer that pings without reading
_PONG_BACKLOG_LIMIT = 1024 * 1024

# the handshake's own headers; an application's accept headers cannot replace them
_RESERVED = frozenset(
    [b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions"]
)

_CONNECTING = 0
_DENYING = 1  # a websocket.http.response is being sent
_OPEN = 2
_CLOSING = 3  # our close frame is out
_CLOSED = 4


def _tokens(value: Optional[str]) -> list[str]:
    if not value:
        return []
    return [item.strip().lower() for item in value.split(",") if item.strip()]


class WebSocketSession:
    """One WebSocket connection between a client and an ASGI application."""

    def __init__(
        self,
        owner: ASGIDelegate,
        conn: Any,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        self._owner = owner
        self._conn = conn
        self._start_line = start_line
        self._headers = headers
        self._stream: Any = None
        self._state = _CONNECTING
        self._connect_given = False
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._queued = 0
        self._waiter: Optional[asyncio.Future[None]] = None
        self._disconnect: Optional[dict[str, Any]] = None
        self._disconnect_given = False
        self._reader: Optional[MessageReader] = None
        self._writer = MessageWriter(mask_outgoing=False)
        self._stalled = False
        self._read_paused = False
        self._scheduled = False
        self._close_timer: Optional[asyncio.TimerHandle] = None
        self._ping_timer: Optional[asyncio.TimerHandle] = None
        self._ping_outstanding: Optional[float] = None
        self._deny_status = 0
        self._deny_headers: Optional[httputil.HTTPHeaders] = None
        self._deny_has_length = False
        self._task: Optional[asyncio.Task[None]] = None
        self._start_time = 0.0

    # -- the handshake request -------------------------------------------------------------

    def begin(self) -> None:
        """The upgrade request is in: check it, then start the application."""
        headers = self._headers
        version = self._start_line.version
        problem: Optional[tuple[int, str]] = None
        if version == "HTTP/1.0":
            problem = (400, "WebSocket needs HTTP/1.1")
        elif "upgrade" not in _tokens(",".join(headers.get_list("Connection"))):
            problem = (400, '"Connection" must include "Upgrade"')
        elif headers.get("Sec-WebSocket-Version", "").strip() != "13":
            problem = (426, "")
        elif not is_valid_key(headers.get("Sec-WebSocket-Key", "").strip()):
            problem = (400, "Missing or invalid Sec-WebSocket-Key")
        if problem is not None:
            self._refuse(*problem)
            return
        self._start_time = time.time()
        scope = self._owner._websocket_scope(self._conn, self._start_line, headers)
        self._task = spawn(self._run(scope))

    def _refuse(self, status: int, text: str) -> None:
        gen_log.debug("refused WebSocket upgrade (%d): %s", status, text)
        body = text.encode()
        headers = httputil.HTTPHeaders()
        if status == 426:
            headers["Sec-WebSocket-Version"] = "13"
        if body:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = str(len(body))
        self._state = _CLOSED
        try:
            self._conn.write_headers(start_line_for(status), headers, body)
            self._conn.finish()
        except Exception:
            gen_log.debug("could not refuse the upgrade", exc_info=True)
            _close(self._conn)

    def on_http_close(self) -> None:
        """The connection closed while still HTTP (before accept, or during a denial)."""
        if self._stream is not None or self._state == _CLOSED:
            return
        self._finish(CLOSE_ABNORMAL, "")

    # -- running the application -----------------------------------------------------------

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._owner.app(scope, self.receive, self.send)
        except BaseException as error:
            self._app_failed(error)
            if not isinstance(error, Exception):
                raise
        else:
            self._app_returned()
        finally:
            # (no cycle with the HTTP connection, which keeps its delegate: see _http)
            self._task = None
            self._conn = None

    def _app_failed(self, error: BaseException) -> None:
        if isinstance(error, asyncio.CancelledError):
            gen_log.debug("ASGI WebSocket application cancelled")
        elif self._state == _CLOSED and isinstance(error, OSError):
            gen_log.debug("ASGI WebSocket application stopped after the close: %r", error)
        else:
            app_log.error(
                "Exception in ASGI WebSocket application",
                exc_info=(type(error), error, error.__traceback__),
            )
        state = self._state
        if state == _CONNECTING:
            self._refuse(500, "Internal Server Error")
            self._finish(CLOSE_ABNORMAL, "")
        elif state == _DENYING:
            _close(self._conn)
            self._finish(CLOSE_ABNORMAL, "")
        elif state == _OPEN:
            self._start_close(CLOSE_INTERNAL_ERROR, "")

    def _app_returned(self) -> None:
        state = self._state
        if state == _CONNECTING:
            # returned without accepting: the spec's answer is 403
            self._refuse(403, "")
            self._finish(CLOSE_ABNORMAL, "")
        elif state == _DENYING:
            app_log.error("ASGI application returned without completing its denial response")
            _close(self._conn)
            self._finish(CLOSE_ABNORMAL, "")
        elif state == _OPEN:
            self._start_close(CLOSE_NORMAL, "")

    # -- the ASGI callables ----------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """``websocket.connect``, then messages, then ``websocket.disconnect`` (once)."""
        if not self._connect_given:
            self._connect_given = True
            return {"type": "websocket.connect"}
        while True:
            queue = self._queue
            if queue:
                message = queue.popleft()
                payload = message.get("text") or message.get("bytes") or b""
                self._queued -= len(payload)
                if self._stalled and self._queued <= _QUEUE_LIMIT:
                    self._stalled = False
                    self._schedule_parse()
                return message
            disconnect = self._disconnect
            if disconnect is not None:
                if self._disconnect_given:
                    raise ASGIProtocolError("receive() called again after websocket.disconnect")
                self._disconnect_given = True
                return disconnect
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        """Takes ``websocket.*`` messages (accept, send, close, http.response.*)."""
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ASGIProtocolError(f"an ASGI message must be a dict with a 'type': {message!r}")
        state = self._state
        if kind == "websocket.send":
            if state != _OPEN:
                if state == _CONNECTING:
                    raise ASGIProtocolError("'websocket.send' before 'websocket.accept'")
                raise ClientDisconnected("the WebSocket is closed")
            text = message.get("text")
            data = message.get("bytes")
            if text is not None and data is None:
                if not isinstance(text, str):
                    raise ASGIProtocolError("'text' must be a str")
                frame = self._writer.message(text.encode("utf-8"), False)
            elif data is not None and text is None:
                frame = self._writer.message(as_bytes(data, "bytes"), True)
            else:
                raise ASGIProtocolError("'websocket.send' needs exactly one of 'text' and 'bytes'")
            await self._write(frame)
            return
        if kind == "websocket.accept":
            await self._accept(message)
            return
        if kind == "websocket.close":
            code = message.get("code", CLOSE_NORMAL)
            reason = message.get("reason") or ""
            if state == _CONNECTING:
                self._refuse(403, "")
                self._finish(code if isinstance(code, int) else CLOSE_NORMAL, str(reason))
                return
            if state == _OPEN:
                if not isinstance(code, int) or not is_sendable_close_code(code):
                    raise ASGIProtocolError(f"invalid WebSocket close code {code!r}")
                self._start_close(code, str(reason))
            return  # a second close, or after the peer's: nothing left to do
        if kind == "websocket.http.response.start":
            if state != _CONNECTING:
                raise ASGIProtocolError("'websocket.http.response.start' only before accepting")
            status = message.get("status")
            if not isinstance(status, int) or not 100 <= status <= 599 or status == 101:
                raise ASGIProtocolError(f"invalid denial status {status!r}")
            self._deny_headers, self._deny_has_length, _ = response_headers(
                message.get("headers", ())
            )
            self._deny_status = status
            self._state = _DENYING
            return
        if kind == "websocket.http.response.body":
            if state != _DENYING:
                raise ASGIProtocolError(
                    "'websocket.http.response.body' needs 'websocket.http.response.start'"
                )
            await self._deny_body(message)
            return
        raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on a websocket connection")

    async def _deny_body(self, message: dict[str, Any]) -> None:
        body = as_bytes(message.get("body", b""))
        more = message.get("more_body", False)
        conn = self._conn
        headers = self._deny_headers
        future: Optional[asyncio.Future[None]]
        if headers is not None:
            self._deny_headers = None
            if not more and not self._deny_has_length:
                headers["Content-Length"] = str(len(body))
            future = conn.write_headers(start_line_for(self._deny_status), headers, body)
        else:
            future = conn.write(body) if body else None
        if not more:
            self._state = _CLOSED
            conn.finish()
            self._finish(CLOSE_ABNORMAL, "")
        await await_write(future)

    async def _accept(self, message: dict[str, Any]) -> None:
        if self._state != _CONNECTING:
            if self._state == _CLOSED:
                raise ClientDisconnected("the client went away before the accept")
            raise ASGIProtocolError("'websocket.accept' sent twice or after a denial")
        request_headers = self._headers
        headers = httputil.HTTPHeaders()
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Accept"] = compute_accept_value(
            request_headers["Sec-WebSocket-Key"].strip()
        )
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if not isinstance(subprotocol, str) or not subprotocol:
                raise ASGIProtocolError(f"invalid subprotocol {subprotocol!r}")
            headers["Sec-WebSocket-Protocol"] = subprotocol
        owner = self._owner
        negotiated = server_negotiate_deflate(
            ", ".join(request_headers.get_list("Sec-WebSocket-Extensions")) or None,
            owner.websocket_compression,
        )
        if negotiated is not None:
            headers["Sec-WebSocket-Extensions"] = negotiated[0]
        extra = response_headers(message.get("headers", ()))[0]
        for name, value in extra.get_all():
            lowered = name.lower().encode("latin-1")
            if lowered in _RESERVED:
                continue
            if lowered == b"sec-websocket-protocol" and subprotocol is not None:
                continue
            headers.add(name, value)
        conn = self._conn
        written = conn.write_headers(start_line_for(101), headers)
        stream = conn.detach()
        if stream is None or stream.closed():
            self._finish(CLOSE_ABNORMAL, "")
            raise ClientDisconnected("the client went away before the accept")
        self._stream = stream
        self._state = _OPEN
        options = owner.websocket_compression
        decompressor = None
        if negotiated is not None:
            self._writer.compressor = negotiated[1].compressor(options)
            decompressor = negotiated[1].decompressor(owner.websocket_max_message_size, options)
        self._reader = MessageReader(
            expect_masked=True,
            max_message_size=owner.websocket_max_message_size,
            decompressor=decompressor,
        )
        context = getattr(conn, "context", None)
        # a draining server closes the WebSockets that came through it (1001/1012)
        _lifecycle.track_upgraded(self, getattr(context, "server", None))
        stream.set_close_callback(self._on_stream_close)
        # delivers what arrived with the upgrade before returning
        stream._set_data_handler(self._on_data)
        if owner.websocket_ping_interval:
            self._schedule_ping(owner.websocket_ping_interval)
        self._log(101)
        await await_write(written)

    def _log(self, status: int) -> None:
        logger = self._owner.access_log
        if logger.isEnabledFor(logging.INFO):
            context = getattr(self._conn, "context", None)
            logger.info(
                "%d %s %s (%s) %.2fms",
                status,
                self._start_line.method,
                self._start_line.path,
                getattr(context, "remote_ip", None),
                1000.0 * (time.time() - self._start_time),
            )

    async def _write(self, frame: bytes) -> None:
        stream = self._stream
        try:
            stream._write_nowait(frame)
            if stream.writing():
                await stream.write(b"")
        except StreamClosedError:
            raise ClientDisconnected("the client closed the connection") from None

    # -- receiving -------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        reader = self._reader
        if reader is None or self._state == _CLOSED:
            return
        reader.feed(data)
        if self._stalled or self._scheduled:
            if not self._read_paused and reader.buffered() > _READ_AHEAD_LIMIT:
                self._read_paused = True
                self._stream._pause_reading()
            return
        self._parse()

    def _schedule_parse(self) -> None:
        if not self._scheduled and self._state != _CLOSED:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._parse_later)

    def _parse_later(self) -> None:
        self._scheduled = False
        if not self._stalled:
            self._parse()

    def _parse(self) -> None:
        reader = self._reader
        assert reader is not None
        for _ in range(_MESSAGES_PER_TURN):
            state = self._state
            if state == _CLOSED:
                return
            if self._queued > _QUEUE_LIMIT:
                # the application is behind: keep the rest in the reader for now
                self._stalled = True
                if not self._read_paused and reader.buffered() > _READ_AHEAD_LIMIT:
                    self._read_paused = True
                    self._stream._pause_reading()
                return
            try:
                message = reader.next_message()
            except ProtocolError as error:
                self._fail(error.code, error.reason)
                return
            if message is None:
                if self._read_paused:
                    self._read_paused = False
                    self._stream._resume_reading()
                return
            opcode, payload = message
            if opcode == OPCODE_TEXT:
                if state == _OPEN:
                    self._deliver({"type": "websocket.receive", "text": payload}, len(payload))
            elif opcode == OPCODE_BINARY:
                if state == _OPEN:
                    self._deliver({"type": "websocket.receive", "bytes": payload}, len(payload))
            elif opcode == OPCODE_PING:
                self._pong(payload)
            elif opcode == OPCODE_PONG:
                self._ping_outstanding = None
            elif opcode == OPCODE_CLOSE:
                code, reason = decode_close_payload(payload)
                self._peer_closed(code, reason or "")
                return
        self._schedule_parse()

    def _deliver(self, message: dict[str, Any], size: int) -> None:
        self._queue.append(message)
        self._queued += size
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _pong(self, payload: bytes) -> None:
        stream = self._stream
        if self._state != _OPEN or stream is None or stream.closed():
            return
        if stream._pending_write_size() > _PONG_BACKLOG_LIMIT:
            return
        try:
            stream._write_nowait(self._writer.pong(payload))
        except StreamClosedError:
            pass

    # -- closing ---------------------------------------------------------------------------

    def _send_close(self, code: Optional[int], reason: str) -> None:
        stream = self._stream
        if stream is None or stream.closed():
            return
        try:
            stream._write_nowait(self._writer.close(code, reason or None))
        except (StreamClosedError, ValueError):
            pass

    def _start_close(self, code: int, reason: str) -> None:
        """Our side closes: the close frame now, the socket once the peer answers."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._send_close(code, reason)
        self._cancel_ping()
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._abort)

    def _peer_closed(self, code: Optional[int], reason: str) -> None:
        if self._state == _OPEN:
            # echo the status code (RFC 6455 5.5.1)
            self._send_close(code, "")
        # both close frames exchanged: the server closes the TCP connection first
        self._close_stream_after_writes()
        self._finish(code if code is not None else CLOSE_NO_STATUS, reason)

    def _fail(self, code: int, reason: str) -> None:
        gen_log.debug("failing ASGI WebSocket connection: %d %s", code, reason)
        if self._state == _OPEN:
            self._send_close(code, reason)
        self._close_stream_after_writes()
        self._finish(code, reason)

    def _close_stream_after_writes(self) -> None:
        stream = self._stream
        if stream is None or stream.closed():
            return
        if stream.writing():
            stream.write(b"").add_done_callback(lambda _: stream.close())
            # a peer that never reads our last bytes does not keep the socket open
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, stream.close)
        else:
            stream.close()

    def _abort(self) -> None:
        self._close_timer = None
        stream = self._stream
        if stream is not None:
            stream.close()
        self._finish(CLOSE_ABNORMAL, "")

    def _on_stream_close(self) -> None:
        self._finish(CLOSE_ABNORMAL, "")

    def _finish(self, code: int, reason: str) -> None:
        """The connection is over: the application hears ``websocket.disconnect`` once."""
        if self._disconnect is not None:
            return
        self._state = _CLOSED
        self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        _lifecycle.forget_upgraded(self)
        self._cancel_ping()
        timer = self._close_timer
        if timer is not None:
            timer.cancel()
            self._close_timer = None
        stream = self._stream
        if stream is not None:
            if not stream.closed() and not stream.writing():
                stream.close()
            # the protocol holds our data handler: dropping it frees the stream at once
            try:
                stream._set_data_handler(None)
            except Exception:
                pass
        self._wake()

    # draining (squall._lifecycle.Upgraded)

    def _drain_close(self, code: int, reason: str) -> None:
        self._start_close(code, reason)

    def _drain_abort(self) -> None:
        self._abort()

    # -- keep-alive pings ------------------------------------------------------------------

    def _schedule_ping(self, delay: float) -> None:
        self._ping_timer = asyncio.get_running_loop().call_later(delay, self._ping)

    def _cancel_ping(self) -> None:
        timer = self._ping_timer
        if timer is not None:
            timer.cancel()
            self._ping_timer = None

    def _ping(self) -> None:
        self._ping_timer = None
        if self._state != _OPEN:
            return
        owner = self._owner
        now = asyncio.get_running_loop().time()
        interval = owner.websocket_ping_interval or 0.0
        timeout = owner.websocket_ping_timeout or interval
        outstanding = self._ping_outstanding
        if outstanding is not None and now - outstanding >= timeout:
            gen_log.debug("ASGI WebSocket ping timed out")
            self._fail(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
            return
        if outstanding is None:
            self._ping_outstanding = now
            try:
                self._stream._write_nowait(self._writer.ping(b""))
            except StreamClosedError:
                return
        delay = interval
        if self._ping_outstanding is not None:
            delay = min(delay, max(0.0, self._ping_outstanding + timeout - now))
        self._schedule_ping(max(delay, 0.001))


def _close(conn: Any) -> None:
    close = getattr(conn, "close", None)
    if close is not None:
        close()
