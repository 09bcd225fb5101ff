"""``HTTPServer.drain`` and ``squall.serve.drain`` in one process, over real sockets.

Clients are raw asyncio streams (every byte is the test's) and squall's own WebSocket client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from squall import netutil, web, websocket
from squall.httpserver import HTTPServer
from squall.serve import add_drain_callback, drain, remove_drain_callback


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=timeout))  # type: ignore[arg-type]


class Events:
    def __init__(self) -> None:
        self.closed_connections = 0
        self.ws_closed: list[tuple[int | None, str | None]] = []
        self.release = asyncio.Event()


def make_app(events: Events) -> web.Application:
    class Fast(web.RequestHandler):
        def get(self) -> None:
            self.write("fast")

    class Slow(web.RequestHandler):
        async def get(self) -> None:
            await events.release.wait()
            self.write("slow")

        def on_connection_close(self) -> None:
            events.closed_connections += 1

    class Stream(web.RequestHandler):
        async def get(self) -> None:
            self.write("part one;")
            await self.flush()
            await events.release.wait()
            self.write("part two")

    class Echo(websocket.WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            self.write_message(message)

        def on_close(self) -> None:
            events.ws_closed.append((self.close_code, self.close_reason))

    return web.Application([("/", Fast), ("/slow", Slow), ("/stream", Stream), ("/ws", Echo)])


async def start(events: Events) -> tuple[HTTPServer, int]:
    sockets = netutil.bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_app(events))
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


async def request(port: int, path: str, reader_writer: Any = None) -> tuple[Any, Any, bytes]:
    reader, writer = reader_writer or await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def test_idle_keep_alive_connections_close_at_once() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer, head = await request(port, "/")
        assert b"Connection: close" not in head
        await reader.readexactly(4)
        await drain([server], timeout=10)
        assert await reader.read() == b""  # closed by the server, nothing else sent
        writer.close()

    run(go)


def test_in_flight_requests_finish_with_connection_close() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        draining = asyncio.ensure_future(server.drain(10))
        await asyncio.sleep(0.1)
        assert not draining.done()
        # no new connections once draining
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        events.release.set()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Connection: close" in head
        assert await reader.read() == b"slow"
        await draining
        writer.close()

    run(go)


def test_a_response_already_streaming_ends_the_connection_after_it() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer, head = await request(port, "/stream")
        assert b"Transfer-Encoding: chunked" in head and b"Connection: close" not in head
        draining = asyncio.ensure_future(server.drain(10))
        await asyncio.sleep(0.1)
        events.release.set()
        rest = await reader.read()
        assert rest.endswith(b"0\r\n\r\n") and b"part two" in rest
        await draining
        writer.close()

    run(go)


def test_the_timeout_closes_what_is_left_and_handlers_hear_of_it() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        await server.drain(0.2)
        assert await reader.read() == b""
        assert events.closed_connections == 1
        writer.close()

    run(go)


@pytest.mark.parametrize("reason, code", [("shutdown", 1001), ("reload", 1012), ("recycle", 1012)])
def test_websockets_are_closed_with_a_code_for_the_reason(reason: str, code: int) -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        client = await websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws")
        await client.write_message("hi")
        assert await client.read_message() == "hi"
        await drain([server], timeout=10, reason=reason)
        assert await client.read_message() is None
        assert client.close_code == code
        assert events.ws_closed == [(code, None)] or events.ws_closed[0][0] == code

    run(go)


def test_drain_callbacks_run_with_the_reason_and_are_awaited() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        seen: list[str] = []

        async def answer_polls(reason: str) -> None:
            seen.append(reason)
            await asyncio.sleep(0.05)
            seen.append("done")

        def broken(reason: str) -> None:
            raise RuntimeError("a broken hook must not stop the drain")

        add_drain_callback(answer_polls)
        add_drain_callback(broken)
        try:
            await server.drain(5, reason="reload")
        finally:
            remove_drain_callback(answer_polls)
            remove_drain_callback(broken)
        assert seen == ["reload", "done"]

    run(go)


def test_a_second_drain_waits_for_the_first_and_can_shorten_it() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        first = asyncio.ensure_future(server.drain(60))
        await asyncio.sleep(0.1)
        await server.drain(0.1)  # a faster stop: the slow request is cut off
        await first
        assert await reader.read() == b""
        writer.close()

    run(go)


def test_a_connection_accepted_just_before_the_drain_still_gets_its_answer() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)  # accepted, nothing sent yet
        draining = asyncio.ensure_future(server.drain(10))
        await asyncio.sleep(0.1)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
        assert await reader.read() == b"fast"
        await draining
        writer.close()

    run(go)


def test_a_connection_that_never_sends_is_closed_by_the_deadline() -> None:
    async def go() -> None:
        events = Events()
        server, port = await start(events)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        await server.drain(0.3)
        assert await reader.read() == b""
        writer.close()

    run(go)
