"""The chat example under uvicorn, through ``squall.asgi.ASGIAdapter``.

The same Application ``make run`` serves, built by ``asgi_apps.chat_asgi`` and run by
uvicorn as a subprocess: signed-cookie sign-in with XSRF, messages over WebSocket and over
long polling, and, in headless Chromium (Playwright), two users on the two transports
seeing each other. Browser tests skip without Chromium, except in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from asgi_servers import running  # noqa: E402
from test_chat_browser import CHROMIUM, CHROMIUM_FLAGS, _send, _sign_in, missing  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402


@pytest.fixture
def chat_port(tmp_path: object) -> Iterator[int]:
    with running(
        "uvicorn", "asgi_apps:chat_asgi", "--factory", env={"CHAT_DATA_DIR": str(tmp_path)}
    ) as port:
        yield port


async def _signed_in(client: httpx.AsyncClient, nickname: str) -> str:
    await client.get("/login")
    xsrf = client.cookies["_xsrf"]
    response = await client.post("/login", data={"nickname": nickname, "_xsrf": xsrf, "next": "/"})
    assert response.status_code == 302 and response.headers["location"] == "/"
    assert "chat_user" in client.cookies
    return xsrf


async def test_chat_over_websocket_and_long_polling(chat_port: int) -> None:
    base = f"http://127.0.0.1:{chat_port}"
    async with httpx.AsyncClient(base_url=base) as alice, httpx.AsyncClient(base_url=base) as bob:
        alice_xsrf = await _signed_in(alice, "alice")
        bob_xsrf = await _signed_in(bob, "bob")
        room = await alice.get("/")
        assert room.status_code == 200 and "alice" in room.text
        # no XSRF token: refused
        assert (await alice.post("/a/message/new", data={"body": "x"})).status_code == 403

        cookie = "; ".join(f"{k}={v}" for k, v in bob.cookies.items())
        async with ws_connect(
            f"ws://127.0.0.1:{chat_port}/chatsocket?cursor=0",
            additional_headers={"Cookie": cookie},
            origin=base,  # type: ignore[arg-type]
        ) as socket_user:
            poll = asyncio.ensure_future(
                alice.post("/a/message/updates", data={"cursor": "0", "_xsrf": alice_xsrf})
            )
            await asyncio.sleep(0.2)  # the poll is waiting in the server now
            await socket_user.send(json.dumps({"body": "hi from bob's socket"}))
            polled = (await asyncio.wait_for(poll, 10)).json()
            assert [m["body"] for m in polled["messages"]] == ["hi from bob's socket"]
            assert polled["messages"][0]["from"] == "bob"
            echoed = json.loads(await asyncio.wait_for(socket_user.recv(), 10))
            assert echoed["messages"][0]["body"] == "hi from bob's socket"

            posted = await alice.post(
                "/a/message/new", data={"body": "<b>alice</b> here", "_xsrf": alice_xsrf}
            )
            assert posted.json()["body"] == "<b>alice</b> here"
            pushed = json.loads(await asyncio.wait_for(socket_user.recv(), 10))
            assert pushed["messages"][0]["body"] == "<b>alice</b> here"
            await socket_user.send(json.dumps({"body": ""}))
            refused = json.loads(await asyncio.wait_for(socket_user.recv(), 10))
            assert "empty" in refused["error"]
        assert (await bob.post("/logout", data={"_xsrf": bob_xsrf})).status_code == 302


async def test_signed_out_websocket_is_closed_with_4001(chat_port: int) -> None:
    async with ws_connect(f"ws://127.0.0.1:{chat_port}/chatsocket") as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 4001


@pytest.mark.skipif(missing is not None, reason=missing or "")
@pytest.mark.skipif(
    bool(os.environ.get("SQUALL_NO_UVLOOP")),
    reason="the browser run does not depend on squall's loop (make test runs it once)",
)
def test_chat_in_a_browser_under_uvicorn(chat_port: int) -> None:
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{chat_port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            polling = _sign_in(browser, url, "alice", "poll")
            socket_user = _sign_in(browser, url, "bob", "websocket")
            assert polling.text_content("#transport") == "long polling"
            assert socket_user.text_content("#transport") == "WebSocket"
            socket_user.wait_for_timeout(300)  # lets the socket open and the first poll start
            _send(polling, "hello from alice under uvicorn")
            socket_user.wait_for_selector("#inbox li:has-text('under uvicorn')", timeout=5000)
            _send(socket_user, "bob answers over ASGI")
            polling.wait_for_selector("#inbox li:has-text('over ASGI')", timeout=5000)
            polling.reload()
            polling.wait_for_selector("#room")
            bodies = polling.locator("#inbox li .body").all_text_contents()
            assert bodies[-2:] == ["hello from alice under uvicorn", "bob answers over ASGI"]
            if os.environ.get("SQUALL_ASGI_SCREENSHOT"):
                socket_user.screenshot(path=os.environ["SQUALL_ASGI_SCREENSHOT"])
        finally:
            browser.close()
