"""A squall ``Application`` as an ASGI 3 application (the adapter side).

Each ASGI ``http`` call becomes one exchange with the application's own delegate
machinery (``Application.start_request``): the request head and body go in through the
``HTTPMessageDelegate`` calls, and the response comes out through ``ASGIConnection``, an
``httputil.HTTPConnection`` that turns ``write_headers``/``write``/``finish`` into
``http.response.*`` messages. Messages are sent in order by the call's own coroutine once
the request is in (a small task only while the request body is still being read); each
write's future resolves when the ASGI server's ``send`` returned, so ``await
self.flush()`` in a handler keeps pace with the client. A watcher on ``receive()`` turns
``http.disconnect`` into ``on_connection_close``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable, Optional, Union
from urllib.parse import quote

import squall
from squall import httputil
from squall._asgi._errors import ASGIProtocolError

app_log = logging.getLogger("squall.application")
gen_log = logging.getLogger("squall.general")

DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024

_DEFAULT_SERVER = "SquallServer/" + squall.version
_RESPONSE_NAMES: dict[str, bytes] = {}
_RESPONSE_NAMES_LIMIT = 1000


class DetachUnsupportedError(RuntimeError):
    """``detach()`` under ASGI: the ASGI server owns the connection, so no stream can be
    handed over (WebSocketHandler works through its own ASGI protocol instead)."""


def _stream_closed_error() -> BaseException:
    from squall.iostream import StreamClosedError

    return StreamClosedError()


def _failed_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    future: asyncio.Future[None] = loop.create_future()
    future.set_exception(_stream_closed_error())
    future.exception()  # nobody has to look at it
    return future


def _fail(future: Optional[asyncio.Future[None]]) -> None:
    if future is not None and not future.done():
        future.set_exception(_stream_closed_error())
        future.exception()


class _Context:
    """What ``HTTPServerRequest`` reads from ``connection.context``."""

    __slots__ = ("remote_ip", "protocol", "address")

    def __init__(self, scope: dict[str, Any]) -> None:
        client = scope.get("client")
        self.address = tuple(client) if client else None
        self.remote_ip = str(client[0]) if client else "0.0.0.0"
        scheme = scope.get("scheme") or "http"
        self.protocol = {"ws": "http", "wss": "https"}.get(scheme, scheme)

    def __str__(self) -> str:
        return self.remote_ip


class _StreamView:
    """``connection.stream`` for handlers that ask whether the client is still there."""

    __slots__ = ("_connection",)

    socket = None

    def __init__(self, connection: ASGIConnection) -> None:
        self._connection = connection

    def closed(self) -> bool:
        return self._connection._disconnected

    def set_nodelay(self, value: bool) -> None:
        """The ASGI server owns the socket: nothing to do."""


class ASGIConnection(httputil.HTTPConnection):
    """The response side of one ASGI call, as squall's delegates expect to write it."""

    def __init__(
        self,
        scope: dict[str, Any],
        send: Callable[[dict[str, Any]], Any],
        max_body_size: int,
        body_timeout: Optional[float],
    ) -> None:
        self.scope = scope
        self.context = _Context(scope)
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._outbox: collections.deque[tuple[dict[str, Any], Optional[asyncio.Future[None]]]] = (
            collections.deque()
        )
        self._pumping = False
        self._pump_waiter: Optional[asyncio.Future[None]] = None
        self._headers_written = False
        self._finished = False
        self._disconnected = False
        self._failed = False
        self._close_callback: Optional[Callable[[], None]] = None
        self._remaining: Optional[int] = None
        self._body_allowed = True
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self._delegate: Optional[httputil.HTTPMessageDelegate] = None

    @property
    def stream(self) -> _StreamView:
        """A stand-in for the stream, with ``closed()`` (made on each use: a view kept
        here would be a reference cycle)."""
        return _StreamView(self)

    # -- HTTPConnection --------------------------------------------------------------------

    def set_close_callback(self, callback: Optional[Callable[[], None]]) -> None:
        """Runs ``callback`` when the client goes away before the response is done."""
        self._close_callback = callback

    def set_max_body_size(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def set_body_timeout(self, timeout: float) -> None:
        self.body_timeout = timeout

    def detach(self) -> Any:
        raise DetachUnsupportedError(
            "detach() is not available under ASGI: the ASGI server owns the connection"
        )

    def close(self) -> None:
        """Ends the response where it is; the ASGI server then drops the connection."""
        self._failed = True
        self._finished = True
        self._wake_pump()

    def write_headers(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
        chunk: Optional[bytes] = None,
    ) -> asyncio.Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        code = start_line.code
        if 100 <= code < 200:
            # interim responses have no ASGI message
            future: asyncio.Future[None] = self._loop.create_future()
            future.set_result(None)
            return future
        if self._headers_written:
            raise httputil.HTTPOutputError("the response head was already written")
        raw = self._raw_headers(headers)
        self._headers_written = True
        method = self.scope.get("method", "GET")
        self._body_allowed = method != "HEAD" and code not in (204, 304)
        length = headers.get("Content-Length")
        if length is not None and self._body_allowed:
            if not (isinstance(length, str) and length.isascii() and length.isdigit()):
                raise httputil.HTTPOutputError(f"Only integer Content-Length is allowed: {length}")
            self._remaining = int(length)
        future = self._start_message(code, raw)
        if chunk:
            return self.write(chunk)
        return future

    def _start_message(self, code: int, raw: list[tuple[bytes, bytes]]) -> asyncio.Future[None]:
        return self._enqueue({"type": "http.response.start", "status": code, "headers": raw})

    def _raw_headers(
        self, headers: httputil.HTTPHeaders, skip: frozenset[str] = frozenset()
    ) -> list[tuple[bytes, bytes]]:
        names = _RESPONSE_NAMES
        raw: list[tuple[bytes, bytes]] = []
        for name, value in headers.get_all():
            if name == "Date" or name in skip or name == "Transfer-Encoding":
                # the ASGI server dates and frames every response itself
                continue
            if not isinstance(value, str):
                value = str(value)
            if name == "Server" and value == _DEFAULT_SERVER:
                continue
            if "\n" in value or "\r" in value:
                raise httputil.HTTPOutputError(f"Newline in response header {name}: {value!r}")
            encoded = names.get(name)
            if encoded is None:
                encoded = name.lower().encode("latin-1")
                if len(names) < _RESPONSE_NAMES_LIMIT:
                    names[name] = encoded
            try:
                raw.append((encoded, value.encode("latin-1")))
            except UnicodeEncodeError as error:
                raise httputil.HTTPOutputError(f"Non-latin1 header: {error}") from None
        return raw

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        if self._disconnected or self._finished:
            return _failed_future(self._loop)
        remaining = self._remaining
        if remaining is not None:
            remaining -= len(chunk)
            self._remaining = remaining
            if remaining < 0:
                self.close()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if not chunk or not self._body_allowed:
            future: asyncio.Future[None] = self._loop.create_future()
            future.set_result(None)
            return future
        return self._enqueue(self._body_message(bytes(chunk)))

    def _body_message(self, chunk: bytes) -> dict[str, Any]:
        return {"type": "http.response.body", "body": chunk, "more_body": True}

    def finish(self) -> None:
        if self._finished:
            return
        remaining = self._remaining
        if remaining:
            self.close()
            raise httputil.HTTPOutputError(
                f"Tried to write {remaining} bytes less than Content-Length"
            )
        self._finished = True
        self._close_callback = None
        self._end_message()

    def _end_message(self) -> None:
        outbox = self._outbox
        if outbox and outbox[-1][0]["type"] == "http.response.body":
            # the last piece, not yet sent, becomes the end of the body
            outbox[-1][0]["more_body"] = False
            return
        self._enqueue({"type": "http.response.body", "body": b"", "more_body": False})

    # -- sending, in order -----------------------------------------------------------------

    def _enqueue(self, message: dict[str, Any]) -> asyncio.Future[None]:
        if self._disconnected:
            return _failed_future(self._loop)
        future: asyncio.Future[None] = self._loop.create_future()
        self._outbox.append((message, future))
        self._kick()
        return future

    def _kick(self) -> None:
        if self._pumping:
            return  # the running pump takes it
        waiter = self._pump_waiter
        if waiter is not None:
            self._wake_pump()
        else:
            # the call's coroutine is busy (reading the request body): a short-lived
            # task sends what is queued
            self._loop.create_task(self._drain_outbox())

    def _wake_pump(self) -> None:
        waiter = self._pump_waiter
        if waiter is not None:
            self._pump_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _drain_outbox(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            outbox = self._outbox
            send = self._send
            while outbox:
                message, future = outbox.popleft()
                if self._disconnected:
                    _fail(future)
                    continue
                try:
                    await send(message)
                except asyncio.CancelledError:
                    _fail(future)
                    raise
                except Exception as error:
                    gen_log.debug("ASGI send failed: %r", error)
                    _fail(future)
                    self._on_disconnect()
                    continue
                if future is not None and not future.done():
                    future.set_result(None)
        finally:
            self._pumping = False
            self._wake_pump()

    async def pump(self, done: Callable[[], bool]) -> None:
        """Sends queued messages until ``done()`` or the client left."""
        while True:
            await self._drain_outbox()
            if self._disconnected or (done() and not self._outbox and not self._pumping):
                return
            if self._outbox and not self._pumping:
                continue
            waiter = self._pump_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                if self._pump_waiter is waiter:
                    self._pump_waiter = None

    # -- the client going away -------------------------------------------------------------

    def _on_disconnect(self) -> None:
        if self._disconnected:
            return
        self._disconnected = True
        for _, future in self._outbox:
            _fail(future)
        self._outbox.clear()
        delegate = self._delegate
        self._delegate = None
        if delegate is not None:
            try:
                delegate.on_connection_close()
            except Exception:
                app_log.error("Uncaught exception in on_connection_close", exc_info=True)
        callback = self._close_callback
        self._close_callback = None
        if callback is not None:
            try:
                callback()
            except Exception:
                app_log.error("Uncaught exception in close callback", exc_info=True)
        self._wake_pump()


def request_head(
    scope: dict[str, Any], method: str
) -> tuple[httputil.RequestStartLine, httputil.HTTPHeaders]:
    """The request line and headers a squall delegate gets for an ASGI scope."""
    headers = httputil.HTTPHeaders()
    for name, value in scope.get("headers", ()):
        headers.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
    if "Host" not in headers:
        server = scope.get("server")
        if server and server[1] is not None:
            headers["Host"] = f"{server[0]}:{server[1]}"
        elif server:
            headers["Host"] = str(server[0])
    raw_path = scope.get("raw_path")
    if raw_path:
        path = bytes(raw_path).decode("latin-1")
    else:
        path = quote(scope.get("path", "/") or "/", safe="/%:@!$&'()*+,;=-._~")
    root = scope.get("root_path") or ""
    if root:
        prefix = quote(root, safe="/%:@!$&'()*+,;=-._~")
        if path == prefix or path.startswith(prefix + "/"):
            # the application's routes do not include where it is mounted
            path = path[len(prefix) :] or "/"
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    uri = path + "?" + query if query else path
    version = "HTTP/" + str(scope.get("http_version", "1.1"))
    return httputil.RequestStartLine(method, uri, version), headers


class ASGIAdapter:
    """A squall ``Application`` (any ``HTTPServerConnectionDelegate``) as an ASGI 3 app.

    Run it under uvicorn, hypercorn, granian or squall's own ``ASGIServer``.
    ``max_body_size`` / ``body_timeout`` bound request bodies as ``HTTPServer``'s options
    do (413, 408). WebSocketHandlers speak ASGI WebSocket messages; ``ping()`` raises
    ``WebSocketPingUnavailable`` (ASGI has no ping message).
    """

    def __init__(
        self,
        application: httputil.HTTPServerConnectionDelegate,
        *,
        max_body_size: Optional[int] = None,
        body_timeout: Optional[float] = None,
    ) -> None:
        if not hasattr(application, "start_request"):
            raise TypeError(
                f"ASGIAdapter needs an Application or HTTPServerConnectionDelegate, not "
                f"{application!r}"
            )
        self.application = application
        self.max_body_size = max_body_size or DEFAULT_MAX_BODY_SIZE
        self.body_timeout = body_timeout

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            from squall._asgi._adapter_ws import run_websocket

            await run_websocket(self, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"ASGIAdapter cannot serve ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        # nothing to set up: a squall Application is ready once built
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(
        self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]
    ) -> None:
        conn = ASGIConnection(scope, send, self.max_body_size, self.body_timeout)
        try:
            start_line, headers = request_head(scope, str(scope.get("method", "GET")))
        except (httputil.HTTPInputError, UnicodeDecodeError, TypeError, ValueError) as error:
            gen_log.info("Malformed request from ASGI server: %s", error)
            await _plain_response(send, 400, b"Bad Request")
            return
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > conn.max_body_size:
            await _plain_response(send, 413, b"Content Too Large")
            return
        delegate = self.application.start_request(conn, conn)
        conn._delegate = delegate
        try:
            pending = delegate.headers_received(start_line, headers)
            if pending is not None:
                await pending
            if not await self._read_body(conn, delegate, receive):
                return
            conn._delegate = None
            result: Any = delegate.finish()  # type: ignore[func-returns-value]
            if result is not None:
                await result
        except httputil.HTTPInputError as error:
            gen_log.info("Bad request body: %s", error)
            if not conn._headers_written:
                conn._outbox.clear()
                await _plain_response(send, 400, b"Bad Request")
                return
            raise
        watcher: Optional[asyncio.Task[None]] = None
        if not conn._finished:
            # the handler goes on asynchronously: hear it if the client leaves meanwhile
            watcher = asyncio.get_running_loop().create_task(_watch(conn, receive))
        try:
            await conn.pump(lambda: conn._finished)
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
        if conn._failed and not conn._disconnected:
            # the only way to tell the client a response broke off is a closed connection
            raise ASGIProtocolError("the response could not be completed")

    async def _read_body(
        self, conn: ASGIConnection, delegate: httputil.HTTPMessageDelegate, receive: Any
    ) -> bool:
        size = 0
        while True:
            if conn.body_timeout:
                try:
                    message = await asyncio.wait_for(receive(), conn.body_timeout)
                except asyncio.TimeoutError:
                    gen_log.info("Timeout reading body from %s", conn.context)
                    conn._on_disconnect()
                    if not conn._headers_written:
                        await _plain_response(conn._send, 408, b"Request Timeout")
                    return False
            else:
                message = await receive()
            kind = message.get("type")
            if kind == "http.disconnect":
                conn._on_disconnect()
                return False
            if kind != "http.request":
                continue
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > conn.max_body_size:
                    conn._delegate = None
                    delegate.on_connection_close()
                    if not conn._headers_written:
                        conn._outbox.clear()
                        await _plain_response(conn._send, 413, b"Content Too Large")
                    return False
                if not conn._finished:
                    result = delegate.data_received(bytes(chunk))
                    if result is not None:
                        await result
            if not message.get("more_body", False):
                return True


async def _watch(conn: ASGIConnection, receive: Callable[[], Any]) -> None:
    # a bounded loop: any other message than http.disconnect would be a server's mistake
    for _ in range(1000):
        message = await receive()
        if message.get("type") == "http.disconnect":
            conn._on_disconnect()
            return


async def _plain_response(send: Callable[..., Any], status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
