"""Asynchronous and blocking HTTP clients.

``AsyncHTTPClient`` is the asynchronous interface; the class it builds is chosen with
``AsyncHTTPClient.configure`` (``squall.simple_httpclient.SimpleAsyncHTTPClient`` unless told
otherwise). ``HTTPClient`` wraps it for blocking code by running a private event loop.
``HTTPRequest`` describes one request and ``HTTPResponse`` its outcome.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import operator
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from io import BytesIO
from typing import Any, cast

from squall import httputil
from squall.concurrent import (
    Future,
    future_set_exception_unless_cancelled,
    future_set_result_unless_cancelled,
)
from squall.escape import native_str, utf8
from squall.ioloop import IOLoop
from squall.util import Configurable

__all__ = [
    "AsyncHTTPClient",
    "HTTPClient",
    "HTTPClientError",
    "HTTPError",
    "HTTPRequest",
    "HTTPResponse",
    "main",
]


def _current_io_loop() -> IOLoop:
    io_loop = IOLoop.current()
    # current() only returns None when asked not to create a loop.
    assert io_loop is not None
    return io_loop


async def _next_iteration() -> None:
    await asyncio.sleep(0)


class HTTPClient:
    """A blocking HTTP client, for code that does not run on an event loop.

    Each instance owns a private ``IOLoop`` and an ``AsyncHTTPClient`` bound to it; ``fetch``
    runs that loop until the response arrives. Must not be used from inside a running loop.
    """

    def __init__(
        self, async_client_class: type[AsyncHTTPClient] | None = None, **kwargs: Any
    ) -> None:
        # Marked closed until the end, so that __del__ after a failed start does nothing.
        self._closed = True
        self._io_loop = IOLoop(make_current=False)
        build = functools.partial(async_client_class or AsyncHTTPClient, **kwargs)

        async def build_on_our_loop() -> AsyncHTTPClient:
            # The async client binds to the loop current while it is built.
            return build()

        self._async_client = self._io_loop.run_sync(build_on_our_loop)
        self._closed = False

    def fetch(self, request: HTTPRequest | str, **kwargs: Any) -> HTTPResponse:
        """Run a request to completion and return its response.

        Raises ``HTTPClientError`` for a non-2xx status (and whatever error the transport
        met otherwise).
        """
        if self._closed:
            raise RuntimeError("fetch() called on a closed HTTPClient")
        start = functools.partial(self._async_client.fetch, request, **kwargs)
        return cast(HTTPResponse, self._io_loop.run_sync(start))

    def close(self) -> None:
        """Close the underlying client and its loop."""
        if self._closed:
            return
        self._closed = True
        self._async_client.close()
        try:
            # Closing pooled connections finishes on the next loop iteration; give it
            # that before the loop goes away, or their transports leak.
            self._io_loop.run_sync(_next_iteration)
        except Exception:
            # Too late to run the loop (interpreter shutdown, say); closing must not fail.
            pass
        self._io_loop.close()

    def __del__(self) -> None:
        self.close()


class AsyncHTTPClient(Configurable):
    """Non-blocking HTTP client interface.

    Calling ``AsyncHTTPClient()`` returns the one shared instance for the current
    ``IOLoop`` (built on first use) unless ``force_instance=True`` is passed. Keyword
    arguments go to the configured implementation's ``initialize``; ``defaults`` supplies
    values for any ``HTTPRequest`` attribute left unset.
    """

    _instance_cache: weakref.WeakKeyDictionary[IOLoop, AsyncHTTPClient] | None
    io_loop: IOLoop
    defaults: dict[str, Any]
    _closed: bool

    def __new__(cls, force_instance: bool = False, **kwargs: Any) -> AsyncHTTPClient:
        io_loop = _current_io_loop()
        cache = None if force_instance else cls._async_clients()
        shared = None if cache is None else cache.get(io_loop)
        if shared is not None:
            return shared
        client = cast(AsyncHTTPClient, super().__new__(cls, **kwargs))
        # Recorded so that close() removes exactly the entry this instance occupies.
        client._instance_cache = cache
        if cache is not None:
            cache[client.io_loop] = client
        return client

    @classmethod
    def _async_clients(cls) -> weakref.WeakKeyDictionary[IOLoop, AsyncHTTPClient]:
        # One cache per concrete class: a configured subclass must not hand out instances
        # of a different subclass that happened to be cached first.
        attribute = "_async_client_dict_" + cls.__name__
        cache = cls.__dict__.get(attribute)
        if cache is None:
            cache = weakref.WeakKeyDictionary()
            setattr(cls, attribute, cache)
        return cast("weakref.WeakKeyDictionary[IOLoop, AsyncHTTPClient]", cache)

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        return AsyncHTTPClient

    @classmethod
    def configurable_default(cls) -> type[Configurable]:
        # Imported here: simple_httpclient itself imports this module.
        from squall import simple_httpclient

        return simple_httpclient.SimpleAsyncHTTPClient

    def initialize(self, defaults: dict[str, Any] | None = None) -> None:
        self.io_loop = _current_io_loop()
        self.defaults = {**HTTPRequest._DEFAULTS, **(defaults or {})}
        self._closed = False
        if not hasattr(self, "_instance_cache"):
            # Built directly through a subclass's initialize, outside __new__.
            self._instance_cache = None

    def fetch(
        self, request: HTTPRequest | str, raise_error: bool = True, **kwargs: Any
    ) -> Future[HTTPResponse]:
        """Start a request; the returned future resolves to its ``HTTPResponse``.

        ``request`` is an ``HTTPRequest`` or a URL (then ``kwargs`` build the request).
        A non-2xx status raises ``HTTPClientError`` unless ``raise_error`` is false; errors
        that produced no HTTP status (connection refused, timeouts, ...) always raise.
        """
        if self._closed:
            raise RuntimeError("fetch() called on closed AsyncHTTPClient")
        if isinstance(request, HTTPRequest):
            if kwargs:
                raise ValueError("kwargs can't be used if request is an HTTPRequest object")
        else:
            request = HTTPRequest(url=request, **kwargs)
        # The caller's header object may be shared between requests: work on a copy.
        request.headers = httputil.HTTPHeaders(request.headers)
        future: Future[HTTPResponse] = Future()
        with_defaults = cast(HTTPRequest, _RequestProxy(request, self.defaults))
        self.fetch_impl(with_defaults, functools.partial(_settle, future, raise_error))
        return future

    def fetch_impl(self, request: HTTPRequest, callback: Callable[[HTTPResponse], None]) -> None:
        """Carry out ``request`` and call ``callback`` with the response exactly once."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement fetch_impl; configure an implementation "
            "such as squall.simple_httpclient.SimpleAsyncHTTPClient"
        )

    def close(self) -> None:
        """Release the client's resources; the shared instance is rebuilt on next use."""
        if self._closed:
            return
        self._closed = True
        cache = self._instance_cache
        # A different instance under our key means the cache was corrupted (two clients
        # both believing they are the shared one); silently dropping it would hide that.
        if cache is not None and cache.pop(self.io_loop, self) is not self:
            raise RuntimeError("inconsistent AsyncHTTPClient cache")


