"""Interoperability with the ``websockets`` package, both ways, with and without compression."""

import asyncio

import pytest

websockets = pytest.importorskip("websockets")

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

from squall.web import Application  # noqa: E402
from squall.websocket import WebSocketHandler, websocket_connect  # noqa: E402

MESSAGES = ["hello", "héllo wörld", "x" * 70_000, b"\x00\x01\xff", b"b" * 200_000]


class EchoHandler(WebSocketHandler):
    def initialize(self, compression, closes):
        self.compression = compression
        self.closes = closes

    def get_compression_options(self):
        return self.compression

    def select_subprotocol(self, subprotocols):
        return subprotocols[-1] if subprotocols else None

    async def on_message(self, message):
        if message == "close please":
            self.close(4001, "as asked")
            return
        await self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        self.closes.append((self.close_code, self.close_reason))


@pytest.fixture
def closes():
    return []


@pytest.fixture
def app(closes):
    return Application(
        [
            ("/plain", EchoHandler, dict(compression=None, closes=closes)),
            ("/deflate", EchoHandler, dict(compression={}, closes=closes)),
            (
                "/deflate-strict",
                EchoHandler,
                dict(
                    compression={
                        "server_no_context_takeover": True,
                        "client_no_context_takeover": True,
                        "server_max_window_bits": 11,
                    },
                    closes=closes,
                ),
            ),
        ]
    )


@pytest.fixture
def ws_url(base_url):
    return base_url.replace("http://", "ws://")


async def echo_all(ws):
    for message in MESSAGES:
        await ws.send(message)
        assert await ws.recv() == message


# --- squall server, websockets client -----------------------------------------------------


async def test_squall_server_without_compression(ws_url, closes):
    async with connect(ws_url + "/plain", compression=None, proxy=None) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await echo_all(ws)
        # A ping from the client is answered by squall.
        await asyncio.wait_for(await ws.ping(b"data"), 5)
    for _ in range(100):
        if closes:
            break
        await asyncio.sleep(0.01)
    assert closes == [(1000, "")]


async def test_squall_server_with_compression(ws_url):
    # websockets offers permessage-deflate with client_max_window_bits by default.
    async with connect(ws_url + "/deflate", proxy=None, subprotocols=["a", "b"]) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        assert ws.subprotocol == "b"
        await echo_all(ws)
        await echo_all(ws)


async def test_squall_server_with_negotiated_parameters(ws_url):
    factory = ClientPerMessageDeflateFactory(
        server_max_window_bits=10, client_max_window_bits=9, client_no_context_takeover=True
    )
    async with connect(ws_url + "/deflate-strict", extensions=[factory], proxy=None) as ws:
        answer = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "server_no_context_takeover" in answer
        assert "server_max_window_bits=10" in answer
        assert "client_max_window_bits=9" in answer
        await echo_all(ws)


async def test_squall_server_close_reaches_websockets_client(ws_url):
    async with connect(ws_url + "/deflate", proxy=None) as ws:
        await ws.send("close please")
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001
        assert ws.close_reason == "as asked"


# --- squall client, websockets server -----------------------------------------------------


async def websockets_echo(connection):
    try:
        async for message in connection:
            if message == "close please":
                await connection.close(4002, "server says bye")
                return
            await connection.send(message)
    except websockets.exceptions.ConnectionClosed:
        pass


async def start_websockets_server(**kwargs):
    server = await serve(websockets_echo, "127.0.0.1", 0, **kwargs)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/"


async def squall_echo_all(ws):
    for message in MESSAGES:
        await ws.write_message(message, binary=isinstance(message, bytes))
        assert await ws.read_message() == message


@pytest.mark.parametrize(
    "server_kwargs, client_options, expect_deflate",
    [
        (dict(compression=None), None, False),
        (dict(compression=None), {}, False),
        (dict(), None, False),
        (dict(), {}, True),
        (
            dict(
                extensions=[
                    ServerPerMessageDeflateFactory(
                        server_max_window_bits=10,
                        client_max_window_bits=9,
                        server_no_context_takeover=True,
                        client_no_context_takeover=True,
                    )
                ],
                compression=None,
            ),
            {},
            True,
        ),
        (
            dict(),
            {"server_no_context_takeover": True, "client_max_window_bits": 10},
            True,
        ),
    ],
)
async def test_squall_client_against_websockets_server(
    server_kwargs, client_options, expect_deflate
):
    server, url = await start_websockets_server(**server_kwargs)
    try:
        ws = await websocket_connect(url, compression_options=client_options)
        extension = ws.headers.get("Sec-WebSocket-Extensions")
        assert (extension is not None) == expect_deflate
        await squall_echo_all(ws)
        await squall_echo_all(ws)
        ws.close(1000, "done")
        assert await ws.read_message() is None
        assert ws.close_code == 1000
    finally:
        server.close()
        await server.wait_closed()


async def test_websockets_server_close_reaches_squall_client():
    server, url = await start_websockets_server()
    try:
        ws = await websocket_connect(url, compression_options={}, subprotocols=None)
        await ws.write_message("close please")
        assert await ws.read_message() is None
        assert (ws.close_code, ws.close_reason) == (4002, "server says bye")
    finally:
        server.close()
        await server.wait_closed()


async def test_squall_client_pings_a_websockets_server():
    server, url = await start_websockets_server()
    pongs = []
    try:
        ws = await websocket_connect(url)
        ws.on_pong = pongs.append
        ws.ping(b"are you there")
        # The echo of a later message proves the pong (sent first) has been handled.
        await ws.write_message("after ping")
        assert await ws.read_message() == "after ping"
        assert pongs == [b"are you there"]
        ws.close()
    finally:
        server.close()
        await server.wait_closed()


# --- real Tornado, both ways ------------------------------------------------------------------


@pytest.mark.parametrize("path, options", [("/plain", None), ("/deflate", {})])
async def test_tornado_client_against_squall_server(ws_url, path, options):
    tornado_websocket = pytest.importorskip("tornado.websocket")
    ws = await tornado_websocket.websocket_connect(ws_url + path, compression_options=options)
    for message in MESSAGES:
        await ws.write_message(message, binary=isinstance(message, bytes))
        assert await ws.read_message() == message
    ws.close(1000, "tornado done")
    assert await ws.read_message() is None
    assert ws.close_code == 1000


@pytest.mark.parametrize("server_options, client_options", [(None, {}), ({}, {}), ({}, None)])
async def test_squall_client_against_tornado_server(server_options, client_options):
    tornado_web = pytest.importorskip("tornado.web")
    tornado_websocket = pytest.importorskip("tornado.websocket")
    from tornado.httpserver import HTTPServer as TornadoHTTPServer
    from tornado.testing import bind_unused_port

    class TornadoEcho(tornado_websocket.WebSocketHandler):
        def get_compression_options(self):
            return server_options

        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    sock, port = bind_unused_port()
    server = TornadoHTTPServer(tornado_web.Application([("/", TornadoEcho)]))
    server.add_sockets([sock])
    try:
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/", compression_options=client_options)
        negotiated = "Sec-WebSocket-Extensions" in ws.headers
        assert negotiated == (server_options is not None and client_options is not None)
        await squall_echo_all(ws)
        ws.close(1000)
        assert await ws.read_message() is None
        assert ws.close_code == 1000
    finally:
        server.stop()
