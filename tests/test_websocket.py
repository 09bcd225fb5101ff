"""squall.websocket over real sockets: handshakes, framing rules, closing, limits, abuse."""

import asyncio
import struct
import tracemalloc

import pytest

from squall import gen
from squall._websocket_frames import _PerMessageDeflateCompressor, mask_payload
from squall.httpclient import HTTPClientError, HTTPRequest
from squall.log import app_log
from squall.testing import ExpectLog
from squall.web import Application, RequestHandler
from squall.websocket import (
    WebSocketClosedError,
    WebSocketError,
    WebSocketHandler,
    WebSocketProtocol13,
    websocket_connect,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\n"
)


class Recorder:
    """Collects what server-side handlers saw, for the test to inspect."""

    def __init__(self, loop):
        self.closed = loop.create_future()
        self.opened = loop.create_future()
        self.handlers = []
        self.pings = []
        self.pongs = []
        self.flood_stopped = False


class EchoHandler(WebSocketHandler):
    def initialize(self, recorder, compression=None):
        self.recorder = recorder
        self.compression = compression
        recorder.handlers.append(self)

    def get_compression_options(self):
        return self.compression

    def select_subprotocol(self, subprotocols):
        return "chat" if "chat" in subprotocols else None

    def open(self):
        if not self.recorder.opened.done():
            self.recorder.opened.set_result(self)

    async def on_message(self, message):
        try:
            await self.write_message(message, binary=isinstance(message, bytes))
        except WebSocketClosedError:
            pass

    def on_ping(self, data):
        self.recorder.pings.append(data)

    def on_pong(self, data):
        self.recorder.pongs.append(data)

    def on_close(self):
        if not self.recorder.closed.done():
            self.recorder.closed.set_result((self.close_code, self.close_reason))


class FailingHandler(EchoHandler):
    def on_message(self, message):
        raise ValueError("boom")


class MuteHandler(WebSocketHandler):
    """Takes no messages: the default on_message closes with 1003."""


class FloodHandler(EchoHandler):
    """Writes without awaiting, as a careless broadcaster would."""

    async def on_message(self, message):
        try:
            for _ in range(100_000):
                self.write_message(b"x" * 65536, binary=True)
                await asyncio.sleep(0)
        except WebSocketClosedError:
            self.recorder.flood_stopped = True


class PacedHandler(EchoHandler):
    """Awaits each write: backpressure keeps its buffer small."""

    async def on_message(self, message):
        for _ in range(int(message)):
            await self.write_message(b"y" * 65536, binary=True)
        await self.write_message("done")


class PlainHandler(RequestHandler):
    def get(self):
        self.write("plain")


@pytest.fixture
def recorder(io_loop):
    return Recorder(io_loop.asyncio_loop)


@pytest.fixture
def app(recorder):
    kwargs = {"recorder": recorder}
    return Application(
        [
            ("/echo", EchoHandler, kwargs),
            ("/deflate", EchoHandler, dict(kwargs, compression={})),
            (
                "/deflate-strict",
                EchoHandler,
                dict(
                    kwargs,
                    compression={
                        "server_no_context_takeover": True,
                        "client_no_context_takeover": True,
                        "server_max_window_bits": 10,
                        "client_max_window_bits": 9,
                    },
                ),
            ),
            ("/fail", FailingHandler, kwargs),
            ("/mute", MuteHandler),
            ("/flood", FloodHandler, kwargs),
            ("/paced", PacedHandler, kwargs),
            ("/plain", PlainHandler),
        ],
        websocket_max_message_size=64 * 1024,
        websocket_max_write_buffer_size=512 * 1024,
    )


@pytest.fixture
def port(base_url):
    return int(base_url.rsplit(":", 1)[1])


@pytest.fixture
def ws_url(base_url):
    return base_url.replace("http://", "ws://")


# --- raw-socket helpers, for bytes squall's own client would never send ---------------------


