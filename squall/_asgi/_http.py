"""One HTTP request as an ASGI ``http`` connection: the server side of the bridge.

An ``HTTPExchange`` is the ``HTTPMessageDelegate`` the HTTP/1 connection feeds. It starts
the application (one task per request: the application is a coroutine and frameworks need
a real task) when the body is in, when it outgrows the read-ahead bound, or at once for
``Expect: 100-continue``. Flow control is the connection's own: ``data_received`` returns
an unfinished future while more than the bound waits unread, which pauses reading until
the application's ``receive()`` takes it; ``send()`` awaits the connection's write futures,
which resolve once the kernel took the bytes.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, Union

from squall import httputil
from squall._asgi import _h1hooks
from squall._asgi._errors import ASGIProtocolError, ClientDisconnected

if TYPE_CHECKING:
    from squall._asgi._server import ASGIDelegate

app_log = logging.getLogger("squall.application")
gen_log = logging.getLogger("squall.general")

# Unread body bytes past which reading stops until the application calls receive().
READ_AHEAD = 64 * 1024

# response states
_NOT_STARTED = 0  # no http.response.start yet
_STARTED = 1  # start received; the head waits to go out with the first body piece
_STREAMING = 2  # head written, more body to come
_TRAILERS = 3  # body done, trailers announced and not yet sent
_COMPLETE = 4

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHAR = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# ASGI header name -> the str name for HTTPHeaders (only valid tokens are kept)
_RESPONSE_NAMES: dict[bytes, str] = {}
_RESPONSE_NAMES_LIMIT = 1000
_START_LINES: dict[int, httputil.ResponseStartLine] = {}
_NO_BODY_STATUSES = (204, 304)

_ERROR_BODY = b"Internal Server Error"


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """Now as an HTTP-date, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    return _date[1]


if sys.version_info >= (3, 12):

    def spawn(coro: Any) -> asyncio.Task[None]:
        """A task for ``coro`` that runs at once, up to its first wait: a hello-world
        application answers within the call that delivered its request, and one that
        waits continues as an ordinary task (a real one: frameworks ask for it)."""
        loop = asyncio.get_running_loop()
        if asyncio.current_task(loop) is not None:
            return loop.create_task(coro)  # (eager start cannot nest in a running task)
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]

else:

    def spawn(coro: Any) -> asyncio.Task[None]:
        """A task for ``coro`` (Python 3.11 has no eager start: it runs next loop turn)."""
        return asyncio.get_running_loop().create_task(coro)


def start_line_for(status: int) -> httputil.ResponseStartLine:
    line = _START_LINES.get(status)
    if line is None:
        line = httputil.ResponseStartLine("HTTP/1.1", status, httputil.responses.get(status, ""))
        if len(_START_LINES) < 100:
            _START_LINES[status] = line
    return line


# ASGI header lists seen recently -> their checked HTTPHeaders: applications tend to send
# the same few lists, and a copy costs a third of the checks
_HEADERS_SEEN: dict[tuple[Any, ...], tuple[httputil.HTTPHeaders, bool, bool]] = {}
_HEADERS_SEEN_LIMIT = 256


def response_headers(raw: Any) -> tuple[httputil.HTTPHeaders, bool, bool]:
    """HTTPHeaders for an ASGI header list, and whether it sets Content-Length and Date.

    Names must be tokens and values free of control characters; Transfer-Encoding is
    dropped, because the server frames the body itself.
    """
    try:
        items = tuple(raw)
    except TypeError:
        raise ASGIProtocolError("response headers must be an iterable of (name, value) pairs")
    try:
        seen = _HEADERS_SEEN.get(items)
    except TypeError:  # (lists inside: not hashable, not remembered)
        return _checked_headers(items)
    if seen is not None:
        return seen[0].copy(), seen[1], seen[2]
    headers, has_length, has_date = _checked_headers(items)
    if len(_HEADERS_SEEN) >= _HEADERS_SEEN_LIMIT:
        _HEADERS_SEEN.clear()
    _HEADERS_SEEN[items] = (headers.copy(), has_length, has_date)
    return headers, has_length, has_date


