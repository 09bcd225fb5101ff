"""Running WSGI applications (Flask, Django, ...) on squall's HTTP server.

``WSGIContainer`` turns each ``HTTPServerRequest`` into a WSGI call. WSGI is synchronous, so
the application runs on an executor: with a thread pool, slow WSGI code does not block the
event loop; without one (the default) it runs on the loop thread, one request at a time.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import logging
import sys
from collections.abc import Callable, Iterable
from io import BytesIO
from types import TracebackType
from typing import Any

from squall import escape, httputil
from squall.concurrent import dummy_executor
from squall.ioloop import IOLoop
from squall.log import access_log, app_log

# Tornado exposes the request class here under its old name.
HTTPRequest = httputil.HTTPServerRequest

# PEP 3333: a WSGI 1.0 environment; the server may run in several processes, many times.
_WSGI_FIXED_KEYS: dict[str, Any] = {
    "wsgi.version": (1, 0),
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}
_ACCESS_LEVELS = (logging.INFO, logging.WARNING, logging.ERROR)

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
WSGIAppType = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def to_wsgi_str(s: bytes) -> str:
    """Bytes as WSGI's 'native strings': latin-1 decoded, so every byte survives."""
    assert isinstance(s, bytes)
    return s.decode("latin1")


class _ResponseStart:
    """What the application passed to ``start_response`` (and wrote through its ``write``)."""

    __slots__ = ("status", "headers", "written")

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.status is not None:
            # PEP 3333: an error after the head was chosen re-raises the original error
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = status
        self.headers = headers
        return self.written.append


class WSGIContainer:
    """Serves a WSGI application from an ``HTTPServer`` or a ``RuleRouter`` rule.

    ``executor`` (a ``concurrent.futures.Executor``) runs the application and the iteration of
    its response; pass a ``ThreadPoolExecutor`` so concurrent requests do not wait on each
    other. Responses are buffered and sent whole, as Tornado's container does.
    """

    def __init__(
        self, wsgi_application: WSGIAppType, executor: concurrent.futures.Executor | None = None
    ) -> None:
        self.wsgi_application = wsgi_application
        # Without an executor the application runs inline on the loop thread.
        self.executor = executor if executor is not None else dummy_executor

    def __call__(self, request: httputil.HTTPServerRequest) -> None:
        IOLoop.current().spawn_callback(self.handle_request, request)

    async def handle_request(self, request: httputil.HTTPServerRequest) -> None:
        try:
            status_code, reason, headers, body = await self._run_application(request)
        except Exception:
            # the client gets a plain 500; the traceback goes to the log only
            app_log.error("Uncaught exception in WSGI application %r", request, exc_info=True)
            status_code, headers = 500, httputil.HTTPHeaders()
            body = b"<html><title>500: Internal Server Error</title></html>"
            headers["Content-Type"] = "text/html; charset=UTF-8"
            headers["Content-Length"] = str(len(body))
            reason = "Internal Server Error"
        start_line = httputil.ResponseStartLine("HTTP/1.1", status_code, reason)
        assert request.connection is not None
        request.connection.write_headers(start_line, headers, chunk=body)
        request.connection.finish()
        self._log(status_code, request)

    async def _run_application(
        self, request: httputil.HTTPServerRequest
    ) -> tuple[int, str, httputil.HTTPHeaders, bytes]:
        loop = IOLoop.current()
        start = _ResponseStart()
        app_response = await loop.run_in_executor(
            self.executor, self.wsgi_application, self.environ(request), start
        )
        try:
            # each step of the iteration runs on the executor too: a streaming application
            # may block between pieces
            iterator = iter(app_response)
            while True:
                piece = await loop.run_in_executor(self.executor, next, iterator, None)
                if piece is None:
                    break
                start.written.append(piece)
        finally:
            close = getattr(app_response, "close", None)
            if close is not None:
                close()
        if start.status is None:
            raise RuntimeError("the WSGI application did not call start_response")
        body = b"".join(start.written)

        code_text, _, reason = start.status.partition(" ")
        status_code = int(code_text)
        headers = httputil.HTTPHeaders()
        for name, value in start.headers:
            headers.add(name, value)
        if "Content-Length" not in headers and status_code not in (204, 304):
            headers["Content-Length"] = str(len(body))
        if "Content-Type" not in headers:
            headers["Content-Type"] = "text/html; charset=UTF-8"
        if "Server" not in headers:
            headers["Server"] = "Squall"
        return status_code, reason, headers, body

    def environ(self, request: httputil.HTTPServerRequest) -> dict[str, Any]:
        """The WSGI environment for ``request`` (PEP 3333)."""
        host, port = _host_and_port(request)
        # PEP 3333's CGI variables (CONTENT_* and HTTP_* come from the headers below)...
        environ: dict[str, Any] = dict(
            REQUEST_METHOD=request.method,
            SCRIPT_NAME="",
            PATH_INFO=to_wsgi_str(escape.url_unescape(request.path, encoding=None, plus=False)),
            QUERY_STRING=request.query,
            SERVER_NAME=host,
            SERVER_PORT=str(port),
            SERVER_PROTOCOL=request.version,
            REMOTE_ADDR=request.remote_ip,
        )
        # ...then its wsgi.* keys: the fixed ones, and those that depend on the request.
        environ.update(_WSGI_FIXED_KEYS)
        environ["wsgi.url_scheme"] = request.protocol
        environ["wsgi.input"] = BytesIO(escape.utf8(request.body))
        environ["wsgi.errors"] = sys.stderr
        environ["wsgi.multithread"] = self.executor is not dummy_executor
        for name, value in request.headers.get_all():
            key = name.replace("-", "_").upper()
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            # repeated headers are joined, as CGI does
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _log(self, status_code: int, request: httputil.HTTPServerRequest) -> None:
        # Below 400 is routine, 4xx the client's doing, 5xx the application's.
        level = bisect.bisect((400, 500), status_code)
        summary = f"{request.method} {request.uri} ({request.remote_ip})"
        access_log.log(
            _ACCESS_LEVELS[level], "%d %s %.2fms", status_code, summary,
            1000.0 * request.request_time(),
        )


def _host_and_port(request: httputil.HTTPServerRequest) -> tuple[str, int]:
    default_port = 443 if request.protocol == "https" else 80
    host, port = httputil.split_host_and_port(request.host)
    return host, default_port if port is None else port
