"""SimpleAsyncHTTPClient against small servers on 127.0.0.1.

The servers here are plain asyncio servers rather than squall's, so that a test controls
every byte a server sends (malformed responses, interim responses, connection reuse) and
can count the connections the client opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import os
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from squall.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from squall.iostream import UnsatisfiableReadError
from squall.simple_httpclient import (
    HTTPStreamClosedError,
    HTTPTimeoutError,
    SimpleAsyncHTTPClient,
    _HTTPConnection,
)

CERT_DIR = os.path.join(os.path.dirname(__file__), "..", "squall", "test")
CERT = os.path.join(CERT_DIR, "test.crt")
KEY = os.path.join(CERT_DIR, "test.key")


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=timeout))


class Request:
    __slots__ = ("method", "target", "version", "headers", "body", "connection_id")

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: dict[str, str],
        body: bytes,
        connection_id: int,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.connection_id = connection_id


# What a handler returns: bytes to send (the connection stays open for the next request),
# or (bytes, True) to send and then close, or None to close without sending anything.
Reply = bytes | tuple[bytes, bool] | None


def response(
    body: bytes = b"",
    status: str = "200 OK",
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"{version} {status}"]
    fields = {"Content-Length": str(len(body))}
    fields.update(headers or {})
    lines.extend(f"{name}: {value}" for name, value in fields.items() if value is not None)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Server:
    """A small HTTP/1.1 server: parses requests, hands them to ``handler``, keeps alive."""

    def __init__(
        self,
        handler: Callable[[Request], Reply | Awaitable[Reply]],
        ssl_context: ssl.SSLContext | None = None,
        raw: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None = None,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.raw = raw
        self.connections = 0
        self.requests: list[Request] = []
        self.port = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await self.server.wait_closed()

    _writers: set[asyncio.StreamWriter] = set()

    def url(self, path: str = "/", scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.ssl_context else "http")
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection_id = self.connections
        self._writers = self._writers | {writer}
        try:
            if self.raw is not None:
                await self.raw(reader, writer)
                return
            while True:
                request = await read_request(reader, connection_id)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.handler(request)
                if asyncio.iscoroutine(reply):
                    reply = await reply
                if reply is None:
                    return
                close = False
                if isinstance(reply, tuple):
                    reply, close = reply
                writer.write(reply)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # Shutting down with a handler still waiting; ending quietly keeps asyncio
            # from logging the cancellation of the connection task.
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader, connection_id: int) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        pieces = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            pieces.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(pieces)
    return Request(method, target, version, headers, body, connection_id)


def make_client(**kwargs: Any) -> SimpleAsyncHTTPClient:
    return SimpleAsyncHTTPClient(force_instance=True, **kwargs)  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def open_client(**kwargs: Any) -> AsyncIterator[SimpleAsyncHTTPClient]:
    """A fresh client, closed when the block ends (before any enclosing server stops)."""
    client = make_client(**kwargs)
    try:
        yield client
    finally:
        client.close()


async def wait_until(condition: Callable[[], bool], rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def request_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "_HTTPConnection.run"
    ]


def hello(request: Request) -> Reply:
    return response(b"hello " + request.target.encode(), headers={"Content-Type": "text/plain"})


# -- basics -------------------------------------------------------------------------------


def test_get_returns_status_headers_body_and_timing() -> None:
    async def main() -> None:
        async with Server(hello) as server, open_client() as client:
            result = await client.fetch(server.url("/a?b=c"))
        assert result.code == 200
        assert result.reason == "OK"
        assert result.body == b"hello /a?b=c"
        assert result.headers["Content-Type"] == "text/plain"
        assert result.effective_url == server.url("/a?b=c")
        assert result.request_time is not None and result.request_time >= 0
        assert result.start_time is not None
        sent = server.requests[0]
        assert sent.headers["host"] == f"127.0.0.1:{server.port}"
        assert sent.headers["user-agent"].startswith("Squall/")
        assert sent.headers["accept-encoding"] == "gzip"

    run(main)


def test_post_sends_body_with_content_length_and_form_type() -> None:
    async def main() -> None:
        async with Server(lambda r: response(r.body)) as server, open_client() as client:
            result = await client.fetch(server.url("/p"), method="POST", body="a=1&b=é")
        assert result.body == "a=1&b=é".encode()
        sent = server.requests[0]
        assert sent.headers["content-length"] == str(len("a=1&b=é".encode()))
        assert sent.headers["content-type"] == "application/x-www-form-urlencoded"

    run(main)


def test_error_status_raises_or_returns_response() -> None:
    async def main() -> None:
        async with (
            Server(lambda r: response(b"nope", "404 Not Found")) as server,
            open_client() as client,
        ):
            with pytest.raises(HTTPClientError) as raised:
                await client.fetch(server.url("/missing"))
            assert raised.value.code == 404
            assert raised.value.response is not None
            assert raised.value.response.body == b"nope"
            result = await client.fetch(server.url("/missing"), raise_error=False)
            assert result.code == 404

    run(main)


def test_chunked_response_and_streaming_callback() -> None:
    body = b"4\r\nasdf\r\n4\r\nqwer\r\n0\r\n\r\n"

    async def main() -> None:
        reply = response(headers={"Content-Length": None, "Transfer-Encoding": "chunked"})
        async with Server(lambda r: reply + body) as server, open_client() as client:
            buffered = await client.fetch(server.url())
            chunks: list[bytes] = []
            streamed = await client.fetch(server.url(), streaming_callback=chunks.append)
        assert buffered.body == b"asdfqwer"
        assert b"".join(chunks) == b"asdfqwer"
        assert streamed.body == b""

    run(main)


def test_header_callback_sees_status_line_headers_and_blank_line() -> None:
    async def main() -> None:
        lines: list[str] = []
        async with Server(hello) as server, open_client() as client:
            await client.fetch(server.url(), header_callback=lines.append)
        assert lines[0].startswith("HTTP/1.1 200 OK")
        assert "Content-Type: text/plain\r\n" in lines
        assert lines[-1] == "\r\n"

    run(main)


def test_gzip_response_is_decompressed_unless_disabled() -> None:
    payload = b"squall " * 100

    async def main() -> None:
        compressed = gzip.compress(payload)
        reply = response(compressed, headers={"Content-Encoding": "gzip"})
        async with Server(lambda r: reply) as server, open_client() as client:
            decoded = await client.fetch(server.url())
            raw = await client.fetch(server.url(), decompress_response=False)
        assert decoded.body == payload
        assert raw.body == compressed
        assert "accept-encoding" not in server.requests[1].headers

    run(main)


def test_head_and_no_content_responses_have_no_body() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            if request.method == "HEAD":
                return response(headers={"Content-Length": "7"})
            return response(status="204 No Content", headers={"Content-Length": None})

        async with Server(handler) as server, open_client() as client:
            head = await client.fetch(server.url(), method="HEAD")
            empty = await client.fetch(server.url())
        assert head.code == 200 and head.body == b""
        assert head.headers["Content-Length"] == "7"
        assert empty.code == 204 and empty.body == b""
        # Neither had a body on the wire, so the connection carried both.
        assert server.connections == 1

    run(main)


def test_body_producer_is_sent_chunked() -> None:
    async def producer(write: Callable[[bytes], Awaitable[None]]) -> None:
        await write(b"1234")
        await asyncio.sleep(0)
        await write(b"5678")

    async def main() -> None:
        async with Server(lambda r: response(r.body)) as server, open_client() as client:
            result = await client.fetch(server.url(), method="PUT", body_producer=producer)
        assert result.body == b"12345678"
        assert server.requests[0].headers["transfer-encoding"] == "chunked"

    run(main)


def test_expect_100_continue_waits_for_the_go_ahead() -> None:
    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Expect: 100-continue" in head
        # Nothing of the body may arrive before the 100.
        assert reader._buffer == b""  # type: ignore[attr-defined]
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(4)
        writer.write(response(body))
        await writer.drain()

    async def main() -> None:
        async with Server(hello, raw=raw) as server, open_client() as client:
            result = await client.fetch(
                server.url(), method="POST", body=b"1234", expect_100_continue=True
            )
        assert result.body == b"1234"

    run(main)


def test_hostname_mapping_redirects_resolution() -> None:
    async def main() -> None:
        async with (
            Server(hello) as server,
            open_client(hostname_mapping={"www.example.invalid": "127.0.0.1"}) as client,
        ):
            result = await client.fetch(f"http://www.example.invalid:{server.port}/x")
        assert result.body == b"hello /x"
        assert server.requests[0].headers["host"] == f"www.example.invalid:{server.port}"

    run(main)


# -- request validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Test": "a\r\nInjected: yes"},
        {"X-Test": "a\nb"},
        {"X-Test": "a\rb"},
        {"X-Test\r\nInjected": "yes"},
        {"Bad Name": "x"},
    ],
)
def test_cr_lf_in_request_headers_is_refused_before_sending(headers: dict[str, str]) -> None:
    async def main() -> None:
        async with Server(hello) as server, open_client() as client:
            with pytest.raises(ValueError):
                await client.fetch(server.url(), headers=headers)
        assert server.requests == []

    run(main)


def test_body_rules_per_method() -> None:
    async def main() -> None:
        async with Server(lambda r: response(r.method.encode())) as server, open_client() as client:
            with pytest.raises(ValueError, match="must not be None"):
                await client.fetch(server.url(), method="POST")
            with pytest.raises(ValueError, match="must be None"):
                await client.fetch(server.url(), method="GET", body=b"x")
            allowed = await client.fetch(
                server.url(), method="DELETE", body=b"x", allow_nonstandard_methods=True
            )
            assert allowed.body == b"DELETE"
            custom = await client.fetch(
                server.url(), method="PURGE", allow_nonstandard_methods=True
            )
            assert custom.body == b"PURGE"

    run(main)


def test_unsupported_scheme_and_refused_connection() -> None:
    async def main() -> None:
        client = make_client()
        try:
            with pytest.raises(ValueError, match="Unsupported url scheme"):
                await client.fetch("ftp://127.0.0.1/")
            # A port nothing listens on: bind one, close it, then connect.
            probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            port = probe.sockets[0].getsockname()[1]
            probe.close()
            await probe.wait_closed()
            with pytest.raises(ConnectionRefusedError):
                await client.fetch(f"http://127.0.0.1:{port}/", raise_error=False)
        finally:
            client.close()

    run(main)


def test_basic_auth_from_options_and_url() -> None:
    async def main() -> None:
        async with (
            Server(lambda r: response(r.headers.get("authorization", "").encode())) as s,
            open_client() as client,
        ):
            options = await client.fetch(
                s.url(), auth_username="Aladdin", auth_password="open sesame"
            )
            in_url = await client.fetch(s.url().replace("http://", "http://me:s%40cret@"))
            with pytest.raises(ValueError, match="auth_mode"):
                await client.fetch(
                    s.url(), auth_username="a", auth_password="b", auth_mode="digest"
                )
        assert options.body == b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        assert in_url.body == b"Basic bWU6c0BjcmV0"  # me:s@cret
        # The credentials never travel in the Host header.
        assert s.requests[1].headers["host"] == f"127.0.0.1:{s.port}"

    run(main)


# -- keep-alive ---------------------------------------------------------------------------


def test_second_request_to_same_origin_reuses_the_connection() -> None:
    async def main() -> None:
        async with Server(hello) as server, open_client() as client:
            bodies = [(await client.fetch(server.url(f"/{i}"))).body for i in range(3)]
        assert bodies == [b"hello /0", b"hello /1", b"hello /2"]
        assert server.connections == 1
        assert {r.connection_id for r in server.requests} == {1}

    run(main)


def test_connection_is_not_reused_after_an_error() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            if request.target == "/bad":
                # A chunk size that is not hexadecimal.
                return response(
                    headers={"Content-Length": None, "Transfer-Encoding": "chunked"}
                ) + (b"zz\r\nabc\r\n0\r\n\r\n")
            return hello(request)

        async with Server(handler) as server, open_client() as client:
            await client.fetch(server.url("/ok"))
            with pytest.raises(HTTPClientError) as raised:
                await client.fetch(server.url("/bad"))
            assert raised.value.code == 599
            after = await client.fetch(server.url("/ok"))
        assert after.body == b"hello /ok"
        # /bad reused the first connection and broke it; the last request needed a new one.
        assert [r.connection_id for r in server.requests] == [1, 1, 2]

    run(main)


def test_connection_close_and_http10_responses_are_not_reused() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            if request.target == "/close":
                return response(b"x", headers={"Connection": "close"})
            if request.target == "/http10":
                return response(b"x", version="HTTP/1.0")
            if request.target == "/http10-keep-alive":
                return response(b"x", version="HTTP/1.0", headers={"Connection": "keep-alive"})
            return hello(request)

        async with Server(handler) as server, open_client() as client:
            for path in ["/close", "/a", "/http10", "/b", "/http10-keep-alive", "/c"]:
                await client.fetch(server.url(path))
        ids = [r.connection_id for r in server.requests]
        # close -> new; HTTP/1.0 without keep-alive -> new; HTTP/1.0 keep-alive -> reused.
        assert ids == [1, 2, 2, 3, 3, 3]

    run(main)


def test_switching_protocols_is_a_final_response_and_ends_reuse() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            if request.target == "/upgrade":
                return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n"
            return hello(request)

        async with Server(handler) as server, open_client() as client:
            switched = await client.fetch(server.url("/upgrade"), raise_error=False)
            after = await client.fetch(server.url("/after"))
        assert switched.code == 101
        assert after.body == b"hello /after"
        assert [r.connection_id for r in server.requests] == [1, 2]

    run(main)


def test_body_read_until_close_is_not_pooled() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            return (b"HTTP/1.1 200 OK\r\n\r\nuntil close", True)

        async with Server(handler) as server, open_client() as client:
            first = await client.fetch(server.url())
            second = await client.fetch(server.url())
        assert first.body == second.body == b"until close"
        assert server.connections == 2

    run(main)


def test_aborted_body_is_not_reused() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(request: Request) -> Reply:
            if request.target == "/slow":
                # Promise ten bytes, send four, then stall.
                return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"
            return hello(request)

        async with Server(handler) as server:
            client = make_client()
            try:
                with pytest.raises(HTTPTimeoutError, match="Timeout during request"):
                    await client.fetch(server.url("/slow"), request_timeout=0.2)
                # The request's own task ends too, rather than waiting forever on a read.
                await wait_until(lambda: not request_tasks())
                result = await client.fetch(server.url("/next"))
            finally:
                client.close()
                release.set()
        assert result.body == b"hello /next"
        assert [r.connection_id for r in server.requests] == [1, 2]

    run(main)


def test_streaming_callback_failure_closes_the_connection() -> None:
    async def main() -> None:
        def explode(chunk: bytes) -> None:
            raise RuntimeError("stop")

        async with Server(hello) as server, open_client() as client:
            with pytest.raises(HTTPStreamClosedError):
                await client.fetch(server.url("/a"), streaming_callback=explode)
            await client.fetch(server.url("/b"))
        assert [r.connection_id for r in server.requests] == [1, 2]

    run(main)


def test_idle_connection_closed_by_the_server_is_dropped() -> None:
    async def main() -> None:
        async with Server(lambda r: (hello(r), True)) as server, open_client() as client:
            await client.fetch(server.url("/a"))
            # The server hung up without saying so in its headers; the pool notices.
            await wait_until(lambda: len(client._pool) == 0)
            result = await client.fetch(server.url("/b"))
        assert result.body == b"hello /b"
        assert server.connections == 2

    run(main)


def test_pooled_connection_closed_after_the_request_is_not_resent() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            # Answer only the first request on each connection; read the second and hang
            # up without a word, as a server that died handling it would. It may have
            # acted on the request, so the client must not send it again.
            seen = sum(1 for r in server.requests if r.connection_id == request.connection_id)
            return hello(request) if seen == 1 else None

        async with Server(handler) as server, open_client() as client:
            await client.fetch(server.url("/a"))
            with pytest.raises(HTTPStreamClosedError) as raised:
                await client.fetch(server.url("/b"))
            after = await client.fetch(server.url("/c"))
        assert raised.value.code == 599
        assert after.body == b"hello /c"
        targets = [(r.target, r.connection_id) for r in server.requests]
        assert targets == [("/a", 1), ("/b", 1), ("/c", 2)]

    run(main)


def test_pool_keeps_connections_per_origin_and_settings_apart() -> None:
    async def main() -> None:
        async with Server(hello) as first, Server(hello) as second, open_client() as client:
            await client.fetch(first.url("/1"))
            await client.fetch(second.url("/1"))
            await client.fetch(first.url("/2"))
            await client.fetch(first.url("/3"), network_interface="127.0.0.1")
        assert first.connections == 2  # a different local address is a different key
        assert second.connections == 1
        assert [r.connection_id for r in first.requests] == [1, 1, 2]

    run(main)


def test_idle_connections_expire_and_the_pool_is_bounded() -> None:
    class ShortLived(SimpleAsyncHTTPClient):
        idle_connection_timeout = 0.05
        max_idle_connections_per_host = 1

    async def main() -> None:
        release = asyncio.Event()

        async def handler(request: Request) -> Reply:
            if request.target.startswith("/wait"):
                await release.wait()
            return hello(request)

        async with Server(handler) as server:
            client = ShortLived(force_instance=True)
            try:
                both = [
                    asyncio.ensure_future(client.fetch(server.url(f"/wait{i}"))) for i in range(2)
                ]
                await wait_until(lambda: len(server.requests) == 2)
                release.set()
                await asyncio.gather(*both)
                # Two connections came back but only one may stay idle for this host.
                assert len(client._pool) <= 1
                await wait_until(lambda: len(client._pool) == 0)
                await client.fetch(server.url("/after"))
            finally:
                client.close()
        assert server.connections == 3

    run(main)


def test_keep_alive_can_be_turned_off() -> None:
    class NoReuse(SimpleAsyncHTTPClient):
        keep_alive = False

    async def main() -> None:
        async with Server(hello) as server:
            client = NoReuse(force_instance=True)
            try:
                await client.fetch(server.url("/a"))
                await client.fetch(server.url("/b"))
            finally:
                client.close()
        assert server.connections == 2
        assert server.requests[0].headers.get("connection") == "close"

    run(main)


# -- queueing and timeouts ----------------------------------------------------------------


def test_queued_request_times_out_in_the_queue() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(request: Request) -> Reply:
            if request.target == "/hold":
                await release.wait()
            return hello(request)

        async with Server(handler) as server, open_client(max_clients=1) as client:
            held = client.fetch(server.url("/hold"))
            await wait_until(lambda: len(server.requests) == 1)
            with pytest.raises(HTTPTimeoutError) as raised:
                await client.fetch(server.url("/queued"), connect_timeout=0.1)
            assert str(raised.value) == "Timeout in request queue"
            assert len(client.queue) == 0
            release.set()
            assert (await held).body == b"hello /hold"

    run(main)


def test_max_clients_bounds_concurrency_and_drains_the_queue() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(request: Request) -> Reply:
            await release.wait()
            return hello(request)

        async with Server(handler) as server, open_client(max_clients=2) as client:
            futures = [client.fetch(server.url(f"/{i}")) for i in range(4)]
            await wait_until(lambda: len(server.requests) == 2)
            assert len(client.queue) == 2 and len(client.active) == 2
            release.set()
            results = await asyncio.gather(*futures)
        assert sorted(r.body for r in results) == [b"hello /%d" % i for i in range(4)]

    run(main)


# -- redirects ----------------------------------------------------------------------------


def test_redirects_are_followed_up_to_max_redirects() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            count = int(request.target.strip("/"))
            if count > 0:
                return response(b"moved", "302 Found", headers={"Location": f"/{count - 1}"})
            return response(b"zero")

        async with Server(handler) as server, open_client() as client:
            followed = await client.fetch(server.url("/3"))
            limited = await client.fetch(server.url("/5"), max_redirects=2, raise_error=False)
            unfollowed = await client.fetch(
                server.url("/1"), follow_redirects=False, raise_error=False
            )
        assert followed.body == b"zero"
        assert followed.effective_url == server.url("/0")
        assert followed.request.url == server.url("/3")
        assert limited.code == 302 and limited.effective_url == server.url("/3")
        assert unfollowed.code == 302 and unfollowed.headers["Location"] == "/0"
        # Redirect hops to the same origin ride the same connection.
        assert server.connections == 1

    run(main)


def test_303_turns_post_into_get_without_body() -> None:
    async def main() -> None:
        def handler(request: Request) -> Reply:
            if request.target == "/form":
                return response(status="303 See Other", headers={"Location": "/done"})
            return response(f"{request.method} {len(request.body)}".encode())

        async with Server(handler) as server, open_client() as client:
            result = await client.fetch(server.url("/form"), method="POST", body=b"abc")
        assert result.body == b"GET 0"
        assert "content-type" not in server.requests[1].headers
        assert result.request.method == "POST"

    run(main)


def test_cross_origin_redirect_drops_credentials() -> None:
    async def main() -> None:
        async with Server(lambda r: response(b"target")) as target:

            def handler(request: Request) -> Reply:
                location = target.url("/t") if request.target == "/away" else "/here"
                if request.target == "/here":
                    return response(b"same")
                return response(status="302 Found", headers={"Location": location})

            async with Server(handler) as origin:
                client = make_client()
                secrets = {
                    "Authorization": "Bearer secret",
                    "Cookie": "session=secret",
                    "Proxy-Authorization": "Basic secret",
                    "X-Other": "kept",
                }
                try:
                    await client.fetch(origin.url("/away"), headers=secrets)
                    await client.fetch(
                        origin.url("/away"), auth_username="me", auth_password="secret"
                    )
                    await client.fetch(origin.url("/stay"), headers=secrets)
                finally:
                    client.close()
                same_origin = origin.requests[-1]
                # Credentials from the client's defaults stay behind as well.
                defaulted = make_client(defaults={"auth_username": "me", "auth_password": "pw"})
                try:
                    await defaulted.fetch(origin.url("/away"))
                finally:
                    defaulted.close()
                assert origin.requests[-1].headers["authorization"] == "Basic bWU6cHc="
        for request in target.requests:
            assert "authorization" not in request.headers
            assert "cookie" not in request.headers
            assert "proxy-authorization" not in request.headers
        assert len(target.requests) == 3
        assert target.requests[0].headers["x-other"] == "kept"
        assert same_origin.target == "/here"
        assert same_origin.headers["authorization"] == "Bearer secret"
        assert same_origin.headers["cookie"] == "session=secret"

    run(main)


# -- hostile servers ----------------------------------------------------------------------


def test_gzip_bomb_stops_at_max_body_size() -> None:
    limit = 64 * 1024
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = compressor.compress(b"\0" * (16 * 1024 * 1024)) + compressor.flush()

    async def main() -> None:
        reply = response(bomb, headers={"Content-Encoding": "gzip"})
        async with Server(lambda r: reply) as server, open_client(max_body_size=limit) as client:
            with pytest.raises(HTTPClientError) as raised:
                await client.fetch(server.url())
            assert raised.value.code == 599
            received = 0

            def count(chunk: bytes) -> None:
                nonlocal received
                received += len(chunk)

            with pytest.raises(HTTPClientError):
                await client.fetch(server.url(), streaming_callback=count)
        assert received <= limit

    run(main)


def test_content_length_over_max_body_size_is_refused() -> None:
    async def main() -> None:
        async with (
            Server(lambda r: response(b"a" * 2000)) as server,
            open_client(max_body_size=1000) as client,
        ):
            with pytest.raises(HTTPClientError) as raised:
                await client.fetch(server.url())
        assert raised.value.code == 599

    run(main)


def test_endless_interim_responses_fail_cleanly() -> None:
    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for _ in range(1000):
            writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
            try:
                await writer.drain()
            except ConnectionError:
                return
        await asyncio.sleep(5)

    async def main() -> None:
        async with Server(hello, raw=raw) as server, open_client() as client:
            with pytest.raises(HTTPStreamClosedError):
                await client.fetch(server.url())

    run(main)


def test_oversized_response_headers_fail_cleanly() -> None:
    async def main() -> None:
        reply = response(b"ok", headers={"X-Filler": "a" * 4000})
        async with Server(lambda r: reply) as server, open_client(max_header_size=1024) as client:
            # As in Tornado: the head that does not fit is an unsatisfiable read.
            with pytest.raises(UnsatisfiableReadError):
                await client.fetch(server.url())

    run(main)


def test_endless_header_block_fails_cleanly() -> None:
    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for _ in range(10000):
                writer.write(b"X-More: " + b"b" * 100 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass

    async def main() -> None:
        async with (
            Server(hello, raw=raw) as server,
            open_client(max_header_size=16 * 1024) as client,
        ):
            with pytest.raises(UnsatisfiableReadError):
                await client.fetch(server.url())

    run(main)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",  # size is not hexadecimal
        b"3\r\nabcdef\r\n0\r\n\r\n",  # chunk longer than announced
        b"-1\r\nabc\r\n0\r\n\r\n",  # negative size
        b"3\r\nabc",  # connection ends mid-body
    ],
)
def test_malformed_chunking_fails_cleanly(body: bytes) -> None:
    async def main() -> None:
        head = response(headers={"Content-Length": None, "Transfer-Encoding": "chunked"})
        async with Server(lambda r: (head + body, True)) as server, open_client() as client:
            with pytest.raises(HTTPClientError) as raised:
                await client.fetch(server.url())
        assert raised.value.code == 599

    run(main)


# -- TLS and proxies ----------------------------------------------------------------------


def server_tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    return context


def test_certificates_are_validated_by_default() -> None:
    async def main() -> None:
        async with (
            Server(hello, ssl_context=server_tls_context()) as server,
            open_client() as client,
        ):
            with pytest.raises(ssl.SSLError):
                await client.fetch(server.url("/"))
            unchecked = await client.fetch(server.url("/a"), validate_cert=False)
            trusted = await client.fetch(server.url("/b"), ca_certs=CERT)
            again = await client.fetch(server.url("/c"), ca_certs=CERT)
        assert unchecked.body == b"hello /a"
        assert trusted.body == b"hello /b"
        assert again.body == b"hello /c"
        # Different TLS settings never share a connection; equal ones do.
        ids = [r.connection_id for r in server.requests]
        assert ids[0] != ids[1] and ids[1] == ids[2]

    run(main)


def test_plain_http_proxy_gets_absolute_form_and_credentials() -> None:
    async def main() -> None:
        async with Server(lambda r: response(r.target.encode())) as proxy, open_client() as client:
            result = await client.fetch(
                "http://origin.invalid:8080/path?q=1",
                proxy_host="127.0.0.1",
                proxy_port=proxy.port,
                proxy_username="user",
                proxy_password="pass",
            )
        assert result.body == b"http://origin.invalid:8080/path?q=1"
        sent = proxy.requests[0]
        assert sent.headers["host"] == "origin.invalid:8080"
        assert sent.headers["proxy-authorization"] == "Basic dXNlcjpwYXNz"

    run(main)


def test_https_through_a_connect_tunnel() -> None:
    async def main() -> None:
        async with Server(hello, ssl_context=server_tls_context()) as origin:
            tunnels: list[str] = []

            async def proxy_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                tunnels.append(head)
                target = head.split(" ")[1]
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

                async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                    try:
                        while data := await src.read(65536):
                            dst.write(data)
                            await dst.drain()
                    except ConnectionError:
                        pass
                    finally:
                        dst.close()

                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

            async with Server(hello, raw=proxy_raw) as proxy, open_client() as client:
                result = await client.fetch(
                    origin.url("/secure"),
                    proxy_host="127.0.0.1",
                    proxy_port=proxy.port,
                    proxy_username="u",
                    proxy_password="p",
                    ca_certs=CERT,
                )
                again = await client.fetch(
                    origin.url("/again"),
                    proxy_host="127.0.0.1",
                    proxy_port=proxy.port,
                    proxy_username="u",
                    proxy_password="p",
                    ca_certs=CERT,
                )
        assert result.body == b"hello /secure"
        assert again.body == b"hello /again"
        assert tunnels[0].startswith(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n")
        assert "Proxy-Authorization: Basic dTpw" in tunnels[0]
        # The origin only ever saw TLS; the proxy saw one tunnel, reused.
        assert proxy.connections == 1

    run(main)


def test_proxy_refusing_connect_fails_the_request() -> None:
    async def main() -> None:
        reply = response(b"no", "407 Proxy Authentication Required")

        async def proxy_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()

        async with Server(hello, raw=proxy_raw) as proxy, open_client() as client:
            with pytest.raises(HTTPClientError) as raised:
                await client.fetch(
                    "https://origin.invalid/", proxy_host="127.0.0.1", proxy_port=proxy.port
                )
        assert raised.value.code == 407

    run(main)


def test_request_defaults_and_response_request_identity() -> None:
    async def main() -> None:
        async with (
            Server(lambda r: response(r.headers["user-agent"].encode())) as server,
            open_client(defaults={"user_agent": "DefaultAgent"}) as client,
        ):
            request = HTTPRequest(server.url())
            result: HTTPResponse = await client.fetch(request)
        assert result.body == b"DefaultAgent"
        assert result.request is request
        assert request.user_agent is None

    run(main)


# -- the pool on its own ------------------------------------------------------------------


class FakeStream:
    def __init__(self) -> None:
        self.is_closed = False
        self.close_callback: Callable[[], None] | None = None
        self.data_handler: Callable[[bytes], None] | None = None
        self.buffered = b""

    def closed(self) -> bool:
        return self.is_closed

    def close(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            if self.close_callback is not None:
                self.close_callback()

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self.close_callback = callback

    def _set_data_handler(self, handler: Callable[[bytes], None] | None) -> None:
        self.data_handler = handler
        if handler is not None and self.buffered:
            data, self.buffered = self.buffered, b""
            handler(data)


def test_pool_hands_back_the_most_recent_live_connection_per_key() -> None:
    from squall._connection_pool import ConnectionPool

    async def main() -> None:
        pool = ConnectionPool(max_idle=10, max_idle_per_key=2, idle_timeout=None)
        older, newer, third, other = FakeStream(), FakeStream(), FakeStream(), FakeStream()
        assert pool.release("a", older) and pool.release("a", newer)
        assert pool.release("b", other)
        # A third idle connection for "a" pushes out the oldest one.
        assert pool.release("a", third)
        assert older.is_closed and pool.idle_count("a") == 2
        assert pool.acquire("a") is third
        assert third.close_callback is None and third.data_handler is None
        newer.close()  # the peer hung up while it was idle
        assert pool.acquire("a") is None
        assert pool.acquire("b") is other
        assert len(pool) == 0

    run(main)


def test_pool_bounds_the_total_and_drops_connections_that_speak() -> None:
    from squall._connection_pool import ConnectionPool

    async def main() -> None:
        pool = ConnectionPool(max_idle=2, max_idle_per_key=2, idle_timeout=None)
        streams = [FakeStream() for _ in range(3)]
        for key, stream in zip("xyz", streams, strict=True):
            pool.release(key, stream)
        # The least recently released connection went first.
        assert streams[0].is_closed and len(pool) == 2
        chatty = FakeStream()
        chatty.buffered = b"HTTP/1.1 408 Request Timeout\r\n\r\n"
        assert not pool.release("w", chatty)
        assert chatty.is_closed
        streams[1].data_handler(b"x")  # type: ignore[misc]
        assert streams[1].is_closed and pool.acquire("y") is None
        pool.close()
        assert streams[2].is_closed
        late = FakeStream()
        assert not pool.release("z", late) and late.is_closed

    run(main)


def test_pool_expires_idle_connections() -> None:
    from squall._connection_pool import ConnectionPool

    async def main() -> None:
        pool = ConnectionPool(idle_timeout=0.01)
        stream = FakeStream()
        pool.release("k", stream)
        await wait_until(lambda: stream.is_closed)
        assert len(pool) == 0

    run(main)


def test_request_target_is_percent_encoded_where_needed() -> None:
    async def main() -> None:
        async with Server(hello) as server, open_client() as client:
            await client.fetch(server.url("/a b/é?x=1 2&y=%41"))
        assert server.requests[0].target == "/a%20b/%C3%A9?x=1%202&y=%41"

    run(main)


# -- reference cycles and connection resets ------------------------------------------------


def _squall_cycle_garbage() -> list[Any]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [
            item
            for item in gc.garbage
            if type(item).__module__.startswith("squall.") and not isinstance(item, type)
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("keep_alive", [True, False])
def test_finished_request_leaves_no_reference_cycle(keep_alive: bool) -> None:
    async def main() -> list[Any]:
        def handler(request: Request) -> Reply:
            reply = hello(request)
            return reply if keep_alive else (reply, True)

        async with Server(handler) as server, open_client() as client:
            await client.fetch(server.url("/warm-up"), decompress_response=False)
            _squall_cycle_garbage()
            response = await client.fetch(server.url("/a"), decompress_response=False)
            assert response.body == b"hello /a"
            del response
            await asyncio.sleep(0.01)
            return _squall_cycle_garbage()

    assert run(main) == []


@pytest.mark.parametrize("keep_alive", [True, False])
def test_finished_request_lets_go_of_its_connection(keep_alive: bool) -> None:
    # The HTTP/1 connection holds the request object as its delegate (through a
    # decompressing wrapper by default): the request object must not hold it in turn.
    seen: list[_HTTPConnection] = []

    class Recording(_HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(self)
            super().__init__(*args, **kwargs)

    class Client(SimpleAsyncHTTPClient):
        def _connection_class(self) -> type[_HTTPConnection]:
            return Recording

    async def main() -> None:
        def handler(request: Request) -> Reply:
            reply = hello(request)
            return reply if keep_alive else (reply, True)

        async with Server(handler) as server:
            client = Client(force_instance=True)
            try:
                await client.fetch(server.url("/a"))
            finally:
                client.close()

    run(main)
    assert len(seen) == 1
    assert seen[0].connection is None and seen[0].stream is None


def _reset(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send a reset instead of a FIN.
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_connection_reset_before_the_response_is_a_599_stream_closed_error() -> None:
    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        _reset(writer)

    async def main() -> None:
        async with Server(hello, raw=raw) as server, open_client() as client:
            with pytest.raises(HTTPStreamClosedError) as raised:
                await client.fetch(server.url())
        assert raised.value.code == 599
        assert isinstance(raised.value.__cause__, ConnectionResetError)

    run(main)


def test_reset_pooled_connection_is_retried_once_for_idempotent_requests() -> None:
    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answer the first request on each connection; reset on the second.
        first = await read_request(reader, 0)
        assert first is not None
        writer.write(hello(first))  # type: ignore[arg-type]
        await writer.drain()
        if await read_request(reader, 0) is not None:
            _reset(writer)

    async def main() -> None:
        async with Server(hello, raw=raw) as server, open_client() as client:
            await client.fetch(server.url("/a"))
            retried = await client.fetch(server.url("/b"))
            with pytest.raises(HTTPStreamClosedError) as raised:
                await client.fetch(server.url("/c"), method="POST", body=b"x")
        assert retried.body == b"hello /b"
        assert raised.value.code == 599
        # /a and /b's first try share a connection, /b's retry and the POST the next one.
        assert server.connections == 2

    run(main)
