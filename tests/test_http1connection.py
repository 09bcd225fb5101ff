"""HTTP1Connection over a connected socket pair: client side, detach, flow control."""

import asyncio
import logging
import socket

from squall.http1connection import (
    _MAX_1XX_RESPONSES,
    HTTP1Connection,
    HTTP1ConnectionParameters,
    HTTP1ServerConnection,
    is_transfer_encoding_chunked,
)
from squall.httputil import (
    HTTPHeaders,
    HTTPInputError,
    HTTPMessageDelegate,
    HTTPServerConnectionDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from squall.iostream import IOStream


def run(coro_fn, timeout=10):
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=timeout))


async def stream_pair():
    left, right = socket.socketpair()
    a, b = IOStream(left), IOStream(right)
    # Let both streams attach to the loop's transports before reads are taken over.
    for _ in range(200):
        if a._transport is not None and b._transport is not None:
            break
        await asyncio.sleep(0.005)
    return a, b


class Collector(HTTPMessageDelegate):
    def __init__(self, detach_conn=None):
        self.heads = []
        self.chunks = []
        self.finished = 0
        self.closed = 0
        self.detach_conn = detach_conn

    def headers_received(self, start_line, headers):
        self.heads.append((start_line, headers))

    def data_received(self, chunk):
        self.chunks.append(chunk)

    def finish(self):
        self.finished += 1
        if self.detach_conn is not None:
            self.detach_conn.detach()

    def on_connection_close(self):
        self.closed += 1

    @property
    def body(self):
        return b"".join(self.chunks)