def _checked_headers(items: tuple[Any, ...]) -> tuple[httputil.HTTPHeaders, bool, bool]:
    headers = httputil.HTTPHeaders()
    has_length = has_date = False
    names = _RESPONSE_NAMES
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise ASGIProtocolError(f"a response header must be a (name, value) pair: {item!r}")
        if type(name) is not bytes or type(value) is not bytes:
            if isinstance(name, (bytes, bytearray, memoryview)) and isinstance(
                value, (bytes, bytearray, memoryview)
            ):
                name, value = bytes(name), bytes(value)
            else:
                raise ASGIProtocolError(f"response header names and values must be bytes: {item!r}")
        text_name = names.get(name)
        if text_name is None:
            if not _TOKEN.fullmatch(name):
                raise ASGIProtocolError(f"invalid response header name {name!r}")
            text_name = name.decode("latin-1")
            if len(names) < _RESPONSE_NAMES_LIMIT:
                names[name] = text_name
        if _BAD_VALUE_CHAR.search(value) is not None:
            raise ASGIProtocolError(f"invalid character in response header {name!r}")
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            continue
        if lowered == b"content-length":
            has_length = True
        elif lowered == b"date":
            has_date = True
        text_value = value.decode("latin-1").strip(" \t")
        if text_name in headers:
            headers.add(text_name, text_value)
        else:
            headers[text_name] = text_value
    return headers, has_length, has_date


def as_bytes(body: Any, what: str = "body") -> bytes:
    if type(body) is bytes:
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise ASGIProtocolError(f"the {what} must be bytes, not {type(body).__name__}")


async def await_write(future: Optional[asyncio.Future[None]]) -> None:
    """Waits for a write future; a failed one means the client is gone."""
    if future is None:
        return
    if future.done():
        if future.cancelled() or future.exception() is None:
            return
    else:
        try:
            await future
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            pass
    raise ClientDisconnected("the client closed the connection")


class _AccessRecord:
    """What ``log_function`` gets for one ASGI request: the fields of a handler's request
    that access logs read (``get_status()`` and ``request``)."""

    __slots__ = ("_status", "request")

    def __init__(self, status: int, request: _RequestView) -> None:
        self._status = status
        self.request = request

    def get_status(self) -> int:
        return self._status


class _RequestView:
    __slots__ = (
        "method",
        "uri",
        "path",
        "query",
        "version",
        "headers",
        "remote_ip",
        "protocol",
        "host",
        "_start",
        "_end",
    )

    def __init__(self, exchange: HTTPExchange, start: float) -> None:
        start_line = exchange._start_line
        assert start_line is not None
        self.method = start_line.method
        self.uri = start_line.path
        self.path, _, self.query = start_line.path.partition("?")
        self.version = start_line.version
        self.headers = exchange._headers
        self.remote_ip, self.protocol = exchange._client
        self.host = self.headers.get("Host", "") if self.headers is not None else ""
        self._start = start
        self._end = time.time()

    def request_time(self) -> float:
        return self._end - self._start


