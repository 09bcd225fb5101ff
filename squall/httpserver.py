"""A non-blocking, single-threaded HTTP server.

``HTTPServer`` accepts connections (it is a ``TCPServer``), serves HTTP/1.x on each with
``HTTP1ServerConnection`` and hands every request to its ``request_callback``: usually a
``squall.web.Application``, or any ``HTTPServerConnectionDelegate``, or (the old
interface) a plain function taking an ``HTTPServerRequest``.

Typical use::

    server = HTTPServer(app)
    server.listen(8888)
    await asyncio.Event().wait()

``bind``/``start(num_processes)`` and ``add_sockets`` (with ``netutil.bind_sockets`` and
``process.fork_processes``) give the multi-process setups of ``TCPServer``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Optional, Union

from squall import _lifecycle, httputil
from squall.http1connection import HTTP1ConnectionParameters, HTTP1ServerConnection
from squall.log import app_log
from squall.tcpserver import TCPServer
from squall.util import Configurable

__all__ = ["HTTPServer", "HTTPRequest"]


class HTTPServer(TCPServer, Configurable, httputil.HTTPServerConnectionDelegate):
    """An HTTP/1.1 server (see the module docstring).

    Options (keyword arguments of the constructor): ``no_keep_alive``; ``xheaders``
    (trust ``X-Real-Ip``/``X-Forwarded-For`` and ``X-Scheme``/``X-Forwarded-Proto``
    from a proxy; addresses in ``trusted_downstream`` are skipped in
    ``X-Forwarded-For``); ``ssl_options`` (an ``ssl.SSLContext`` or a dict of
    ``ssl.wrap_socket``-style arguments); ``protocol`` (forces ``request.protocol``);
    ``decompress_request`` (gunzip request bodies); ``chunk_size``;
    ``max_header_size``; ``idle_connection_timeout`` (seconds a connection may wait
    for a request head, default 3600); ``body_timeout``; ``max_body_size``;
    ``max_buffer_size``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Configurable.__new__ has already called initialize() with these arguments.
        pass

    def initialize(
        self,
        request_callback: Union[
            httputil.HTTPServerConnectionDelegate,
            Callable[[httputil.HTTPServerRequest], None],
        ],
        no_keep_alive: bool = False,
        xheaders: bool = False,
        ssl_options: Union[dict[str, Any], ssl.SSLContext, None] = None,
        protocol: Optional[str] = None,
        decompress_request: bool = False,
        chunk_size: Optional[int] = None,
        max_header_size: Optional[int] = None,
        idle_connection_timeout: Optional[float] = None,
        body_timeout: Optional[float] = None,
        max_body_size: Optional[int] = None,
        max_buffer_size: Optional[int] = None,
        trusted_downstream: Optional[list[str]] = None,
    ) -> None:
        TCPServer.__init__(self, ssl_options, max_buffer_size, chunk_size)
        self.request_callback = request_callback
        self.xheaders = xheaders
        self.protocol = protocol
        self.trusted_downstream = trusted_downstream
        # one shared set for every connection instead of a copy each
        self._trusted_downstream_set = frozenset(trusted_downstream or ())
        self._connections: set[HTTP1ServerConnection] = set()
        # Positional, in HTTP1ConnectionParameters' order; an idle connection may wait an
        # hour for its next request unless told otherwise.
        self.conn_params = HTTP1ConnectionParameters(
            no_keep_alive, chunk_size, max_header_size, idle_connection_timeout or 3600,
            max_body_size, body_timeout, decompress_request,
        )
        self._draining = False
        self._drain_deadline = math.inf
        self._drained: Optional[asyncio.Future[None]] = None

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        return HTTPServer

    # HTTPServer is both the configurable base and its own default implementation.
    configurable_default = configurable_base

    async def close_all_connections(self) -> None:
        """Closes every open connection and waits until they are all shut down.

        Call ``stop()`` first so no new connections arrive meanwhile.
        """
        while self._connections:
            connection = next(iter(self._connections))
            await connection.close()
            # A connection normally leaves the set through on_close; make sure.
            self._connections.discard(connection)

    async def drain(self, timeout: float = 30.0, *, reason: str = "shutdown") -> None:
        """Stops this server gracefully, within ``timeout`` seconds.

        It stops accepting (listening sockets shared with other processes stay open
        there), closes idle keep-alive connections at once, lets requests in flight finish
        (their responses say ``Connection: close``), runs the drain callbacks (see
        ``squall.serve.add_drain_callback``; e.g. answering long polls) and closes
        WebSockets with 1001 (``reason="shutdown"``) or 1012 (``"reload"``/``"recycle"``:
        service restart). What is still open when the time is up is closed.
        """
        loop = asyncio.get_running_loop()
        self._drain_deadline = min(self._drain_deadline, loop.time() + max(0.0, timeout))
        self.stop()
        if self._draining:
            return await self._drained_waiter()
        self._draining = True
        # Connections accepted just before stop() reach handle_stream a loop pass or two
        # later (the loop builds their transport first): let them arrive, so they are
        # drained like the others rather than cut off when this process exits.
        for _ in range(3):
            await asyncio.sleep(0)
        pending = _lifecycle.run_drain_callbacks(reason, app_log.error)
        for connection in list(self._connections):
            connection.drain()
        code = 1001 if reason == "shutdown" else 1012
        words = "server shutting down" if code == 1001 else "server restarting"
        told: set[int] = set()
        waiters = [asyncio.ensure_future(p) for p in pending]  # type: ignore[arg-type]
        try:
            while True:
                upgraded = _lifecycle.upgraded_on(self)
                for socket_ in upgraded:
                    # (also the WebSockets whose upgrade was in flight when the drain began)
                    if id(socket_) not in told:
                        told.add(id(socket_))
                        socket_._drain_close(code, words)
                busy = self._connections or upgraded or not all(w.done() for w in waiters)
                if not busy or loop.time() >= self._drain_deadline:
                    break
                await asyncio.sleep(min(0.05, max(0.0, self._drain_deadline - loop.time())))
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
            for leftover in _lifecycle.upgraded_on(self):
                leftover._drain_abort()
            await self.close_all_connections()
            done = self._drained
            if done is not None and not done.done():
                done.set_result(None)

    def _shorten_drain(self, timeout: float) -> None:
        """A running drain closes what is left within ``timeout`` seconds from now."""
        now = asyncio.get_running_loop().time()
        self._drain_deadline = min(self._drain_deadline, now + max(0.0, timeout))

    def _drained_waiter(self) -> Awaitable[None]:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        return self._drained

    def handle_stream(self, stream: Any, address: Any) -> None:
        # Everything protocol-specific starts here: another protocol (HTTP/2 chosen by
        # ALPN, say) would create its own server connection, talking to this server
        # through the same start_request / on_close interface.
        context = _HTTPRequestContext(
            stream, address, self.protocol, self._trusted_downstream_set, self
        )
        connection = HTTP1ServerConnection(stream, self.conn_params, context)
        self._connections.add(connection)
        connection.start_serving(self)
        if self._draining:
            connection.drain()

    # The request_callback whose kind start_request last checked, and the answer.
    _checked_callback: Any = None
    _callback_is_delegate = False

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        callback = self.request_callback
        delegate: httputil.HTTPMessageDelegate
        # The ABC instance check is cached per callback (it is the same every request).
        if callback is self._checked_callback:
            is_delegate = self._callback_is_delegate
        else:
            is_delegate = isinstance(callback, httputil.HTTPServerConnectionDelegate)
            self._checked_callback = callback
            self._callback_is_delegate = is_delegate
        if is_delegate:
            delegate = callback.start_request(  # type: ignore[union-attr]
                server_conn, request_conn
            )
        else:
            delegate = _CallableAdapter(callback, request_conn)  # type: ignore[arg-type]
        if self.xheaders:
            delegate = _ProxyAdapter(delegate, request_conn)
        return delegate

    def on_close(self, server_conn: object) -> None:
        self._connections.discard(server_conn)  # type: ignore[arg-type]


