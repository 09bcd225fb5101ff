"""squall serving ASGI 3 applications: scopes, bodies, flow control, errors, extensions,
WebSockets, lifespan and drain, over real sockets on 127.0.0.1 with real clients (httpx,
the websockets package, raw sockets where the bytes on the wire are the point)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")

import asgi_apps  # noqa: E402
from asgi_apps import raw_app  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from squall.asgi import ASGIDelegate, ASGIServer, LifespanFailure  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CERT = os.path.join(os.path.dirname(HERE), "squall", "test", "test.crt")
KEY = os.path.join(os.path.dirname(HERE), "squall", "test", "test.key")


@pytest.fixture(autouse=True)
def fresh_events() -> None:
    asgi_apps.events.clear()


@pytest.fixture
def app() -> ASGIDelegate:
    return ASGIDelegate(raw_app, state={"from": "fixture"})


@pytest.fixture
def port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


async def wait_for_event(predicate: Any, what: str) -> Any:
    """The first event matching ``predicate``, waiting a bounded while for it."""
    for _ in range(200):
        for event in asgi_apps.events:
            if predicate(event):
                return event
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {what} event; saw {asgi_apps.events!r}")


async def raw_exchange(port: int, data: bytes, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        if until_close:
            return await asyncio.wait_for(reader.read(-1), 10)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


# -- the HTTP scope ----------------------------------------------------------------------


async def test_http_scope_fields(base_url: str, port: int) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            base_url + "/scope?x=1&y=%20",
            headers=[("X-Two", "first"), ("X-Two", "second"), ("X-Case", "MiXeD")],
        )
    assert response.status_code == 200
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    names = [name for name, _ in scope["headers"]]
    assert all(name == name.lower() for name in names)
    assert [v for n, v in scope["headers"] if n == "x-two"] == ["first", "second"]
    assert ["x-case", "MiXeD"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["server"] == ["127.0.0.1", port]
    assert scope["state"] == {"from": "fixture"}
    assert scope["extensions"] == ["http.response.pathsend", "http.response.trailers"]
    assert scope["tls"] is None
    assert response.headers["date"]


async def test_path_is_decoded_and_raw_path_kept(base_url: str, port: int) -> None:
    raw = await raw_exchange(
        port, b"GET /sc%6fpe/../%C3%A9?q=%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    # the app routes on the decoded path: this one is not "/scope"
    assert raw.startswith(b"HTTP/1.1 404")
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url + "/scope", params={"q": "é"})
    assert response.json()["query_string"] == "q=%C3%A9"


async def test_root_path_prefixes_path(http_server: Any, port: int) -> None:
    http_server.request_callback = ASGIDelegate(raw_app, root_path="/api/")
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/scope")
    scope = response.json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope"
    assert scope["raw_path"] == "/api/scope"


async def test_repeated_response_headers_stay_apart(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url + "/cookies")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]


async def test_keep_alive_serves_many_requests_on_one_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # pipelined: all three heads in one write
        writer.write(b"GET /cookies HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        data = b""
        for _ in range(100):
            data += await asyncio.wait_for(reader.read(65536), 10)
            if data.count(b"two") == 3:
                break
        assert data.count(b"HTTP/1.1 200 OK") == 3
    finally:
        writer.close()


# -- request bodies ------------------------------------------------------------------------


async def test_request_body_arrives_whole(base_url: str) -> None:
    body = os.urandom(1024 * 1024 + 7)
    async with httpx.AsyncClient() as client:
        response = await client.post(base_url + "/echo", content=body)

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 100_000):
                yield body[i : i + 100_000]

        chunked = await client.post(base_url + "/echo", content=pieces())
    expected = f"{len(body)} {hashlib.sha256(body).hexdigest()}"
    assert response.text == expected
    assert chunked.text == expected


async def test_reading_stops_until_the_app_receives(port: int) -> None:
    # the app takes one receive() per 10 ms: what waits between two calls is bounded by
    # the read-ahead (64 KiB) plus one piece from the connection, not by what was sent
    total = 2 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /pieces HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        writer.write(b"y" * total)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    _, sizes = await wait_for_event(lambda e: e[0] == "pieces", "pieces")
    assert sum(sizes) == total
    assert max(sizes) <= 192 * 1024
    assert len(sizes) > 10


async def test_100_continue_only_once_the_app_reads(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"hello")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"5 " in await asyncio.wait_for(reader.read(200), 10)
    finally:
        writer.close()


async def test_no_100_continue_when_the_app_answers_without_reading(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /noread HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413")
        assert await asyncio.wait_for(reader.read(-1), 10) == b"too big for me"
        # ...and the connection closed: the unread body cannot be told from a next request
    finally:
        writer.close()


async def test_body_over_max_body_size_is_413(http_server: Any, port: int) -> None:
    http_server.conn_params.max_body_size = 1000
    raw = await raw_exchange(
        port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"z" * 5000
    )
    assert raw.startswith(b"HTTP/1.1 413")


async def test_malformed_request_is_400_without_the_app(port: int) -> None:
    raw = await raw_exchange(port, b"GET /scope HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400")
    assert asgi_apps.events == []


# -- responses -------------------------------------------------------------------------------


async def test_streaming_response_is_chunked(port: int) -> None:
    raw = await raw_exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body.endswith(b"0\r\n\r\n")
    assert b"chunk 4\n" in body


async def test_send_waits_while_the_client_does_not_read(port: int) -> None:
    size = 8 * 1024 * 1024
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"GET /big?mb=8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await asyncio.sleep(0.3)
        # not reading: the app must still be waiting in send(), far from done
        assert not [e for e in asgi_apps.events if e[0] == "big"]
        received = 0
        for _ in range(100_000):
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            if not chunk:
                break
            received += len(chunk)
        assert received > size
    finally:
        writer.close()
    await wait_for_event(lambda e: e[0] == "big", "big")


async def test_disconnect_is_told_once_and_send_then_raises(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"waiting"), 10)
    writer.close()
    await wait_for_event(lambda e: e == ("disconnect", "http.disconnect"), "disconnect")
    await wait_for_event(
        lambda e: e == ("send-after-disconnect", "ClientDisconnected"), "send after disconnect"
    )
    await wait_for_event(lambda e: e == ("second-receive", "ASGIProtocolError"), "second receive")
    assert ClientDisconnectedIsOSError()


def ClientDisconnectedIsOSError() -> bool:  # noqa: N802 - reads as a statement
    from squall.asgi import ClientDisconnected

    return issubclass(ClientDisconnected, OSError)


async def test_receive_after_the_response_is_disconnect(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(base_url + "/after-response")).text == "done"
    await wait_for_event(lambda e: e == ("after-response", "http.disconnect"), "after-response")


async def test_app_error_before_the_response_is_500(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url + "/error-before")
        returned = await client.get(base_url + "/return-early")
        bad_header = await client.get(base_url + "/bad-header")
        out_of_order = await client.get(base_url + "/bad-message")
        still_fine = await client.get(base_url + "/cookies")
    for failed in (response, returned, bad_header, out_of_order):
        assert failed.status_code == 500
        assert failed.text == "Internal Server Error"
    assert still_fine.status_code == 200
    assert "broken before the response" in caplog.text
    assert "without sending a response" in caplog.text


async def test_app_error_after_the_start_closes_the_connection(port: int) -> None:
    raw = await raw_exchange(port, b"GET /error-after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"partial" in raw
    assert not raw.endswith(b"0\r\n\r\n")  # the body never ends properly: closed


async def test_body_longer_or_shorter_than_content_length_is_an_error(port: int) -> None:
    # known before anything went out: a 500
    for path in ("/cl-long", "/cl-short"):
        raw = await raw_exchange(
            port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode()
        )
        assert raw.startswith(b"HTTP/1.1 500"), raw
    # found in a later piece: the connection closes after what was declared, or short of it
    longer = await raw_exchange(port, b"GET /cl-long?stream=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    shorter = await raw_exchange(port, b"GET /cl-short?stream=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert longer.startswith(b"HTTP/1.1 200") and longer.endswith(b"\r\n\r\n01234")
    assert shorter.startswith(b"HTTP/1.1 200") and shorter.endswith(b"\r\n\r\n01234")
    for name in ("cl-long", "cl-short"):
        await wait_for_event(lambda e: e[:2] == (name, False), name)  # noqa: B023
        await wait_for_event(lambda e: e == (name, True, "HTTPOutputError"), name)  # noqa: B023


async def test_trailers_follow_a_chunked_body(port: int) -> None:
    raw = await raw_exchange(
        port, b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"3\r\nabc\r\n3\r\ndef\r\n0\r\nx-checksum: sha-ish\r\n\r\n"


async def test_trailers_are_dropped_for_http_1_0(port: int) -> None:
    raw = await raw_exchange(port, b"GET /trailers HTTP/1.0\r\nHost: x\r\n\r\n")
    assert raw.endswith(b"\r\n\r\nabcdef")


async def test_pathsend_sends_the_file(base_url: str, port: int) -> None:
    big = os.path.join(HERE, ".asgi-pathsend.bin")
    data = os.urandom(3 * 1024 * 1024 + 11)
    with open(big, "wb") as f:
        f.write(data)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(
                base_url + "/pathsend", params={"file": ".asgi-pathsend.bin"}
            )
            head = await client.head(base_url + "/pathsend", params={"file": "asgi_apps.py"})
            again = await client.get(base_url + "/cookies")  # the connection is still usable
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["x-file"] == "yes"
        assert response.content == data
        assert head.headers["content-length"] == str(os.path.getsize(asgi_apps.__file__))
        assert head.content == b""
        assert again.text == "two"
    finally:
        os.unlink(big)


# -- TLS ------------------------------------------------------------------------------------


async def test_tls_extension() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    with open(CERT) as f:
        pem = f.read()
    server = ASGIServer(raw_app, lifespan="off", ssl_options=context, server_cert=pem)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    port = sock.getsockname()[1]
    try:
        async with httpx.AsyncClient(verify=False) as client:
            scope = (await client.get(f"https://127.0.0.1:{port}/scope")).json()
    finally:
        server.stop()
        await server.close_all_connections()
        sock.close()
    assert scope["scheme"] == "https"
    tls = scope["tls"]
    assert tls["server_cert"] == pem
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert "tls" in scope["extensions"]


# -- WebSocket --------------------------------------------------------------------------------


async def test_websocket_echo_subprotocol_and_headers(port: int) -> None:
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo", subprotocols=["one", "two"]) as ws:
        assert ws.subprotocol == "two"
        assert ws.response.headers["x-accepted"] == "yes"
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        big = os.urandom(300_000)
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send("close please")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4000 and closed.value.rcvd.reason == "as asked"
    await wait_for_event(lambda e: e[0] == "ws-closed", "ws-closed")


async def test_websocket_scope(port: int) -> None:
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/scope?a=b", subprotocols=["p1"]) as ws:
        scope = json.loads(await ws.recv())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/ws/scope" and scope["query_string"] == "a=b"
    assert scope["subprotocols"] == ["p1"]
    assert scope["extensions"] == ["websocket.http.response"]
    assert scope["state"] == {"from": "fixture"}


async def test_websocket_client_close_reaches_the_app(port: int) -> None:
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        await ws.send("x")
        await ws.recv()
        await ws.close(code=4100, reason="leaving")
    event = await wait_for_event(lambda e: e[0] == "ws-disconnect", "ws-disconnect")
    assert event == ("ws-disconnect", 4100, "leaving")


async def test_websocket_denial_response(port: int) -> None:
    with pytest.raises(InvalidStatus) as denied:
        async with ws_connect(f"ws://127.0.0.1:{port}/ws/deny"):
            pass
    assert denied.value.response.status_code == 403
    assert denied.value.response.body == b"not you"


@pytest.mark.parametrize("path", ["/ws/close-first", "/ws/nothing"])
async def test_websocket_closed_or_left_before_accept_is_403(port: int, path: str) -> None:
    with pytest.raises(InvalidStatus) as denied:
        async with ws_connect(f"ws://127.0.0.1:{port}{path}"):
            pass
    assert denied.value.response.status_code == 403


async def test_websocket_app_error_closes_with_1011(port: int) -> None:
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        await ws.send("boom")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1011


async def test_websocket_bad_handshakes(port: int) -> None:
    base = b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    key = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    old = await raw_exchange(port, base + key + b"Sec-WebSocket-Version: 8\r\n\r\n", False)
    assert old.startswith(b"HTTP/1.1 426") and b"sec-websocket-version: 13" in old.lower()
    keyless = await raw_exchange(port, base + b"Sec-WebSocket-Version: 13\r\n\r\n", False)
    assert keyless.startswith(b"HTTP/1.1 400")
    old_http = base.replace(b"HTTP/1.1", b"HTTP/1.0") + key + b"Sec-WebSocket-Version: 13\r\n\r\n"
    assert (await raw_exchange(port, old_http)).startswith(b"HTTP/1.1 400")
    unconnected = base.replace(b"Connection: Upgrade", b"Connection: keep-alive")
    refused = await raw_exchange(
        port, unconnected + key + b"Sec-WebSocket-Version: 13\r\n\r\n", False
    )
    assert refused.startswith(b"HTTP/1.1 400")
    assert asgi_apps.events == []


async def _upgraded(port: int, path: str = "/ws/wait") -> tuple[Any, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % path.encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_websocket_protocol_error_closes_with_1002(port: int) -> None:
    reader, writer = await _upgraded(port)
    try:
        writer.write(b"\x81\x02hi")  # a client frame without a mask
        frame = await asyncio.wait_for(reader.read(64), 10)
        assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1002
        assert await asyncio.wait_for(reader.read(64), 10) == b""  # and the socket closes
    finally:
        writer.close()
    event = await wait_for_event(lambda e: e[0] == "ws-wait", "ws-wait")
    assert event == ("ws-wait", "websocket.disconnect", 1002)


async def test_websocket_message_too_big_closes_with_1009(http_server: Any, port: int) -> None:
    http_server.request_callback = ASGIDelegate(raw_app, websocket_max_message_size=1000)
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo", compression=None) as ws:
        await ws.send("x" * 2000)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1009


async def test_websocket_ping_is_answered_by_the_server(port: int) -> None:
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)


async def test_server_pings_and_drops_a_silent_client(http_server: Any, port: int) -> None:
    http_server.request_callback = ASGIDelegate(
        raw_app, websocket_ping_interval=0.05, websocket_ping_timeout=0.1
    )
    reader, writer = await _upgraded(port)
    try:
        frame = await asyncio.wait_for(reader.read(2), 10)
        assert frame == b"\x89\x00"  # a ping; this client never answers
        rest = await asyncio.wait_for(reader.read(64), 10)
        assert rest[:1] == b"\x88" and int.from_bytes(rest[2:4], "big") == 1011
    finally:
        writer.close()


@pytest.mark.parametrize("reason, code", [("reload", 1012), ("shutdown", 1001)])
async def test_drain_closes_asgi_websockets(
    http_server: Any, port: int, reason: str, code: int
) -> None:
    async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        await ws.send("before the drain")
        assert await ws.recv() == "before the drain"
        drain = asyncio.ensure_future(http_server.drain(5, reason=reason))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        await asyncio.wait_for(drain, 10)
    assert closed.value.rcvd.code == code
    event = await wait_for_event(lambda e: e[0] == "ws-disconnect", "ws-disconnect")
    assert event[1] == code


def _client_frame(first: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([first, 0x80 | len(payload)]) + mask + masked


async def test_websocket_fragments_arrive_as_one_message(port: int) -> None:
    reader, writer = await _upgraded(port, "/ws/echo")
    try:
        # "hel" + "lo" as a text frame without FIN and a final continuation, with a ping
        # between them that the server answers on its own
        writer.write(
            _client_frame(0x01, b"hel") + _client_frame(0x89, b"?") + _client_frame(0x80, b"lo")
        )
        data = b""
        for _ in range(100):
            data += await asyncio.wait_for(reader.read(64), 10)
            if b"hello" in data:
                break
        assert data.startswith(b"\x8a\x01?")  # the pong first: the ping came first
        assert data.endswith(b"\x81\x05hello")
    finally:
        writer.close()


# -- lifespan ---------------------------------------------------------------------------------


async def _served(server: ASGIServer) -> tuple[int, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    return sock.getsockname()[1], sock


async def test_lifespan_state_reaches_requests() -> None:
    server = ASGIServer(raw_app, lifespan="on")
    await server.startup()
    port, sock = await _served(server)
    try:
        async with httpx.AsyncClient() as client:
            scope = (await client.get(f"http://127.0.0.1:{port}/scope")).json()
    finally:
        await server.drain(1)
        await server.shutdown()
        sock.close()
    assert scope["state"]["greeting"] == "hello from lifespan"
    assert asgi_apps.events == ["startup", "shutdown"]


async def test_lifespan_startup_failure_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_TEST_STARTUP", "fail")
    server = ASGIServer(raw_app)
    with pytest.raises(LifespanFailure, match="no database"):
        await server.startup()


async def _no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']}")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body"})


async def test_lifespan_auto_serves_an_app_without_lifespan() -> None:
    server = ASGIServer(_no_lifespan, lifespan="auto")
    await server.startup()
    assert server.lifespan.supported is False
    await server.shutdown()


async def test_lifespan_on_refuses_an_app_without_lifespan() -> None:
    server = ASGIServer(_no_lifespan, lifespan="on")
    with pytest.raises(LifespanFailure):
        await server.startup()


async def test_lifespan_shutdown_failure_is_raised() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush"})

    server = ASGIServer(app, lifespan="on")
    await server.startup()
    with pytest.raises(LifespanFailure, match="could not flush"):
        await server.shutdown()


async def test_lifespan_off_never_calls_the_app() -> None:
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    server = ASGIServer(app, lifespan="off")
    await server.startup()
    await server.shutdown()
    assert calls == []


async def test_xheaders_give_the_proxy_s_client_and_scheme(
    http_server: Any, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="squall.access")
    http_server.xheaders = True
    async with httpx.AsyncClient() as client:
        scope = (
            await client.get(
                f"http://127.0.0.1:{port}/scope",
                headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            )
        ).json()
        plain = (await client.get(f"http://127.0.0.1:{port}/scope")).json()
    assert scope["client"] == ["203.0.113.9", 0]
    assert scope["scheme"] == "https"
    assert scope["tls"] is None  # not TLS here: the proxy said so
    assert plain["client"][0] == "127.0.0.1" and plain["scheme"] == "http"
    # the access line names the client the proxy named, not the proxy
    assert "200 GET /scope (203.0.113.9)" in caplog.text