def _settle(future: Future[HTTPResponse], raise_error: bool, response: HTTPResponse) -> None:
    """Resolves a fetch's future. An error status is a result only when the caller asked
    not to raise; an error without a status (no response at all) always raises."""
    error = response.error
    if error is None or (not raise_error and response._error_is_response_code):
        future_set_result_unless_cancelled(future, response)
    else:
        future_set_exception_unless_cancelled(future, error)


class HTTPRequest:
    """One HTTP request and every option that governs how it is made.

    Options left as ``None`` fall back to the client's ``defaults`` (see
    ``AsyncHTTPClient``). ``use_gzip`` is the old name of ``decompress_response``.
    """

    # The options, as __init__ stores them (see _KEPT_AS_PASSED), grouped by concern.
    url: str
    method: str
    body_producer: Callable[[Callable[[bytes], Any]], Any] | None
    expect_100_continue: bool
    auth_username: str | None
    auth_password: str | None
    auth_mode: str | None
    connect_timeout: float | None
    request_timeout: float | None
    follow_redirects: bool | None
    max_redirects: int | None
    user_agent: str | None
    decompress_response: bool | None
    allow_nonstandard_methods: bool | None
    network_interface: str | None
    allow_ipv6: bool | None
    streaming_callback: Callable[[bytes], Awaitable[None] | None] | None
    header_callback: Callable[[str], None] | None
    prepare_curl_callback: Callable[[Any], None] | None
    proxy_host: str | None
    proxy_port: int | None
    proxy_username: str | None
    proxy_password: str | None
    proxy_auth_mode: str | None
    validate_cert: bool | None
    ca_certs: str | None
    client_key: str | None
    client_cert: str | None
    ssl_options: dict[str, Any] | ssl.SSLContext | None
    start_time: float

    _headers: dict[str, str] | httputil.HTTPHeaders
    _body: bytes
    _KEPT_AS_PASSED: tuple[str, ...]
    _pick_kept: Callable[[dict[str, Any]], tuple[Any, ...]]

    # What an option left at None means when the client's defaults do not say either
    # (Tornado's documented values).
    _DEFAULTS: dict[str, Any] = {
        "connect_timeout": 20.0, "request_timeout": 20.0,
        "follow_redirects": True, "max_redirects": 5,
        "decompress_response": True, "allow_nonstandard_methods": False,
        "validate_cert": True, "proxy_password": "",
    }

    def __init__(
        self, url: str, method: str = "GET",
        headers: dict[str, str] | httputil.HTTPHeaders | None = None,
        body: str | bytes | None = None,
        auth_username: str | None = None, auth_password: str | None = None,
        auth_mode: str | None = None,
        connect_timeout: float | None = None, request_timeout: float | None = None,
        if_modified_since: datetime.datetime | float | None = None,
        follow_redirects: bool | None = None, max_redirects: int | None = None,
        user_agent: str | None = None, use_gzip: bool | None = None,
        network_interface: str | None = None,
        streaming_callback: Callable[[bytes], Awaitable[None] | None] | None = None,
        header_callback: Callable[[str], None] | None = None,
        prepare_curl_callback: Callable[[Any], None] | None = None,
        proxy_host: str | None = None, proxy_port: int | None = None,
        proxy_username: str | None = None, proxy_password: str | None = None,
        proxy_auth_mode: str | None = None,
        allow_nonstandard_methods: bool | None = None, validate_cert: bool | None = None,
        ca_certs: str | None = None, allow_ipv6: bool | None = None,
        client_key: str | None = None, client_cert: str | None = None,
        body_producer: Callable[[Callable[[bytes], Any]], Any] | None = None,
        expect_100_continue: bool = False, decompress_response: bool | None = None,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
    ) -> None:
        # Plain attributes, filled in one step from the arguments of the same names.
        vars(self).update(zip(self._KEPT_AS_PASSED, self._pick_kept(locals()), strict=True))
        self.headers = headers  # type: ignore[assignment]
        self.body = body  # type: ignore[assignment]
        if if_modified_since:
            self.headers["If-Modified-Since"] = httputil.format_timestamp(if_modified_since)
        self.decompress_response = use_gzip if decompress_response is None else decompress_response
        # Wall-clock time, as HTTPResponse.start_time reports it.
        self.start_time = time.time()

    @property
    def headers(self) -> httputil.HTTPHeaders:
        """Request headers (an ``HTTPHeaders``; plain dicts are accepted on assignment)."""
        return self._headers  # type: ignore[return-value]

    @headers.setter
    def headers(self, value: dict[str, str] | httputil.HTTPHeaders | None) -> None:
        self._headers = httputil.HTTPHeaders() if value is None else value

    @property
    def body(self) -> bytes:
        """Request body as bytes (a str is encoded as UTF-8 on assignment)."""
        return self._body

    @body.setter
    def body(self, value: bytes | str | None) -> None:
        self._body = utf8(value)  # type: ignore[assignment]