class HTTPExchange(httputil.HTTPMessageDelegate):
    """One request/response between an HTTP connection and an ASGI application."""

    __slots__ = (
        "_owner",
        "_conn",
        "_start_line",
        "_headers",
        "_body",
        "_body_size",
        "_more_body",
        "_delivered_last",
        "_waiter",
        "_gate",
        "_continue",
        "_started",
        "_state",
        "_status",
        "_response_headers",
        "_has_length",
        "_has_date",
        "_trailers",
        "_trailer_fields",
        "_disconnected",
        "_disconnect_given",
        "_task",
        "_websocket",
        "_start_time",
        "_client",
    )

    def __init__(self, owner: ASGIDelegate, request_conn: httputil.HTTPConnection) -> None:
        self._owner = owner
        self._conn: Any = request_conn
        self._start_line: Optional[httputil.RequestStartLine] = None
        self._headers: Optional[httputil.HTTPHeaders] = None
        self._body: Optional[list[bytes]] = None
        self._body_size = 0
        self._more_body = True
        self._delivered_last = False
        # receive() waiting for body or the end; the future data_received handed the
        # connection (reading paused); the 100-continue wait of headers_received
        self._waiter: Optional[asyncio.Future[None]] = None
        self._gate: Optional[asyncio.Future[None]] = None
        self._continue: Optional[asyncio.Future[None]] = None
        self._started = False
        self._state = _NOT_STARTED
        self._status = 0
        self._response_headers: Optional[httputil.HTTPHeaders] = None
        self._has_length = False
        self._has_date = False
        self._trailers = False
        self._trailer_fields: Optional[list[tuple[bytes, bytes]]] = None
        self._disconnected = False
        self._disconnect_given = False
        self._task: Optional[asyncio.Task[None]] = None
        self._websocket: Any = None
        self._start_time = 0.0
        # (client address, scheme) as the scope says: with xheaders, the connection's
        # context returns to the proxy's address once the request is read
        self._client: tuple[Optional[str], str] = (None, "http")

    # -- what the HTTP connection calls ----------------------------------------------------

    def headers_received(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> Optional[asyncio.Future[None]]:
        if TYPE_CHECKING:
            assert isinstance(start_line, httputil.RequestStartLine)
        self._start_line = start_line
        self._headers = headers
        conn = self._conn
        try:
            # also reports a close after the request was read, while the response runs
            conn.set_close_callback(self._on_close)
        except AttributeError:
            pass
        if type(headers) is httputil.HTTPHeaders:
            # (its name -> values dict: two lookups that run for every request)
            values = headers._values
            upgrade = "Upgrade" in values
            expect = values.get("Expect")
        else:
            upgrade = "Upgrade" in headers
            expect = headers.get_list("Expect") or None
        if upgrade:
            if "websocket" in headers.get("Upgrade", "").lower() and start_line.method == "GET":
                from squall._asgi._websocket import WebSocketSession

                self._websocket = WebSocketSession(self._owner, conn, start_line, headers)
                return None
        if (
            expect is not None
            and ",".join(expect).strip().lower() == "100-continue"
            and start_line.version == "HTTP/1.1"
        ):
            # The connection sends "100 Continue" once this future is done, unless a
            # response went out first: receive() completes it, so the client sends its
            # body only when the application asks for it. (Made before the application
            # starts: it may run at once, up to its first wait.)
            gate = self._continue = asyncio.get_running_loop().create_future()
            self._start_app()
            return gate
        return None

    def data_received(self, chunk: bytes) -> Optional[asyncio.Future[None]]:
        if self._websocket is not None or self._state == _COMPLETE or self._disconnected:
            return None  # nobody will read it
        body = self._body
        if body is None:
            self._body = [chunk]
        else:
            body.append(chunk)
        self._body_size += len(chunk)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._body_size > READ_AHEAD:
            gate = self._gate
            if gate is None:
                gate = self._gate = asyncio.get_running_loop().create_future()
            if not self._started:
                self._start_app()  # (may take the body at once: the gate is then done)
            return gate
        return None

    def finish(self) -> None:
        if self._websocket is not None:
            self._websocket.begin()
            return
        self._more_body = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if not self._started:
            self._start_app()

    def on_connection_close(self) -> None:
        if self._websocket is not None:
            self._websocket.on_http_close()
            return
        self._on_close()

    def _on_close(self) -> None:
        websocket = self._websocket
        if websocket is not None:
            websocket.on_http_close()
            return
        if self._disconnected:
            return
        self._disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- running the application -----------------------------------------------------------

    def _start_app(self) -> None:
        self._started = True
        owner = self._owner
        self._start_time = time.time()
        scope = owner._http_scope(self._conn, self._start_line, self._headers)  # type: ignore[arg-type]
        client = scope["client"]
        self._client = (client[0] if client else None, scope["scheme"])
        self._task = spawn(self._run(scope))

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._owner.app(scope, self.receive, self.send)
        except BaseException as error:
            self._app_failed(error)
            if not isinstance(error, Exception):
                raise
        else:
            if self._state != _COMPLETE:
                self._returned_early()
        finally:
            # The connection keeps its delegate (this exchange) until it is dropped
            # itself; letting go of it here leaves no cycle, so both go by reference
            # counting instead of waiting for the garbage collector.
            self._task = None
            self._conn = None

    def _app_failed(self, error: BaseException) -> None:
        if isinstance(error, asyncio.CancelledError):
            gen_log.debug("ASGI application cancelled")
        elif self._disconnected and isinstance(error, OSError):
            gen_log.debug("ASGI application stopped after the client left: %r", error)
        else:
            app_log.error(
                "Exception in ASGI application", exc_info=(type(error), error, error.__traceback__)
            )
        self._fail_response()

    def _returned_early(self) -> None:
        if self._disconnected:
            return
        if self._state in (_NOT_STARTED, _STARTED):
            app_log.error("ASGI application returned without sending a response")
        else:
            app_log.error("ASGI application returned without completing its response")
        self._fail_response()

    def _fail_response(self) -> None:
        state = self._state
        if state == _COMPLETE:
            return
        conn = self._conn
        self._state = _COMPLETE
        self._wake()
        if self._disconnected:
            return
        if state in (_NOT_STARTED, _STARTED):
            # nothing went out yet: the client gets a proper error
            headers = httputil.HTTPHeaders()
            headers["Content-Type"] = "text/plain; charset=utf-8"
            headers["Content-Length"] = str(len(_ERROR_BODY))
            headers["Date"] = http_date()
            self._status = 500
            try:
                conn.write_headers(start_line_for(500), headers, _ERROR_BODY)
                conn.finish()
            except Exception:
                gen_log.debug("could not send the 500 response", exc_info=True)
                _close(conn)
            self._log(500)
            return
        # part of the response is out: only a closed connection tells the client
        _close(conn)

    # -- the ASGI callables ----------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """The next ``http.request`` piece, then ``http.disconnect`` (once)."""
        gate = self._continue
        if gate is not None:
            self._continue = None
            if not gate.done():
                gate.set_result(None)
        while True:
            if self._state == _COMPLETE or self._disconnected:
                if self._disconnect_given:
                    raise ASGIProtocolError("receive() called again after http.disconnect")
                self._disconnect_given = True
                return {"type": "http.disconnect"}
            body = self._body
            if body or (not self._more_body and not self._delivered_last):
                if body:
                    data = body[0] if len(body) == 1 else b"".join(body)
                    self._body = None
                    self._body_size = 0
                else:
                    data = b""
                more = self._more_body
                if not more:
                    self._delivered_last = True
                gate = self._gate
                if gate is not None:
                    self._gate = None
                    if not gate.done():
                        gate.set_result(None)
                return {"type": "http.request", "body": data, "more_body": more}
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        """Takes ``http.response.*`` messages and writes them to the connection."""
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ASGIProtocolError(f"an ASGI message must be a dict with a 'type': {message!r}")
        if kind == "http.response.body":
            state = self._state
            if state != _STREAMING and state != _STARTED:
                raise self._out_of_order(kind)
            if self._disconnected:
                raise ClientDisconnected("the client closed the connection")
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = as_bytes(body)
            more = message.get("more_body", False)
            conn = self._conn
            future: Optional[asyncio.Future[None]]
            if state == _STARTED:
                future = self._write_head(body, more)
            elif body:
                future = conn.write(body)
            else:
                future = None
            if not more:
                if self._trailers:
                    self._state = _TRAILERS
                else:
                    self._complete()
            if future is not None:
                if not future.done():
                    await await_write(future)
                elif not future.cancelled() and future.exception() is not None:
                    raise ClientDisconnected("the client closed the connection")
            return
        if kind == "http.response.start":
            if self._state != _NOT_STARTED:
                raise self._out_of_order(kind)
            status = message.get("status")
            if type(status) is not int or not 200 <= status <= 599:
                if (
                    isinstance(status, int)
                    and not isinstance(status, bool)
                    and 200 <= status <= 599
                ):
                    status = int(status)
                else:
                    raise ASGIProtocolError(f"invalid response status {status!r}")
            (
                self._response_headers,
                self._has_length,
                self._has_date,
            ) = response_headers(message.get("headers", ()))
            self._status = status
            self._trailers = bool(message.get("trailers", False))
            self._state = _STARTED
            gate = self._continue
            if gate is not None:
                # answering without reading: no "100 Continue" (the head goes out first)
                self._continue = None
                if not gate.done():
                    gate.set_result(None)
            return
        if kind == "http.response.trailers":
            await self._send_trailers(message)
            return
        if kind == "http.response.pathsend":
            await self._send_path(message)
            return
        raise ASGIProtocolError(f"unexpected ASGI message {kind!r} on an http connection")

    def _out_of_order(self, kind: str) -> ASGIProtocolError:
        state = self._state
        if state == _NOT_STARTED:
            return ASGIProtocolError(f"{kind!r} sent before 'http.response.start'")
        if state == _COMPLETE:
            return ASGIProtocolError(f"{kind!r} sent after the response was complete")
        if state == _TRAILERS:
            return ASGIProtocolError(f"{kind!r} sent where 'http.response.trailers' was due")
        return ASGIProtocolError(f"{kind!r} sent twice")

    def _write_head(self, body: bytes, more: bool) -> asyncio.Future[None]:
        headers = self._response_headers
        assert headers is not None
        status = self._status
        head_only = self._start_line.method == "HEAD"  # type: ignore[union-attr]
        if self._has_length and status not in _NO_BODY_STATUSES and not head_only:
            declared = headers.get("Content-Length", "")
            if declared.isdigit() and (
                len(body) > int(declared) or (not more and len(body) < int(declared))
            ):
                # caught before anything is written: the client gets a 500, not a cut body
                raise ASGIProtocolError(
                    f"a body of {len(body)} bytes {'so far ' if more else ''}does not match "
                    f"Content-Length {declared}"
                )
        if (
            not more
            and not self._has_length
            and not self._trailers
            and status not in _NO_BODY_STATUSES
            and (body or not head_only)
        ):
            # the whole body is known: a length instead of chunks
            headers["Content-Length"] = str(len(body))
        if not self._has_date:
            headers["Date"] = http_date()
        future: asyncio.Future[None] = self._conn.write_headers(
            start_line_for(status), headers, body
        )
        self._state = _STREAMING
        return future

    def _complete(self) -> None:
        self._state = _COMPLETE
        if self._waiter is not None:
            self._wake()
        self._conn.finish()
        self._log(self._status)

    def _log(self, status: int) -> None:
        owner = self._owner
        log_function = owner.log_function
        if log_function is not None:
            try:
                log_function(_AccessRecord(status, _RequestView(self, self._start_time)))
            except Exception:
                app_log.error("Exception in the access log function", exc_info=True)
            return
        logger = owner.access_log
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if logger.isEnabledFor(level):
            start_line = self._start_line
            assert start_line is not None
            logger.log(
                level,
                "%d %s %s (%s) %.2fms",
                status,
                start_line.method,
                start_line.path,
                self._client[0],
                1000.0 * (time.time() - self._start_time),
            )

    async def _send_trailers(self, message: dict[str, Any]) -> None:
        if self._state != _TRAILERS:
            if self._state in (_STARTED, _STREAMING) and self._trailers:
                raise ASGIProtocolError("'http.response.trailers' sent before the body ended")
            raise ASGIProtocolError("'http.response.trailers' sent without trailers=True")
        if self._disconnected:
            raise ClientDisconnected("the client closed the connection")
        fields = response_headers(message.get("headers", ()))[0]
        pending = self._trailer_fields
        if pending is None:
            pending = self._trailer_fields = []
        for name, value in fields.get_all():
            pending.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        if message.get("more_trailers", False):
            return
        self._state = _COMPLETE
        self._wake()
        if not _h1hooks.finish_with_trailers(self._conn, pending):
            # a Content-Length body or an HTTP/1.0 client: there is nowhere to put them
            gen_log.debug("dropping response trailers: the body is not chunked")
            self._conn.finish()
        self._log(self._status)

    async def _send_path(self, message: dict[str, Any]) -> None:
        state = self._state
        if state != _STARTED:
            if state == _STREAMING:
                raise ASGIProtocolError("'http.response.pathsend' must be the whole body")
            raise self._out_of_order("http.response.pathsend")
        if self._disconnected:
            raise ClientDisconnected("the client closed the connection")
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ASGIProtocolError(f"pathsend needs an absolute path, not {path!r}")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            headers = self._response_headers
            assert headers is not None
            if self._has_length:
                declared = headers.get("Content-Length", "")
                if declared.strip() != str(size):
                    raise ASGIProtocolError(
                        f"Content-Length {declared} does not match the size of {path} ({size})"
                    )
            elif self._status not in _NO_BODY_STATUSES:
                headers["Content-Length"] = str(size)
                self._has_length = True
            trailers = self._trailers
            self._trailers = False  # a length-framed body carries none
            conn = self._conn
            if not self._has_date:
                headers["Date"] = http_date()
            future = conn.write_headers(start_line_for(self._status), headers, b"")
            self._state = _STREAMING
            await await_write(future)
            body_allowed = self._start_line.method != "HEAD" and (  # type: ignore[union-attr]
                self._status not in _NO_BODY_STATUSES
            )
            if body_allowed and size:
                stream = _h1hooks.zero_copy_stream(conn, size)
                try:
                    if stream is not None:
                        sent = await _h1hooks.sendfile(stream, fd, 0, size)
                        _h1hooks.count_body(conn, sent)
                    else:
                        sent = await _h1hooks.copy_file(conn, fd, 0, size)
                except ClientDisconnected:
                    raise
                except OSError as error:
                    if self._disconnected or getattr(conn, "stream", None) is None:
                        raise ClientDisconnected("the client closed the connection") from error
                    raise
                if sent != size:
                    _close(conn)
                    self._state = _COMPLETE
                    raise ASGIProtocolError(f"{path} was shorter than its size when opened")
            if trailers:
                self._state = _TRAILERS
                self._trailers = True
            else:
                self._complete()
        finally:
            os.close(fd)


def _close(conn: Any) -> None:
    close = getattr(conn, "close", None)
    if close is not None:
        close()
