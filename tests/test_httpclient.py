"""squall.httpclient: request/response objects, the client plumbing, the blocking client,
and the curl client's pieces that do not need a server."""

from __future__ import annotations

import asyncio
import copy
import datetime
import pickle
import sys
import threading
from collections.abc import Awaitable, Callable
from io import BytesIO
from typing import Any

import pytest

from squall import httputil
from squall.httpclient import (
    AsyncHTTPClient,
    HTTPClient,
    HTTPClientError,
    HTTPError,
    HTTPRequest,
    HTTPResponse,
    _RequestProxy,
)
from squall.simple_httpclient import SimpleAsyncHTTPClient


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=10))


# -- HTTPRequest --------------------------------------------------------------------------


def test_request_headers_default_to_empty_and_accept_plain_dicts() -> None:
    request = HTTPRequest("http://example.com/")
    assert isinstance(request.headers, httputil.HTTPHeaders)
    assert request.headers == {}
    request.headers = {"X-A": "1"}  # type: ignore[assignment]
    assert request.headers == {"X-A": "1"}
    request.headers = None  # type: ignore[assignment]
    assert request.headers == {}


def test_request_body_is_encoded_as_utf8() -> None:
    assert HTTPRequest("http://e/", method="POST", body="é").body == "é".encode()
    request = HTTPRequest("http://e/")
    assert request.body is None
    request.body = "x"  # type: ignore[assignment]
    assert request.body == b"x"


def test_request_if_modified_since_sets_http_date() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    request = HTTPRequest("http://e/", if_modified_since=when)
    assert request.headers == {"If-Modified-Since": "Tue, 02 Jan 2024 03:04:05 GMT"}


def test_request_use_gzip_is_the_old_name_of_decompress_response() -> None:
    assert HTTPRequest("http://e/", use_gzip=False).decompress_response is False
    assert HTTPRequest("http://e/", use_gzip=False, decompress_response=True).decompress_response
    assert HTTPRequest("http://e/").decompress_response is None
    assert HTTPRequest("http://e/").start_time > 0


def test_request_proxy_falls_back_to_defaults() -> None:
    explicit = _RequestProxy(HTTPRequest("http://e/", proxy_host="foo"), {"proxy_host": "bar"})
    assert explicit.proxy_host == "foo"
    defaulted = _RequestProxy(HTTPRequest("http://e/"), {"network_interface": "lo"})
    assert defaulted.network_interface == "lo"
    assert defaulted.auth_username is None
    assert _RequestProxy(HTTPRequest("http://e/"), None).auth_username is None
    with pytest.raises(AttributeError):
        defaulted.no_such_option  # noqa: B018


# -- HTTPResponse and errors --------------------------------------------------------------


def test_response_body_comes_from_its_buffer() -> None:
    request = HTTPRequest("http://example.com/")
    response = HTTPResponse(request, 200, buffer=BytesIO(b"abc"))
    assert response.body == b"abc"
    assert response.error is None
    response.rethrow()
    assert response.effective_url == "http://example.com/"
    assert response.reason == "OK"
    assert HTTPResponse(request, 200).body == b""
    assert repr(response).startswith("HTTPResponse(") and "code=200" in repr(response)


def test_non_2xx_response_carries_an_http_error() -> None:
    request = HTTPRequest("http://example.com/")
    response = HTTPResponse(request, 404)
    assert isinstance(response.error, HTTPClientError)
    assert response.error.response is response
    with pytest.raises(HTTPError) as raised:
        response.rethrow()
    assert str(raised.value) == repr(raised.value) == "HTTP 404: Not Found"
    custom = HTTPResponse(request, 418, reason="Short and stout")
    assert str(custom.error) == "HTTP 418: Short and stout"


def test_response_of_a_proxied_request_exposes_the_request() -> None:
    request = HTTPRequest("http://example.com/")
    response = HTTPResponse(_RequestProxy(request, {}), 200)  # type: ignore[arg-type]
    assert response.request is request


def test_http_client_error_copies_and_pickles() -> None:
    error = HTTPClientError(503)
    assert str(error) == "HTTP 503: Service Unavailable"
    duplicate = copy.copy(error)
    assert duplicate is not error and duplicate.code == 503
    assert pickle.loads(pickle.dumps(error)).message == "Service Unavailable"
    assert HTTPClientError(599).message == "Unknown"
    assert HTTPError is HTTPClientError


# -- AsyncHTTPClient ----------------------------------------------------------------------


