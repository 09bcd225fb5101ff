"""Serving ASGI 3 applications on squall's HTTP server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional, Union
from urllib.parse import quote

from squall import httputil
from squall._asgi._http import HTTPExchange
from squall._asgi._lifespan import Lifespan
from squall._asgi._scope import (
    ASGI_SPEC_VERSION,
    connection_addresses,
    connection_scope_headers,
    decode_path,
    http_version,
    split_target,
    tls_extension,
)
from squall.httpserver import HTTPServer

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class ASGIDelegate(httputil.HTTPServerConnectionDelegate):
    """An ``HTTPServerConnectionDelegate`` that hands every request to an ASGI 3 app.

    ``HTTPServer(ASGIDelegate(app))`` serves ``app``; ``ASGIServer`` adds the lifespan.
    ``root_path``: the prefix a proxy strips before the request reaches us (scope
    ``root_path``, and prepended to ``path``). ``state``: the lifespan state, of which each
    request gets a shallow copy (None: no ``state`` in scopes). WebSocket options: the
    largest message after inflating, permessage-deflate (True: negotiated with
    default settings, a dict of ``WebSocketHandler.get_compression_options`` keys, False:
    refused) and keep-alive pings (None: none). ``server_cert``: the PEM text the
    ``tls`` extension reports. ``log_function(record)`` replaces the access line of
    ``squall.access`` (``record.get_status()``, ``record.request``).
    """

    def __init__(
        self,
        app: Any,
        *,
        root_path: str = "",
        state: Optional[dict[str, Any]] = None,
        websocket_max_message_size: Optional[int] = DEFAULT_MAX_MESSAGE_SIZE,
        websocket_compression: Union[bool, dict[str, Any], None] = True,
        websocket_ping_interval: Optional[float] = None,
        websocket_ping_timeout: Optional[float] = None,
        server_cert: Optional[str] = None,
        log_function: Optional[Callable[[Any], None]] = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"an ASGI application must be callable, not {app!r}")
        self.app = app
        root_path = root_path.rstrip("/")
        if root_path and not root_path.startswith("/"):
            raise ValueError(f"root_path must start with '/': {root_path!r}")
        self.root_path = root_path
        self._raw_root = quote(root_path).encode("ascii")
        self.state = state
        self.websocket_max_message_size = websocket_max_message_size
        self.websocket_compression: Optional[dict[str, Any]] = (
            websocket_compression
            if isinstance(websocket_compression, dict)
            else ({} if websocket_compression else None)
        )
        self.websocket_ping_interval = websocket_ping_interval
        self.websocket_ping_timeout = websocket_ping_timeout
        self.server_cert = server_cert
        self.log_function = log_function
        self.access_log = logging.getLogger("squall.access")

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        return HTTPExchange(self, request_conn)

    # -- scopes ----------------------------------------------------------------------------

    def _common_scope(
        self,
        kind: str,
        scheme: str,
        request_conn: Any,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
    ) -> dict[str, Any]:
        target = start_line.path
        if target[:1] == "/" and "?" not in target:
            raw_path, query = target, ""
        else:
            raw_path, query = split_target(target)
        if "%" in raw_path or not raw_path.isascii():
            path = decode_path(raw_path)
        else:
            path = raw_path
        root = self.root_path
        client, server = connection_addresses(request_conn)
        version = start_line.version
        scope: dict[str, Any] = {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": ASGI_SPEC_VERSION},
            "http_version": "1.1" if version == "HTTP/1.1" else http_version(version),
            "scheme": scheme,
            "path": root + path if root else path,
            "raw_path": self._raw_root + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1") if query else b"",
            "root_path": root,
            "headers": connection_scope_headers(getattr(request_conn, "stream", None), headers),
            "client": client,
            "server": server,
        }
        state = self.state
        if state is not None:
            scope["state"] = state.copy()
        return scope

    def _http_scope(
        self,
        request_conn: Any,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
    ) -> dict[str, Any]:
        context = getattr(request_conn, "context", None)
        scheme = getattr(context, "protocol", "http")
        scope = self._common_scope("http", scheme, request_conn, start_line, headers)
        scope["method"] = start_line.method
        extensions: dict[str, Any] = {"http.response.trailers": {}, "http.response.pathsend": {}}
        if scheme == "https":
            tls = self._tls(request_conn)
            if tls is not None:
                extensions["tls"] = tls
        scope["extensions"] = extensions
        return scope

    def _websocket_scope(
        self,
        request_conn: Any,
        start_line: httputil.RequestStartLine,
        headers: httputil.HTTPHeaders,
    ) -> dict[str, Any]:
        context = getattr(request_conn, "context", None)
        secure = getattr(context, "protocol", "http") == "https"
        scope = self._common_scope(
            "websocket", "wss" if secure else "ws", request_conn, start_line, headers
        )
        offered = ",".join(headers.get_list("Sec-WebSocket-Protocol"))
        scope["subprotocols"] = [item.strip() for item in offered.split(",") if item.strip()]
        extensions: dict[str, Any] = {"websocket.http.response": {}}
        if secure:
            tls = self._tls(request_conn)
            if tls is not None:
                extensions["tls"] = tls
        scope["extensions"] = extensions
        return scope

    def _tls(self, request_conn: Any) -> Optional[dict[str, Any]]:
        stream = getattr(request_conn, "stream", None)
        try:
            cached: Optional[dict[str, Any]] = stream._squall_asgi_tls  # type: ignore[union-attr]
        except AttributeError:
            cached = tls_extension(request_conn, self.server_cert)
            try:
                stream._squall_asgi_tls = cached  # type: ignore[union-attr]
            except AttributeError:
                pass
        # a copy per request: applications may change what they were given
        return dict(cached) if cached is not None else None


class ASGIServer(HTTPServer):
    """An ``HTTPServer`` for an ASGI 3 application, with its lifespan.

    ``ASGIServer(app, root_path="", lifespan="auto", **options)``: ``options`` are
    ``HTTPServer``'s (``ssl_options``, ``xheaders``, ``max_body_size``, ...) and
    ``ASGIDelegate``'s. ``await server.startup()`` before serving, ``await
    server.drain()`` then ``await server.shutdown()`` at the end (``serve`` does all).
    """

    _delegate_options = (
        "websocket_max_message_size",
        "websocket_compression",
        "websocket_ping_interval",
        "websocket_ping_timeout",
        "server_cert",
        "log_function",
    )

    def initialize(  # type: ignore[override]
        self,
        app: Any,
        root_path: str = "",
        lifespan: str = "auto",
        **kwargs: Any,
    ) -> None:
        delegate_options = {k: kwargs.pop(k) for k in self._delegate_options if k in kwargs}
        self.lifespan = Lifespan(app, lifespan)
        state = self.lifespan.state if lifespan != "off" else None
        self.asgi = ASGIDelegate(app, root_path=root_path, state=state, **delegate_options)
        super().initialize(self.asgi, **kwargs)
        if not self.xheaders:
            # HTTPServer.start_request would only find out again, per request, that the
            # callback is a delegate: go to it directly
            self.start_request = self.asgi.start_request  # type: ignore[method-assign]

    async def startup(self) -> None:
        """Runs the lifespan startup; raises ``LifespanFailure`` when it fails."""
        await self.lifespan.startup()

    async def shutdown(self, timeout: Optional[float] = 30.0) -> None:
        """Runs the lifespan shutdown (call it after ``drain``)."""
        await self.lifespan.shutdown(timeout)


async def serve(
    app: Any,
    port: int = 8000,
    address: str = "127.0.0.1",
    *,
    root_path: str = "",
    lifespan: str = "auto",
    graceful_timeout: float = 30.0,
    ready: Optional[Callable[[ASGIServer], None]] = None,
    **options: Any,
) -> None:
    """Serves ``app`` until cancelled: lifespan startup, listen, then (on cancellation)
    drain within ``graceful_timeout`` and the lifespan shutdown."""
    server = ASGIServer(app, root_path=root_path, lifespan=lifespan, **options)
    await server.startup()
    try:
        server.listen(port, address)
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(_stop(server, graceful_timeout))


async def _stop(server: ASGIServer, timeout: float) -> None:
    await server.drain(timeout)
    await server.shutdown(timeout)