class _CallableAdapter(httputil.HTTPMessageDelegate):
    """Collects a whole request and passes it to a plain ``callback(request)``."""

    __slots__ = ("_callback", "_connection", "_start_line", "_headers", "_chunks")

    def __init__(
        self,
        request_callback: Callable[[httputil.HTTPServerRequest], None],
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self._callback = request_callback
        self._connection = request_conn
        self._start_line: Optional[httputil.RequestStartLine] = None
        self._headers: Optional[httputil.HTTPHeaders] = None
        self._chunks: list[bytes] = []

    def headers_received(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> Optional[Awaitable[None]]:
        assert isinstance(start_line, httputil.RequestStartLine)
        self._start_line = start_line
        self._headers = headers
        return None

    def data_received(self, chunk: bytes) -> Optional[Awaitable[None]]:
        self._chunks.append(chunk)
        return None

    def finish(self) -> None:
        assert self._start_line is not None
        request = httputil.HTTPServerRequest(
            connection=self._connection,
            start_line=self._start_line,
            headers=self._headers,
            body=b"".join(self._chunks),
        )
        self._chunks = []
        request._parse_body()
        self._callback(request)

    def on_connection_close(self) -> None:
        self._chunks = []


class _ProxyAdapter(httputil.HTTPMessageDelegate):
    """Applies the X-headers of a trusted proxy to the connection's context."""

    __slots__ = ("_delegate", "_connection")

    def __init__(
        self, delegate: httputil.HTTPMessageDelegate, request_conn: httputil.HTTPConnection
    ) -> None:
        self._delegate = delegate
        self._connection = request_conn

    def headers_received(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> Optional[Awaitable[None]]:
        context = getattr(self._connection, "context", None)
        if isinstance(context, _HTTPRequestContext):
            context._apply_xheaders(headers)
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Optional[Awaitable[None]]:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        try:
            self._delegate.finish()
        finally:
            self._cleanup()

    def on_connection_close(self) -> None:
        try:
            self._delegate.on_connection_close()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        context = getattr(self._connection, "context", None)
        if isinstance(context, _HTTPRequestContext):
            context._unapply_xheaders()


def _is_valid_ip(ip: str) -> bool:
    if not ip or "\x00" in ip:
        return False
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


class _HTTPRequestContext:
    """Per-connection facts a request needs: peer address, protocol, trusted proxies."""

    __slots__ = (
        "address",
        "address_family",
        "remote_ip",
        "protocol",
        "trusted_downstream",
        "server",
        "_orig_remote_ip",
        "_orig_protocol",
    )

    def __init__(
        self,
        stream: Any,
        address: Any,
        protocol: Optional[str],
        trusted_downstream: Optional[Iterable[str]] = None,
        server: Optional[HTTPServer] = None,
    ) -> None:
        self.address = address
        # the server a connection came through (a drain finds its upgraded connections)
        self.server = server
        sock = getattr(stream, "socket", None)
        family = getattr(sock, "family", None)
        if family is None and isinstance(address, tuple) and len(address) >= 2:
            family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
        self.address_family = family
        if family in (socket.AF_INET, socket.AF_INET6) and address is not None:
            self.remote_ip = address[0]
        else:
            # Unix sockets have no peer address.
            self.remote_ip = "0.0.0.0"
        # An explicit protocol (set by a TLS-terminating proxy setup, say) wins.
        self.protocol = protocol or ("https" if _is_tls_stream(stream) else "http")
        # What _unapply_xheaders goes back to after a proxied request.
        self._orig_remote_ip, self._orig_protocol = self.remote_ip, self.protocol
        self.trusted_downstream = (
            trusted_downstream
            if isinstance(trusted_downstream, frozenset)
            else frozenset(trusted_downstream or ())
        )

    def __str__(self) -> str:
        if self.address_family in (socket.AF_INET, socket.AF_INET6):
            return self.remote_ip
        if isinstance(self.address, bytes):
            return self.address.decode("latin1")
        return str(self.address)

    def _apply_xheaders(self, headers: httputil.HTTPHeaders) -> None:
        """Takes the client address and scheme from a proxy's headers."""
        ip = headers.get("X-Forwarded-For", self.remote_ip)
        # The right-most address not added by one of our own proxies is the client.
        for candidate in reversed(ip.split(",")):
            ip = candidate.strip()
            if ip not in self.trusted_downstream:
                break
        ip = headers.get("X-Real-Ip", ip)
        if _is_valid_ip(ip):
            self.remote_ip = ip
        scheme = headers.get("X-Scheme", headers.get("X-Forwarded-Proto", self.protocol))
        if scheme:
            scheme = scheme.split(",")[-1].strip()
        if scheme in ("http", "https"):
            self.protocol = scheme

    def _unapply_xheaders(self) -> None:
        """Back to the real peer, for the next request on this connection."""
        self.remote_ip = self._orig_remote_ip
        self.protocol = self._orig_protocol


def _is_tls_stream(stream: Any) -> bool:
    try:
        from squall.iostream import SSLIOStream
    except ImportError:
        return False
    return isinstance(stream, SSLIOStream)


HTTPRequest = httputil.HTTPServerRequest
