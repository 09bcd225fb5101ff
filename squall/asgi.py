"""ASGI both ways: serve any ASGI 3 application on squall, or run a squall application
under any ASGI server.

Serving an ASGI app (Starlette, FastAPI, Django, a bare coroutine)::

    server = squall.asgi.ASGIServer(app)         # an HTTPServer with the lifespan
    await server.startup()                       # lifespan.startup
    server.listen(8000)
    ...
    await server.drain(30)                       # as any HTTPServer
    await server.shutdown()                      # lifespan.shutdown

or ``HTTPServer(squall.asgi.ASGIDelegate(app))`` without the lifespan,
``await squall.asgi.serve(app, 8000)`` for all of it, and ``squall serve myapp:app`` from
the command line. A squall application under uvicorn, hypercorn or granian::

    asgi_app = squall.asgi.ASGIAdapter(make_app())   # uvicorn mymodule:asgi_app

See docs/asgi.md for what each direction does and where it differs.
"""

from __future__ import annotations

from squall._asgi._adapter import ASGIAdapter, ASGIConnection, DetachUnsupportedError
from squall._asgi._adapter_ws import WebSocketPingUnavailable
from squall._asgi._errors import ASGIProtocolError, ClientDisconnected, LifespanFailure
from squall._asgi._lifespan import LIFESPAN_MODES, Lifespan
from squall._asgi._server import ASGIDelegate, ASGIServer, serve

__all__ = [
    "ASGIAdapter",
    "ASGIConnection",
    "ASGIDelegate",
    "ASGIProtocolError",
    "ASGIServer",
    "ClientDisconnected",
    "DetachUnsupportedError",
    "LIFESPAN_MODES",
    "Lifespan",
    "LifespanFailure",
    "WebSocketPingUnavailable",
    "serve",
]
