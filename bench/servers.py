"""Hello-world servers for the benchmarks, one per process: ``python -m bench.servers KIND PORT``.

Kinds:
- ``squall-web`` / ``tornado-web``: an Application with ``/plain`` (text), ``/json`` and
  ``/page``; ``tornado+uvloop-web`` is Tornado's on uvloop's event loop, and
  ``squall+pure-web`` squall's pure-Python modules (the bench sets ``SQUALL_NO_EXTENSIONS``).
- ``uvicorn-asgi`` / ``granian-asgi``: a bare ASGI callable (no framework) answering
  ``/plain`` and ``/json``, served by uvicorn (httptools parser, uvloop) or by granian's
  Rust HTTP core, one worker each.
- ``squall-template`` / ``tornado-template``: ``/page`` renders a child template with 100 rows.
- ``squall-echo`` / ``tornado-echo``: a WebSocket echo handler on ``/ws``.
- ``ceiling``: a bare asyncio protocol answering every request with a fixed response,
  parsing nothing, on the same event loop squall uses: what Python can do at all here.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any

TEMPLATES = {
    "base.html": (
        "<!doctype html><html><head><title>{% block title %}Bench{% end %}</title></head>"
        "<body>{% block body %}{% end %}{% include 'footer.html' %}</body></html>"
    ),
    "page.html": (
        "{% extends 'base.html' %}{% block title %}Rows{% end %}{% block body %}<table>"
        "{% for row in rows %}<tr><td>{{ row['id'] }}</td><td>{{ row['name'] }}</td></tr>"
        "{% end %}</table>{% end %}"
    ),
    "footer.html": "<footer>{{ footer }}</footer>",
}
ROWS = [{"id": i, "name": f"<row {i} & friends>"} for i in range(100)]


def _application(framework: str, kind: str):  # type: ignore[no-untyped-def]
    web = importlib.import_module(f"{framework}.web")
    template = importlib.import_module(f"{framework}.template")

    class PlainHandler(web.RequestHandler):
        def get(self) -> None:
            self.write("Hello, World!")

    class JSONHandler(web.RequestHandler):
        def get(self) -> None:
            self.write({"message": "Hello, World!"})

    loader = template.DictLoader(TEMPLATES)

    class PageHandler(web.RequestHandler):
        def get(self) -> None:
            self.render("page.html", rows=ROWS, footer="squall & tornado")

    handlers: list = [(r"/plain", PlainHandler), (r"/json", JSONHandler), (r"/page", PageHandler)]
    if kind == "echo":
        websocket = importlib.import_module(f"{framework}.websocket")

        class EchoHandler(websocket.WebSocketHandler):
            def on_message(self, message):  # type: ignore[no-untyped-def]
                self.write_message(message, binary=isinstance(message, bytes))

        handlers.append((r"/ws", EchoHandler))
    return web.Application(handlers, template_loader=loader)


CEILING_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nServer: ceiling\r\n\r\nHello, World!"
)


class CeilingProtocol(asyncio.Protocol):
    """Answers one fixed response per request head seen, without parsing anything else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        data = self.pending + data
        count = data.count(b"\r\n\r\n")
        self.pending = data[data.rfind(b"\r\n\r\n") + 4 :] if count else data
        if count:
            self.transport.write(CEILING_RESPONSE * count)  # type: ignore[attr-defined]


_ASGI_PLAIN = (b"text/plain", b"Hello, World!")


async def asgi_hello(scope: dict, receive: Any, send: Any) -> None:
    """A raw ASGI application: what a server costs with no framework above it."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/json":
        content_type, body = b"application/json", json.dumps({"message": "Hello, World!"}).encode()
    else:
        content_type, body = _ASGI_PLAIN
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve_asgi(server: str, port: int) -> None:
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            "bench.servers:asgi_hello",
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            backlog=2048,
        )
    else:
        from granian import Granian

        Granian(
            "bench.servers:asgi_hello",
            address="127.0.0.1",
            port=port,
            interface="asgi",
            workers=1,
            loop="uvloop",
            log_enabled=False,
            backlog=2048,
        ).serve()


async def serve(kind: str, port: int) -> None:
    if kind == "ceiling":
        loop = asyncio.get_running_loop()
        server = await loop.create_server(CeilingProtocol, "127.0.0.1", port, backlog=2048)
        async with server:
            await server.serve_forever()
        return
    framework, _, what = kind.partition("-")
    app = _application(framework.partition("+")[0], what)
    app.listen(port, "127.0.0.1", backlog=2048)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind.endswith("-asgi"):
        serve_asgi(kind.partition("-")[0], port)
        return
    if kind == "ceiling":
        # the ceiling runs on the loop squall picks by default, so its figure is comparable
        importlib.import_module("squall.ioloop")
    else:
        framework, _, variant = kind.partition("-")[0].partition("+")
        if variant == "uvloop":
            # Tornado on uvloop: shows how much of squall's lead is its own code
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        # ("squall+pure" is plain squall: the bench runs it with SQUALL_NO_EXTENSIONS set.)
        # importing first lets squall install its loop policy (uvloop) before the loop exists
        importlib.import_module(framework + ".web")
    asyncio.run(serve(kind, port))


if __name__ == "__main__":
    main()
