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
        self,
        async_client_class: type[AsyncHTTPClient] | None = None,
        **kwargs: Any,
    ) -> None:
        # Set first so that __del__ works even when the constructor fails half-way.
        self._closed = True
        self._io_loop = IOLoop(make_current=False)
        client_class = async_client_class if async_client_class is not None else AsyncHTTPClient

        async def make_client() -> AsyncHTTPClient:
            # The async client binds to the loop current while it is built, so build it on ours.
            return client_class(**kwargs)

        self._async_client = self._io_loop.run_sync(make_client)
        self._closed = False

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying client and its loop."""
        if not self._closed:
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

    def fetch(self, request: HTTPRequest | str, **kwargs: Any) -> HTTPResponse:
        """Run a request to completion and return its response.

        Raises ``HTTPClientError`` for a non-2xx status (and whatever error the transport
        met otherwise).
        """
        if self._closed:
            raise RuntimeError("fetch() called on a closed HTTPClient")
        response: HTTPResponse = self._io_loop.run_sync(
            functools.partial(self._async_client.fetch, request, **kwargs)
        )
        return response


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

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        return AsyncHTTPClient

    @classmethod
    def configurable_default(cls) -> type[Configurable]:
        from squall.simple_httpclient import SimpleAsyncHTTPClient

        return SimpleAsyncHTTPClient

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

    def __new__(cls, force_instance: bool = False, **kwargs: Any) -> AsyncHTTPClient:
        io_loop = _current_io_loop()
        instance_cache = None if force_instance else cls._async_clients()
        if instance_cache is not None:
            cached = instance_cache.get(io_loop)
            if cached is not None:
                return cached
        instance = cast(AsyncHTTPClient, super().__new__(cls, **kwargs))
        # Recorded so that close() removes exactly the entry this instance occupies.
        instance._instance_cache = instance_cache
        if instance_cache is not None:
            instance_cache[instance.io_loop] = instance
        return instance

    def initialize(self, defaults: dict[str, Any] | None = None) -> None:
        self.io_loop = _current_io_loop()
        self.defaults = dict(HTTPRequest._DEFAULTS)
        if defaults is not None:
            self.defaults.update(defaults)
        self._closed = False
        if not hasattr(self, "_instance_cache"):
            # Built directly through a subclass's initialize, outside __new__.
            self._instance_cache = None

    def close(self) -> None:
        """Release the client's resources; the shared instance is rebuilt on next use."""
        if self._closed:
            return
        self._closed = True
        if self._instance_cache is not None:
            cached = self._instance_cache.pop(self.io_loop, None)
            # A different instance under our key means the cache was corrupted (two clients
            # both believing they are the shared one); silently dropping it would hide that.
            if cached is not None and cached is not self:
                raise RuntimeError("inconsistent AsyncHTTPClient cache")

    def fetch(
        self,
        request: HTTPRequest | str,
        raise_error: bool = True,
        **kwargs: Any,
    ) -> Future[HTTPResponse]:
        """Start a request; the returned future resolves to its ``HTTPResponse``.

        ``request`` is an ``HTTPRequest`` or a URL (then ``kwargs`` build the request).
        A non-2xx status raises ``HTTPClientError`` unless ``raise_error`` is false; errors
        that produced no HTTP status (connection refused, timeouts, ...) always raise.
        """
        if self._closed:
            raise RuntimeError("fetch() called on closed AsyncHTTPClient")
        if not isinstance(request, HTTPRequest):
            request = HTTPRequest(url=request, **kwargs)
        elif kwargs:
            raise ValueError("kwargs can't be used if request is an HTTPRequest object")
        # The caller's header object may be shared between requests: work on a copy.
        request.headers = httputil.HTTPHeaders(request.headers)
        request_proxy = _RequestProxy(request, self.defaults)
        future: Future[HTTPResponse] = Future()

        def handle_response(response: HTTPResponse) -> None:
            if response.error is not None:
                if raise_error or not response._error_is_response_code:
                    future_set_exception_unless_cancelled(future, response.error)
                    return
            future_set_result_unless_cancelled(future, response)

        self.fetch_impl(cast(HTTPRequest, request_proxy), handle_response)
        return future

    def fetch_impl(self, request: HTTPRequest, callback: Callable[[HTTPResponse], None]) -> None:
        """Carry out ``request`` and call ``callback`` with the response exactly once."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement fetch_impl; configure an implementation "
            "such as squall.simple_httpclient.SimpleAsyncHTTPClient"
        )


class HTTPRequest:
    """One HTTP request and every option that governs how it is made.

    Options left as ``None`` fall back to the client's ``defaults`` (see
    ``AsyncHTTPClient``). ``use_gzip`` is the old name of ``decompress_response``.
    """

    _headers: dict[str, str] | httputil.HTTPHeaders

    # Values used when neither the request nor the client's defaults set an option.
    _DEFAULTS: dict[str, Any] = dict(
        connect_timeout=20.0,
        request_timeout=20.0,
        follow_redirects=True,
        max_redirects=5,
        decompress_response=True,
        proxy_password="",
        allow_nonstandard_methods=False,
        validate_cert=True,
    )

    def __init__(
        self,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | httputil.HTTPHeaders | None = None,
        body: str | bytes | None = None,
        auth_username: str | None = None,
        auth_password: str | None = None,
        auth_mode: str | None = None,
        connect_timeout: float | None = None,
        request_timeout: float | None = None,
        if_modified_since: datetime.datetime | float | None = None,
        follow_redirects: bool | None = None,
        max_redirects: int | None = None,
        user_agent: str | None = None,
        use_gzip: bool | None = None,
        network_interface: str | None = None,
        streaming_callback: Callable[[bytes], Awaitable[None] | None] | None = None,
        header_callback: Callable[[str], None] | None = None,
        prepare_curl_callback: Callable[[Any], None] | None = None,
        proxy_host: str | None = None,
        proxy_port: int | None = None,
        proxy_username: str | None = None,
        proxy_password: str | None = None,
        proxy_auth_mode: str | None = None,
        allow_nonstandard_methods: bool | None = None,
        validate_cert: bool | None = None,
        ca_certs: str | None = None,
        allow_ipv6: bool | None = None,
        client_key: str | None = None,
        client_cert: str | None = None,
        body_producer: Callable[[Callable[[bytes], Any]], Any] | None = None,
        expect_100_continue: bool = False,
        decompress_response: bool | None = None,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
    ) -> None:
        self.headers = headers  # type: ignore[assignment]
        if if_modified_since:
            self.headers["If-Modified-Since"] = httputil.format_timestamp(if_modified_since)
        self.proxy_host = proxy_host
        self.proxy_port = proxy_port
        self.proxy_username = proxy_username
        self.proxy_password = proxy_password
        self.proxy_auth_mode = proxy_auth_mode
        self.url = url
        self.method = method
        self.body = body  # type: ignore[assignment]
        self.body_producer = body_producer
        self.auth_username = auth_username
        self.auth_password = auth_password
        self.auth_mode = auth_mode
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.user_agent = user_agent
        if decompress_response is not None:
            self.decompress_response: bool | None = decompress_response
        else:
            self.decompress_response = use_gzip
        self.network_interface = network_interface
        self.streaming_callback = streaming_callback
        self.header_callback = header_callback
        self.prepare_curl_callback = prepare_curl_callback
        self.allow_nonstandard_methods = allow_nonstandard_methods
        self.validate_cert = validate_cert
        self.ca_certs = ca_certs
        self.allow_ipv6 = allow_ipv6
        self.client_key = client_key
        self.client_cert = client_cert
        self.ssl_options = ssl_options
        self.expect_100_continue = expect_100_continue
        # Wall-clock time, as HTTPResponse.start_time reports it.
        self.start_time = time.time()

    @property
    def headers(self) -> httputil.HTTPHeaders:
        """Request headers (an ``HTTPHeaders``; plain dicts are accepted on assignment)."""
        return self._headers  # type: ignore[return-value]

    @headers.setter
    def headers(self, value: dict[str, str] | httputil.HTTPHeaders | None) -> None:
        if value is None:
            self._headers = httputil.HTTPHeaders()
        else:
            self._headers = value

    @property
    def body(self) -> bytes:
        """Request body as bytes (a str is encoded as UTF-8 on assignment)."""
        return self._body  # type: ignore[return-value]

    @body.setter
    def body(self, value: bytes | str | None) -> None:
        self._body = utf8(value)


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
        self,
        request: HTTPRequest,
        code: int,
        headers: httputil.HTTPHeaders | None = None,
        buffer: BytesIO | None = None,
        effective_url: str | None = None,
        error: BaseException | None = None,
        request_time: float | None = None,
        time_info: dict[str, float] | None = None,
        reason: str | None = None,
        start_time: float | None = None,
    ) -> None:
        if isinstance(request, _RequestProxy):
            self.request = request.request
        else:
            self.request = request
        self.code = code
        self.reason = reason or httputil.responses.get(code, "Unknown")
        self.headers = headers if headers is not None else httputil.HTTPHeaders()
        self.buffer = buffer
        self._body: bytes | None = None
        self.effective_url = request.url if effective_url is None else effective_url
        self._error_is_response_code = False
        if error is None:
            if code < 200 or code >= 300:
                self._error_is_response_code = True
                self.error = HTTPClientError(code, message=self.reason, response=self)
            else:
                self.error = None
        else:
            self.error = error
        self.start_time = start_time
        self.request_time = request_time
        self.time_info = time_info or {}

    @property
    def body(self) -> bytes:
        """The response body (``b""`` when there is none)."""
        if self.buffer is None:
            return b""
        if self._body is None:
            self._body = self.buffer.getvalue()
        return self._body

    def rethrow(self) -> None:
        """Raise ``self.error`` if the request failed."""
        if self.error is not None:
            raise self.error

    def __repr__(self) -> str:
        fields = ",".join(f"{name}={value!r}" for name, value in sorted(self.__dict__.items()))
        return f"{type(self).__name__}({fields})"


class HTTPClientError(Exception):
    """A request failed: a non-2xx status (``response`` is set) or code 599 without one.

    ``code`` is the status, ``message`` its reason phrase (or a description of the failure).
    """

    def __init__(
        self,
        code: int,
        message: str | None = None,
        response: HTTPResponse | None = None,
    ) -> None:
        self.code = code
        self.message = message or httputil.responses.get(code, "Unknown")
        self.response = response
        # The raw arguments are kept so that copy and pickle rebuild an equal error.
        super().__init__(code, message, response)

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
        if value is not None:
            return value
        if self.defaults is not None:
            return self.defaults.get(name, None)
        return None


def main() -> None:
    """Command-line fetcher: ``python -m squall.httpclient [--options] URL...``."""
    from squall.options import define, options, parse_command_line

    define("print_headers", type=bool, default=False)
    define("print_body", type=bool, default=True)
    define("follow_redirects", type=bool, default=True)
    define("validate_cert", type=bool, default=True)
    define("proxy_host", type=str)
    define("proxy_port", type=int)
    urls = parse_command_line()
    client = HTTPClient()
    try:
        for url in urls:
            try:
                response = client.fetch(
                    url,
                    follow_redirects=options.follow_redirects,
                    validate_cert=options.validate_cert,
                    proxy_host=options.proxy_host,
                    proxy_port=options.proxy_port,
                )
            except HTTPClientError as error:
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
