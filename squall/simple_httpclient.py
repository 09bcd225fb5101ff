"""The default ``AsyncHTTPClient``: HTTP/1.1 over squall's own streams, stdlib only.

Requests beyond ``max_clients`` wait in a queue. Each request runs on an
``HTTP1Connection`` in client mode over a stream from ``TCPClient``; when a response
completes cleanly on a connection both sides agreed to keep open, the stream goes back to
a keep-alive pool (``squall._connection_pool``) for the next request with the same scheme,
host, port, TLS settings, proxy and local address. HTTP proxies are supported: plain
requests in absolute form for ``http://``, a ``CONNECT`` tunnel for ``https://``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import functools
import ipaddress
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Hashable
from io import BytesIO
from typing import Any

from squall import httputil, version
from squall._connection_pool import ConnectionPool
from squall.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from squall.httpclient import (
    AsyncHTTPClient,
    HTTPClientError,
    HTTPRequest,
    HTTPResponse,
    _current_io_loop,
    _RequestProxy,
)
from squall.iostream import IOStream, StreamClosedError, _is_connection_reset
from squall.log import app_log, gen_log
from squall.netutil import OverrideResolver, Resolver
from squall.tcpclient import TCPClient

__all__ = ["HTTPStreamClosedError", "HTTPTimeoutError", "SimpleAsyncHTTPClient"]

# Sent when neither the request nor the client's defaults name a user agent.
_DEFAULT_USER_AGENT = f"Squall/{version}"

# Methods that may carry a body, and those safe to resend after a kept-alive connection
# turned out to be closed by the server before it answered.
_BODY_METHODS = frozenset(("POST", "PATCH", "PUT"))
_IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
_REDIRECT_CODES = frozenset((301, 302, 303, 307, 308))
# Headers that carry credentials for one origin only; dropped on a cross-origin redirect.
_CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")
# Headers describing the body; dropped when a redirect turns the request into a GET.
_BODY_HEADERS = ("Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding")

_TARGET_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))
_PLAIN_TARGET = re.compile(r"[\x21-\x7e]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")


class HTTPTimeoutError(HTTPClientError):
    """A request ran out of time (in the queue, while connecting, or during the exchange).

    Its code is 599; ``str()`` gives the message, e.g. ``"Timeout while connecting"``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(599, message=message)

    def __str__(self) -> str:
        return self.message or "Timeout"


class HTTPStreamClosedError(HTTPClientError):
    """The connection closed before a complete response arrived.

    Its code is 599. A server that sent a malformed response is one cause: the client
    logs why and closes the connection.
    """

    def __init__(self, message: str) -> None:
        super().__init__(599, message=message)

    def __str__(self) -> str:
        return self.message or "Stream closed"


@functools.lru_cache(maxsize=32)
def _client_ssl_context(
    validate_cert: bool,
    ca_certs: str | None,
    client_cert: str | None,
    client_key: str | None,
) -> ssl.SSLContext:
    # Building a context loads the CA store, which is slow; requests with the same
    # settings share one (and so can share pooled connections, keyed by it).
    if validate_cert:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_certs)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