# Every argument of HTTPRequest() is stored under its own name, except these, which
# __init__ handles itself.
_HANDLED_BY_INIT = {
    "self", "headers", "body", "if_modified_since", "use_gzip", "decompress_response"
}
HTTPRequest._KEPT_AS_PASSED = tuple(
    name
    for name in inspect.signature(HTTPRequest.__init__).parameters
    if name not in _HANDLED_BY_INIT
)
HTTPRequest._pick_kept = staticmethod(  # type: ignore[assignment]
    operator.itemgetter(*HTTPRequest._KEPT_AS_PASSED)
)


class HTTPResponse:
    """The outcome of a request.

    ``code`` is the HTTP status (599 when no status was received), ``body`` the buffered
    body (empty when a ``streaming_callback`` consumed it), ``error`` the exception a
    failed request carries (``rethrow`` raises it), ``effective_url`` the URL reached after
    redirects, ``request_time`` the seconds the request took and ``start_time`` when it
    started (``time.time()``).
    """

    error: BaseException | None = None
    _error_is_response_code = False
    request: HTTPRequest

    def __init__(
        self, request: HTTPRequest, code: int, headers: httputil.HTTPHeaders | None = None,
        buffer: BytesIO | None = None, effective_url: str | None = None,
        error: BaseException | None = None, request_time: float | None = None,
        time_info: dict[str, float] | None = None, reason: str | None = None,
        start_time: float | None = None,
    ) -> None:
        # The caller's own request object, not the view through the client's defaults.
        self.request = request.request if isinstance(request, _RequestProxy) else request
        self.code = code
        self.reason = reason or httputil.responses.get(code, "Unknown")
        self.headers = httputil.HTTPHeaders() if headers is None else headers
        self.buffer = buffer
        self._body: bytes | None = None
        self.effective_url = effective_url if effective_url is not None else request.url
        self.start_time = start_time
        self.request_time = request_time
        self.time_info = time_info or {}
        # Without a transport error, a status outside 2xx is the error.
        self._error_is_response_code = error is None and not 200 <= code < 300
        if self._error_is_response_code:
            error = HTTPClientError(code, message=self.reason, response=self)
        self.error = error

    @property
    def body(self) -> bytes:
        """The response body (``b""`` when there is none)."""
        if self.buffer is None:
            return b""
        body = self._body
        if body is None:
            body = self._body = self.buffer.getvalue()
        return body

    def rethrow(self) -> None:
        """Raise ``self.error`` if the request failed."""
        if self.error is not None:
            raise self.error

    def __repr__(self) -> str:
        fields = ",".join(f"{name}={value!r}" for name, value in sorted(vars(self).items()))
        return f"{type(self).__name__}({fields})"