def test_one_shared_client_per_loop_unless_forced() -> None:
    async def main() -> tuple[AsyncHTTPClient, AsyncHTTPClient]:
        shared = AsyncHTTPClient()
        assert AsyncHTTPClient() is shared
        assert isinstance(shared, SimpleAsyncHTTPClient)
        forced = AsyncHTTPClient(force_instance=True)
        assert forced is not shared
        forced.close()
        shared.close()
        # Closing removed it from the cache: the next call builds a new one.
        rebuilt = AsyncHTTPClient()
        assert rebuilt is not shared
        rebuilt.close()
        return shared, rebuilt

    first, _ = run(main)
    second, _ = run(main)
    assert first is not second


def test_closed_client_refuses_to_fetch() -> None:
    async def main() -> None:
        client = AsyncHTTPClient(force_instance=True)
        client.close()
        client.close()
        with pytest.raises(RuntimeError):
            client.fetch("http://127.0.0.1/")

    run(main)


def test_fetch_rejects_kwargs_with_a_request_object() -> None:
    async def main() -> None:
        client = AsyncHTTPClient(force_instance=True)
        try:
            with pytest.raises(ValueError):
                client.fetch(HTTPRequest("http://127.0.0.1/"), method="POST")
        finally:
            client.close()

    run(main)


def test_configure_passes_kwargs_and_constructor_overrides_them() -> None:
    saved = AsyncHTTPClient._save_configuration()
    try:
        AsyncHTTPClient.configure(SimpleAsyncHTTPClient, max_clients=12)

        async def main() -> None:
            configured = AsyncHTTPClient(force_instance=True)
            overridden = AsyncHTTPClient(force_instance=True, max_clients=3)
            assert configured.max_clients == 12  # type: ignore[attr-defined]
            assert overridden.max_clients == 3  # type: ignore[attr-defined]
            configured.close()
            overridden.close()

        run(main)
    finally:
        AsyncHTTPClient._restore_configuration(saved)


def test_defaults_fill_unset_request_options() -> None:
    async def main() -> None:
        client = AsyncHTTPClient(force_instance=True, defaults={"request_timeout": 7.5})
        try:
            assert client.defaults["request_timeout"] == 7.5
            assert client.defaults["connect_timeout"] == 20.0
            assert client.defaults["validate_cert"] is True
        finally:
            client.close()

    run(main)


def test_header_object_of_the_caller_is_not_modified() -> None:
    async def main() -> None:
        headers = httputil.HTTPHeaders({"User-Agent": "Mine"})
        client = AsyncHTTPClient(force_instance=True)
        try:
            with pytest.raises(ValueError):
                # Fails before connecting (unsupported scheme): only header handling runs.
                await client.fetch("gopher://127.0.0.1/", headers=headers)
        finally:
            client.close()
        assert list(headers.get_all()) == [("User-Agent", "Mine")]

    run(main)


def test_request_keeps_every_option_under_its_own_name() -> None:
    import inspect

    special = {"self", "url", "headers", "body", "if_modified_since", "use_gzip"}
    names = [n for n in inspect.signature(HTTPRequest.__init__).parameters if n not in special]
    values = {name: object() for name in names}
    request = HTTPRequest("http://example.com/", **values)
    for name in names:
        assert getattr(request, name) is values[name], name
    assert request.url == "http://example.com/" and request.method is values["method"]
    plain = HTTPRequest("http://example.com/")
    assert plain.method == "GET" and plain.expect_100_continue is False
    unset = [n for n in names if n not in ("method", "expect_100_continue")]
    assert all(getattr(plain, n) is None for n in unset)
    assert not hasattr(plain, "use_gzip") and not hasattr(plain, "if_modified_since")


def test_fetch_with_raise_error_false_returns_error_statuses_but_raises_transport_errors() -> None:
    class Canned(AsyncHTTPClient):
        def fetch_impl(
            self, request: HTTPRequest, callback: Callable[[HTTPResponse], None]
        ) -> None:
            if request.url.endswith("/down"):
                callback(HTTPResponse(request, 599, error=ConnectionRefusedError("no")))
            else:
                callback(HTTPResponse(request, int(request.url.rsplit("/", 1)[1])))

    async def main() -> None:
        client = Canned(force_instance=True)
        try:
            assert (await client.fetch("http://x/200")).code == 200
            assert (await client.fetch("http://x/404", raise_error=False)).code == 404
            with pytest.raises(HTTPClientError):
                await client.fetch("http://x/404")
            with pytest.raises(ConnectionRefusedError):
                await client.fetch("http://x/down", raise_error=False)
        finally:
            client.close()

    run(main)


