"""A squall Application under ASGI servers, through ``squall.asgi.ASGIAdapter``.

Tornado-style handlers (cookies, redirects, errors, streaming, uploads, a client that
leaves, WebSocketHandler) run behind the adapter under uvicorn, hypercorn and granian
(subprocesses on free ports) and under squall's own ASGI server (in this process); every
check talks to them over real sockets. The handlers' side of things is read back through
the app's own ``/events`` endpoint, so the same checks work across processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")

import asgi_apps  # noqa: E402
from asgi_servers import running  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from squall import httputil, web  # noqa: E402
from squall.asgi import ASGIAdapter, ASGIDelegate, DetachUnsupportedError  # noqa: E402

SERVERS = [
    name
    for name in ("squall", "uvicorn", "hypercorn", "granian")
    if name == "squall" or importlib.util.find_spec(name) is not None
]


@pytest.fixture(scope="module")
def subprocess_servers() -> Iterator[dict[str, Any]]:
    """Started on first use, stopped at the end of the module."""
    started: dict[str, Any] = {}
    stack: list[Any] = []
    yield {"started": started, "stack": stack}
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def app() -> ASGIDelegate:
    return ASGIDelegate(asgi_apps.squall_asgi)


@pytest.fixture(params=SERVERS)
def base(request: pytest.FixtureRequest, subprocess_servers: dict[str, Any]) -> str:
    name = request.param
    if name == "squall":
        asgi_apps.handler_events.clear()
        return str(request.getfixturevalue("base_url"))
    started = subprocess_servers["started"]
    if name not in started:
        context = running(name, "asgi_apps:squall_asgi")
        started[name] = context.__enter__()
        subprocess_servers["stack"].append(context)
    url = f"http://127.0.0.1:{started[name]}"
    httpx.delete(url + "/events")  # what earlier tests left there
    return url


async def events(base: str) -> list[Any]:
    async with httpx.AsyncClient() as client:
        return (await client.get(base + "/events")).json()["events"]  # type: ignore[no-any-return]


async def wait_for_event(base: str, wanted: Any) -> list[Any]:
    for _ in range(200):
        seen = await events(base)
        if wanted in seen:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {wanted!r} in {seen!r}")


async def test_json_and_remote_ip(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base + "/hello")
    assert response.status_code == 200
    assert response.json() == {"hello": "world", "remote_ip": "127.0.0.1"}
    assert response.headers["content-type"] == "application/json; charset=UTF-8"


async def test_cookies_and_repeated_headers_stay_apart(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base + "/cookies", headers={"Cookie": "incoming=yes"})
    assert response.text == "cookie was yes"
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("first=1") and cookies[1].startswith("second=2")
    assert "httponly" in cookies[1].lower()
    assert response.headers.get_list("x-multi") == ["a", "b"]
    # the ASGI server dates and names the response; the handler's own do not double them
    assert len(response.headers.get_list("date")) <= 1
    assert len(response.headers.get_list("server")) <= 1


async def test_redirect(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base + "/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/hello"


async def test_errors_become_error_pages(base: str) -> None:
    async with httpx.AsyncClient() as client:
        forbidden = await client.get(base + "/error/forbidden")
        bug = await client.get(base + "/error/bug")
        missing = await client.get(base + "/nowhere")
    # (ASGI carries no reason phrase: the server picks its own, or none)
    assert forbidden.status_code == 403
    assert bug.status_code == 500
    assert "Traceback" not in bug.text
    assert missing.status_code == 404


async def test_streaming_flush_goes_out_piece_by_piece(base: str) -> None:
    async with httpx.AsyncClient() as client:
        async with client.stream("GET", base + "/stream") as response:
            lines = [line async for line in response.aiter_lines()]
    assert lines == [f"line {i}" for i in range(4)]


async def test_latin1_header_values(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base + "/header", headers={"X-Latin": "café".encode("latin-1")})
    assert response.headers.raw[[n.lower() for n, _ in response.headers.raw].index(b"x-echo")][
        1
    ] == "café".encode("latin-1")
    assert response.text == "café"


async def test_streamed_upload_with_awaits_in_data_received(base: str) -> None:
    body = os.urandom(3 * 1024 * 1024 + 5)

    async def pieces() -> Any:
        for i in range(0, len(body), 256 * 1024):
            yield body[i : i + 256 * 1024]

    async with httpx.AsyncClient() as client:
        response = await client.put(base + "/upload", content=pieces())
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def test_multipart_form(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            base + "/form",
            data={"name": "zoé"},
            files={"upload": ("notes.txt", b"n" * 10_000, "text/plain")},
        )
    assert response.json() == {"name": "zoé", "files": [["notes.txt", 10_000]]}


async def test_client_leaving_reaches_on_connection_close(base: str) -> None:
    host, port = base.rsplit("/", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await wait_for_event(base, "waiting")
    writer.close()
    seen = await wait_for_event(base, "on_connection_close")
    seen = await wait_for_event(base, ["stream-closed", True])
    assert seen.count("on_connection_close") == 1


async def test_detach_raises_a_clear_error(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base + "/detach")
    assert response.status_code == 501
    assert response.text.startswith("DetachUnsupportedError: detach() is not available under ASGI")


async def test_websocket_handler(base: str) -> None:
    url = base.replace("http://", "ws://") + "/ws"
    async with ws_connect(url, subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert await ws.recv() == "welcome"
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xffbytes")
        assert await ws.recv() == b"\x00\xffbytes"
        await ws.send("ping")
        assert await ws.recv() == "ping: WebSocketPingUnavailable"
        await ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye now")
    seen = await wait_for_event(base, ["open", "chat.v2"])
    for _ in range(200):
        if any(e[0] == "on_close" for e in seen if isinstance(e, list)):
            break
        await asyncio.sleep(0.02)
        seen = await events(base)
    closes = [e for e in seen if isinstance(e, list) and e[0] == "on_close"]
    assert len(closes) == 1


async def test_websocket_client_close_reaches_on_close(
    base: str, request: pytest.FixtureRequest
) -> None:
    url = base.replace("http://", "ws://") + "/ws"
    async with ws_connect(url) as ws:
        assert await ws.recv() == "welcome"
        await ws.close(code=4100, reason="leaving")
    for _ in range(200):
        closes = [e for e in await events(base) if isinstance(e, list) and e[0] == "on_close"]
        if closes:
            break
        await asyncio.sleep(0.02)
    assert len(closes) == 1
    if request.node.callspec.params["base"] in ("squall", "uvicorn"):
        # what the server's websocket.disconnect said (hypercorn reports 1006 for a
        # client's close, granian leaves the reason out)
        assert closes[0] == ["on_close", 4100, "leaving"]


async def test_websocket_refused_by_check_origin(base: str) -> None:
    url = base.replace("http://", "ws://") + "/ws-refuse"
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, origin="http://elsewhere.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


# -- squall's own ASGI server only: limits of the adapter itself -------------------------


class _Echo(web.RequestHandler):
    def post(self) -> None:
        self.write(str(len(self.request.body)))


async def test_adapter_max_body_size(http_server: Any, base_url: str) -> None:
    application = web.Application([(r"/echo", _Echo)])
    http_server.request_callback = ASGIDelegate(ASGIAdapter(application, max_body_size=1000))
    async with httpx.AsyncClient() as client:
        fine = await client.post(base_url + "/echo", content=b"a" * 1000)
        declared = await client.post(base_url + "/echo", content=b"a" * 5000)

        async def unknown_length() -> Any:
            for _ in range(5):
                yield b"a" * 1000

        streamed = await client.post(base_url + "/echo", content=unknown_length())
    assert fine.text == "1000"
    assert declared.status_code == 413
    assert streamed.status_code == 413


def test_adapter_needs_an_application() -> None:
    with pytest.raises(TypeError):
        ASGIAdapter(lambda request: None)  # type: ignore[arg-type]


def test_detach_error_is_a_runtime_error() -> None:
    assert issubclass(DetachUnsupportedError, RuntimeError)
    assert issubclass(httputil.HTTPOutputError, Exception)


async def test_adapter_lifespan_under_squall_asgi_server() -> None:
    from squall.asgi import ASGIServer

    server = ASGIServer(asgi_apps.squall_asgi, lifespan="on")
    await server.startup()
    assert server.lifespan.supported is True
    await server.shutdown()


async def test_adapter_refuses_unknown_scope_types() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "none"}

    async def send(message: dict[str, Any]) -> None:
        pass

    with pytest.raises(ValueError, match="scope type 'weird'"):
        await asgi_apps.squall_asgi({"type": "weird"}, receive, send)
