"""Starlette and FastAPI served by squall, answering as uvicorn does.

The same application runs under squall's ASGIServer (in this process) and under uvicorn
(a subprocess on a free port); the same requests go to both over real sockets and the
answers are compared, leaving out what servers legitimately differ in (Date, Server,
how a body is framed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import asgi_framework_apps  # noqa: E402
from asgi_servers import running  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from squall.asgi import ASGIServer  # noqa: E402

UPLOAD = os.urandom(200_000)

STARLETTE_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/items/42?q=hello%20world", {}),
    ("GET", "/items/notanumber", {}),
    ("POST", "/echo", {"content": b"x" * 100_000, "headers": {"content-type": "app/x"}}),
    ("POST", "/form", {"data": {"name": "zoe"}, "files": {"upload": ("a.bin", UPLOAD)}}),
    ("GET", "/stream", {}),
    ("GET", "/file", {}),
    ("HEAD", "/file", {}),
    ("GET", "/state", {}),
    ("GET", "/cookies", {}),
    ("GET", "/redirect", {}),
    ("GET", "/missing", {}),
    ("GET", "/nowhere", {}),
    ("DELETE", "/", {}),
]

FASTAPI_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/items/7?q=x", {}),
    ("GET", "/items/seven", {}),
    ("POST", "/items", {"json": {"name": "pen", "price": 2.5, "tags": ["a", "b"]}}),
    ("POST", "/items", {"json": {"name": "pen"}}),
    ("POST", "/items", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("GET", "/sync", {}),
    ("GET", "/stream", {}),
    ("GET", "/file", {}),
    ("GET", "/state", {}),
    ("GET", "/docs", {}),
    ("GET", "/openapi.json", {}),
]

# what two servers may answer differently without either being wrong
_SERVER_OWN = {"date", "server", "transfer-encoding", "content-length", "connection"}


async def answers(port: int, requests: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    results = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for method, path, options in requests:
            response = await client.request(method, path, **options)
            headers = sorted(
                # (Starlette builds Allow from a set: its order follows the process's hash seed)
                (name, ", ".join(sorted(value.split(", "))) if name == "allow" else value)
                for name, value in response.headers.multi_items()
                if name not in _SERVER_OWN
            )
            body = response.content
            if path == "/state":
                body = body.replace(str(os.getpid()).encode(), b"PID")
            results.append((method, path, response.status_code, headers, body))
    return results


@contextlib.asynccontextmanager
async def squall_serving(app: Any) -> AsyncIterator[int]:
    server = ASGIServer(app, lifespan="on")
    await server.startup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    server.add_sockets([sock])
    try:
        yield sock.getsockname()[1]
    finally:
        await server.drain(2)
        await server.shutdown()
        sock.close()


@pytest.fixture(scope="module")
def uvicorn_starlette() -> Iterator[int]:
    with running("uvicorn", "asgi_framework_apps:starlette_app") as port:
        yield port


@pytest.fixture(scope="module")
def uvicorn_fastapi() -> Iterator[int]:
    with running("uvicorn", "asgi_framework_apps:fastapi_app") as port:
        yield port


def _same(ours: list[Any], theirs: list[Any]) -> None:
    for mine, other in zip(ours, theirs, strict=False):
        assert mine == other, f"squall and uvicorn differ on {mine[0]} {mine[1]}"
    assert len(ours) == len(theirs)


async def test_starlette_answers_as_under_uvicorn(uvicorn_starlette: int) -> None:
    async with squall_serving(asgi_framework_apps.starlette_app) as port:
        ours = await answers(port, STARLETTE_REQUESTS)
    theirs = await answers(uvicorn_starlette, STARLETTE_REQUESTS)
    _same(ours, theirs)
    by_path = {(m, p): (status, body) for m, p, status, _, body in ours}
    assert by_path[("GET", "/stream")] == (200, b"".join(b"part %d\n" % i for i in range(5)))
    with open(asgi_framework_apps.SERVED_FILE, "rb") as f:
        assert by_path[("GET", "/file")] == (200, f.read())
    assert by_path[("GET", "/state")][1] == b'{"started":"by lifespan"}'
    form = by_path[("POST", "/form")]
    assert form == (200, b'{"name":"zoe","file":"a.bin","size":200000}')


async def test_fastapi_answers_as_under_uvicorn(uvicorn_fastapi: int) -> None:
    async with squall_serving(asgi_framework_apps.fastapi_app) as port:
        ours = await answers(port, FASTAPI_REQUESTS)
    theirs = await answers(uvicorn_fastapi, FASTAPI_REQUESTS)
    _same(ours, theirs)
    statuses = [status for _, _, status, _, _ in ours]
    assert statuses == [200, 422, 201, 422, 422, 200, 200, 200, 200, 200, 200]


async def _conversation(url: str, messages: list[Any], json: bool = False) -> list[Any]:
    replies: list[Any] = []
    async with ws_connect(url, subprotocols=["proto-a"] if not json else None) as ws:
        replies.append(ws.subprotocol)
        for message in messages:
            await ws.send(message)
            try:
                replies.append(await ws.recv())
            except ConnectionClosed as closed:
                replies.append((closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None)
                break
    return replies


async def test_starlette_websocket_as_under_uvicorn(uvicorn_starlette: int) -> None:
    messages = ["hello", "x" * 70_000, "bye"]
    async with squall_serving(asgi_framework_apps.starlette_app) as port:
        ours = await _conversation(f"ws://127.0.0.1:{port}/ws", messages)
    theirs = await _conversation(f"ws://127.0.0.1:{uvicorn_starlette}/ws", messages)
    assert ours == theirs == ["proto-a", "HELLO", "X" * 70_000, (4002, "bye to you")]


async def test_fastapi_websocket_as_under_uvicorn(uvicorn_fastapi: int) -> None:
    messages = ['{"a": 1}', '{"b": [1, 2]}']
    async with squall_serving(asgi_framework_apps.fastapi_app) as port:
        ours = await _conversation(f"ws://127.0.0.1:{port}/ws", messages, json=True)
    theirs = await _conversation(f"ws://127.0.0.1:{uvicorn_fastapi}/ws", messages, json=True)
    assert ours == theirs
    assert ours[1:] == ['{"got":{"a":1}}', '{"got":{"b":[1,2]}}']


async def test_starlette_file_response_goes_through_pathsend() -> None:
    # Starlette sends FileResponse as http.response.pathsend where the server offers it
    async with squall_serving(asgi_framework_apps.starlette_app) as port:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/file")
    with open(asgi_framework_apps.SERVED_FILE, "rb") as f:
        expected = f.read()
    assert response.headers["content-length"] == str(len(expected))
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(expected).digest()
