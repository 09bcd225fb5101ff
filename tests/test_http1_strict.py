"""Strict HTTP/1.1 framing on the wire: every request-smuggling shape we can name.

Each case sends one malformed request followed by a well-formed one on the same raw
socket. The server must answer the first with the exact status and close the connection,
and never parse the bytes after it as a request: the application's log of the
requests it saw must not contain ``/smuggled``.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from squall import netutil
from squall.httpserver import HTTPServer
from squall.httputil import HTTPServerRequest

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def answer(seen: list[str]):  # type: ignore[no-untyped-def]
    def callback(request: HTTPServerRequest) -> None:
        seen.append(f"{request.method} {request.path} {request.body!r}")
        body = f"{request.method} {request.path} {len(request.body)}".encode()
        assert request.connection is not None
        from squall.httputil import HTTPHeaders, ResponseStartLine

        request.connection.write_headers(
            ResponseStartLine("HTTP/1.1", 200, "OK"),
            HTTPHeaders({"Content-Length": str(len(body))}),
            body,
        )
        request.connection.finish()

    return callback


async def exchange(payload: bytes, **server_options: object) -> tuple[bytes, list[str]]:
    """Sends ``payload``; returns everything the server sent until it closed, and the log."""
    seen: list[str] = []
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server = HTTPServer(answer(seen), **server_options)  # type: ignore[arg-type]
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    try:
        received = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        server.stop()
        await server.close_all_connections()
    return received, seen


def run(payload: bytes, **options: object) -> tuple[bytes, list[str]]:
    return asyncio.run(exchange(payload, **options))


def status_lines(received: bytes) -> list[bytes]:
    # (the answers carry no "HTTP/1.1 " in their bodies, so a search finds each head)
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r\n]*", received)


BAD_REQUESTS = {
    # Content-Length / Transfer-Encoding conflicts
    "cl-and-te": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 4\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Content-Length: 5\r\n\r\nabcde",
    "listed-content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcde",
    "signed-content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
    "hex-content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd",
    "spaced-content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4 4\r\n\r\nabcd",
    "negative-content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "huge-content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1"
    + b"0" * 20
    + b"\r\n\r\n",
    "te-chunked-twice": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-listed": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-identity": b"POST / HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-unknown": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n"
    b"\r\n0\r\n\r\n",
    "te-in-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-and-cl-in-http10": b"POST / HTTP/1.0\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    # chunk framing
    "chunk-size-0x": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-too-long": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"f" * 17
    + b"\r\nhello\r\n0\r\n\r\n",
    "chunk-size-bare-lf": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\nhello\r\n0\r\n\r\n",
    "chunk-size-bare-cr": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\rhello\r\n0\r\n\r\n",
    "chunk-extension-nul": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;a=\x00\r\nhello\r\n0\r\n\r\n",
    "chunk-extension-bare-lf": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
    "chunk-data-too-long": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhelloXX\r\n0\r\n\r\n",
    "chunk-data-bare-lf": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\n0\r\n\r\n",
    "chunk-line-too-long": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n",
    "trailer-bare-lf": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
    "trailer-fold": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-T: 1\r\n continued\r\n\r\n",
    # field lines
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
    "obs-fold-tab": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tfolded\r\n\r\n",
    "fold-on-first-line": b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "bare-cr-line-end": b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "nul-in-name": b"GET / HTTP/1.1\r\nHost: x\r\nX-\x00A: b\r\n\r\n",
    "space-in-name": b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n",
    "empty-name": b"GET / HTTP/1.1\r\nHost: x\r\n: value\r\n\r\n",
    # request line
    "double-space-request-line": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "extra-token-request-line": b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "lowercase-version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
    "http2-version": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "nul-in-target": b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare-cr-request-line": b"GET / HTTP/1.1\rHost: x\r\n\r\n",
    # Host
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no-host-http11": b"GET / HTTP/1.1\r\n\r\n",
    "bad-host": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_framing_is_answered_400_and_nothing_after_it_is_parsed(name: str) -> None:
    received, seen = run(BAD_REQUESTS[name] + SMUGGLED)
    # (the exact bytes Tornado sends; reading until the end proves the server closed)
    assert received == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert all("/smuggled" not in entry for entry in seen), seen
    assert seen == []


@pytest.mark.parametrize(
    "payload, status",
    [
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000, 413),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n"
            + b"a" * 2000
            + b"\r\n0\r\n\r\n",
            413,
        ),
    ],
    ids=["long-request-line", "long-header", "body-over-limit", "chunked-over-limit"],
)
def test_oversized_parts_get_their_status_and_close(payload: bytes, status: int) -> None:
    received, seen = run(payload + SMUGGLED, max_body_size=1000)
    (line,) = status_lines(received)
    assert line.startswith(b"HTTP/1.1 %d " % status), received
    assert seen == []


def test_a_valid_request_before_the_bad_one_is_served_and_the_rest_dropped() -> None:
    good = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    received, seen = run(good + BAD_REQUESTS["cl-and-te"] + SMUGGLED)
    assert status_lines(received) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
    assert seen == ["GET /first b''"]


@pytest.mark.parametrize(
    "payload, body",
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", b"hello"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            b"hello",
        ),
        (b"GET / HTTP/1.1\nHost: x\n\n", b""),
    ],
    ids=["equal-listed-lengths", "te-case-and-space", "chunk-extension", "trailer", "bare-lf-head"],
)
def test_lenient_where_the_rfc_allows_and_keep_alive_continues(payload: bytes, body: bytes) -> None:
    received, seen = run(payload + b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_lines(received) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
    assert seen[0].endswith(repr(body)) and seen[1] == "GET /next b''"


def test_http10_request_with_transfer_encoding_closes_even_after_keep_alive() -> None:
    received, seen = run(BAD_REQUESTS["te-in-http10"] + b"GET /second HTTP/1.0\r\n\r\n")
    assert status_lines(received) == [b"HTTP/1.1 400 Bad Request"]
    assert seen == []


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"http://example.com/path?a=1", "GET /path ?a=1 example.com"),
        (b"HTTP://example.com:8080/path", "GET /path ? example.com:8080"),
        (b"https://example.com", "GET / ? example.com"),
    ],
)
def test_absolute_form_targets_route_on_their_path_and_name_the_host(
    target: bytes, expected: str
) -> None:
    from squall import web

    class Show(web.RequestHandler):
        def get(self) -> None:
            query = "?" + self.request.query if self.request.query else "?"
            self.write(f"{self.request.method} {self.request.path} {query} {self.request.host}")

    async def go() -> bytes:
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        server = HTTPServer(web.Application([(r"/.*", Show)]))
        server.add_sockets(sockets)
        reader, writer = await asyncio.open_connection("127.0.0.1", sockets[0].getsockname()[1])
        # the Host field is ignored in favour of the target's authority (RFC 9112 3.2.2)
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        server.stop()
        await server.close_all_connections()
        return received

    received = asyncio.run(go())
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.endswith(expected.encode())
