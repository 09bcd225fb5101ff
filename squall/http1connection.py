"""HTTP/1.x connections: the glue between an ``IOStream`` and an ``HTTPMessageDelegate``.

The connection takes over the stream's reads (``IOStream._set_data_handler``): every chunk
received goes into the sans-IO ``HTTP1Parser`` (``squall._http1parser``), and the parser's
events become delegate calls, made synchronously. A delegate method that returns an
awaitable pauses reading until it is done. Responses are framed here (Content-Length or
chunked, keep-alive) and written with as few transport writes as possible.

Only this module knows HTTP/1 framing; the layers above talk to ``HTTPConnection`` and
``HTTPMessageDelegate`` (``squall.httputil``), so another protocol (HTTP/2) can plug in
behind the same interfaces.
"""

from __future__ import annotations

import asyncio
import copy
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Optional, Union

from squall import httputil
from squall._http1parser import (
    DATA,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_HEADER_SIZE,
    END,
    HEAD,
    HTTP1Parser,
    ParseError,
    parse_hex_int,
    parse_int,
)
from squall.concurrent import Future
from squall.log import app_log, gen_log
from squall.util import GzipDecompressor

__all__ = [
    "HTTP1Connection",
    "HTTP1ConnectionParameters",
    "HTTP1ServerConnection",
    "is_transfer_encoding_chunked",
    "parse_int",
    "parse_hex_int",
    "CR_OR_LF_RE",
    "DIGITS",
    "HEXDIGITS",
]

CR_OR_LF_RE = re.compile(b"\r|\n")
DIGITS = re.compile(r"[0-9]+")
HEXDIGITS = re.compile(r"[0-9a-fA-F]+")

# A client gives up on a response after this many informational (1xx) heads.
_MAX_1XX_RESPONSES = 10

# Parser events handled in one go before yielding to the event loop, so that a peer
# sending many tiny chunks cannot monopolize it.
_EVENTS_PER_TURN = 128
# Unparsed input past which reading pauses while the parser catches up.
_BACKLOG_LIMIT = 256 * 1024

# While a server waits for the application to answer one request, it buffers what a
# pipelining client sends next; past this many bytes it stops reading from the socket.
_PIPELINE_BUFFER_LIMIT = 256 * 1024

# How long a draining server waits for the first request of a connection it had just
# accepted (later idle connections are closed at once).
_FIRST_REQUEST_GRACE = 2.0

_REASONS = {431: "Request Header Fields Too Large", 413: "Content Too Large", 400: "Bad Request"}


class HTTP1ConnectionParameters:
    """Settings for ``HTTP1Connection`` and ``HTTP1ServerConnection``.

    ``chunk_size``: largest piece of body passed to ``data_received``;
    ``max_header_size`` / ``max_body_size``: limits in bytes; ``header_timeout`` /
    ``body_timeout``: seconds allowed for a head / a body; ``decompress``: gunzip bodies
    sent with ``Content-Encoding: gzip``.
    """

    __slots__ = (
        "no_keep_alive",
        "chunk_size",
        "max_header_size",
        "header_timeout",
        "max_body_size",
        "body_timeout",
        "decompress",
    )

    def __init__(
        self,
        no_keep_alive: bool = False,
        chunk_size: Optional[int] = None,
        max_header_size: Optional[int] = None,
        header_timeout: Optional[float] = None,
        max_body_size: Optional[int] = None,
        body_timeout: Optional[float] = None,
        decompress: bool = False,
    ) -> None:
        # (compiled, this is an extension type's __init__, whose signature inspect reads
        # from the first line below, written in the form CPython's own builtins use)
        """__init__(self, no_keep_alive=False, chunk_size=None, max_header_size=None, header_timeout=None, max_body_size=None, body_timeout=None, decompress=False)
--

Settings as documented on the class."""
        self.no_keep_alive = no_keep_alive
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        self.max_header_size = max_header_size or DEFAULT_MAX_HEADER_SIZE
        self.header_timeout = header_timeout
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self.decompress = decompress


def is_transfer_encoding_chunked(headers: httputil.HTTPHeaders) -> bool:
    """True if the message is chunked; raises ``HTTPInputError`` for any other coding."""
    if "Transfer-Encoding" not in headers:
        return False
    if "Content-Length" in headers:
        raise httputil.HTTPInputError("Message with both Transfer-Encoding and Content-Length")
    value = headers["Transfer-Encoding"]
    if value.strip(httputil.HTTP_WHITESPACE).lower() == "chunked":
        return True
    raise httputil.HTTPInputError("Unsupported Transfer-Encoding %s" % value)


_NO_TOKENS: frozenset[str] = frozenset()


def _connection_tokens(headers: httputil.HTTPHeaders) -> frozenset[str]:
    # HTTPHeaders stores normalized names, so its dict is asked directly.
    values = headers._values.get("Connection")
    if not values:
        return _NO_TOKENS
    value = values[0] if len(values) == 1 else ",".join(values)
    return frozenset(token.strip(httputil.HTTP_WHITESPACE).lower() for token in value.split(","))