class HTTPClientError(Exception):
    """A request failed: a non-2xx status (``response`` is set) or code 599 without one.

    ``code`` is the status, ``message`` its reason phrase (or a description of the failure).
    """

    def __init__(
        self, code: int, message: str | None = None, response: HTTPResponse | None = None
    ) -> None:
        # The raw arguments are kept so that copy and pickle rebuild an equal error.
        super().__init__(code, message, response)
        self.code = code
        self.message = message or httputil.responses.get(code, "Unknown")
        self.response = response

    def __str__(self) -> str:
        return f"HTTP {self.code}: {self.message}"

    # Without this, the response (and its body) would land in tracebacks and logs.
    __repr__ = __str__


HTTPError = HTTPClientError


class _RequestProxy:
    """An ``HTTPRequest`` seen through the client's defaults: unset options read from them."""

    __slots__ = ("request", "defaults")

    def __init__(self, request: HTTPRequest, defaults: dict[str, Any] | None) -> None:
        self.request = request
        self.defaults = defaults

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.request, name)
        if value is None and self.defaults is not None:
            return self.defaults.get(name)
        return value


# main()'s command-line options: (name, type, default).
_MAIN_OPTIONS: tuple[tuple[str, type, Any], ...] = (
    ("print_headers", bool, False),
    ("print_body", bool, True),
    ("follow_redirects", bool, True),
    ("validate_cert", bool, True),
    ("proxy_host", str, None),
    ("proxy_port", int, None),
)
# ...and those of them that are passed on to every fetch.
_MAIN_FETCH_OPTIONS = ("follow_redirects", "validate_cert", "proxy_host", "proxy_port")


def main() -> None:
    """Command-line fetcher: ``python -m squall.httpclient [--options] URL...``."""
    from squall.options import define, options, parse_command_line

    for name, kind, default in _MAIN_OPTIONS:
        define(name, default=default, type=kind)
    urls = parse_command_line()
    fetch_options = {name: options[name] for name in _MAIN_FETCH_OPTIONS}
    client = HTTPClient()
    try:
        for url in urls:
            try:
                response = client.fetch(url, **fetch_options)
            except HTTPClientError as error:
                # An error status still has a response worth printing.
                if error.response is None:
                    raise
                response = error.response
            if options.print_headers:
                print(response.headers)
            if options.print_body:
                print(native_str(response.body))
    finally:
        client.close()


if __name__ == "__main__":
    main()