_raw_writers: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
def _close_raw_clients(io_loop):
    """Closes the raw test clients (the server side is what the tests look at)."""
    yield
    writers = list(_raw_writers)
    _raw_writers.clear()
    for writer in writers:
        writer.close()
    if writers and not io_loop.asyncio_loop.is_closed():
        io_loop.asyncio_loop.run_until_complete(asyncio.sleep(0))


async def raw_request(port, path, headers):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _raw_writers.append(writer)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head.decode("latin-1")


async def raw_upgrade(port, path="/echo", extra=""):
    reader, writer, head = await raw_request(port, path, UPGRADE + extra)
    assert head.startswith("HTTP/1.1 101 "), head
    return reader, writer


def client_frame(first, payload, masked=True):
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return head + payload
    key = b"\x11\x22\x33\x44"
    return head + key + mask_payload(key, payload)


async def read_frame(reader):
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    assert not second & 0x80, "server frames are never masked"
    return first, await reader.readexactly(length)


async def expect_close(reader, code, writer=None):
    """Read frames until a close frame; check its code; answer it if ``writer`` is given
    (as a well-behaved client does); then expect the server to close TCP."""
    for _ in range(1000):
        first, payload = await read_frame(reader)
        if first & 0x0F == 0x8:
            assert struct.unpack("!H", payload[:2])[0] == code, payload
            if writer is not None:
                writer.write(client_frame(0x88, payload[:2]))
            assert await reader.read() == b""
            return payload[2:].decode()
    raise AssertionError("no close frame")


# --- the happy path -----------------------------------------------------------------------


async def test_an_upgraded_client_has_no_http_code_but_the_101_headers(ws_url):
    # (as in Tornado: code is for HTTP answers; jupyter_server's tests rely on it)
    ws = await websocket_connect(ws_url + "/echo")
    assert ws.code is None
    assert ws.headers["Upgrade"].lower() == "websocket"
    ws.close()


async def test_echo_text_binary_and_unicode(ws_url):
    ws = await websocket_connect(ws_url + "/echo")
    await ws.write_message("hello")
    assert await ws.read_message() == "hello"
    await ws.write_message(b"\x00\xffbin", binary=True)
    assert await ws.read_message() == b"\x00\xffbin"
    await ws.write_message("héllo wörld €")
    assert await ws.read_message() == "héllo wörld €"
    await ws.write_message({"a": 1})
    assert await ws.read_message() == '{"a": 1}'
    ws.close()


async def test_messages_of_every_length_class(ws_url):
    ws = await websocket_connect(ws_url + "/echo")
    for size in (0, 125, 126, 65535, 65536):
        await ws.write_message(b"z" * size, binary=True)
        assert await ws.read_message() == b"z" * size
    ws.close()


async def test_subprotocol_and_compression_negotiated(ws_url):
    ws = await websocket_connect(
        ws_url + "/deflate", subprotocols=["other", "chat"], compression_options={}
    )
    assert ws.selected_subprotocol == "chat"
    assert ws.headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
    for _ in range(3):
        await ws.write_message("compress me " * 50)
        assert await ws.read_message() == "compress me " * 50
    # Context takeover makes the repeats nearly free on the wire.
    assert ws.protocol._wire_bytes_out < ws.protocol._message_bytes_out // 5
    ws.close()


async def test_window_bits_and_no_context_takeover(ws_url):
    ws = await websocket_connect(
        ws_url + "/deflate-strict",
        compression_options={"client_max_window_bits": 12},
    )
    offer = ws.headers["Sec-WebSocket-Extensions"]
    assert "server_no_context_takeover" in offer
    assert "client_no_context_takeover" in offer
    assert "server_max_window_bits=10" in offer
    assert "client_max_window_bits=9" in offer
    for index in range(3):
        message = ("window %d " % index) * 300
        await ws.write_message(message)
        assert await ws.read_message() == message
    ws.close()


async def test_compression_not_used_unless_both_sides_want_it(ws_url):
    ws = await websocket_connect(ws_url + "/echo", compression_options={})
    assert "Sec-WebSocket-Extensions" not in ws.headers
    await ws.write_message("x" * 100)
    assert await ws.read_message() == "x" * 100
    ws.close()


