"""HTTPServer over real sockets: framing, keep-alive, limits, timeouts and bad input.

Clients here are raw asyncio streams on 127.0.0.1 so that every byte on the wire is the
test's choice (the HTTP client is tested elsewhere).
"""

import asyncio
import gzip
import logging
import os
import socket
import ssl
import tempfile

import pytest

from squall import netutil
from squall.http1connection import HTTP1Connection
from squall.httpserver import HTTPServer
from squall.httputil import (
    HTTPHeaders,
    HTTPMessageDelegate,
    HTTPServerConnectionDelegate,
    HTTPServerRequest,
    RequestStartLine,
    ResponseStartLine,
)

CERT_DIR = os.path.join(os.path.dirname(__file__), "..", "squall", "test")


def run(coro_fn, timeout=15):
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=timeout))


class RecordingHandler(HTTPMessageDelegate):
    """Answers every request with a summary of what it received."""

    def __init__(self, app, connection):
        self.app = app
        self.connection = connection
        self.chunks = []

    def headers_received(self, start_line, headers):
        self.start_line = start_line
        self.headers = headers
        self.app.events.append(("head", start_line.method, start_line.path))
        if self.app.pause_headers:
            return asyncio.sleep(0.01)
        return None

    def data_received(self, chunk):
        self.chunks.append(chunk)
        self.app.chunk_sizes.append(len(chunk))
        if self.app.pause_data:
            return asyncio.sleep(0)
        return None

    def finish(self):
        body = b"".join(self.chunks)
        self.app.events.append(("finish", self.start_line.path, len(body)))
        if self.start_line.path == "/noanswer":
            return
        if self.start_line.path == "/raise":
            raise ValueError("boom")
        reply = b"%s %s %d:%s" % (
            self.start_line.method.encode(),
            self.start_line.path.encode(),
            len(body),
            body[:64],
        )
        headers = HTTPHeaders({"Content-Length": str(len(reply))})
        if self.start_line.path == "/chunked":
            headers = HTTPHeaders()
            self.connection.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"), headers)
            self.connection.write(b"hello ")
            self.connection.write(b"world")
            self.connection.finish()
            return
        self.connection.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"), headers, reply)
        self.connection.finish()

    def on_connection_close(self):
        self.app.events.append(("closed", getattr(self, "start_line", None)))


class RecordingApp(HTTPServerConnectionDelegate):
    def __init__(self):
        self.events = []
        self.chunk_sizes = []
        self.pause_headers = False
        self.pause_data = False

    def start_request(self, server_conn, request_conn):
        return RecordingHandler(self, request_conn)


class Server:
    def __init__(self, app=None, **kwargs):
        self.app = app or RecordingApp()
        self.kwargs = kwargs

    async def __aenter__(self):
        sockets = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        self.server = HTTPServer(self.app, **self.kwargs)
        self.server.add_sockets(sockets)
        return self

    async def __aexit__(self, *exc):
        self.server.stop()
        await self.server.close_all_connections()

    async def connect(self):
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, data: bytes) -> bytes:
        """Sends ``data`` and returns everything until the server closes."""
        reader, writer = await self.connect()
        writer.write(data)
        try:
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()