def test_client_writes_request_and_reads_response():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        await conn.write_headers(
            RequestStartLine("POST", "/x", "HTTP/1.1"),
            HTTPHeaders({"Host": "h", "Content-Length": "2"}),
            b"hi",
        )
        conn.finish()
        request = await server.read_until(b"\r\n\r\n")
        assert request.startswith(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n")
        assert await server.read_bytes(2) == b"hi"
        server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        delegate = Collector()
        assert await conn.read_response(delegate) is True
        assert delegate.heads[0][0].code == 200
        assert (delegate.body, delegate.finished, delegate.closed) == (b"hello", 1, 0)
        # Keep-alive: the stream is handed back, usable for plain reads again.
        server.write(b"more")
        assert await client.read_bytes(4) == b"more"
        client.close()
        server.close()

    run(main)


def test_client_chunked_request_body():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        conn.write_headers(RequestStartLine("PUT", "/", "HTTP/1.1"), HTTPHeaders({"Host": "h"}))
        conn.write(b"abc")
        conn.write(b"")
        conn.write(b"de")
        conn.finish()
        head = await server.read_until(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert await server.read_until(b"0\r\n\r\n") == b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        client.close()
        server.close()

    run(main)


def test_client_skips_informational_responses_and_closes_on_connection_close():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        conn.write_headers(RequestStartLine("GET", "/", "HTTP/1.1"), HTTPHeaders({"Host": "h"}))
        conn.finish()
        server.write(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n"
            b"Content-Length: 2\r\n\r\nok"
        )
        delegate = Collector()
        assert await conn.read_response(delegate) is True
        assert [h[0].code for h in delegate.heads] == [100, 200]
        assert delegate.body == b"ok" and delegate.finished == 1
        assert client.closed()
        server.close()

    run(main)


def test_client_gives_up_after_too_many_informational_responses(caplog):
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        server.write(b"HTTP/1.1 100 Continue\r\n\r\n" * (_MAX_1XX_RESPONSES + 1))
        delegate = Collector()
        assert await conn.read_response(delegate) is False
        assert delegate.closed == 1
        server.close()

    with caplog.at_level(logging.INFO):
        run(main)


def test_client_reads_body_until_close():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        server.write(b"HTTP/1.0 200 OK\r\n\r\nuntil ")
        delegate = Collector()
        future = conn.read_response(delegate)
        await asyncio.sleep(0.01)
        await server.write(b"the end")
        server.close()
        assert await future is True
        assert delegate.body == b"until the end" and delegate.closed == 0

    run(main)


def test_client_head_request_response_has_no_body():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        conn.write_headers(RequestStartLine("HEAD", "/", "HTTP/1.1"), HTTPHeaders({"Host": "h"}))
        conn.finish()
        server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        delegate = Collector()
        assert await conn.read_response(delegate) is True
        assert delegate.body == b"" and delegate.finished == 1
        client.close()
        server.close()

    run(main)


def test_client_truncated_response_notifies_delegate():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        await server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        server.close()
        delegate = Collector()
        assert await conn.read_response(delegate) is False
        assert delegate.closed == 1 and delegate.finished == 0

    run(main)


def test_client_decompresses_gzip_response():
    import gzip

    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True, HTTP1ConnectionParameters(decompress=True))
        body = gzip.compress(b"squall " * 100)
        server.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        delegate = Collector()
        assert await conn.read_response(delegate) is True
        assert delegate.body == b"squall " * 100
        headers = delegate.heads[0][1]
        assert "Content-Encoding" not in headers
        assert headers["X-Consumed-Content-Encoding"] == "gzip"
        client.close()
        server.close()

    run(main)


def test_detach_hands_back_unparsed_bytes():
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        server.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nframe-bytes")

        class Upgrader(Collector):
            def headers_received(self, start_line, headers):
                super().headers_received(start_line, headers)
                self.stream = conn.detach()

        delegate = Upgrader()
        await conn.read_response(delegate)
        assert delegate.stream is client
        assert await client.read_bytes(11) == b"frame-bytes"
        assert delegate.finished == 0
        client.close()
        server.close()

    run(main)


def test_server_connection_detach_after_upgrade_request():
    async def main():
        client, server = await stream_pair()
        detached = asyncio.get_running_loop().create_future()

        class Upgrade(HTTPMessageDelegate):
            def __init__(self, connection):
                self.connection = connection

            def finish(self):
                self.connection.write_headers(
                    ResponseStartLine("HTTP/1.1", 101, "Switching Protocols"),
                    HTTPHeaders({"Upgrade": "x", "Connection": "Upgrade"}),
                )
                detached.set_result(self.connection.detach())

        class App(HTTPServerConnectionDelegate):
            def __init__(self):
                self.closed = []

            def start_request(self, server_conn, request_conn):
                return Upgrade(request_conn)

            def on_close(self, server_conn):
                self.closed.append(server_conn)

        app = App()
        server_conn = HTTP1ServerConnection(server)
        server_conn.start_serving(app)
        await client.write(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: x\r\n\r\nafter upgrade")
        stream = await detached
        assert stream is server
        assert await stream.read_bytes(13) == b"after upgrade"
        head = await client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Connection: Upgrade" in head and b"close" not in head
        assert app.closed == [server_conn]
        client.close()
        server.close()

    run(main)


def test_server_connection_pauses_for_async_delegate_and_serves_pipeline():
    async def main():
        client, server = await stream_pair()
        order = []

        class Slow(HTTPMessageDelegate):
            def __init__(self, connection):
                self.connection = connection

            async def _slow_head(self, path):
                order.append(("start", path))
                await asyncio.sleep(0.01)
                order.append(("end", path))

            def headers_received(self, start_line, headers):
                self.path = start_line.path
                return self._slow_head(start_line.path)

            def finish(self):
                body = self.path.encode()
                self.connection.write_headers(
                    ResponseStartLine("HTTP/1.1", 200, "OK"),
                    HTTPHeaders({"Content-Length": str(len(body))}),
                    body,
                )
                self.connection.finish()

        class App(HTTPServerConnectionDelegate):
            def start_request(self, server_conn, request_conn):
                return Slow(request_conn)

        server_conn = HTTP1ServerConnection(server, HTTP1ConnectionParameters())
        server_conn.start_serving(App())
        await client.write(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        for path in (b"/1", b"/2"):
            await client.read_until(b"\r\n\r\n")
            assert await client.read_bytes(2) == path
        assert order == [("start", "/1"), ("end", "/1"), ("start", "/2"), ("end", "/2")]
        await server_conn.close()
        client.close()

    run(main)


def test_response_head_and_body_go_out_in_one_write():
    async def main():
        client, server = await stream_pair()
        writes = []
        original = server.write

        def spy(data):
            writes.append(bytes(data))
            return original(data)

        server.write = spy

        class Handler(HTTPMessageDelegate):
            def __init__(self, connection):
                self.connection = connection

            def finish(self):
                self.connection.write_headers(
                    ResponseStartLine("HTTP/1.1", 200, "OK"),
                    HTTPHeaders({"Content-Length": "5"}),
                    b"hello",
                )
                self.connection.finish()

        class App(HTTPServerConnectionDelegate):
            def start_request(self, server_conn, request_conn):
                return Handler(request_conn)

        server_conn = HTTP1ServerConnection(server)
        server_conn.start_serving(App())
        await client.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        await client.read_until(b"hello")
        assert writes == [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]
        await server_conn.close()
        client.close()

    run(main)


def test_is_transfer_encoding_chunked():
    assert is_transfer_encoding_chunked(HTTPHeaders()) is False
    assert is_transfer_encoding_chunked(HTTPHeaders({"Transfer-Encoding": "Chunked"})) is True
    for bad in (
        {"Transfer-Encoding": "gzip, chunked"},
        {"Transfer-Encoding": "chunked", "Content-Length": "1"},
    ):
        try:
            is_transfer_encoding_chunked(HTTPHeaders(bad))
        except HTTPInputError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_client_oversized_response_head_fails_the_read(caplog):
    from squall.iostream import UnsatisfiableReadError

    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True, HTTP1ConnectionParameters(max_header_size=100))
        server.write(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 500 + b"\r\n\r\n")
        delegate = Collector()
        try:
            await conn.read_response(delegate)
        except UnsatisfiableReadError:
            pass
        else:
            raise AssertionError("oversized head accepted")
        assert delegate.heads == [] and delegate.closed == 0
        assert client.closed()
        server.close()

    with caplog.at_level(logging.INFO):
        run(main)
    assert any("Unsatisfiable read" in r.getMessage() for r in caplog.records)


def test_client_malformed_response_is_logged_with_none_peer(caplog):
    async def main():
        client, server = await stream_pair()
        conn = HTTP1Connection(client, True)
        server.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
        delegate = Collector()
        assert await conn.read_response(delegate) is False
        server.close()

    with caplog.at_level(logging.INFO):
        run(main)
    assert any(
        r.getMessage()
        == "Malformed HTTP message from None: Message with both Transfer-Encoding and Content-Length"
        for r in caplog.records
    )


def test_writing_more_or_less_than_content_length_is_an_error():
    from squall.httputil import HTTPOutputError

    async def main():
        client, server = await stream_pair()
        outcomes = []

        class Handler(HTTPMessageDelegate):
            def __init__(self, connection):
                self.connection = connection

            def finish(self):
                self.connection.write_headers(
                    ResponseStartLine("HTTP/1.1", 200, "OK"), HTTPHeaders({"Content-Length": "4"})
                )
                self.connection.write(b"ab")
                try:
                    self.connection.write(b"cde")
                except HTTPOutputError as e:
                    outcomes.append(str(e))

        class App(HTTPServerConnectionDelegate):
            def start_request(self, server_conn, request_conn):
                return Handler(request_conn)

        HTTP1ServerConnection(server).start_serving(App())
        await client.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        data = await client.read_until_close()
        assert data.endswith(b"\r\n\r\nab")
        assert outcomes == ["Tried to write more data than Content-Length"]

        conn = HTTP1Connection(IOStream(socket.socket()), False)
        conn._request_start_line = RequestStartLine("GET", "/", "HTTP/1.1")
        conn._request_headers = HTTPHeaders({"Host": "h"})
        conn.write_headers(
            ResponseStartLine("HTTP/1.1", 200, "OK"), HTTPHeaders({"Content-Length": "4"})
        )
        try:
            conn.finish()
        except HTTPOutputError as e:
            assert "4 bytes less" in str(e)
        else:
            raise AssertionError("short body accepted")

    run(main)


def test_non_str_header_values_are_written_as_text():
    # HTTPHeaders.add stores a non-str value as given; the head shows its text whether
    # the name holds one value or several.
    async def main():
        client, server = await stream_pair()

        class Handler(HTTPMessageDelegate):
            def __init__(self, connection):
                self.connection = connection

            def finish(self):
                headers = HTTPHeaders({"Content-Length": "2"})
                headers.add("X-Single", 5)
                headers.add("X-Pair", 1)
                headers.add("X-Pair", 2)
                self.connection.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"), headers)
                self.connection.write(b"ok")
                self.connection.finish()

        class App(HTTPServerConnectionDelegate):
            def start_request(self, server_conn, request_conn):
                return Handler(request_conn)

        HTTP1ServerConnection(server).start_serving(App())
        await client.write(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = await client.read_until_close()
        assert b"\r\nX-Single: 5\r\n" in data
        assert b"\r\nX-Pair: 1\r\nX-Pair: 2\r\n" in data
        assert data.endswith(b"\r\n\r\nok")

    run(main)
