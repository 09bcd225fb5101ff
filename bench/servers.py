"""Hello-world servers for the benchmarks, one per process: ``python -m bench.servers KIND PORT``.

Kinds:
- ``squall-web`` / ``tornado-web``: an Application with ``/plain`` (text), ``/json`` and
  ``/page``; ``tornado+uvloop-web`` is Tornado's on uvloop's event loop, and
  ``squall+compiled-web`` squall's run from the copy with a compiled core (bench.compiled).
- ``squall-template`` / ``tornado-template``: ``/page`` renders a child template with 100 rows.
- ``squall-echo`` / ``tornado-echo``: a WebSocket echo handler on ``/ws``.
- ``ceiling``: a bare asyncio protocol answering every request with a fixed response,
  parsing nothing, on the same event loop squall uses: what Python can do at all here.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

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
    if kind == "ceiling":
        # the ceiling runs on the loop squall picks by default, so its figure is comparable
        importlib.import_module("squall.ioloop")
    else:
        framework, _, variant = kind.partition("-")[0].partition("+")
        if variant == "uvloop":
            # Tornado on uvloop: shows how much of squall's lead is its own code
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        # ("squall+compiled" is plain squall, run from the compiled copy bench.compiled makes.)
        # importing first lets squall install its loop policy (uvloop) before the loop exists
        importlib.import_module(framework + ".web")
    asyncio.run(serve(kind, port))


if __name__ == "__main__":
    main()
