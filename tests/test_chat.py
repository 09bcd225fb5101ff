"""The chat demo over real sockets, through squall's pytest plugin fixtures."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import urllib.parse

import pytest

import squall.pubsub
from examples.chat.app import MAX_MESSAGE, load_cookie_secret, make_app
from examples.chat.messages import MessageBuffer
from squall.httpclient import HTTPRequest
from squall.web import create_signed_value
from squall.websocket import websocket_connect

SECRET = "test-cookie-secret"
XSRF = "0123456789abcdef"


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    return make_app(SECRET)


def signed_in(nickname: str = "alice") -> dict[str, str]:
    user = create_signed_value(SECRET, "chat_user", nickname).decode()
    return {"Cookie": f"chat_user={user}; _xsrf={XSRF}"}


def form(**fields: str) -> str:
    return urllib.parse.urlencode(fields)


async def test_post_without_xsrf_token_is_forbidden(fetch):  # type: ignore[no-untyped-def]
    headers = {"Cookie": signed_in()["Cookie"].replace(f"; _xsrf={XSRF}", "")}
    response = await fetch("/a/message/new", method="POST", body=form(body="hi"), headers=headers)
    assert response.code == 403


async def test_forged_cookie_reads_as_signed_out(fetch):  # type: ignore[no-untyped-def]
    forged = create_signed_value("another-secret", "chat_user", "mallory").decode()
    for cookie in (f"chat_user={forged}", "chat_user=mallory"):
        response = await fetch("/", headers={"Cookie": cookie}, follow_redirects=False)
        assert response.code == 302
        assert response.headers["Location"].startswith("/login")


async def test_sign_in_sets_a_signed_cookie(fetch):  # type: ignore[no-untyped-def]
    response = await fetch(
        "/login",
        method="POST",
        body=form(nickname="  bob  ", next="/", _xsrf=XSRF),
        headers={"Cookie": f"_xsrf={XSRF}"},
        follow_redirects=False,
    )
    assert response.code == 302
    assert response.headers["Location"] == "/"
    assert "chat_user=" in response.headers["Set-Cookie"]


async def test_sign_in_never_redirects_off_site(fetch):  # type: ignore[no-untyped-def]
    response = await fetch(
        "/login",
        method="POST",
        body=form(nickname="bob", next="//evil.example/", _xsrf=XSRF),
        headers={"Cookie": f"_xsrf={XSRF}"},
        follow_redirects=False,
    )
    assert response.headers["Location"] == "/"


async def test_empty_and_oversized_messages_get_a_clear_error(fetch):  # type: ignore[no-untyped-def]
    for text in ("", "   ", "x" * (MAX_MESSAGE + 1)):
        response = await fetch(
            "/a/message/new", method="POST", body=form(body=text, _xsrf=XSRF), headers=signed_in()
        )
        assert response.code == 400
        assert "message" in json.loads(response.body)["error"].lower()


async def test_room_page_escapes_message_text(app, fetch):  # type: ignore[no-untyped-def]
    await app.settings["message_buffer"].post("eve", "<script>alert(1)</script>")
    response = await fetch("/", headers=signed_in())
    assert response.code == 200
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.body
    assert b"<script>alert(1)" not in response.body


async def test_long_poll_wakes_up_for_a_new_message(app, fetch):  # type: ignore[no-untyped-def]
    poll = asyncio.ensure_future(
        fetch(
            "/a/message/updates",
            method="POST",
            body=form(cursor="0", _xsrf=XSRF),
            headers=signed_in("bob"),
        )
    )
    buffer: MessageBuffer = app.settings["message_buffer"]
    for _ in range(200):  # until the poll is parked on the condition (bounded)
        if buffer.waiting_polls:
            break
        await asyncio.sleep(0.01)
    assert buffer.waiting_polls == 1
    posted = await fetch(
        "/a/message/new", method="POST", body=form(body="news", _xsrf=XSRF), headers=signed_in()
    )
    assert posted.code == 200
    response = await asyncio.wait_for(poll, 10)
    messages = json.loads(response.body)["messages"]
    assert [(m["from"], m["body"]) for m in messages] == [("alice", "news")]


async def test_abandoned_polls_free_their_waiters(app, http_server, base_url):  # type: ignore[no-untyped-def]
    buffer: MessageBuffer = app.settings["message_buffer"]
    port = urllib.parse.urlsplit(base_url).port
    body = form(cursor="0", _xsrf=XSRF).encode()
    request = (
        b"POST /a/message/updates HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Cookie: {signed_in()['Cookie']}\r\n".encode()
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    for batch in range(10):  # 1,000 polls, 100 at a time
        writers = []
        for _ in range(100):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            writers.append(writer)
        for _ in range(500):
            if buffer.waiting_polls >= 100:
                break
            await asyncio.sleep(0.01)
        for writer in writers:
            writer.close()
        for _ in range(500):
            if buffer.waiting_polls == 0:
                break
            await asyncio.sleep(0.01)
        assert buffer.waiting_polls == 0, f"batch {batch}: waiters left behind"
    assert len(buffer.messages) == 0


async def test_websocket_and_long_poll_users_share_messages(app, fetch, base_url):  # type: ignore[no-untyped-def]
    url = base_url.replace("http://", "ws://") + "/chatsocket?cursor=0"
    socket = await websocket_connect(HTTPRequest(url, headers=signed_in("bob")))
    try:
        await fetch(
            "/a/message/new",
            method="POST",
            body=form(body="from http", _xsrf=XSRF),
            headers=signed_in(),
        )
        received = json.loads(await asyncio.wait_for(socket.read_message(), 10))
        assert received["messages"][0]["body"] == "from http"

        await socket.write_message(json.dumps({"body": "from the socket"}))
        received = json.loads(await asyncio.wait_for(socket.read_message(), 10))
        assert received["messages"][0]["from"] == "bob"

        await socket.write_message(json.dumps({"body": ""}))
        received = json.loads(await asyncio.wait_for(socket.read_message(), 10))
        assert "empty" in received["error"]
    finally:
        socket.close()
    bodies = [m["body"] for m in app.settings["message_buffer"].messages]
    assert bodies == ["from http", "from the socket"]


async def test_websocket_without_sign_in_is_closed(base_url):  # type: ignore[no-untyped-def]
    socket = await websocket_connect(base_url.replace("http://", "ws://") + "/chatsocket")
    assert await asyncio.wait_for(socket.read_message(), 10) is None
    assert socket.close_code == 4001


async def test_history_keeps_the_last_200_messages() -> None:
    buffer = MessageBuffer()
    for number in range(250):
        await buffer.post("alice", str(number))
    assert len(buffer.messages) == 200
    assert buffer.messages[0]["body"] == "50"
    cursor = buffer.messages[-3]["id"]
    assert [m["body"] for m in buffer.since(cursor)] == ["248", "249"]
    # a second process on the same hub starts with the history the hub keeps
    other = MessageBuffer(buffer.hub)
    await other.start()
    assert [m["id"] for m in other.messages] == [m["id"] for m in buffer.messages]
    await buffer.close()


async def test_a_message_posted_in_one_process_reaches_the_others() -> None:
    hub = squall.pubsub.connect("memory://")
    first, second = MessageBuffer(hub), MessageBuffer(hub)
    await first.start()
    await second.start()
    posted = await first.post("alice", "hello")
    for _ in range(200):
        if second.messages:
            break
        await asyncio.sleep(0.01)
    assert list(second.messages) == [posted]
    await hub.close()


async def test_server_sent_events_resume_after_the_cursor(app, base_url):  # type: ignore[no-untyped-def]
    from test_sse import SSEClient

    buffer: MessageBuffer = app.settings["message_buffer"]
    old = [await buffer.post("alice", f"old {n}") for n in range(3)]
    client = await SSEClient.open(
        base_url, f"/a/message/events?lastEventId={old[0]['id']}", signed_in("bob")
    )
    try:
        assert client.headers["content-type"] == "text/event-stream"
        for expected in old[1:]:
            event = await client.event()
            assert event is not None and event["id"] == expected["id"]
            assert json.loads(event["data"]) == expected
        live = await buffer.post("carol", "live\nwith a line break")
        event = await client.event()
        assert event is not None and json.loads(event["data"]) == live
    finally:
        client.close()


async def test_server_sent_events_need_a_signed_in_user(fetch):  # type: ignore[no-untyped-def]
    response = await fetch("/a/message/events")
    assert response.code == 403
    response = await fetch("/a/message/events?lastEventId=yesterday", headers=signed_in())
    assert response.code == 400


async def test_a_bad_cursor_is_refused(fetch):  # type: ignore[no-untyped-def]
    response = await fetch(
        "/a/message/updates", method="POST", body=form(cursor="soon", _xsrf=XSRF),
        headers=signed_in(),
    )
    assert response.code == 400


async def test_room_page_offers_every_transport(fetch):  # type: ignore[no-untyped-def]
    for transport, name in (("", b"WebSocket"), ("poll", b"long polling"),
                            ("sse", b"server-sent events")):
        response = await fetch(f"/?transport={transport}", headers=signed_in())
        assert b'<b id="transport">' + name + b"</b>" in response.body


def test_cookie_secret_is_generated_once_and_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = load_cookie_secret(str(tmp_path))
    assert len(first) >= 32
    assert load_cookie_secret(str(tmp_path)) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "cookie_secret").st_mode)
    assert mode == 0o600
    assert load_cookie_secret(str(tmp_path), "given") == "given"
