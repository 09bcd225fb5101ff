"""A Starlette app and a FastAPI app, served in the ASGI tests by squall and by uvicorn
(``uvicorn asgi_framework_apps:starlette_app`` from this directory) to compare answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any, Optional

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

HERE = os.path.dirname(os.path.abspath(__file__))
# a file both servers send (squall through pathsend, uvicorn in pieces)
SERVED_FILE = os.path.join(HERE, "asgi_apps.py")


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    yield {"started": "by lifespan", "pid": os.getpid()}


async def _parts() -> AsyncIterator[str]:
    for i in range(5):
        yield f"part {i}\n"
        await asyncio.sleep(0.005)


# -- Starlette -------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    return PlainTextResponse("home")


async def item(request: Request) -> Response:
    return JSONResponse(
        {"id": int(request.path_params["item_id"]), "q": request.query_params.get("q")}
    )


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"length": len(body), "type": request.headers.get("content-type")})


async def form(request: Request) -> Response:
    # (closing the form closes the spooled file of the upload, which the suite checks)
    async with request.form() as data:
        upload: Any = data["upload"]
        content = await upload.read()
        return JSONResponse({"name": data["name"], "file": upload.filename, "size": len(content)})


async def stream(request: Request) -> Response:
    return StreamingResponse(_parts(), media_type="text/plain")


async def file(request: Request) -> Response:
    return FileResponse(SERVED_FILE, media_type="text/x-python")


async def state(request: Request) -> Response:
    return JSONResponse({"started": request.state.started})


async def cookies(request: Request) -> Response:
    response = PlainTextResponse("cookies")
    response.set_cookie("first", "1")
    response.set_cookie("second", "2", httponly=True)
    return response


async def redirect(request: Request) -> Response:
    return RedirectResponse("/", status_code=302)


async def missing(request: Request) -> Response:
    return PlainTextResponse("gone", status_code=410)


async def socket_upper(websocket: Any) -> None:
    await websocket.accept(subprotocol=(websocket.scope.get("subprotocols") or [None])[0])
    try:
        async for text in websocket.iter_text():
            if text == "bye":
                await websocket.close(code=4002, reason="bye to you")
                return
            await websocket.send_text(text.upper())
    except WebSocketDisconnect:
        pass


starlette_app = Starlette(
    routes=[
        Route("/", home),
        Route("/items/{item_id:int}", item),
        Route("/echo", echo, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/stream", stream),
        Route("/file", file),
        Route("/state", state),
        Route("/cookies", cookies),
        Route("/redirect", redirect),
        Route("/missing", missing),
        WebSocketRoute("/ws", socket_upper),
    ],
    lifespan=_lifespan,
)

# -- FastAPI ---------------------------------------------------------------------------------

fastapi_app = FastAPI(lifespan=_lifespan)


class NewItem(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items", status_code=201)
async def create_item(new: NewItem) -> dict[str, Any]:
    return {"name": new.name, "price_with_tax": round(new.price * 1.2, 2), "tags": new.tags}


@fastapi_app.get("/sync")
def sync_endpoint() -> dict[str, Any]:
    # a plain def: FastAPI runs it in its thread pool (anyio needs a real task for that)
    return {"sync": True}


@fastapi_app.get("/stream")
async def fastapi_stream() -> StreamingResponse:
    return StreamingResponse(_parts(), media_type="text/plain")


@fastapi_app.get("/file")
async def fastapi_file() -> FileResponse:
    return FileResponse(SERVED_FILE, media_type="text/x-python")


@fastapi_app.get("/state")
async def fastapi_state(request: Request) -> dict[str, Any]:
    return {"started": request.state.started}


@fastapi_app.websocket("/ws")
async def fastapi_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        for _ in range(1000):
            data = await websocket.receive_json()
            await websocket.send_json({"got": data})
    except WebSocketDisconnect:
        pass