def test_main_fetches_and_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from squall import httpclient, options

    monkeypatch.setattr(options, "options", options.OptionParser())
    seen: list[tuple[str, dict[str, Any]]] = []

    class FakeClient:
        def fetch(self, url: str, **kwargs: Any) -> HTTPResponse:
            seen.append((url, kwargs))
            code = 404 if "missing" in url else 200
            response = HTTPResponse(HTTPRequest(url), code, buffer=BytesIO(b"page"))
            response.rethrow()
            return response

        def close(self) -> None:
            seen.append(("closed", {}))

    monkeypatch.setattr(httpclient, "HTTPClient", FakeClient)
    argv = ["httpclient", "--proxy_port=3128", "http://a/", "http://a/missing"]
    monkeypatch.setattr(sys, "argv", argv)
    httpclient.main()
    assert capsys.readouterr().out == "page\npage\n"
    fetch_options = {
        "follow_redirects": True, "validate_cert": True, "proxy_host": None, "proxy_port": 3128
    }
    assert seen == [
        ("http://a/", fetch_options), ("http://a/missing", fetch_options), ("closed", {})
    ]


# -- the blocking client -------------------------------------------------------------------


class ThreadedServer:
    """A one-route HTTP server on its own thread and loop, for the blocking client."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/missing":
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello world!")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


def test_blocking_client_fetches_and_raises_http_errors() -> None:
    with ThreadedServer() as server:
        client = HTTPClient()
        try:
            response = client.fetch(f"http://127.0.0.1:{server.port}/")
            assert response.body == b"Hello world!"
            with pytest.raises(HTTPClientError) as raised:
                client.fetch(f"http://127.0.0.1:{server.port}/missing")
            assert raised.value.code == 404
        finally:
            client.close()
        client.close()
        with pytest.raises(RuntimeError):
            client.fetch(f"http://127.0.0.1:{server.port}/")


def test_blocking_client_passes_kwargs_to_the_async_client() -> None:
    client = HTTPClient(SimpleAsyncHTTPClient, max_clients=3)
    try:
        assert client._async_client.max_clients == 3  # type: ignore[attr-defined]
    finally:
        client.close()


# -- curl client pieces --------------------------------------------------------------------


def test_curl_client_without_pycurl_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import squall.curl_httpclient as curl_module

    monkeypatch.setitem(sys.modules, "pycurl", None)
    monkeypatch.setattr(curl_module, "_pycurl", None)

    async def main() -> None:
        with pytest.raises(ImportError, match="pycurl"):
            curl_module.CurlAsyncHTTPClient(force_instance=True)

    run(main)
    error = curl_module.CurlError(7, "Failed to connect")
    assert error.code == 599 and error.errno == 7
    assert str(error) == "HTTP 599: Failed to connect"


class _FakeCurl:
    def __init__(self) -> None:
        self.resumed = 0

    def pause(self, flags: int) -> None:
        self.resumed += 1


class _FakeClient:
    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        self.timers: list[int] = []
        self.io_loop = self

    def add_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        pass

    def _set_timeout(self, msecs: int) -> None:
        self.timers.append(msecs)


def test_curl_streaming_buffer_pauses_when_full_and_refuses_oversize() -> None:
    pycurl = pytest.importorskip("pycurl")
    from squall.curl_httpclient import _CurlStreamingBuffer

    chunks: list[bytes] = []
    client = _FakeClient(max_body_size=12)
    curl = _FakeCurl()
    buffer = _CurlStreamingBuffer(client, curl, chunks.append)  # type: ignore[arg-type]
    buffer.max_buffer_size = 4  # type: ignore[misc]
    assert buffer.write(b"hello") == 5  # an empty buffer takes any chunk
    assert buffer.write(b"world") == pycurl.WRITEFUNC_PAUSE
    buffer.flush()
    assert chunks == [b"hello"] and curl.resumed == 1 and client.timers == [0]
    assert buffer.write(b"world") == 5
    assert buffer.write(b"!!!") == 0  # 13 bytes would pass max_body_size
    assert buffer.body_too_large
    buffer.flush()
    assert chunks == [b"hello", b"world"]


def test_curl_client_fetches_with_a_body_limit() -> None:
    pytest.importorskip("pycurl")
    from squall.curl_httpclient import CurlAsyncHTTPClient, CurlError

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                size = 50 if b" /small " in head else 5000
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                writer.write(b"a" * size)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = CurlAsyncHTTPClient(force_instance=True, max_body_size=1000)
        try:
            small = await client.fetch(f"http://127.0.0.1:{port}/small")
            assert small.body == b"a" * 50
            assert small.time_info["total"] >= 0
            with pytest.raises(CurlError, match="max_body_size"):
                await client.fetch(f"http://127.0.0.1:{port}/large")
            with pytest.raises(ValueError):
                await client.fetch(f"http://127.0.0.1:{port}/small", headers={"X": "a\r\nb"})
        finally:
            client.close()
            server.close()

    run(main)