async def test_frames_sent_with_the_handshake_are_not_lost(port):
    # A client may pipeline frames right behind its upgrade request.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /echo HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode() + client_frame(0x81, b"early")
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert await read_frame(reader) == (0x81, b"early")
    writer.close()


async def test_fragmented_message_with_interleaved_ping(port, recorder):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x01, b"frag"))
    writer.write(client_frame(0x89, b"are you there"))
    writer.write(client_frame(0x00, b"men"))
    writer.write(client_frame(0x80, b"ted"))
    assert await read_frame(reader) == (0x8A, b"are you there")
    assert await read_frame(reader) == (0x81, b"fragmented")
    assert recorder.pings == [b"are you there"]
    writer.close()


async def test_async_on_message_handles_one_message_at_a_time(ws_url):
    ws = await websocket_connect(ws_url + "/echo")
    for index in range(20):
        ws.write_message(str(index))
    assert [await ws.read_message() for _ in range(20)] == [str(i) for i in range(20)]
    ws.close()


async def test_flood_of_small_frames_is_processed(port, recorder):
    reader, writer = await raw_upgrade(port)
    writer.write(b"".join(client_frame(0x82, b"%d" % i) for i in range(2000)))
    for index in range(2000):
        assert await read_frame(reader) == (0x82, b"%d" % index)
    writer.close()


# --- closing --------------------------------------------------------------------------------


async def test_client_close_code_and_reason_reach_the_server(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/echo")
    ws.close(4000, "bye now")
    assert await recorder.closed == (4000, "bye now")
    assert await ws.read_message() is None
    assert ws.close_code == 4000  # the server echoed it
    with pytest.raises(WebSocketClosedError):
        ws.write_message("late")


async def test_server_close_reaches_the_client(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/echo")
    handler = await recorder.opened
    handler.close(1001, "going away")
    assert await ws.read_message() is None
    assert (ws.close_code, ws.close_reason) == (1001, "going away")
    assert (await recorder.closed)[0] == 1001
    with pytest.raises(WebSocketClosedError):
        handler.write_message("late")


async def test_raw_close_handshake_is_answered_and_tcp_closed(port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x88, struct.pack("!H", 1000) + b"done"))
    assert await expect_close(reader, 1000) == ""


async def test_empty_close_frame_is_echoed_empty(port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x88, b""))
    assert await read_frame(reader) == (0x88, b"")
    assert await reader.read() == b""


async def test_invalid_close_code_is_a_protocol_error(port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x88, struct.pack("!H", 1005)))
    await expect_close(reader, 1002)


async def test_peer_dropping_tcp_runs_on_close(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/echo")
    await recorder.opened
    ws.stream.close()
    code, reason = await recorder.closed
    assert code is None and reason is None


async def test_on_message_callback_gets_messages_then_none(ws_url):
    received = []
    done = asyncio.get_running_loop().create_future()

    def on_message(message):
        received.append(message)
        if message is None:
            done.set_result(None)

    ws = await websocket_connect(ws_url + "/echo", on_message_callback=on_message)
    await ws.write_message("one")
    await ws.write_message("two")
    for _ in range(100):
        if len(received) == 2:
            break
        await asyncio.sleep(0.01)
    ws.close()
    await done
    assert received == ["one", "two", None]


# --- protocol violations --------------------------------------------------------------------


async def test_unmasked_client_frame_is_refused(port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x81, b"naked", masked=False))
    await expect_close(reader, 1002)


@pytest.mark.parametrize("first", [0x81 | 0x40, 0x81 | 0x20, 0x81 | 0x10, 0x83, 0x8B])
async def test_reserved_bits_and_opcodes_are_refused(port, first):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(first, b"x"))
    await expect_close(reader, 1002)


async def test_invalid_utf8_text_is_refused(port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x81, b"bad \xff\xfe"))
    await expect_close(reader, 1007)


async def test_fragmented_control_frame_is_refused(port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x09, b"ping"))
    await expect_close(reader, 1002)