def _freeze(value: Any) -> Hashable:
    # ssl_options dicts become part of a pool key: identical settings give equal keys.
    if isinstance(value, dict):
        return tuple(sorted((str(key), _freeze(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))
    return value  # type: ignore[no-any-return]


def _basic_credentials(username: str, password: str) -> str:
    # RFC 7617: normalize to NFC and encode as UTF-8 before base64.
    raw = httputil.encode_username_password(username, password)
    return "Basic " + base64.b64encode(raw).decode("ascii")


class SimpleAsyncHTTPClient(AsyncHTTPClient):
    """Non-blocking HTTP client with no dependencies beyond the standard library.

    ``max_clients`` bounds the requests in progress; more wait in ``queue``, and a request
    still queued when its ``connect_timeout`` or ``request_timeout`` (counted from
    ``fetch``) runs out fails with "Timeout in request queue". ``hostname_mapping`` maps
    host names (or ``(host, port)`` pairs) to others, bypassing DNS. ``max_buffer_size``
    bounds the bytes a stream buffers; ``max_header_size`` and ``max_body_size`` (default:
    ``max_buffer_size``, 100MB) bound a response's header block and its (decompressed) body.

    Idle keep-alive connections are pooled; the class attributes ``max_idle_connections``,
    ``max_idle_connections_per_host`` and ``idle_connection_timeout`` bound the pool, and
    ``keep_alive = False`` turns reuse off.
    """

    keep_alive = True
    max_idle_connections = 32
    max_idle_connections_per_host = 8
    idle_connection_timeout: float | None = 30.0

    def initialize(  # type: ignore[override]
        self, max_clients: int = 10, hostname_mapping: dict[Any, Any] | None = None,
        max_buffer_size: int = 104857600, resolver: Resolver | None = None,
        defaults: dict[str, Any] | None = None,
        max_header_size: int | None = None, max_body_size: int | None = None,
    ) -> None:
        super().initialize(defaults=defaults)
        self.max_clients = max_clients
        self.max_buffer_size = max_buffer_size
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        # Requests by state: queued in order, waiting (queued, with their queue timeout),
        # and active (handed to a connection), each under the key fetch_impl gave it.
        self.queue: collections.deque[tuple[object, HTTPRequest, Callable[[HTTPResponse], None]]]
        self.queue = collections.deque()
        self.waiting: dict[
            object, tuple[HTTPRequest, Callable[[HTTPResponse], None], object | None]
        ] = {}
        self.active: dict[object, tuple[HTTPRequest, Callable[[HTTPResponse], None]]] = {}
        # The resolver is made here rather than by TCPClient, so that hostname_mapping can
        # wrap it; only one made here is closed with the client.
        self.own_resolver = resolver is None
        base_resolver = Resolver() if resolver is None else resolver
        self.resolver = (
            base_resolver
            if hostname_mapping is None
            else OverrideResolver(resolver=base_resolver, mapping=hostname_mapping)
        )
        self.tcp_client = TCPClient(resolver=self.resolver)
        self._pool = ConnectionPool(
            max_idle=self.max_idle_connections if self.keep_alive else 0,
            max_idle_per_key=self.max_idle_connections_per_host,
            idle_timeout=self.idle_connection_timeout,
        )

    def close(self) -> None:
        """Close the client: idle pooled connections, and the resolver if it made it."""
        super().close()
        self._pool.close()
        if self.own_resolver:
            self.resolver.close()
        self.tcp_client.close()

    def fetch_impl(self, request: HTTPRequest, callback: Callable[[HTTPResponse], None]) -> None:
        key = _QueueKey(self.io_loop.time())
        # The queue deadline is the earlier of the two timeouts, both counted from now; a
        # timeout of 0 (or None) means none.
        limits = [t for t in (request.connect_timeout, request.request_timeout) if t]
        deadline = (
            self.io_loop.call_at(key.queued_at + min(limits), self._on_timeout, key, _QUEUE_TIMEOUT)
            if limits
            else None
        )
        self.waiting[key] = (request, callback, deadline)
        self.queue.append((key, request, callback))
        self._process_queue()
        if self.queue:
            gen_log.debug(_QUEUED_MESSAGE, len(self.active), len(self.queue))

    def _process_queue(self) -> None:
        while self.queue and len(self.active) < self.max_clients:
            key, request, callback = self.queue.popleft()
            if key not in self.waiting:
                continue
            queued_at = self._remove_timeout(key)
            self.active[key] = (request, callback)
            release_callback = functools.partial(self._release_fetch, key)
            self._handle_request(request, release_callback, callback, queued_at)

    def _connection_class(self) -> type[_HTTPConnection]:
        return _HTTPConnection

    def _handle_request(
        self, request: HTTPRequest, release_callback: Callable[[], None],
        final_callback: Callable[[HTTPResponse], None], queued_at: float | None = None,
    ) -> None:
        # What every connection of this client shares, in _HTTPConnection's argument order.
        shared = (self.max_buffer_size, self.tcp_client, self.max_header_size, self.max_body_size)
        connection_class = self._connection_class()
        connection_class(
            self, request, release_callback, final_callback, *shared, queued_at=queued_at
        )

    def _release_fetch(self, key: object) -> None:
        del self.active[key]
        self._process_queue()

    def _remove_timeout(self, key: object) -> float | None:
        entry = self.waiting.pop(key, None)
        if entry is None:
            return None
        timeout_handle = entry[2]
        if timeout_handle is not None:
            self.io_loop.remove_timeout(timeout_handle)
        return key.queued_at if isinstance(key, _QueueKey) else None

    def _on_timeout(self, key: object, info: str | None = None) -> None:
        """A request waited in the queue past its deadline: fail it."""
        request, callback, _ = self.waiting.pop(key)
        try:
            self.queue.remove((key, request, callback))
        except ValueError:
            pass
        message = f"Timeout {info}" if info else "Timeout"
        response = HTTPResponse(
            request,
            599,
            error=HTTPTimeoutError(message),
            request_time=time.time() - request.start_time,
            start_time=request.start_time,
        )
        self.io_loop.add_callback(callback, response)


_QUEUE_TIMEOUT = "in request queue"
_QUEUED_MESSAGE = "max_clients limit reached, request queued. %d active, %d queued requests."


class _QueueKey:
    """Identifies one queued request and remembers when it was queued."""

    __slots__ = ("queued_at",)

    def __init__(self, queued_at: float) -> None:
        self.queued_at = queued_at


class _HTTPConnection(httputil.HTTPMessageDelegate):
    """One request, from connecting (or taking a pooled connection) to its response.

    It is the ``HTTPMessageDelegate`` that receives the response from ``HTTP1Connection``.
    """

    _SUPPORTED_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

    __slots__ = (
        "io_loop",
        "start_time",
        "start_wall_time",
        "client",
        "request",
        "release_callback",
        "final_callback",
        "max_buffer_size",
        "tcp_client",
        "max_header_size",
        "max_body_size",
        "code",
        "headers",
        "reason",
        "chunks",
        "stream",
        "connection",
        "_timeout",
        "_pool_key",
        "_response_version",
        "_body_bytes",
        "_body_limit",
        "_follow_redirect",
        "_request_finished",
        "_body_started",
        "_outcome",
        "_reused",
        "_retry",
        "_retried",
        "_keep_alive_refused",
        "_parsed",
        "_host",
        "_port",
        "_proxy",
    )

    def __init__(
        self, client: SimpleAsyncHTTPClient | None, request: HTTPRequest,
        release_callback: Callable[[], None], final_callback: Callable[[HTTPResponse], None],
        max_buffer_size: int, tcp_client: TCPClient,
        max_header_size: int | None, max_body_size: int | None,
        queued_at: float | None = None,
    ) -> None:
        self.io_loop = _current_io_loop()
        # Deadlines count from when fetch() was called, queue time included.
        self.start_time = queued_at if queued_at is not None else self.io_loop.time()
        self.start_wall_time = time.time() - (self.io_loop.time() - self.start_time)
        self.client = client
        self.request = request
        self.tcp_client = tcp_client
        # Both callbacks are dropped (set to None) once used: the request is then over.
        self.release_callback: Callable[[], None] | None = release_callback
        self.final_callback: Callable[[HTTPResponse], None] | None = final_callback
        self.max_buffer_size = max_buffer_size
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._body_limit = max_body_size or max_buffer_size
        # The response as it arrives.
        self.code: int | None = None
        self.reason: str | None = None
        self.headers: httputil.HTTPHeaders | None = None
        self.chunks: list[bytes] = []
        self.stream: IOStream | None = None
        self.connection: HTTP1Connection | None = None
        self._timeout: object | None = None
        self._pool_key: Hashable | None = None
        self._response_version = ""
        self._body_bytes = 0
        self._follow_redirect = False
        self._request_finished = False
        self._body_started = False
        # What the finished exchange produced: a response, or the next request of a redirect.
        self._outcome: HTTPResponse | HTTPRequest | None = None
        self._reused = False
        self._retry = False
        self._retried = False
        self._keep_alive_refused = False
        self._proxy: tuple[str, int] | None = None
        task = asyncio.ensure_future(self.run(), loop=self.io_loop.asyncio_loop)
        task.add_done_callback(_log_unexpected_failure)

    # -- the request ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            start_line, headers = self._prepare()
        except Exception as error:
            self._handle_exception(error)
            return
        while True:
            try:
                await self._exchange(start_line, headers)
            except Exception as error:
                if not self._handle_exception(error):
                    raise
            if not self._retry:
                return
            gen_log.debug("kept-alive connection reset before a response; retrying")
            self._retry = False
            self._retried = True

    def _prepare(self) -> tuple[httputil.RequestStartLine, httputil.HTTPHeaders]:
        """Validate the request and build its start line and headers (no I/O)."""
        request = self.request
        parsed = urllib.parse.urlsplit(request.url)
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"Unsupported url scheme: {request.url}")
        self._parsed = parsed
        netloc = parsed.netloc.rpartition("@")[2]
        host, port = httputil.split_host_and_port(netloc)
        if not host:
            raise ValueError(f"No host in URL: {request.url}")
        if port is None:
            port = 443 if parsed.scheme == "https" else 80
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self._host = host
        self._port = port

        method = request.method
        if method not in self._SUPPORTED_METHODS and not request.allow_nonstandard_methods:
            raise ValueError(f"Unknown method {method} (set allow_nonstandard_methods to send it)")
        if not request.allow_nonstandard_methods:
            body_expected = method in _BODY_METHODS
            body_present = request.body is not None or request.body_producer is not None
            if body_expected != body_present:
                raise ValueError(
                    "Body must {}be None for method {} (unless "
                    "allow_nonstandard_methods is true)".format(
                        "not " if body_expected else "", method
                    )
                )
        if request.network_interface:
            try:
                ipaddress.ip_address(request.network_interface)
            except ValueError:
                raise ValueError(
                    f"network_interface {request.network_interface!r} is not an IP address "
                    "(Failed binding local connection end)"
                )
        if request.proxy_host or request.proxy_port:
            if not (request.proxy_host and request.proxy_port):
                raise ValueError("proxy_host and proxy_port must be given together")
            if request.proxy_auth_mode not in (None, "basic"):
                raise ValueError(f"unsupported proxy_auth_mode {request.proxy_auth_mode}")
            self._proxy = (request.proxy_host, int(request.proxy_port))

        headers = _outgoing_headers(request.headers)
        if "Connection" in headers:
            tokens = {t.strip().lower() for t in headers["Connection"].split(",")}
            if "close" in tokens:
                self._keep_alive_refused = True
        if self.client is not None and not self.client.keep_alive:
            headers["Connection"] = "close"
            self._keep_alive_refused = True
        if "Host" not in headers:
            headers["Host"] = netloc
        username: str | None = None
        password = ""
        if parsed.username is not None:
            username = urllib.parse.unquote(parsed.username)
            password = urllib.parse.unquote(parsed.password or "")
        else:
            # A cross-origin redirect cleared the request's credentials; the client's
            # defaults must not put them back for the new origin.
            own = self._plain_request()
            if getattr(own, "_credentials_stripped", False):
                username, password = own.auth_username, own.auth_password or ""
            elif request.auth_username is not None:
                username, password = request.auth_username, request.auth_password or ""
        if username is not None:
            if request.auth_mode not in (None, "basic"):
                raise ValueError(f"unsupported auth_mode {request.auth_mode}")
            headers["Authorization"] = _basic_credentials(username, password)
        if request.user_agent:
            headers["User-Agent"] = request.user_agent
        elif "User-Agent" not in headers:
            headers["User-Agent"] = _DEFAULT_USER_AGENT
        if request.expect_100_continue:
            headers["Expect"] = "100-continue"
        if request.body is not None:
            # With a body_producer the caller sets Content-Length, or the body goes chunked.
            headers["Content-Length"] = str(len(request.body))
        if method == "POST" and "Content-Type" not in headers:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if request.decompress_response:
            headers["Accept-Encoding"] = "gzip"

        target = (parsed.path or "/") + ("?" + parsed.query if parsed.query else "")
        if not _PLAIN_TARGET.fullmatch(target):
            # Spaces, controls and non-ASCII would break (or smuggle into) the request
            # line; encode them the way browsers do, leaving existing escapes alone.
            target = urllib.parse.quote(target, safe=_TARGET_SAFE, encoding="utf-8")
        if self._proxy is not None and parsed.scheme == "http":
            # A plain HTTP proxy takes the absolute URI, without credentials.
            target = f"http://{netloc}{target}"
            if request.proxy_username:
                headers["Proxy-Authorization"] = _basic_credentials(
                    request.proxy_username, request.proxy_password or ""
                )
        self._pool_key = self._connection_key()
        return httputil.RequestStartLine(method, target, "HTTP/1.1"), headers

    def _connection_key(self) -> Hashable:
        request = self.request
        scheme = self._parsed.scheme
        tls: Hashable = None
        if scheme == "https":
            ssl_options = request.ssl_options
            if isinstance(ssl_options, ssl.SSLContext):
                # Contexts hash by identity; the key keeps the context alive.
                tls = ssl_options
            elif ssl_options is not None:
                tls = _freeze(ssl_options)
            else:
                tls = (
                    bool(request.validate_cert),
                    request.ca_certs,
                    request.client_cert,
                    request.client_key,
                )
        proxy: Hashable = None
        if self._proxy is not None:
            proxy = (self._proxy, request.proxy_username, request.proxy_password)
        return (
            scheme,
            self._host.lower(),
            self._port,
            tls,
            request.network_interface,
            request.allow_ipv6 is False,
            proxy,
        )

    def _ssl_options(self) -> dict[str, Any] | ssl.SSLContext | None:
        if self._parsed.scheme != "https":
            return None
        request = self.request
        if request.ssl_options is not None:
            return request.ssl_options
        return _client_ssl_context(
            bool(request.validate_cert), request.ca_certs, request.client_cert, request.client_key
        )

    def _remaining(self, *timeouts: float | None) -> float | None:
        """Seconds left before the earliest of the given timeouts (None: no limit)."""
        limits = [t for t in timeouts if t]
        if not limits:
            return None
        return self.start_time + min(limits) - self.io_loop.time()

    async def _exchange(
        self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders
    ) -> None:
        request = self.request
        stream = None
        if self.client is not None and not self._retried:
            # A retry after a stale pooled connection always opens a fresh one.
            stream = self.client._pool.acquire(self._pool_key)
        self._reused = stream is not None
        if stream is None:
            stream = await self._connect()
        if self.final_callback is None:
            # Timed out (or failed) while connecting.
            stream.close()
            return
        self.stream = stream
        if self._timeout is None and request.request_timeout:
            remaining = self._remaining(request.request_timeout) or 0.0
            self._timeout = self.io_loop.add_timeout(
                self.io_loop.time() + max(remaining, 0.0),
                functools.partial(self._on_timeout, "during request"),
            )
        stream.set_close_callback(self.on_connection_close)
        params = HTTP1ConnectionParameters(
            no_keep_alive=not (self.client is not None and self.client.keep_alive),
            max_header_size=self.max_header_size,
            max_body_size=self.max_body_size,
            decompress=bool(request.decompress_response),
        )
        # The context names the peer in the connection's log messages; a client has none
        # worth naming (the URL is the caller's to log).
        connection = HTTP1Connection(stream, True, params, None)
        self.connection = connection
        connection.write_headers(start_line, headers)
        if request.expect_100_continue:
            keep = await connection.read_response(self)
        else:
            keep = await self._write_body(True)
        self._finish_exchange(bool(keep))

    async def _connect(self) -> IOStream:
        request = self.request
        timeout = self._remaining(request.connect_timeout, request.request_timeout)
        if timeout is not None and timeout <= 0:
            raise HTTPTimeoutError("Timeout while connecting")
        af = socket.AF_UNSPEC if request.allow_ipv6 is not False else socket.AF_INET
        source_ip = request.network_interface or None
        if self._proxy is None:
            host, port = self._host, self._port
            ssl_options = self._ssl_options()
        else:
            host, port = self._proxy
            ssl_options = None
        try:
            stream = await self.tcp_client.connect(
                host, port, af=af, ssl_options=ssl_options, source_ip=source_ip,
                max_buffer_size=self.max_buffer_size, timeout=timeout,
            )
        except TimeoutError as error:
            raise HTTPTimeoutError(str(error) or "Timeout while connecting")
        if self._proxy is not None and self._parsed.scheme == "https":
            stream = await self._open_tunnel(stream)
        return stream

    async def _open_tunnel(self, stream: IOStream) -> IOStream:
        """Ask the proxy for a ``CONNECT`` tunnel, then start TLS with the origin through it."""
        request = self.request
        authority = (
            f"[{self._host}]:{self._port}" if ":" in self._host else (f"{self._host}:{self._port}")
        )
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if request.proxy_username:
            credentials = _basic_credentials(request.proxy_username, request.proxy_password or "")
            lines.append(f"Proxy-Authorization: {credentials}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        async def handshake() -> IOStream:
            await stream.write(payload)
            head = await stream.read_until(b"\r\n\r\n", max_bytes=self.max_header_size or 65536)
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            status = httputil.parse_response_start_line(status_line)
            if not 200 <= status.code < 300:
                raise HTTPClientError(
                    status.code, f"Proxy refused CONNECT: {status.code} {status.reason}"
                )
            return await stream.start_tls(
                False, ssl_options=self._ssl_options(), server_hostname=self._host
            )

        timeout = self._remaining(request.connect_timeout, request.request_timeout)
        try:
            if timeout is None:
                return await handshake()
            return await asyncio.wait_for(handshake(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            stream.close()
            raise HTTPTimeoutError("Timeout while connecting")
        except BaseException:
            stream.close()
            raise

    async def _write_body(self, start_read: bool) -> bool:
        request = self.request
        connection = self.connection
        assert connection is not None
        self._body_started = True
        if request.body is not None:
            connection.write(request.body)
        elif request.body_producer is not None:
            produced = request.body_producer(connection.write)
            if produced is not None:
                await produced
        connection.finish()
        self._request_finished = True
        if not start_read:
            return True
        try:
            return bool(await connection.read_response(self))
        except StreamClosedError as error:
            if not self._handle_exception(error):
                raise
            return False

    # -- the response (HTTPMessageDelegate) ------------------------------------------------

    def headers_received(
        self,
        first_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(first_line, httputil.ResponseStartLine)
        code = first_line.code
        if code < 200 and code != 101:
            # Interim responses carry nothing for the caller; a 100 is the go-ahead to send
            # a body held back by "Expect: 100-continue".
            if code == 100 and self.request.expect_100_continue and not self._body_started:
                return self._send_body_after_continue()
            return None
        self.code = code
        self.headers = headers
        self.reason = first_line.reason
        self._response_version = first_line.version
        if self._should_follow_redirect():
            self._follow_redirect = True
            return None
        header_callback = self.request.header_callback
        if header_callback is not None:
            # The same lines, in the same form, that curl hands its header callback.
            header_callback("{} {} {}\r\n".format(*first_line))
            for name, value in headers.get_all():
                header_callback(f"{name}: {value}\r\n")
            header_callback("\r\n")
        return None

    async def _send_body_after_continue(self) -> None:
        await self._write_body(False)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.final_callback is None:
            return None
        self._body_bytes += len(chunk)
        if self._body_bytes > self._body_limit:
            # The connection enforces the limit itself; this guards the caller even if a
            # decoding layer passes more through.
            self._abort(HTTPStreamClosedError("Body too long"))
            return None
        if self._follow_redirect:
            # The body of a redirect being followed is of no use to anyone.
            return None
        streaming_callback = self.request.streaming_callback
        if streaming_callback is not None:
            return streaming_callback(chunk)
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self.final_callback is None:
            return
        self._remove_timeout()
        assert self.code is not None
        original_request = self._original()
        if self._follow_redirect:
            self._outcome = self._redirect_request(original_request)
        else:
            # A streamed body went to the streaming_callback; the response's is empty.
            streamed = self.request.streaming_callback is not None
            body = b"" if streamed else b"".join(self.chunks)
            self.chunks = []
            elapsed = self.io_loop.time() - self.start_time
            self._outcome = HTTPResponse(
                original_request, self.code, self.headers, BytesIO(body), self.request.url,
                reason=self.reason, request_time=elapsed, start_time=self.start_wall_time,
            )
        if not self._reusable():
            # Deliver now: nothing more will happen on this connection.
            self._close_stream()
            self._complete()

    def on_connection_close(self) -> None:
        if self.final_callback is None:
            return
        stream = self.stream
        error = stream.error if stream is not None else None
        if error is None or isinstance(error, StreamClosedError):
            self._handle_exception(HTTPStreamClosedError("Connection closed"))
        else:
            self._handle_exception(error)

    # -- completion ------------------------------------------------------------------------

    def _reusable(self) -> bool:
        client = self.client
        stream = self.stream
        if client is None or not client.keep_alive or self._keep_alive_refused:
            return False
        if not self._request_finished or stream is None or stream.closed():
            return False
        headers = self.headers
        assert headers is not None
        tokens = {
            token.strip().lower()
            for value in headers.get_list("Connection")
            for token in value.split(",")
        }
        if "close" in tokens or self.code == 101:
            return False
        if self._response_version == "HTTP/1.0":
            if "keep-alive" not in tokens:
                return False
        elif self._response_version != "HTTP/1.1":
            return False
        # The body must have had a length of its own: one read until close is not reusable.
        return (
            self.request.method == "HEAD"
            or self.code in (204, 304)
            or "Content-Length" in headers
            or "chunked" in headers.get("Transfer-Encoding", "").lower()
        )

    def _finish_exchange(self, keep: bool) -> None:
        """Called once the connection is done with the response: pool it or close it."""
        if self._retry:
            return
        if self.final_callback is None or self._outcome is None:
            if self.final_callback is not None:
                # The connection gave up without a response and without saying why.
                self.on_connection_close()
            return
        connection = self.connection
        stream = self.stream
        client = self.client
        if (
            keep
            and client is not None
            and connection is not None
            and stream is not None
            and not stream.closed()
        ):
            stream.set_close_callback(None)
            detached = connection.detach()
            self.stream = None
            client._pool.release(self._pool_key, detached)
        else:
            self._close_stream()
        self._drop_exchange()
        self._complete()

    def _drop_exchange(self) -> None:
        # The connection holds this object as its delegate (possibly through a decoding
        # wrapper): letting go of it once the exchange is over leaves no cycle behind.
        self.connection = None
        self.stream = None

    def _complete(self) -> None:
        outcome = self._outcome
        final_callback = self.final_callback
        if final_callback is None:
            return
        self.final_callback = None
        self._release()
        if isinstance(outcome, HTTPRequest):
            assert self.client is not None
            original = self._original()
            request_time = self.start_time
            try:
                future = self.client.fetch(outcome, raise_error=False)
            except Exception as error:
                final_callback(HTTPResponse(original, 599, error=error))
                return

            def on_redirected(done: asyncio.Future[HTTPResponse]) -> None:
                error = done.exception()
                if error is None:
                    final_callback(done.result())
                    return
                final_callback(
                    HTTPResponse(
                        original,
                        599,
                        error=error,
                        request_time=self.io_loop.time() - request_time,
                        start_time=self.start_wall_time,
                    )
                )

            future.add_done_callback(on_redirected)
        else:
            assert outcome is not None
            final_callback(outcome)

    def _should_follow_redirect(self) -> bool:
        request = self.request
        if not request.follow_redirects:
            return False
        return (
            self.code in _REDIRECT_CODES
            and (request.max_redirects or 0) > 0
            and self.headers is not None
            and self.headers.get("Location") is not None
        )

    def _redirect_request(self, original_request: HTTPRequest) -> HTTPRequest:
        assert self.headers is not None
        request = self.request
        new_request = copy.copy(self._plain_request())
        new_request.headers = httputil.HTTPHeaders(new_request.headers)
        new_request.url = urllib.parse.urljoin(request.url, self.headers["Location"])
        new_request.max_redirects = (request.max_redirects or 0) - 1
        if "Host" in new_request.headers:
            del new_request.headers["Host"]
        # 303 turns anything but HEAD into a GET; 301 and 302 do so for POST only, which is
        # what browsers do despite the older RFCs.
        if (self.code == 303 and request.method != "HEAD") or (
            self.code in (301, 302) and request.method == "POST"
        ):
            new_request.method = "GET"
            new_request.body = None  # type: ignore[assignment]
            new_request.body_producer = None
            for name in _BODY_HEADERS:
                if name in new_request.headers:
                    del new_request.headers[name]
        if _origin(new_request.url) != _origin(request.url):
            for name in _CREDENTIAL_HEADERS:
                if name in new_request.headers:
                    del new_request.headers[name]
            new_request.auth_username = None
            new_request.auth_password = None
            new_request._credentials_stripped = True  # type: ignore[attr-defined]
        new_request.original_request = original_request  # type: ignore[attr-defined]
        return new_request

    def _plain_request(self) -> HTTPRequest:
        request = self.request
        if isinstance(request, _RequestProxy):
            return request.request  # type: ignore[no-any-return]
        return request

    def _original(self) -> HTTPRequest:
        plain = self._plain_request()
        return getattr(plain, "original_request", plain)  # type: ignore[no-any-return]

    # -- failure ---------------------------------------------------------------------------

    def _handle_exception(self, error: BaseException) -> bool:
        """Report ``error`` as the request's outcome; False if it came too late to report."""
        if self.final_callback is None:
            self._close_stream()
            # A closed stream after the response is normal; anything else is worth a log.
            return isinstance(error, StreamClosedError)
        error = _client_error(error)
        if self._may_retry(error):
            self._retry = True
            self._reset_for_retry()
            return True
        self._remove_timeout()
        self._close_stream()
        self._drop_exchange()
        final_callback = self.final_callback
        self.final_callback = None
        self._release()
        final_callback(
            HTTPResponse(
                self._original(),
                599,
                error=error,
                request_time=self.io_loop.time() - self.start_time,
                start_time=self.start_wall_time,
            )
        )
        return True

    def _may_retry(self, error: BaseException) -> bool:
        # A pooled connection the server had already let go of: our bytes met a closed
        # socket, which answers with a reset, so the request never reached the
        # application and an idempotent, replayable one can go again, once. A plain close
        # after the request went out is different: the server may have acted on it (and
        # died doing so), and sending it again could repeat that.
        if isinstance(error, HTTPStreamClosedError):
            error = error.__cause__  # type: ignore[assignment]
        return (
            self._reused
            and not self._retried
            and self.code is None
            and _is_connection_reset(error)
            and self.request.method in _IDEMPOTENT_METHODS
            and self.request.body_producer is None
            and not self.request.expect_100_continue
        )

    def _reset_for_retry(self) -> None:
        self._close_stream()
        self._drop_exchange()
        self._reused = False
        self._body_started = False
        self._request_finished = False
        self._body_bytes = 0
        self.chunks = []

    def _abort(self, error: BaseException) -> None:
        self._handle_exception(error)

    def _on_timeout(self, info: str | None = None) -> None:
        self._timeout = None
        message = f"Timeout {info}" if info else "Timeout"
        if self.final_callback is not None:
            self._reused = False
            self._handle_exception(HTTPTimeoutError(message))

    def _remove_timeout(self) -> None:
        if self._timeout is not None:
            self.io_loop.remove_timeout(self._timeout)
            self._timeout = None

    def _release(self) -> None:
        release_callback = self.release_callback
        if release_callback is not None:
            self.release_callback = None
            release_callback()

    def _close_stream(self) -> None:
        # The close callback stays: while a response is being read it belongs to the
        # connection, whose pending read_response only ends when it hears of the close.
        stream = self.stream
        if stream is not None:
            stream.close()


def _outgoing_headers(headers: httputil.HTTPHeaders | dict[str, Any]) -> httputil.HTTPHeaders:
    """Copy the caller's headers for the wire, refusing what could split the request."""
    if isinstance(headers, httputil.HTTPHeaders):
        pairs: Any = headers.get_all()
    else:
        pairs = headers.items()
    result = httputil.HTTPHeaders()
    for name, value in pairs:
        if isinstance(value, bytes):
            # Bytes go out as they are; latin-1 maps each byte to one character.
            value = value.decode("latin-1")
        elif not isinstance(value, str):
            value = str(value)
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"Invalid header name {name!r}")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError(f"Unsafe header value for {name!r}: CR, LF and NUL are not allowed")
        try:
            result.add(name, value.strip(" \t"))
        except httputil.HTTPInputError:
            raise ValueError(
                f"Invalid header value for {name!r}: only visible latin-1 characters, "
                "spaces and tabs can be sent"
            )
    return result


def _client_error(error: BaseException) -> BaseException:
    """The error a caller sees for a failed exchange.

    A closed stream reports its cause, except that a connection the peer reset (or
    that simply closed) is an ``HTTPStreamClosedError`` (code 599), like any other
    connection lost mid-exchange.
    """
    if isinstance(error, StreamClosedError):
        real = error.real_error
        if real is None:
            return HTTPStreamClosedError("Stream closed")
        error = real
    if _is_connection_reset(error):
        closed = HTTPStreamClosedError(f"Connection reset: {error}")
        closed.__cause__ = error
        return closed
    return error


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default_port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or ""), port


def _log_unexpected_failure(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        app_log.error("Exception in HTTP client", exc_info=error)