def _closed_future() -> Future[None]:
    # What writing to a closed connection returns: a failed future whose exception
    # counts as retrieved, so that callers that never look at it log nothing.
    from squall.iostream import StreamClosedError

    future: Future[None] = Future()
    future.set_exception(StreamClosedError())
    future.exception()
    return future


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # Write futures nobody else holds: a failure (peer gone) is already handled by the
    # close callback, so it must not be reported again as "never retrieved".
    if not future.cancelled():
        future.exception()


def _done_future() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


def _guarded_run(connection: HTTP1Connection) -> None:
    # Runs inside the transport's data_received: an exception escaping here would reach
    # the event loop, so a bug becomes a logged error and a closed connection instead.
    try:
        connection._run()
    except Exception:
        app_log.error("Uncaught exception in HTTP connection", exc_info=True)
        connection._abort()
        connection.close()


class _GzipMessageDelegate(httputil.HTTPMessageDelegate):
    """Decompresses a gzip-encoded body on its way to the real delegate."""

    __slots__ = ("_delegate", "_chunk_size", "_max_size", "_decompressor", "_input", "_total")

    def __init__(
        self, delegate: httputil.HTTPMessageDelegate, chunk_size: int, max_size: Callable[[], int]
    ) -> None:
        self._delegate = delegate
        self._chunk_size = chunk_size
        self._max_size = max_size
        self._decompressor: Optional[GzipDecompressor] = None
        self._input = b""
        self._total = 0

    def headers_received(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> Optional[Awaitable[None]]:
        encoding = headers.get("Content-Encoding", "")
        if encoding.strip(httputil.HTTP_WHITESPACE).lower() == "gzip":
            self._decompressor = GzipDecompressor()
            # The application sees the decoded body, so the header that describes the
            # encoding moves aside (kept for anyone who needs to know).
            headers.add("X-Consumed-Content-Encoding", headers["Content-Encoding"])
            del headers["Content-Encoding"]
        return self._delegate.headers_received(start_line, headers)

    def _next_piece(self) -> Optional[bytes]:
        decompressor = self._decompressor
        assert decompressor is not None
        while self._input:
            try:
                piece = decompressor.decompress(self._input, self._chunk_size)
            except zlib.error:
                raise httputil.HTTPInputError("invalid gzip data") from None
            self._input = decompressor.unconsumed_tail
            if piece:
                self._total += len(piece)
                if self._total > self._max_size():
                    raise httputil.HTTPInputError("decompressed body too large")
                return piece
        return None

    def data_received(self, chunk: bytes) -> Optional[Awaitable[None]]:
        if self._decompressor is None:
            return self._delegate.data_received(chunk)
        self._input = chunk
        while True:
            piece = self._next_piece()
            if piece is None:
                return None
            result = self._delegate.data_received(piece)
            if result is not None:
                return self._deliver_rest(result)

    async def _deliver_rest(self, pending: Awaitable[None]) -> None:
        await pending
        while True:
            piece = self._next_piece()
            if piece is None:
                return
            result = self._delegate.data_received(piece)
            if result is not None:
                await result

    def finish(self) -> Optional[Awaitable[None]]:  # type: ignore[override]
        if self._decompressor is not None:
            try:
                tail = self._decompressor.flush()
            except (zlib.error, ValueError):
                raise httputil.HTTPInputError("invalid gzip data") from None
            if tail:
                self._total += len(tail)
                if self._total > self._max_size():
                    raise httputil.HTTPInputError("decompressed body too large")
                result = self._delegate.data_received(tail)
                if result is not None:
                    # The connection waits for this before it considers the message done.
                    return self._finish_after(result)
        self._delegate.finish()
        return None

    async def _finish_after(self, pending: Awaitable[None]) -> None:
        await pending
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()


class HTTP1Connection(httputil.HTTPConnection):
    """One HTTP/1.x message exchange over a stream: a request and its response.

    A server makes one per request (``HTTP1ServerConnection`` does it); a client makes
    one per request, calls ``write_headers``/``write``/``finish`` and then
    ``read_response``.
    """

    __slots__ = (
        "is_client",
        "stream",
        "params",
        "context",
        "no_keep_alive",
        "_parser",
        "_server",
        "_delegate",
        "_max_body_size",
        "_body_timeout",
        "_body_timer",
        "_close_callback",
        "_request_start_line",
        "_request_headers",
        "_response_code",
        "_headers_written",
        "_write_finished",
        "_read_finished",
        "_chunking_output",
        "_body_allowed",
        "_expected_content_remaining",
        "_keep_alive",
        "_pending",
        "_pending_size",
        "_end_pending",
        "_waiting",
        "_scheduled",
        "_stopped",
        "_read_future",
        "_informational_count",
        "_expect_continue",
        "_last_write",
        "_delegate_done",
        "_backlog_paused",
    )

    def __init__(
        self,
        stream: Any,
        is_client: bool,
        params: Optional[HTTP1ConnectionParameters] = None,
        context: Optional[object] = None,
    ) -> None:
        """__init__(self, stream, is_client, params=None, context=None)
--

One exchange on ``stream`` (see the class; the first line is for inspect, compiled)."""
        # A connection made without settings gets the defaults (the object has no __len__).
        self.params = params = params or HTTP1ConnectionParameters()
        self.stream = stream
        self.is_client = is_client
        self.context = context
        self.no_keep_alive = params.no_keep_alive
        self._max_body_size = (
            params.max_body_size
            or getattr(stream, "max_buffer_size", None)
            or DEFAULT_MAX_BODY_SIZE
        )
        # A server exchange gets the connection's parser from HTTP1ServerConnection.
        self._parser: Optional[HTTP1Parser] = (
            HTTP1Parser(True, params.max_header_size, self._max_body_size, params.chunk_size)
            if is_client
            else None
        )
        self._server: Optional[HTTP1ServerConnection] = None
        self._delegate: Optional[httputil.HTTPMessageDelegate] = None
        self._body_timeout = params.body_timeout
        self._body_timer: Optional[asyncio.TimerHandle] = None
        self._close_callback: Optional[Callable[[], None]] = None
        self._request_start_line: Optional[httputil.RequestStartLine] = None
        self._request_headers: Optional[httputil.HTTPHeaders] = None
        self._response_code = 0
        self._headers_written = False
        self._write_finished = False
        self._read_finished = False
        self._chunking_output = False
        self._body_allowed = True
        self._expected_content_remaining: Optional[int] = None
        self._keep_alive = False
        # Small body pieces waiting to be passed on together.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._end_pending = False
        # The delegate's awaitable that reading waits for.
        self._waiting: Optional[asyncio.Future[Any]] = None
        self._scheduled = False
        self._stopped = False
        self._read_future: Optional[Future[bool]] = None
        self._informational_count = 0
        self._expect_continue = False
        self._last_write: Optional[Future[None]] = None
        # Set once the delegate's finish() returned: it needs no on_connection_close.
        self._delegate_done = False
        self._backlog_paused = False

    # Public API

    def set_close_callback(self, callback: Optional[Callable[[], None]]) -> None:
        """Runs ``callback`` if the connection closes before this exchange is over."""
        self._close_callback = callback

    def set_body_timeout(self, timeout: float) -> None:
        """Overrides the body timeout for the current message only."""
        self._body_timeout = timeout

    def set_max_body_size(self, max_body_size: int) -> None:
        """Overrides the body size limit for the current message only."""
        self._max_body_size = max_body_size
        if self._parser is not None:
            self._parser.max_body_size = max_body_size

    def detach(self) -> Any:
        """Stops HTTP processing and hands the stream over (e.g. for WebSocket).

        Bytes received but not parsed are put back into the stream's read buffer.
        """
        stream = self.stream
        self._stop()
        future = self._read_future
        if future is not None and not future.done() and not self._read_finished:
            # Detached mid-message (an upgrade): no HTTP response was read to the end.
            future.set_result(False)
        if stream is None:
            return None
        if self._server is not None:
            self._server._detached()
        else:
            self._release_stream(stream)
        self.stream = None
        # the delegate (e.g. a gzip wrapper bound to this connection) would otherwise keep
        # a reference cycle alive until the garbage collector runs
        self._delegate = None
        return stream

    def close(self) -> None:
        """Closes the underlying stream."""
        stream = self.stream
        if stream is not None:
            stream.close()
        self._stop()

    def read_response(self, delegate: httputil.HTTPMessageDelegate) -> Future[bool]:
        """Client side: reads a response into ``delegate``.

        The future resolves to True when a complete response was read and False when
        the connection failed or the response was malformed.
        """
        future: Future[bool] = Future()
        self._read_future = future
        if self.params.decompress:
            delegate = _GzipMessageDelegate(delegate, self.params.chunk_size, self._get_max_body)
        self._delegate = delegate
        stream = self.stream
        if stream is None:
            self._run_delegate_close()
            future.set_result(False)
            return future
        # Even a closed stream may hold a whole response already received: the data
        # handler gets it first, then the (scheduled) close callback ends the read.
        stream.set_close_callback(self._on_stream_close)
        stream._set_data_handler(self._on_client_data)
        if not self._stopped and not self._scheduled and self._waiting is None:
            self._run()
        return future

    def write_headers(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
        chunk: Optional[bytes] = None,
    ) -> Future[None]:
        """Writes the start line and headers (and the first piece of body, if given)."""
        if self.is_client:
            assert isinstance(start_line, httputil.RequestStartLine)
            first_line = "%s %s HTTP/1.1" % (start_line.method, start_line.path)
            self._request_start_line = start_line
            self._request_headers = headers
            parser = self._parser
            assert parser is not None
            parser.expect_response(start_line.method)
            self._chunking_output = (
                start_line.method in ("POST", "PUT", "PATCH")
                and "Content-Length" not in headers
                and "Transfer-Encoding" not in headers
            )
            self._body_allowed = True
            self._keep_alive = not self.no_keep_alive
        else:
            first_line = self._server_response_head(start_line, headers)  # type: ignore[arg-type]
        values = headers._values
        lengths = values.get("Content-Length")
        if lengths is not None and self._body_allowed:
            length = lengths[0] if len(lengths) == 1 else headers["Content-Length"]
            if isinstance(length, str) and length.isascii() and length.isdigit():
                self._expected_content_remaining = int(length)
            else:
                raise httputil.HTTPOutputError(
                    "Only integer Content-Length is allowed: %s" % length
                )
        else:
            self._expected_content_remaining = None
        if self._chunking_output:
            headers["Transfer-Encoding"] = "chunked"
        lines = [first_line]
        for name, items in values.items():
            if len(items) == 1:
                # (An f-string, as below: HTTPHeaders.add keeps a non-str value as given.)
                lines.append(f"{name}: {items[0]}")
            else:
                for value in items:
                    lines.append(f"{name}: {value}")
        # One scan of everything but the separators rejects a CR or LF smuggled into any
        # name, value or the start line (response splitting) without a per-line check.
        unseparated = "".join(lines)
        if "\n" in unseparated or "\r" in unseparated:
            raise httputil.HTTPOutputError("Newline in response head: %r" % unseparated[:200])
        lines.append("\r\n")
        self._headers_written = True
        try:
            data = "\r\n".join(lines).encode("latin1")
        except UnicodeEncodeError as e:
            raise httputil.HTTPOutputError("Non-latin1 header: %s" % e) from None
        if chunk:
            data += self._frame_body(chunk)
        return self._write(data)

    def _server_response_head(
        self, start_line: httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> str:
        code, reason = start_line.code, start_line.reason
        request = self._request_start_line
        self._response_code = code
        if request is not None:
            method, request_version = request.method, request.version
        else:
            method, request_version = "GET", "HTTP/1.0"
        if 100 <= code < 200:
            # A 1xx head (e.g. 101 Switching Protocols) carries its own Connection
            # header and says nothing about how the final response is framed.
            self._body_allowed = False
            self._chunking_output = False
        else:
            body_allowed = self._body_allowed = not (code == 204 or code == 304 or method == "HEAD")
            values = headers._values
            has_length = "Content-Length" in values
            has_coding = "Transfer-Encoding" in values
            chunking = self._chunking_output = (
                body_allowed and request_version == "HTTP/1.1" and not has_length and not has_coding
            )
            request_headers = self._request_headers
            keep_alive = (
                request is not None
                and request_headers is not None
                and self._can_keep_alive(request, request_headers)
            )
            if keep_alive and not (not body_allowed or chunking or has_length or has_coding):
                # No way to tell where the body ends but the connection closing.
                keep_alive = False
            if keep_alive and "Connection" in values and "close" in _connection_tokens(headers):
                # (An application may also ask for the connection to end.)
                keep_alive = False
            self._keep_alive = keep_alive
            if request_version == "HTTP/1.1":
                if not keep_alive:
                    headers["Connection"] = "close"
            elif keep_alive:
                headers["Connection"] = "Keep-Alive"
        if not reason:
            reason = httputil.responses.get(code, "Unknown")
        return "HTTP/1.1 %d %s" % (code, reason)

    def _frame_body(self, chunk: bytes) -> bytes:
        if not self._body_allowed:
            return b""
        if self._expected_content_remaining is not None:
            self._expected_content_remaining -= len(chunk)
            if self._expected_content_remaining < 0:
                self.close()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self._chunking_output and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    def write(self, chunk: bytes) -> Future[None]:
        """Writes a piece of body (raw bytes, if no headers were written)."""
        if not self._headers_written:
            # The old interface where the application writes the whole response itself.
            return self._write(chunk)
        data = self._frame_body(chunk)
        if not data:
            if self.stream is None or self.stream.closed():
                return _closed_future()
            return _done_future()
        return self._write(data)

    def _write(self, data: bytes) -> Future[None]:
        stream = self.stream
        if stream is None or stream.closed():
            return _closed_future()
        future: Future[None] = stream.write(data)
        self._last_write = future
        return future

    def finish(self) -> None:
        """Ends the outgoing message."""
        remaining = self._expected_content_remaining
        if remaining is not None and remaining != 0 and self.stream is not None:
            self.close()
            raise httputil.HTTPOutputError(
                "Tried to write %d bytes less than Content-Length" % remaining
            )
        self._write_finished = True
        stream = self.stream
        if self._chunking_output and stream is not None and not stream.closed():
            self._last_write = stream.write(b"0\r\n\r\n")
            self._last_write.add_done_callback(_consume_exception)
        if self.is_client:
            return
        if not self._read_finished:
            # The response went out before the request body was read (an early error,
            # say): the rest of that body cannot be told apart from a next request.
            self._keep_alive = False
        self._close_callback = None
        if self._read_finished or not self._keep_alive:
            self._exchange_done()

    # Reading

    def _get_max_body(self) -> int:
        return self._max_body_size

    def _on_client_data(self, data: bytes) -> None:
        parser = self._parser
        assert parser is not None
        parser.feed(data)
        if not self._scheduled and self._waiting is None and not self._stopped:
            _guarded_run(self)

    def _run(self) -> None:
        """Turns parser events into delegate calls until input runs out or a wait starts."""
        self._scheduled = False
        parser = self._parser
        assert parser is not None
        budget = _EVENTS_PER_TURN
        while not self._stopped and self._waiting is None:
            if self._end_pending:
                if self._pending_size:
                    self._flush_pending()
                    continue
                self._end_pending = False
                self._on_message_end()
                return
            try:
                event = parser.next_event()
            except ParseError as e:
                self._on_bad_input(e)
                return
            if event is None:
                if self._pending_size:
                    self._flush_pending()
                    continue
                if parser.eof and self.is_client:
                    self._abort()
                elif self._backlog_paused:
                    self._backlog_paused = False
                    if self.stream is not None:
                        self.stream._resume_reading()
                return
            kind = event[0]
            if kind == DATA:
                self._on_data(event[1])  # type: ignore[misc, arg-type]
            elif kind == HEAD:
                self._on_head(event[1], event[2])  # type: ignore[misc, arg-type]
            elif kind == END:
                self._end_pending = True
            budget -= 1
            if budget <= 0:
                # Let other work run; the rest is parsed on the next loop iteration.
                # A peer that sends faster than its tiny pieces can be parsed is not
                # read from until the backlog is worked off.
                if parser.buffered > _BACKLOG_LIMIT and not self._backlog_paused:
                    if self.stream is not None:
                        self._backlog_paused = True
                        self.stream._pause_reading()
                self._scheduled = True
                asyncio.get_running_loop().call_soon(_guarded_run, self)
                return

    def _on_head(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> None:
        parser = self._parser
        assert parser is not None
        if self.is_client:
            assert isinstance(start_line, httputil.ResponseStartLine)
            if 100 <= start_line.code < 200 and start_line.code != 101:
                self._informational_count += 1
                if self._informational_count > _MAX_1XX_RESPONSES:
                    self._on_bad_input(ParseError("Too many 1xx responses"))
                    return
            else:
                self._keep_alive = (
                    self._keep_alive
                    and not parser.body_until_close
                    and self._can_keep_alive(start_line, headers)
                )
        else:
            if TYPE_CHECKING:  # (no isinstance call per request at run time)
                assert isinstance(start_line, httputil.RequestStartLine)
            server = self._server
            assert server is not None
            server._idle_since = None  # (what _head_received does)
            self._request_start_line = start_line
            self._request_headers = headers
            expect = headers._values.get("Expect")
            self._expect_continue = (
                expect is not None
                and start_line.version == "HTTP/1.1"
                and parser.in_body
                and headers["Expect"].lower() == "100-continue"
            )
            try:
                delegate = server._delegate.start_request(server, self)
            except Exception as e:
                self._on_delegate_error(e)
                return
            if self.params.decompress:
                delegate = _GzipMessageDelegate(
                    delegate, self.params.chunk_size, self._get_max_body
                )
            self._delegate = delegate
        delegate = self._delegate
        assert delegate is not None
        try:
            result = delegate.headers_received(start_line, headers)
        except Exception as e:
            self._on_delegate_error(e)
            return
        if result is None:
            if parser.in_body:  # (a bodiless request has nothing to set up)
                self._after_head()
        else:
            self._wait_for(result, self._after_head)

    def _after_head(self) -> None:
        parser = self._parser
        if self._stopped or parser is None or not parser.in_body:
            return
        if self._expect_continue and not self._headers_written:
            stream = self.stream
            if stream is not None and not stream.closed():
                stream.write(b"HTTP/1.1 100 (Continue)\r\n\r\n").add_done_callback(
                    _consume_exception
                )
        if self._body_timeout and self._body_timer is None:
            self._body_timer = asyncio.get_running_loop().call_later(
                self._body_timeout, self._on_body_timeout
            )

    def _on_data(self, data: bytes) -> None:
        if self._pending_size == 0 and len(data) >= self.params.chunk_size:
            self._call(self._delegate.data_received, data)  # type: ignore[union-attr]
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.params.chunk_size:
            self._flush_pending()

    def _flush_pending(self) -> None:
        # Coalesces the small pieces (tiny chunks) into one delivery of at most
        # chunk_size bytes; whatever is left waits for the next flush.
        chunk_size = self.params.chunk_size
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        if len(data) > chunk_size:
            self._pending = [data[chunk_size:]]
            self._pending_size = len(data) - chunk_size
            data = data[:chunk_size]
        else:
            self._pending = []
            self._pending_size = 0
        self._call(self._delegate.data_received, data)  # type: ignore[union-attr]

    def _on_message_end(self) -> None:
        if self._body_timer is not None:
            self._cancel_body_timer()
        self._read_finished = True
        delegate = self._delegate
        assert delegate is not None
        # (_call inlined: this runs once per request.)
        try:
            result: Any = delegate.finish()  # type: ignore[func-returns-value]
        except Exception as e:
            self._on_delegate_error(e)
            return
        if result is None:
            self._after_finish()
        else:
            self._wait_for(result, self._after_finish)

    def _after_finish(self) -> None:
        self._delegate_done = True
        if not self.is_client:
            if self._write_finished and not self._stopped:
                self._exchange_done()
            return
        future = self._read_future
        if not self._stopped:
            # (A delegate that detached in finish() has taken the stream already.)
            keep_alive = self._keep_alive
            stream = self.stream
            self._stop()
            if stream is not None:
                if keep_alive:
                    self._release_stream(stream)
                else:
                    stream.close()
        if future is not None and not future.done():
            future.set_result(True)

    def _call(
        self, method: Callable[..., Any], *args: Any, then: Optional[Callable[[], None]] = None
    ) -> bool:
        """Calls a delegate method; False if it failed or must be waited for."""
        try:
            result = method(*args)
        except Exception as e:
            self._on_delegate_error(e)
            return False
        if result is not None:
            return self._wait_for(result, then)
        if then is not None:
            then()
        return True

    def _wait_for(self, result: Any, then: Optional[Callable[[], None]]) -> bool:
        """A delegate method returned ``result``: wait for it if it is an unfinished
        awaitable, then go on with ``then``; False if it failed or must be waited for."""
        if not self._stopped:
            try:
                waiting = asyncio.ensure_future(result)
            except TypeError:
                waiting = None
            if waiting is not None and not waiting.done():
                self._waiting = waiting
                stream = self.stream
                if stream is not None:
                    stream._pause_reading()
                waiting.add_done_callback(lambda f: self._on_wait_done(f, then))
                return False
            if waiting is not None and waiting.exception() is not None:
                self._on_delegate_error(waiting.exception())  # type: ignore[arg-type]
                return False
        if then is not None:
            then()
        return True

    def _on_wait_done(
        self, future: asyncio.Future[Any], then: Optional[Callable[[], None]]
    ) -> None:
        if self._waiting is not future:
            return
        self._waiting = None
        if self._stopped:
            return
        if future.cancelled():
            self._on_delegate_error(asyncio.CancelledError())
            return
        error = future.exception()
        if error is not None:
            self._on_delegate_error(error)  # type: ignore[arg-type]
            return
        stream = self.stream
        if stream is not None and not self._backlog_paused:
            stream._resume_reading()
        if then is not None:
            then()
        if not self._stopped and self._waiting is None and not self._scheduled:
            self._run()

    # Failures

    def _peer(self) -> str:
        # The server's context prints as the peer address; a client has none ("None").
        return str(self.context)

    def _on_bad_input(self, error: httputil.HTTPInputError) -> None:
        status = getattr(error, "status_code", 400)
        if status == 431:
            # Worded as Tornado words it, for log filters written against Tornado.
            gen_log.info("Unsatisfiable read, closing connection from %s: %s", self._peer(), error)
            future = self._read_future
            if self.is_client and future is not None and not future.done():
                # A client never got a response head: that is a failed read, not a
                # message the delegate knows about.
                from squall.iostream import UnsatisfiableReadError

                self._stop()
                future.set_exception(UnsatisfiableReadError(str(error)))
                self.close()
                return
        else:
            gen_log.info("Malformed HTTP message from %s: %s", self._peer(), error)
        stream = self.stream
        if not self.is_client and not self._headers_written and stream is not None:
            if not stream.closed():
                reason = _REASONS.get(status, "Bad Request")
                self._headers_written = True
                future = stream.write(b"HTTP/1.1 %d %b\r\n\r\n" % (status, reason.encode()))
                self._close_after(future)
            self._abort()
        else:
            self._abort()
            self.close()

    def _on_delegate_error(self, error: BaseException) -> None:
        if isinstance(error, httputil.HTTPInputError):
            self._on_bad_input(error)
            return
        app_log.error("Uncaught exception", exc_info=(type(error), error, error.__traceback__))
        self._abort()
        self.close()

    def _on_body_timeout(self) -> None:
        self._body_timer = None
        gen_log.info("Timeout reading body from %s", self._peer())
        self._abort()
        self.close()

    def _abort(self) -> None:
        """Ends the exchange after a failure: the delegate learns the message is lost."""
        was_active = not self._stopped
        self._stop()
        if was_active:
            self._run_delegate_close()
        future = self._read_future
        if future is not None and not future.done():
            future.set_result(False)

    def _run_delegate_close(self) -> None:
        delegate = self._delegate
        self._delegate = None
        callback = self._close_callback
        self._close_callback = None
        if delegate is not None and not self._delegate_done:
            try:
                delegate.on_connection_close()
            except Exception:
                app_log.error("Uncaught exception in on_connection_close", exc_info=True)
        if callback is not None:
            try:
                callback()
            except Exception:
                app_log.error("Uncaught exception in close callback", exc_info=True)

    def _on_stream_close(self) -> None:
        """The stream closed (client side, or forwarded by the server connection)."""
        if self._stopped:
            return
        parser = self._parser
        if self.is_client and parser is not None:
            # What was received before the close may still hold the rest of the
            # response (or end a body delimited by the close): parse it first; _run
            # gives up once the input is exhausted.
            parser.feed_eof()
            if self._waiting is None and not self._scheduled:
                _guarded_run(self)
            return
        if not self.is_client and self._read_finished and self._write_finished:
            self._stop()
            return
        self._abort()

    def _close_after(self, future: Future[None]) -> None:
        stream = self.stream

        def close(done: asyncio.Future[Any]) -> None:
            _consume_exception(done)
            if stream is not None:
                stream.close()

        future.add_done_callback(close)

    # Lifecycle

    def _cancel_body_timer(self) -> None:
        timer = self._body_timer
        if timer is not None:
            timer.cancel()
            self._body_timer = None

    def _stop(self) -> None:
        self._stopped = True
        if self._body_timer is not None:
            self._cancel_body_timer()
        self._waiting = None

    def _release_stream(self, stream: Any) -> None:
        # Hands the stream back to buffered reads, with any bytes already received.
        try:
            stream._set_data_handler(None)
            stream.set_close_callback(None)
        except Exception:
            return
        parser = self._parser
        if parser is not None:
            leftover = parser.take_unparsed()
            if leftover:
                stream._unread(leftover)

    def _exchange_done(self) -> None:
        """Server side: the response is written; go on with the next request or close."""
        server = self._server
        self._stop()
        if server is None:
            return
        if self._keep_alive and self._read_finished:
            server._next_request()
        else:
            stream = self.stream
            future = self._last_write
            if stream is None:
                return
            if future is None or future.done():
                stream.close()
            else:
                self._close_after(future)

    def _can_keep_alive(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> bool:
        if self.params.no_keep_alive:
            return False
        if start_line.version == "HTTP/1.1":
            return "Connection" not in headers._values or "close" not in _connection_tokens(headers)
        tokens = _connection_tokens(headers)
        values = headers._values
        if (
            "Content-Length" in values
            or "Transfer-Encoding" in values
            or getattr(start_line, "method", None) in ("HEAD", "GET")
        ):
            return "keep-alive" in tokens
        return False


_sweepers: dict[tuple[asyncio.AbstractEventLoop, float], "_IdleSweeper"] = {}


class _IdleSweeper:
    """Closes server connections that waited too long for a request head.

    Connections sit in an insertion-ordered dict, re-inserted each time they start
    waiting, so the oldest wait is always first: one timer, set for the oldest
    deadline, serves them all. The sweeper leaves the registry (releasing the loop)
    once nobody is waiting.
    """

    __slots__ = ("loop", "timeout", "connections", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.connections: dict[HTTP1ServerConnection, None] = {}
        self.timer: Optional[asyncio.TimerHandle] = None

    @classmethod
    def for_timeout(cls, timeout: float) -> "_IdleSweeper":
        loop = asyncio.get_running_loop()
        key = (loop, timeout)
        sweeper = _sweepers.get(key)
        if sweeper is None:
            sweeper = _sweepers[key] = cls(loop, timeout)
        return sweeper

    def add(self, connection: "HTTP1ServerConnection") -> None:
        connections = self.connections
        connections.pop(connection, None)
        connections[connection] = None
        if self.timer is None:
            # Back in the registry if it left it (an equivalent sweeper that took its
            # place meanwhile keeps serving its own connections).
            _sweepers[(self.loop, self.timeout)] = self
            self.timer = self.loop.call_later(self.timeout, self._sweep)

    def discard(self, connection: "HTTP1ServerConnection") -> None:
        connections = self.connections
        connections.pop(connection, None)
        if not connections:
            self._stop()

    def _stop(self) -> None:
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        key = (self.loop, self.timeout)
        if _sweepers.get(key) is self:
            del _sweepers[key]

    def _sweep(self) -> None:
        # self.timer stays set while sweeping so that add() from a close callback does
        # not start a second timer.
        connections = self.connections
        deadline = self.loop.time() - self.timeout
        expired = []
        next_wait: Optional[float] = None
        for connection in connections:
            since = connection._idle_since
            if since is None:
                expired.append(connection)  # busy with a request: no longer waiting
            elif since <= deadline:
                expired.append(connection)
            else:
                next_wait = since - deadline
                break
        for connection in expired:
            connections.pop(connection, None)
        for connection in expired:
            if connection._idle_since is not None:
                try:
                    connection._on_header_timeout()
                except Exception:
                    gen_log.exception("Error closing an idle connection")
        if connections:
            self.timer = self.loop.call_later(next_wait or self.timeout, self._sweep)
        else:
            self.timer = None
            self._stop()


class HTTP1ServerConnection:
    """The server side of one HTTP/1.x connection: a sequence of request exchanges."""

    __slots__ = (
        "stream",
        "params",
        "context",
        "_delegate",
        "_parser",
        "_current",
        "_idle_sweeper",
        "_idle_since",
        "_shutdown_future",
        "_serving",
        "_paused",
    )

    def __init__(
        self,
        stream: Any,
        params: Optional[HTTP1ConnectionParameters] = None,
        context: Optional[object] = None,
    ) -> None:
        """__init__(self, stream, params=None, context=None)
--

Serves ``stream`` (see the class; the first line is for inspect, compiled)."""
        self.stream = stream
        if params is None:
            params = HTTP1ConnectionParameters()
        self.params = params
        self.context = context
        self._delegate: Any = None
        self._parser = HTTP1Parser(
            False,
            params.max_header_size,
            params.max_body_size or getattr(stream, "max_buffer_size", None),
            params.chunk_size,
        )
        self._current: Optional[HTTP1Connection] = None
        self._idle_sweeper: Optional[_IdleSweeper] = None
        # Loop time at which the connection began waiting for a request head; None
        # while a request is being handled.
        self._idle_since: Optional[float] = None
        self._shutdown_future: Optional[Future[None]] = None
        self._serving = False
        self._paused = False

    async def close(self) -> None:
        """Closes the connection and waits until it is shut down."""
        stream = self.stream
        if stream is not None:
            stream.close()
        if self._serving:
            if self._shutdown_future is None:
                self._shutdown_future = Future()
            await self._shutdown_future

    def drain(self) -> None:
        """Ends the connection politely: at once if it is between requests, else after
        the response in progress, which then says ``Connection: close``."""
        if not self._serving or self.stream is None:
            return
        params = self.params
        if not params.no_keep_alive:
            # A private copy: the server's parameters are shared by its other connections.
            params = copy.copy(params)
            params.no_keep_alive = True
            self.params = params
        current = self._current
        if current is None:
            return
        if current._request_start_line is None and not self._parser.buffered:
            if self._parser.messages:
                self.stream.close()  # an idle keep-alive connection
                return
            # Just accepted, nothing received yet: its client is about to send the first
            # request, which would be lost if closed now. Serve it if it comes soon.
            asyncio.get_running_loop().call_later(_FIRST_REQUEST_GRACE, self._close_if_idle)
        current.params = params
        if current._headers_written:
            # the head already promised keep-alive: close once this response is out
            current._keep_alive = False

    def _close_if_idle(self) -> None:
        current = self._current
        stream = self.stream
        if current is None or stream is None or not self._serving:
            return
        if current._request_start_line is None and not self._parser.buffered:
            stream.close()

    def start_serving(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        """Starts reading requests and passing them to ``delegate.start_request``."""
        self._delegate = delegate
        self._serving = True
        stream = self.stream
        stream.set_close_callback(self._on_stream_close)
        self._new_exchange()
        self._start_header_timer()
        stream._set_data_handler(self._on_data)

    def _new_exchange(self) -> HTTP1Connection:
        connection = HTTP1Connection(self.stream, False, self.params, self.context)
        connection._parser = self._parser
        connection._server = self
        self._parser.max_body_size = connection._max_body_size
        self._current = connection
        return connection

    def _on_data(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        current = self._current
        if current is None:
            return
        if current._stopped or parser.done:
            # Waiting for the response to the previous request: only buffer, and stop
            # reading if a pipelining client sends too much ahead.
            if not self._paused and parser.buffered > _PIPELINE_BUFFER_LIMIT:
                self._paused = True
                self.stream._pause_reading()
            return
        if current._scheduled:
            # A backlog is being worked off in slices: stop reading as soon as it grows
            # past the limit, whatever the timing of the slices.
            if parser.buffered > _BACKLOG_LIMIT and not current._backlog_paused:
                current._backlog_paused = True
                self.stream._pause_reading()
        elif current._waiting is None:
            # (_guarded_run inlined: this runs for every request.)
            try:
                current._run()
            except Exception:
                app_log.error("Uncaught exception in HTTP connection", exc_info=True)
                current._abort()
                current.close()

    def _start_header_timer(self) -> None:
        # No timer per connection: a shared sweeper per loop and timeout watches every
        # connection waiting for a head, so an idle keep-alive connection costs one
        # dict entry instead of a TimerHandle.
        timeout = self.params.header_timeout
        if timeout:
            sweeper = self._idle_sweeper
            if sweeper is None:
                sweeper = self._idle_sweeper = _IdleSweeper.for_timeout(timeout)
            self._idle_since = sweeper.loop.time()
            sweeper.add(self)

    def _head_received(self) -> None:
        # The sweeper drops connections whose _idle_since is None when it meets them.
        self._idle_since = None

    def _cancel_header_timer(self) -> None:
        self._idle_since = None
        sweeper = self._idle_sweeper
        if sweeper is not None:
            sweeper.discard(self)

    def _on_header_timeout(self) -> None:
        self._idle_since = None
        stream = self.stream
        if stream is not None:
            stream.close()

    def _next_request(self) -> None:
        self._idle_since = None
        stream = self.stream
        if not self._serving or stream is None or stream.closed():
            # The peer left while the response was being written.
            return
        # (_new_exchange and _start_header_timer inlined: this runs for every request.)
        params = self.params
        connection = HTTP1Connection(stream, False, params, self.context)
        parser = connection._parser = self._parser
        connection._server = self
        parser.max_body_size = connection._max_body_size
        self._current = connection
        parser.start_next_message()
        if self._paused:
            self._paused = False
            stream._resume_reading()
        if params.header_timeout:
            sweeper = self._idle_sweeper
            if sweeper is None:
                self._start_header_timer()
            else:
                self._idle_since = sweeper.loop.time()
                sweeper.add(self)
        if parser.buffered:
            # A pipelined request is already here: parse it on the next loop
            # iteration, so that a long pipeline does not recurse.
            connection._scheduled = True
            asyncio.get_running_loop().call_soon(_guarded_run, connection)

    def _detached(self) -> None:
        self._cancel_header_timer()
        stream = self.stream
        current = self._current
        self._current = None
        if stream is not None:
            try:
                stream._set_data_handler(None)
                stream.set_close_callback(None)
            except Exception:
                pass
            leftover = self._parser.take_unparsed()
            if leftover:
                stream._unread(leftover)
        if current is not None:
            current.stream = None
        self.stream = None
        self._finish_serving()

    def _on_stream_close(self) -> None:
        self._cancel_header_timer()
        current = self._current
        self._current = None
        self._parser.feed_eof()
        if current is not None:
            current._on_stream_close()
        self._finish_serving()

    def _finish_serving(self) -> None:
        if not self._serving:
            return
        self._serving = False
        future = self._shutdown_future
        if future is not None and not future.done():
            future.set_result(None)
        delegate = self._delegate
        if delegate is not None:
            delegate.on_close(self)