async def test_oversized_message_is_refused_from_its_header(port):
    reader, writer = await raw_upgrade(port)
    # Only the header of a 1 GiB frame: the server answers without waiting for the payload.
    writer.write(struct.pack("!BBQ", 0x82, 0xFF, 1 << 30) + b"\0\0\0\0")
    assert await expect_close(reader, 1009) == "message too big"


async def test_oversized_fragmented_message_is_refused(ws_url, port):
    reader, writer = await raw_upgrade(port)
    writer.write(client_frame(0x02, b"a" * 40_000))
    writer.write(client_frame(0x80, b"a" * 40_000))
    await expect_close(reader, 1009)


async def test_size_limit_allows_exactly_the_maximum(ws_url):
    ws = await websocket_connect(ws_url + "/echo")
    await ws.write_message(b"m" * 65536, binary=True)
    assert await ws.read_message() == b"m" * 65536
    await ws.write_message(b"m" * 65537, binary=True)
    assert await ws.read_message() is None
    assert (ws.close_code, ws.close_reason) == (1009, "message too big")


async def test_decompression_bomb_is_stopped_at_the_limit(ws_url):
    ws = await websocket_connect(ws_url + "/deflate", compression_options={})
    # 64 MiB of zeros compress to ~64 KB, under the 64 KiB... limit only once inflated.
    bomb = b"\0" * (64 << 20)
    tracemalloc.start()
    try:
        ws.write_message(bomb, binary=True)
        assert await ws.read_message() is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ws.close_code == 1009
    # The server never inflated more than the limit: far below the bomb's 64 MiB.
    assert peak < 8 << 20


async def test_raw_compressed_frame_without_negotiation_is_refused(port):
    reader, writer = await raw_upgrade(port)
    payload = _PerMessageDeflateCompressor(True, None).compress(b"hello")
    writer.write(client_frame(0xC1, payload))
    await expect_close(reader, 1002)


async def test_error_in_on_message_closes_with_1011(port, recorder):
    reader, writer = await raw_upgrade(port, "/fail")
    with ExpectLog(app_log, "Uncaught exception"):
        writer.write(client_frame(0x81, b"hi"))
        await expect_close(reader, 1011)
        await recorder.closed


async def test_handler_without_on_message_closes_with_1003(port):
    reader, writer = await raw_upgrade(port, "/mute")
    writer.write(client_frame(0x81, b"anyone?"))
    await expect_close(reader, 1003, writer)


# --- handshake refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, status",
    [
        ("", 400),  # a plain GET
        (UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c"), 400),
        (UPGRADE.replace("Connection: Upgrade", "Connection: keep-alive"), 400),
        (UPGRADE.replace("Version: 13", "Version: 8"), 426),
        (UPGRADE.replace(f"Sec-WebSocket-Key: {KEY}\r\n", ""), 400),
        (UPGRADE.replace(KEY, "c2hvcnQ="), 400),
        (UPGRADE.replace(KEY, "not base64 at all!!!!!!!"), 400),
        (UPGRADE + "Origin: http://evil.example.com\r\n", 403),
        (UPGRADE + "Origin: http://evil.example.com\r\nSec-Fetch-Site: cross-site\r\n", 403),
    ],
)
async def test_bad_handshakes_get_4xx_without_upgrade(port, headers, status):
    reader, writer, head = await raw_request(port, "/echo", headers)
    assert head.startswith(f"HTTP/1.1 {status} "), head
    lowered = head.lower()
    assert "sec-websocket-accept" not in lowered
    assert "upgrade: websocket" not in lowered
    if status == 426:
        assert "sec-websocket-version: 13" in lowered
    writer.close()


