"""Applications that tests/test_serve.py runs under ``squall serve`` in real processes."""

from __future__ import annotations

import asyncio
import os
import time

from squall import httputil, web, websocket
from squall.serve import add_drain_callback


class Hello(web.RequestHandler):
    def get(self) -> None:
        self.write(f"hello {os.getpid()}")


class Slow(web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s", "1")))
        self.write(f"slow {os.getpid()}")


class Block(web.RequestHandler):
    def get(self) -> None:
        # blocks the worker's event loop: the health check must notice
        time.sleep(float(self.get_argument("s", "30")))
        self.write("unblocked")


_ballast: list[bytearray] = []


class Grow(web.RequestHandler):
    """Holds memory, for the --worker-max-rss test."""

    def get(self) -> None:
        mb = int(self.get_argument("mb"))
        _ballast.append(bytearray(b"x" * (mb * 1024 * 1024)))
        self.write(f"holding {mb} MiB in {os.getpid()}")


class Echo(websocket.WebSocketHandler):
    def open(self) -> None:
        self.write_message(f"pid {os.getpid()}")

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


_waiters: set[asyncio.Future[str]] = set()


class Poll(web.RequestHandler):
    """A long poll that a drain answers at once (so the client polls another worker)."""

    async def get(self) -> None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        _waiters.add(future)
        try:
            answer = await asyncio.wait_for(future, 60)
        finally:
            _waiters.discard(future)
        self.write(answer)


def _answer_polls(reason: str) -> None:
    for future in list(_waiters):
        if not future.done():
            future.set_result(f"drained {reason}")


add_drain_callback(_answer_polls)


def make_app() -> web.Application:
    return web.Application(
        [
            (r"/", Hello),
            (r"/slow", Slow),
            (r"/block", Block),
            (r"/ws", Echo),
            (r"/poll", Poll),
            (r"/grow", Grow),
        ]
    )


app = make_app()


async def make_app_async() -> web.Application:
    await asyncio.sleep(0)
    return make_app()


def plain_callback(request: httputil.HTTPServerRequest) -> None:
    body = f"callback {request.path}".encode()
    request.connection.write_headers(  # type: ignore[union-attr]
        httputil.ResponseStartLine("HTTP/1.1", 200, "OK"),
        httputil.HTTPHeaders({"Content-Length": str(len(body))}),
        body,
    )
    request.connection.finish()  # type: ignore[union-attr]


class Broken:
    pass


not_an_app = Broken()
