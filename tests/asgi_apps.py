"""Applications for the ASGI tests, importable in-process and by ASGI servers run as
subprocesses (``uvicorn asgi_apps:...`` from this directory).

``raw_app`` is a bare ASGI 3 application whose paths each exercise one part of the
protocol; ``squall_app()`` builds a squall Application of Tornado-style handlers and
``squall_asgi`` is it behind ``ASGIAdapter``; ``chat_asgi()`` is the chat example.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

from squall import web, websocket
from squall.asgi import ASGIAdapter

HERE = os.path.dirname(os.path.abspath(__file__))

# what raw_app saw, for in-process tests to look at
events: list[Any] = []


async def _read_body(receive: Any) -> bytes:
    chunks = []
    for _ in range(100_000):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes, headers: Any = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _jsonable_scope(scope: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope.get("method"),
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "state": scope.get("state"),
        "extensions": sorted(scope.get("extensions", {})),
        "tls": scope.get("extensions", {}).get("tls"),
        "subprotocols": scope.get("subprotocols"),
    }


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    if os.environ.get("ASGI_TEST_STARTUP") == "fail":
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        return
    scope["state"]["greeting"] = "hello from lifespan"
    scope["state"]["pid"] = os.getpid()
    events.append("startup")
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    events.append("shutdown")
    marker = os.environ.get("ASGI_TEST_SHUTDOWN_MARKER")
    if marker:
        with open(marker, "w") as f:
            f.write("shutdown complete")
    await send({"type": "lifespan.shutdown.complete"})


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if kind == "websocket":
        await _websocket(scope, receive, send)
        return
    path = scope["path"]
    root = scope["root_path"]
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    if path == "/scope":
        body = json.dumps(_jsonable_scope(scope)).encode()
        await _respond(send, 200, body, [(b"content-type", b"application/json")])
    elif path == "/echo":
        data = await _read_body(receive)
        digest = hashlib.sha256(data).hexdigest()
        await _respond(send, 200, f"{len(data)} {digest}".encode())
    elif path == "/pieces":
        # how the body arrived: sizes of the pieces (flow control tests)
        sizes = []
        for _ in range(100_000):
            message = await receive()
            sizes.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
            await asyncio.sleep(0.01)
        events.append(("pieces", sizes))
        await _respond(send, 200, json.dumps(sizes).encode())
    elif path == "/noread":
        # answers without reading the body: no 100 Continue must go out
        await _respond(send, 413, b"too big for me")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/big":
        # a large response: send() has to wait for a slow reader
        size = int(dict(_query(scope)).get("mb", "8")) * 1024 * 1024
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * 65536
        sent = 0
        waits = 0
        while sent < size:
            started = asyncio.get_running_loop().time()
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if asyncio.get_running_loop().time() - started > 0.001:
                waits += 1
            sent += len(piece)
        events.append(("big", waits))
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait-disconnect":
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        message = await receive()
        events.append(("disconnect", message["type"]))
        try:
            await send({"type": "http.response.body", "body": b"too late", "more_body": True})
        except OSError as error:
            events.append(("send-after-disconnect", type(error).__name__))
        try:
            await receive()
        except RuntimeError as error:
            events.append(("second-receive", type(error).__name__))
    elif path == "/after-response":
        await _respond(send, 200, b"done")
        message = await receive()
        events.append(("after-response", message["type"]))
    elif path == "/error-before":
        raise RuntimeError("broken before the response")
    elif path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("broken in the middle")
    elif path == "/return-early":
        return
    elif path in ("/cl-long", "/cl-short"):
        # ?stream=1: the mismatch shows only in a later piece, after the head went out
        streamed = dict(_query(scope)).get("stream") == "1"
        declared, pieces = (
            (b"5", [b"01234", b"56789"]) if path == "/cl-long" else (b"10", [b"012", b"34"])
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", declared)],
            }
        )
        try:
            if streamed:
                await send({"type": "http.response.body", "body": pieces[0], "more_body": True})
                await send({"type": "http.response.body", "body": pieces[1]})
            else:
                await send({"type": "http.response.body", "body": b"".join(pieces)})
        except Exception as error:
            events.append((path[1:], streamed, type(error).__name__))
            raise
    elif path == "/bad-header":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb: c")]}
        )
    elif path == "/bad-message":
        await send({"type": "http.response.body", "body": b"no start"})
    elif path == "/trailers":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"trailer", b"x-checksum")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def", "more_body": False})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-checksum", b"sha-ish")],
                "more_trailers": False,
            }
        )
    elif path == "/pathsend":
        name = dict(_query(scope)).get("file", "")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-file", b"yes")]})
        await send({"type": "http.response.pathsend", "path": os.path.join(HERE, name)})
    elif path == "/cookies":
        await _respond(send, 200, b"two", [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])
    else:
        await _respond(send, 404, b"no such path")


def _query(scope: dict[str, Any]) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(scope["query_string"].decode())


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    message = await receive()
    assert message["type"] == "websocket.connect"
    if path == "/ws/scope":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(_jsonable_scope(scope))})
        await send({"type": "websocket.close", "code": 1000})
        return
    if path == "/ws/echo":
        offered = scope.get("subprotocols") or []
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": offered[-1] if offered else None,
                "headers": [(b"x-accepted", b"yes")],
            }
        )
        for _ in range(100_000):
            message = await receive()
            if message["type"] == "websocket.disconnect":
                events.append(("ws-disconnect", message.get("code"), message.get("reason")))
                return
            if message.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4000, "reason": "as asked"})
                final = await receive()
                events.append(("ws-closed", final.get("code")))
                return
            if message.get("text") == "boom":
                raise RuntimeError("handler blew up")
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif path == "/ws/deny":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"not you"})
    elif path == "/ws/close-first":
        await send({"type": "websocket.close", "code": 1008})
    elif path == "/ws/wait":
        await send({"type": "websocket.accept"})
        message = await receive()
        events.append(("ws-wait", message["type"], message.get("code")))
    else:
        return  # no accept: the server answers 403


# -- a squall application behind ASGIAdapter ------------------------------------------------

handler_events: list[Any] = []


class HelloHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world", "remote_ip": self.request.remote_ip})


class CookieHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_cookie("first", "1")
        self.set_cookie("second", "2", httponly=True)
        self.add_header("X-Multi", "a")
        self.add_header("X-Multi", "b")
        seen = self.get_cookie("incoming", "none")
        self.write(f"cookie was {seen}")


class RedirectHandler(web.RequestHandler):
    def get(self) -> None:
        self.redirect("/hello", permanent=False)


class ErrorHandler(web.RequestHandler):
    def get(self, kind: str) -> None:
        if kind == "forbidden":
            raise web.HTTPError(403, reason="Not For You")
        raise ValueError("a bug in the handler")


class StreamHandler(web.RequestHandler):
    async def get(self) -> None:
        for i in range(4):
            self.write(f"line {i}\n")
            await self.flush()  # resolves once the ASGI server's send() returned
            await asyncio.sleep(0.01)


class HeaderHandler(web.RequestHandler):
    def get(self) -> None:
        # a latin-1 header value both ways
        self.set_header("X-Echo", self.request.headers.get("X-Latin", ""))
        self.write(self.request.headers.get("X-Latin", ""))


@web.stream_request_body
class UploadHandler(web.RequestHandler):
    def prepare(self) -> None:
        self.sizes: list[int] = []
        self.digest = hashlib.sha256()

    async def data_received(self, chunk: bytes) -> None:
        await asyncio.sleep(0)  # a handler that awaits per piece
        self.sizes.append(len(chunk))
        self.digest.update(chunk)

    def put(self) -> None:
        self.write({"bytes": sum(self.sizes), "sha256": self.digest.hexdigest()})


class FormHandler(web.RequestHandler):
    def post(self) -> None:
        files = self.request.files.get("upload", [])
        self.write(
            {
                "name": self.get_body_argument("name", ""),
                "files": [(f.filename, len(f.body)) for f in files],
            }
        )


class WaitHandler(web.RequestHandler):
    """Never answers by itself: the client leaving must reach on_connection_close."""

    async def get(self) -> None:
        self.waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handler_events.append("waiting")
        try:
            await self.waiting
        except asyncio.CancelledError:
            handler_events.append(("stream-closed", self.request.connection.stream.closed()))  # type: ignore[union-attr]

    def on_connection_close(self) -> None:
        handler_events.append("on_connection_close")
        self.waiting.cancel()


class DetachHandler(web.RequestHandler):
    def get(self) -> None:
        try:
            self.detach()
        except RuntimeError as error:
            self._finished = False
            self.set_status(501)
            self.finish(f"{type(error).__name__}: {error}")


class EventsHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"events": handler_events})

    def delete(self) -> None:
        handler_events.clear()


class EchoSocket(websocket.WebSocketHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "chat.v2" if "chat.v2" in subprotocols else None

    def open(self) -> None:
        handler_events.append(("open", self.selected_subprotocol))
        self.write_message("welcome")

    async def on_message(self, message: str | bytes) -> None:
        if message == "close":
            self.close(4001, "bye now")
            return
        if message == "ping":
            try:
                self.ping(b"x")
            except websocket.WebSocketError as error:
                await self.write_message(f"ping: {type(error).__name__}")
            return
        await self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        handler_events.append(("on_close", self.close_code, self.close_reason))


class RefusingSocket(websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return False


def squall_app() -> web.Application:
    return web.Application(
        [
            (r"/hello", HelloHandler),
            (r"/cookies", CookieHandler),
            (r"/redirect", RedirectHandler),
            (r"/error/(\w+)", ErrorHandler),
            (r"/stream", StreamHandler),
            (r"/header", HeaderHandler),
            (r"/upload", UploadHandler),
            (r"/form", FormHandler),
            (r"/wait", WaitHandler),
            (r"/detach", DetachHandler),
            (r"/events", EventsHandler),
            (r"/ws", EchoSocket),
            (r"/ws-refuse", RefusingSocket),
        ]
    )


squall_asgi = ASGIAdapter(squall_app())


def chat_asgi() -> ASGIAdapter:
    """The chat example as an ASGI app (a factory: ``uvicorn --factory``)."""
    from examples.chat.app import load_cookie_secret, make_app

    data_dir = os.environ.get("CHAT_DATA_DIR") or os.path.join(HERE, ".chat-data")
    return ASGIAdapter(make_app(load_cookie_secret(data_dir, ""), False))


def raw_app_factory() -> Any:
    """A zero-argument factory returning the ASGI app (``squall serve --factory``)."""
    return raw_app


async def plain_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app without lifespan support (it refuses every other scope type)."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"pid {os.getpid()}"})
        for _ in range(100_000):
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    if scope["type"] != "http":
        raise ValueError(f"plain_asgi serves no {scope['type']!r} scope")
    await _respond(send, 200, f"plain {os.getpid()} state={'state' in scope}".encode())