async def test_http_1_0_upgrade_is_refused(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /echo HTTP/1.0\r\nHost: x\r\n{UPGRADE}\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    assert head.startswith("HTTP/1.1 400 ")
    assert "sec-websocket-accept" not in head.lower()
    writer.close()


async def test_same_origin_and_trusted_origins_are_accepted(port):
    for extra in (
        f"Origin: http://127.0.0.1:{port}\r\n",
        "Origin: http://elsewhere.example\r\nSec-Fetch-Site: same-origin\r\n",
    ):
        reader, writer = await raw_upgrade(port, extra=extra)
        writer.close()


async def test_refused_handshake_keeps_http_connection_usable(port):
    reader, writer, head = await raw_request(port, "/echo", "")
    assert head.startswith("HTTP/1.1 400 ")
    length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
    await reader.readexactly(length)
    writer.write(f"GET /plain HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    assert head.startswith("HTTP/1.1 200 ")
    writer.close()


async def test_client_sees_http_errors(ws_url):
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_url + "/missing")
    assert info.value.code == 404
    with pytest.raises(WebSocketError):
        await websocket_connect(ws_url + "/plain")
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(
            HTTPRequest(ws_url + "/echo", headers={"Origin": "http://evil.example.com"})
        )
    assert info.value.code == 403


async def test_client_refuses_a_bad_server_handshake():
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
        )
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(WebSocketError):
            await websocket_connect(f"ws://127.0.0.1:{port}/")
    finally:
        server.close()


async def test_client_refuses_masked_server_frames():
    async def serve(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = head.split("Sec-Websocket-Key: ")[1].split("\r\n")[0]
        accept = WebSocketProtocol13.compute_accept_value(key)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n" + client_frame(0x81, b"x")
        )
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/")
        assert await ws.read_message() is None
        assert ws.close_code == 1002
    finally:
        server.close()


# --- keep-alive pings and slow peers --------------------------------------------------------


@pytest.mark.squall_timeout(10)
async def test_client_that_never_answers_pings_is_closed(port, app, recorder):
    app.settings["websocket_ping_interval"] = 0.05
    app.settings["websocket_ping_timeout"] = 0.2
    reader, writer = await raw_upgrade(port)
    # Read pings and never answer them.
    pings = 0
    for _ in range(100):
        first, payload = await read_frame(reader)
        if first == 0x89:
            pings += 1
            continue
        assert first == 0x88
        assert struct.unpack("!H", payload[:2])[0] == 1000
        break
    assert pings >= 1
    assert await recorder.closed == (1000, "ping timed out")


@pytest.mark.squall_timeout(10)
async def test_client_that_answers_pings_stays_open(ws_url, app, recorder):
    # A generous timeout: a busy machine must not turn a late pong into a failure.
    app.settings["websocket_ping_interval"] = 0.02
    app.settings["websocket_ping_timeout"] = 2.0
    ws = await websocket_connect(ws_url + "/echo")
    for _ in range(500):
        if len(recorder.pongs) >= 3:
            break
        await gen.sleep(0.01)
    assert len(recorder.pongs) >= 3
    assert not recorder.closed.done()
    await ws.write_message("still here")
    assert await ws.read_message() == "still here"
    ws.close()


@pytest.mark.squall_timeout(15)
async def test_slow_reader_cannot_make_the_server_buffer_without_bound(port, recorder):
    reader, writer = await raw_upgrade(port, "/flood")
    writer.write(client_frame(0x81, b"go"))
    # Never read: the server's writes pile up until its 512 KiB limit drops the connection.
    await recorder.closed
    assert recorder.flood_stopped
    writer.close()