async def read_response(reader):
    """Reads one Content-Length or chunked response; returns (status line, headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, _, rest = head.decode("latin1").partition("\r\n")
    headers = HTTPHeaders.parse(rest)
    if "Content-Length" in headers:
        body = await reader.readexactly(int(headers["Content-Length"]))
    elif headers.get("Transfer-Encoding") == "chunked":
        pieces = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            pieces.append(data[:-2])
        body = b"".join(pieces)
    else:
        body = b""
    return status, headers, body


GET = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"


def status_of(response: bytes) -> bytes:
    return response.split(b"\r\n", 1)[0]


# Requests answered normally


def test_simple_get_gets_response_with_body():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            writer.write(GET)
            status, headers, body = await read_response(reader)
            assert status == "HTTP/1.1 200 OK"
            assert body == b"GET /a 0:"
            assert "Connection" not in headers
            writer.close()

    run(main)


def test_keep_alive_serves_several_requests_on_one_connection():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            for path in (b"/1", b"/2", b"/3"):
                writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                _, _, body = await read_response(reader)
                assert body.startswith(b"GET " + path)
            writer.close()

    run(main)


def test_pipelined_requests_are_answered_in_order():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20)))
            for i in range(20):
                _, _, body = await read_response(reader)
                assert body == b"GET /%d 0:" % i
            writer.close()

    run(main)


def test_pipelined_requests_wait_for_async_handlers():
    async def main():
        app = RecordingApp()
        app.pause_headers = True
        async with Server(app) as server:
            reader, writer = await server.connect()
            writer.write(
                b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /q HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert (await read_response(reader))[2] == b"POST /p 3:abc"
            assert (await read_response(reader))[2] == b"GET /q 0:"
            writer.close()

    run(main)


def test_connection_close_request_gets_close_header_and_closed_connection():
    async def main():
        async with Server() as server:
            response = await server.exchange(
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert b"\r\nConnection: close\r\n" in response
            assert response.endswith(b"GET / 0:")

    run(main)


def test_http10_closes_unless_keep_alive_requested():
    async def main():
        async with Server() as server:
            response = await server.exchange(b"GET / HTTP/1.0\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Connection" not in response
            reader, writer = await server.connect()
            for _ in range(2):
                writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                _, headers, _ = await read_response(reader)
                assert headers["Connection"] == "Keep-Alive"
            writer.close()

    run(main)


def test_content_length_body_is_delivered():
    async def main():
        async with Server() as server:
            response = await server.exchange(
                b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            )
            assert response.endswith(b"POST /b 5:hello")

    run(main)


def test_chunked_request_body_is_decoded():
    async def main():
        async with Server() as server:
            response = await server.exchange(
                b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n"
                b"4\r\nfoo=\r\n3;ext=1\r\nbar\r\n0\r\nTrailer: x\r\n\r\n"
            )
            assert response.endswith(b"POST /c 7:foo=bar")

    run(main)


def test_chunked_response_when_no_content_length():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            writer.write(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert headers["Transfer-Encoding"] == "chunked"
            assert body == b"hello world"
            # The connection is still usable afterwards.
            writer.write(GET)
            assert (await read_response(reader))[2] == b"GET /a 0:"
            writer.close()

    run(main)


def test_http10_response_without_length_is_delimited_by_close():
    async def main():
        async with Server() as server:
            response = await server.exchange(
                b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            )
            assert b"Transfer-Encoding" not in response
            assert response.endswith(b"\r\n\r\nhello world")

    run(main)


def test_body_chunks_respect_chunk_size():
    async def main():
        app = RecordingApp()
        async with Server(app, chunk_size=16) as server:
            await server.exchange(
                b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\nConnection: close\r\n\r\n"
                + b"x" * 50
            )
        assert app.chunk_sizes == [16, 16, 16, 2]

    run(main)


def test_streaming_body_pauses_for_async_data_received():
    async def main():
        app = RecordingApp()
        app.pause_data = True
        async with Server(app, chunk_size=1024) as server:
            body = b"y" * 10000
            response = await server.exchange(
                b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n"
                b"Connection: close\r\n\r\n" + body
            )
            assert b"POST /s 10000:" in response
        assert sum(app.chunk_sizes) == 10000
        assert max(app.chunk_sizes) <= 1024

    run(main)


def test_expect_100_continue_gets_interim_response():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            writer.write(
                b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100 ")
            writer.write(b"data")
            assert (await read_response(reader))[2] == b"POST /e 4:data"
            writer.close()

    run(main)


def test_head_response_has_no_body_and_keeps_connection():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            writer.write(b"HEAD /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Transfer-Encoding" not in head
            writer.write(GET)
            status, _, body = await read_response(reader)
            assert status == "HTTP/1.1 200 OK" and body == b"GET /a 0:"
            writer.close()

    run(main)


def test_decompress_request_gunzips_body():
    async def main():
        async with Server(decompress_request=True) as server:
            body = gzip.compress(b"a" * 10) + gzip.compress(b"b")
            response = await server.exchange(
                b"POST /z HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            assert response.endswith(b"POST /z 11:aaaaaaaaaab")

    run(main)


def test_decompress_request_rejects_bad_gzip_and_gzip_bombs(caplog):
    async def main():
        async with Server(decompress_request=True, max_body_size=1000) as server:
            bad = gzip.compress(b"abc")[:-3]
            response = await server.exchange(
                b"POST /z HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n" % len(bad) + bad
            )
            assert status_of(response) == b"HTTP/1.1 400 Bad Request"
            bomb = gzip.compress(b"\0" * 100000)
            response = await server.exchange(
                b"POST /z HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb
            )
            assert status_of(response) == b"HTTP/1.1 400 Bad Request"

    with caplog.at_level(logging.INFO, logger="squall.general"):
        run(main)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "invalid gzip data" in messages
    assert "decompressed body too large" in messages


def test_legacy_callback_interface_gets_request_object():
    seen = []

    def handle(request):
        seen.append((request.method, request.uri, request.body, request.arguments))
        message = b"legacy"
        request.connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n" + message)
        request.connection.finish()

    async def main():
        async with Server(handle) as server:
            response = await server.exchange(
                b"POST /l?x=1 HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 3\r\n\r\ny=2"
            )
            assert response.endswith(b"\r\n\r\nlegacy")

    run(main)
    assert seen == [("POST", "/l?x=1", b"y=2", {"x": [b"1"], "y": [b"2"]})]


def test_xheaders_set_remote_ip_and_protocol():
    seen = []

    def handle(request):
        seen.append((request.remote_ip, request.protocol))
        request.connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        request.connection.finish()

    async def main():
        async with Server(handle, xheaders=True, trusted_downstream=["5.5.5.5"]) as server:
            # A raw response written by a legacy callback cannot be framed by the
            # server, so each request gets its own connection.
            for extra in (
                b"X-Forwarded-For: 1.1.1.1, 4.4.4.4, 5.5.5.5\r\nX-Forwarded-Proto: https\r\n",
                b"X-Real-Ip: 4.4.4.4<script>\r\n",
                b"",
            ):
                await server.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")

    run(main)
    assert seen == [("4.4.4.4", "https"), ("127.0.0.1", "http"), ("127.0.0.1", "http")]


def test_no_keep_alive_closes_after_each_response():
    async def main():
        async with Server(no_keep_alive=True) as server:
            response = await server.exchange(GET)
            assert b"Connection: close" in response

    run(main)


def test_unix_socket_serves_requests():
    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s.sock")
            server = HTTPServer(RecordingApp())
            server.add_socket(netutil.bind_unix_socket(path))
            try:
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(b"GET /u HTTP/1.0\r\n\r\n")
                response = await asyncio.wait_for(reader.read(), 5)
                assert response.endswith(b"GET /u 0:")
                writer.close()
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(b"garbage\r\n\r\n")
                response = await asyncio.wait_for(reader.read(), 5)
                assert response == b"HTTP/1.1 400 Bad Request\r\n\r\n"
                writer.close()
            finally:
                server.stop()
                await server.close_all_connections()

    run(main)


def test_tls_with_ssl_context():
    async def main():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(
            os.path.join(CERT_DIR, "test.crt"), os.path.join(CERT_DIR, "test.key")
        )
        async with Server(ssl_options=context) as server:
            client_context = ssl.create_default_context()
            client_context.check_hostname = False
            client_context.verify_mode = ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=client_context
            )
            writer.write(GET)
            status, _, body = await read_response(reader)
            assert status == "HTTP/1.1 200 OK" and body == b"GET /a 0:"
            writer.close()

    run(main)


def test_close_all_connections_closes_idle_connections():
    async def main():
        async with Server() as server:
            reader, writer = await server.connect()
            writer.write(GET)
            await read_response(reader)
            await server.server.close_all_connections()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main)


# Bad input: each gets a 400 (or 413/431) and a close, logged below ERROR.

BAD_REQUESTS = {
    "malformed request line": b"asdf\r\n\r\n",
    "two spaces in request line": b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "invalid method token": b"FOO,BAR / HTTP/1.1\r\nHost: x\r\n\r\n",
    "unsupported version": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "NUL in request line": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "control char in target": b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare CR in request line": b"GET / HTTP/1.1\rHost: x\r\n\r\n",
    "no colon in header": b"GET / HTTP/1.1\r\nHost: x\r\nasdf\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost: x\r\nFoo : bar\r\n\r\n",
    "invalid header name": b"GET / HTTP/1.1\r\nHost: x\r\nF(o): bar\r\n\r\n",
    "NUL in header value": b"GET / HTTP/1.1\r\nHost: x\r\nFoo: b\x00r\r\n\r\n",
    "control char in header value": b"GET / HTTP/1.1\r\nHost: x\r\nFoo: b\x01r\r\n\r\n",
    "bare CR in header value": b"GET / HTTP/1.1\r\nHost: x\r\nFoo: b\rr\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\nHost: x\r\nFoo: bar\r\n baz\r\n\r\n",
    "missing host": b"GET / HTTP/1.1\r\n\r\n",
    "duplicate host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "host with whitespace": b"GET / HTTP/1.0\r\nHost: foo bar\r\n\r\n",
    "content-length plus sign": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx",
    "content-length underscore": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n",
    "content-length hex": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\nx",
    "content-length not a number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: foo\r\n\r\n",
    "content-length inner space": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\n",
    "content-length nbsp": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\xa0\r\n\r\nok",
    "conflicting content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok"
    ),
    "content-length list unequal": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5,\xa05\r\n\r\n",
    "transfer-encoding and content-length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "transfer-encoding gzip, chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding chunked twice": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding identity": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n"
    ),
    "transfer-encoding nbsp": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n"
    ),
    "chunk size underscore": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1_a\r\n"
        + b"x" * 26
        + b"\r\n0\r\n\r\n"
    ),
    "chunk size hex prefix": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n"
    ),
    "chunk size sign": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n"
    ),
    "chunk size whitespace": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 2\r\nok\r\n0\r\n\r\n"
    ),
    "chunk size bare LF": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n"
    ),
    "chunk data not followed by CRLF": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_gets_400_and_close(name, caplog):
    async def main():
        async with Server() as server:
            response = await server.exchange(BAD_REQUESTS[name])
            assert response == b"HTTP/1.1 400 Bad Request\r\n\r\n", response
            # The server is still fine for other clients.
            reader, writer = await server.connect()
            writer.write(GET)
            assert (await read_response(reader))[0] == "HTTP/1.1 200 OK"
            writer.close()

    with caplog.at_level(logging.DEBUG):
        run(main)
    assert all(r.levelno < logging.ERROR for r in caplog.records)
    assert any("Malformed HTTP message" in r.getMessage() for r in caplog.records)


def test_oversized_head_gets_431():
    async def main():
        async with Server(max_header_size=1024) as server:
            response = await server.exchange(
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 2000 + b"\r\n\r\n"
            )
            assert status_of(response) == b"HTTP/1.1 431 Request Header Fields Too Large"

    run(main)


def test_oversized_head_without_terminator_gets_431():
    async def main():
        async with Server(max_header_size=1024) as server:
            response = await server.exchange(b"GET / HTTP/1.1\r\nX: " + b"a" * 5000)
            assert status_of(response) == b"HTTP/1.1 431 Request Header Fields Too Large"

    run(main)


def test_oversized_body_gets_413():
    async def main():
        async with Server(max_body_size=100) as server:
            response = await server.exchange(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n" + b"x" * 101
            )
            assert status_of(response) == b"HTTP/1.1 413 Content Too Large"
            chunked = b"".join(b"20\r\n" + b"x" * 32 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
            response = await server.exchange(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
            )
            assert status_of(response) == b"HTTP/1.1 413 Content Too Large"

    run(main)


def test_max_body_size_override_per_request():
    class App(RecordingApp):
        def start_request(self, server_conn, request_conn):
            if isinstance(request_conn, HTTP1Connection):
                request_conn.set_max_body_size(1000)
            return super().start_request(server_conn, request_conn)

    async def main():
        async with Server(App(), max_body_size=100) as server:
            reader, writer = await server.connect()
            writer.write(
                b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"x" * 500
            )
            assert (await read_response(reader))[2].startswith(b"POST /big 500:")
            writer.close()

    run(main)


def test_pipelined_request_after_bad_one_is_not_served():
    async def main():
        app = RecordingApp()
        async with Server(app) as server:
            response = await server.exchange(
                GET + b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx" + GET
            )
            assert response.count(b"HTTP/1.1 200 OK") == 1
            assert response.endswith(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        assert [e for e in app.events if e[0] == "head"] == [("head", "GET", "/a")]

    run(main)


def test_handler_exception_is_logged_and_connection_closed(caplog):
    async def main():
        async with Server() as server:
            response = await server.exchange(b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response == b""

    with caplog.at_level(logging.ERROR):
        run(main)
    assert any("Uncaught exception" in r.getMessage() for r in caplog.records)


def test_invalid_response_content_length_raises():
    errors = []

    class Handler(HTTPMessageDelegate):
        def __init__(self, connection):
            self.connection = connection

        def finish(self):
            for value in ("+10", "1_0", "foo"):
                try:
                    self.connection.write_headers(
                        ResponseStartLine("HTTP/1.1", 200, "OK"),
                        HTTPHeaders({"Content-Length": value}),
                    )
                except Exception as e:
                    errors.append(type(e).__name__)
            self.connection.write_headers(
                ResponseStartLine("HTTP/1.1", 200, "OK"), HTTPHeaders({"X-Bad": "a\r\nb: c"})
            )

    class App(HTTPServerConnectionDelegate):
        def start_request(self, server_conn, request_conn):
            return Handler(request_conn)

    async def main():
        async with Server(App()) as server:
            response = await server.exchange(GET)
            assert b"b: c" not in response

    logging.getLogger("squall.application").disabled = True
    try:
        run(main)
    finally:
        logging.getLogger("squall.application").disabled = False
    assert errors == ["HTTPOutputError"] * 3


# Slow and vanishing clients


def test_idle_connection_is_closed_after_timeout():
    async def main():
        async with Server(idle_connection_timeout=0.1) as server:
            reader, writer = await server.connect()
            writer.write(GET)
            await read_response(reader)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main)


def test_busy_keep_alive_connection_outlives_the_idle_timeout():
    # The idle timer measures time spent waiting for a head, not the connection's age:
    # requests that keep arriving within the timeout keep the connection open.
    async def main():
        async with Server(idle_connection_timeout=0.5) as server:
            reader, writer = await server.connect()
            for _ in range(5):
                writer.write(GET)
                status, _, _ = await asyncio.wait_for(read_response(reader), 5)
                assert status.startswith("HTTP/1.1 200")
                await asyncio.sleep(0.15)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main)


def test_idle_timer_firing_during_a_slow_response_does_not_close():
    class SlowHandler(HTTPMessageDelegate):
        def __init__(self, connection):
            self.connection = connection

        def finish(self):
            asyncio.get_running_loop().call_later(0.3, self.respond)

        def respond(self):
            self.connection.write_headers(
                ResponseStartLine("HTTP/1.1", 200, "OK"),
                HTTPHeaders({"Content-Length": "2"}),
                b"ok",
            )
            self.connection.finish()

    class App(HTTPServerConnectionDelegate):
        def start_request(self, server_conn, request_conn):
            return SlowHandler(request_conn)

    async def main():
        async with Server(App(), idle_connection_timeout=0.1) as server:
            reader, writer = await server.connect()
            writer.write(GET)
            _, _, body = await asyncio.wait_for(read_response(reader), 5)
            assert body == b"ok"
            # Idle again: now the timeout applies.
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main)


def test_one_shared_sweep_closes_every_idle_connection_and_then_stops():
    from squall import http1connection

    async def main():
        async with Server(idle_connection_timeout=0.2) as server:
            connections = []
            for _ in range(4):
                reader, writer = await server.connect()
                writer.write(GET)
                await asyncio.wait_for(read_response(reader), 5)
                connections.append((reader, writer))
                await asyncio.sleep(0.03)  # staggered idle start times
            loop = asyncio.get_running_loop()
            sweeper = http1connection._sweepers[(loop, 0.2)]
            # One sweeper, one pending timer, for all idle connections.
            assert len(sweeper.connections) == 4
            assert sweeper.timer is not None
            for reader, writer in connections:
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
            for _ in range(100):
                if (loop, 0.2) not in http1connection._sweepers:
                    break
                await asyncio.sleep(0.02)
            # Nobody waits any more: the sweep stopped and released the loop.
            assert (loop, 0.2) not in http1connection._sweepers
            assert sweeper.timer is None and not sweeper.connections

    run(main)


def test_slow_head_is_closed_after_header_timeout():
    async def main():
        async with Server(idle_connection_timeout=0.1) as server:
            reader, writer = await server.connect()
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main)


def test_slow_body_is_closed_after_body_timeout(caplog):
    async def main():
        app = RecordingApp()
        async with Server(app, body_timeout=0.1) as server:
            reader, writer = await server.connect()
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\nabc")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        assert app.events[-1] == ("closed", app.events[0] and app.events[-1][1])

    with caplog.at_level(logging.INFO, logger="squall.general"):
        run(main)
    assert any("Timeout reading body" in r.getMessage() for r in caplog.records)


def test_client_closing_mid_body_notifies_handler():
    async def main():
        app = RecordingApp()
        async with Server(app) as server:
            reader, writer = await server.connect()
            writer.write(b"POST /m HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            await writer.drain()
            for _ in range(100):
                if app.events:
                    break
                await asyncio.sleep(0.01)
            writer.close()
            for _ in range(100):
                if app.events[-1][0] == "closed":
                    break
                await asyncio.sleep(0.01)
        assert app.events[0] == ("head", "POST", "/m")
        assert app.events[-1][0] == "closed"

    run(main)


def test_client_closing_before_response_does_not_break_server():
    async def main():
        app = RecordingApp()
        async with Server(app) as server:
            reader, writer = await server.connect()
            writer.write(b"GET /noanswer HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            writer.close()
            reader, writer = await server.connect()
            writer.write(GET)
            assert (await read_response(reader))[0] == "HTTP/1.1 200 OK"
            writer.close()

    run(main)


def test_pipelining_client_is_not_buffered_without_bound():
    async def main():
        app = RecordingApp()
        async with Server(app) as server:
            reader, writer = await server.connect()
            # The first request is never answered; what follows must not pile up
            # in the server beyond its pipelining buffer.
            writer.write(b"GET /noanswer HTTP/1.1\r\nHost: x\r\n\r\n")
            chunk = GET * 1000
            sent = 0
            try:
                for _ in range(200):
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 0.2)
                    sent += len(chunk)
            except asyncio.TimeoutError:
                pass
            connection = next(iter(server.server._connections))
            assert connection._parser.buffered <= 2 * 1024 * 1024
            writer.close()

    run(main)


def test_reuse_port_lets_two_servers_share_a_port():
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("SO_REUSEPORT not available")

    async def main():
        first = HTTPServer(RecordingApp())
        probe = netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET, reuse_port=True)
        port = probe[0].getsockname()[1]
        for sock in probe:
            sock.close()
        first.bind(port, "127.0.0.1", family=socket.AF_INET, reuse_port=True)
        first.start(1)
        second = HTTPServer(RecordingApp())
        second.bind(port, "127.0.0.1", family=socket.AF_INET, reuse_port=True)
        second.start(1)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET)
            assert (await read_response(reader))[2] == b"GET /a 0:"
            writer.close()
        finally:
            for server in (first, second):
                server.stop()
                await server.close_all_connections()

    run(main)


def test_tiny_chunk_flood_is_throttled_not_buffered():
    async def main():
        app = RecordingApp()
        async with Server(app, max_body_size=1 << 30) as server:
            reader, writer = await server.connect()
            writer.write(b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"1\r\nx\r\n" * 20000
            try:
                for _ in range(100):
                    writer.write(piece)
                    await asyncio.wait_for(writer.drain(), 0.2)
            except asyncio.TimeoutError:
                pass
            connection = next(iter(server.server._connections))
            assert connection._parser.buffered <= 4 * 1024 * 1024
            writer.close()

    run(main)


def test_closed_connections_are_forgotten():
    async def main():
        async with Server() as server:
            for _ in range(20):
                reader, writer = await server.connect()
                writer.write(GET)
                await read_response(reader)
                writer.close()
            for _ in range(200):
                if not server.server._connections:
                    break
                await asyncio.sleep(0.01)
            assert not server.server._connections

    run(main)


def test_client_certificate_is_available_to_the_application():
    certs = []

    class Handler(HTTPMessageDelegate):
        def __init__(self, connection):
            self.connection = connection

        def headers_received(self, start_line, headers):
            # The stream learns its peer's certificate when the handshake is over; an
            # awaitable from the delegate holds the request until then.
            return self.connection.stream.wait_for_handshake()

        def finish(self):
            request = HTTPServerRequest(
                connection=self.connection, start_line=RequestStartLine("GET", "/", "HTTP/1.1")
            )
            certs.append(
                (request.protocol, request.get_ssl_certificate(), request.get_ssl_certificate(True))
            )
            self.connection.write_headers(
                ResponseStartLine("HTTP/1.1", 200, "OK"),
                HTTPHeaders({"Content-Length": "0", "Connection": "close"}),
            )
            self.connection.finish()

    class App(HTTPServerConnectionDelegate):
        def start_request(self, server_conn, request_conn):
            return Handler(request_conn)

    async def main():
        cert, key = os.path.join(CERT_DIR, "test.crt"), os.path.join(CERT_DIR, "test.key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cert)
        async with Server(App(), ssl_options=context) as server:
            client_context = ssl.create_default_context()
            client_context.check_hostname = False
            client_context.verify_mode = ssl.CERT_NONE
            client_context.load_cert_chain(cert, key)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=client_context
            )
            writer.write(GET)
            await asyncio.wait_for(reader.read(), 5)
            writer.close()

    run(main)
    protocol, as_dict, as_der = certs[0]
    assert protocol == "https"
    assert dict(x[0] for x in as_dict["subject"])["commonName"] == "localhost"
    assert isinstance(as_der, bytes) and len(as_der) > 100