@pytest.mark.squall_timeout(15)
async def test_awaiting_writes_keeps_pace_with_the_reader(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/paced")
    # 64 MiB in total, far over the 512 KiB write limit: awaiting each write is enough.
    await ws.write_message("1024")
    for _ in range(1024):
        assert await ws.read_message() == b"y" * 65536
    assert await ws.read_message() == "done"
    assert not recorder.closed.done()
    ws.close()


async def test_write_future_resolves(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/echo")
    handler = await recorder.opened
    await handler.write_message("from server")
    assert await ws.read_message() == "from server"
    ws.close()


async def test_manual_ping_and_limits(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/echo")
    with pytest.raises(ValueError):
        ws.ping(b"x" * 126)
    ws.ping(b"hi")
    await ws.write_message("sync")
    assert await ws.read_message() == "sync"
    assert recorder.pings == [b"hi"]
    ws.close()


class PushHandler(WebSocketHandler):
    """Pushes messages without awaiting, to a client that may not be reading."""

    def initialize(self, recorder):
        self.recorder = recorder

    async def open(self):
        try:
            for index in range(10_000):
                self.write_message(b"p" * 16384, binary=True)
                if index % 8 == 0:
                    # Give the client every chance to read (and to stop reading).
                    await asyncio.sleep(0)
        except WebSocketClosedError:
            self.recorder.flood_stopped = True

    def on_close(self):
        if not self.recorder.closed.done():
            self.recorder.closed.set_result((self.close_code, self.close_reason))


@pytest.mark.squall_timeout(15)
async def test_client_that_does_not_read_stops_reading_the_socket(recorder, io_loop):
    from squall.httpserver import HTTPServer
    from squall.testing import bind_unused_port

    app = Application(
        [("/push", PushHandler, {"recorder": recorder})],
        websocket_max_write_buffer_size=1 << 20,
    )
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/push")
        # 160 MiB pushed at a client that reads nothing: the client holds at most one
        # queued message plus its read-ahead, the TCP buffers fill, and the server's
        # write limit ends the connection.
        await recorder.closed
        assert recorder.flood_stopped
        assert len(ws.read_queue) <= 2
        ws.close()
    finally:
        server.stop()


async def test_secure_websocket(recorder, io_loop):
    import os
    import ssl

    from squall.httpserver import HTTPServer
    from squall.testing import bind_unused_port

    cert_dir = os.path.join(os.path.dirname(__file__), "..", "squall", "test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(cert_dir, "test.crt"), os.path.join(cert_dir, "test.key"))
    app = Application([("/echo", EchoHandler, {"recorder": recorder, "compression": {}})])
    sock, port = bind_unused_port()
    server = HTTPServer(app, ssl_options=context)
    server.add_sockets([sock])
    try:
        ws = await websocket_connect(
            HTTPRequest(f"wss://localhost:{port}/echo", validate_cert=False),
            compression_options={},
        )
        await ws.write_message("over tls " * 100)
        assert await ws.read_message() == "over tls " * 100
        ws.close(1000)
        assert (await recorder.closed)[0] == 1000
    finally:
        server.stop()


async def test_client_refuses_oversized_messages(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/echo", max_message_size=100)
    await ws.write_message("s" * 100)
    assert await ws.read_message() == "s" * 100
    await ws.write_message("s" * 101)
    assert await ws.read_message() is None
    assert (ws.close_code, ws.close_reason) == (1009, "message too big")
    # The server heard why.
    assert (await recorder.closed)[0] == 1009


async def test_client_refuses_a_compression_bomb(ws_url, recorder):
    ws = await websocket_connect(ws_url + "/deflate", compression_options={}, max_message_size=1000)
    handler = await recorder.opened
    handler.write_message(b"\0" * 1_000_000, binary=True)
    assert await ws.read_message() is None
    assert ws.close_code == 1009


class BurstHandler(WebSocketHandler):
    def on_message(self, message):
        for _ in range(8):
            self.write_message(b"z" * (1 << 20), binary=True)


@pytest.mark.squall_timeout(15)
async def test_close_handshake_does_not_drop_queued_messages(io_loop):
    from squall.httpserver import HTTPServer
    from squall.testing import bind_unused_port

    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/burst", BurstHandler)]))
    server.add_sockets([sock])
    try:
        reader, writer = await raw_upgrade(port, "/burst")
        # Ask for 8 MiB and say goodbye at once: the server echoes the close only after
        # everything queued before it, and closes TCP only once all of it is sent.
        writer.write(client_frame(0x81, b"go") + client_frame(0x88, struct.pack("!H", 1000)))
        for _ in range(8):
            assert await read_frame(reader) == (0x82, b"z" * (1 << 20))
        assert await read_frame(reader) == (0x88, struct.pack("!H", 1000))
        assert await reader.read() == b""
    finally:
        server.stop()
