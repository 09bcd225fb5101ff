"""Server-sent events (squall.web.EventSourceHandler) over real sockets, and in a real browser's EventSource."""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

import squall.pubsub
from squall.httpserver import HTTPServer
from squall.netutil import bind_sockets
from squall.web import Application, EventSourceHandler, RequestHandler, format_event

# ------------------------------------------------------------------------------- framing


def test_data_lines_split_at_every_kind_of_line_break() -> None:
    assert format_event("one") == b"data: one\n\n"
    assert format_event("a\nb\rc\r\nd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert format_event("") == b"data: \n\n"
    assert format_event("trailing\n") == b"data: trailing\ndata: \n\n"
    assert format_event(" spaced") == b"data:  spaced\n\n"  # one space is the separator
    assert format_event("ü".encode()) == "data: ü\n\n".encode()
    assert format_event("x", event="note", id="7", retry=1500) == (
        b"event: note\nid: 7\nretry: 1500\ndata: x\n\n"
    )


def test_fields_that_would_break_the_framing_are_refused() -> None:
    for bad in ("a\nb", "a\rb", "a\r\n"):
        with pytest.raises(ValueError):
            format_event("x", id=bad)
        with pytest.raises(ValueError):
            format_event("x", event=bad)
    with pytest.raises(ValueError):
        format_event("x", id="nul\0")
    for retry in (-1, 1.5, True):
        with pytest.raises(ValueError):
            format_event("x", retry=retry)  # type: ignore[arg-type]
    with pytest.raises(UnicodeDecodeError):
        format_event(b"\xff")
    with pytest.raises(TypeError):
        format_event(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ a client over a socket


class SSEClient:
    """Reads an event stream (chunked) from a raw connection, event by event."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.text = ""
        self.comments: list[str] = []

    @classmethod
    async def open(cls, base_url: str, path: str, headers: dict[str, str] | None = None
                   ) -> SSEClient:
        port = urllib.parse.urlsplit(base_url).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *fields = head.decode().split("\r\n")
        client.status = int(status_line.split()[1])
        for field in fields:
            if field:
                name, _, value = field.partition(":")
                client.headers[name.strip().lower()] = value.strip()
        return client

    async def _more(self) -> bool:
        size_line = await self.reader.readline()
        if not size_line:
            return False
        size = int(size_line.strip(), 16)
        chunk = await self.reader.readexactly(size + 2)
        if size == 0:
            return False
        self.text += chunk[:-2].decode()
        return True

    async def event(self, seconds: float = 10.0) -> dict[str, Any] | None:
        """The next event as a dict of its fields (data lines joined with LF); None at the
        end of the stream."""
        async def read() -> dict[str, Any] | None:
            while True:
                while "\n\n" in self.text:
                    block, self.text = self.text.split("\n\n", 1)
                    fields: dict[str, Any] = {}
                    for line in block.split("\n"):
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "":
                            self.comments.append(value)
                        elif name == "data":
                            fields["data"] = (fields["data"] + "\n" + value
                                              if "data" in fields else value)
                        else:
                            fields[name] = value
                    if fields:
                        return fields
                if not await self._more():
                    return None

        return await asyncio.wait_for(read(), seconds)

    def close(self) -> None:
        self.writer.close()


# -------------------------------------------------------------------------- the handlers

STATE: dict[str, Any] = {}


class Counting(EventSourceHandler):
    """Sends three events, each after the test says so, then ends the stream."""

    heartbeat_interval = None

    async def get(self) -> None:
        go: asyncio.Queue[str] = STATE["go"]
        await self.start_events()  # the head now, before the first event
        for number in range(3):
            text = await go.get()
            await self.send_event(text, event="count", id=str(number))


class Resuming(EventSourceHandler):
    async def get(self) -> None:
        await self.send_event(self.last_event_id or "none")


class Idle(EventSourceHandler):
    heartbeat_interval = 0.05

    async def get(self) -> None:
        await self.start_events()
        STATE["opened"].set()
        STATE["tasks_while_open"] = len(asyncio.all_tasks())
        await self.wait_closed()
        STATE["returned"] = True

    def on_connection_close(self) -> None:
        STATE["closed_calls"] = STATE.get("closed_calls", 0) + 1
        super().on_connection_close()


class Feed(EventSourceHandler):
    heartbeat_interval = 0.05

    async def get(self) -> None:
        await self.send_subscription(STATE["hub"], "room", event="chat")
        STATE["returned"] = True


@pytest.fixture
def app() -> Application:
    STATE.clear()
    STATE["go"] = asyncio.Queue()
    STATE["opened"] = asyncio.Event()
    return Application([
        ("/count", Counting), ("/resume", Resuming), ("/idle", Idle), ("/feed", Feed),
    ])


async def test_one_flush_per_event_then_the_stream_ends(base_url: str) -> None:
    client = await SSEClient.open(base_url, "/count")
    try:
        STATE["go"].put_nowait("first\nsecond line")
        event = await client.event()  # arrives before the handler may send the next
        assert client.status == 200
        assert client.headers["content-type"] == "text/event-stream"
        assert client.headers["cache-control"] == "no-cache"
        assert event == {"event": "count", "id": "0", "data": "first\nsecond line"}
        STATE["go"].put_nowait("b")
        assert (await client.event())["data"] == "b"  # type: ignore[index]
        STATE["go"].put_nowait("c")
        assert (await client.event())["id"] == "2"  # type: ignore[index]
        assert await client.event() is None  # get returned: the response ended cleanly
    finally:
        client.close()


async def test_last_event_id_from_the_header_or_the_query(base_url: str) -> None:
    for path, headers, expected in (
        ("/resume", {"Last-Event-ID": "1700-4"}, "1700-4"),
        ("/resume?lastEventId=12", {}, "12"),
        ("/resume?lastEventId=12", {"Last-Event-ID": "13"}, "13"),
        ("/resume", {}, "none"),
    ):
        client = await SSEClient.open(base_url, path, headers)
        try:
            assert (await client.event())["data"] == expected  # type: ignore[index]
        finally:
            client.close()


async def test_heartbeats_and_a_clean_end_when_the_client_goes(base_url: str) -> None:
    tasks_before = len(asyncio.all_tasks())
    client = await SSEClient.open(base_url, "/idle")
    await asyncio.wait_for(STATE["opened"].wait(), 10)
    for _ in range(200):  # bounded: until two heartbeats came
        if client.text.count(": heartbeat\n\n") >= 2:
            break
        assert await asyncio.wait_for(client._more(), 10)
    assert client.text.count(": heartbeat\n\n") >= 2
    client.close()
    for _ in range(500):
        if STATE.get("returned"):
            break
        await asyncio.sleep(0.01)
    assert STATE.get("returned") and STATE["closed_calls"] == 1
    for _ in range(100):  # the handler's task is gone; nothing was left behind
        if len(asyncio.all_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_a_subscription_streams_and_resumes_after_last_event_id(base_url: str) -> None:
    hub = STATE["hub"] = squall.pubsub.connect("memory://")
    ids = [await hub.publish("room", f"old {n}") for n in range(3)]
    client = await SSEClient.open(base_url, "/feed", {"Last-Event-ID": ids[0]})
    try:
        assert await client.event() == {"event": "chat", "id": ids[1], "data": "old 1"}
        assert await client.event() == {"event": "chat", "id": ids[2], "data": "old 2"}
        live = await hub.publish("room", "live\r\nline two")
        assert await client.event() == {"event": "chat", "id": live, "data": "live\nline two"}
    finally:
        client.close()
    for _ in range(500):  # the subscription ended with the connection
        if STATE.get("returned") and not hub._subscribers("room"):
            break
        await asyncio.sleep(0.01)
    assert STATE.get("returned") and not hub._subscribers("room")
    await hub.close()


async def test_a_cursor_that_is_no_message_id_is_refused(base_url: str) -> None:
    STATE["hub"] = squall.pubsub.connect("memory://")
    client = await SSEClient.open(base_url, "/feed", {"Last-Event-ID": "yesterday"})
    try:
        assert client.status == 400
    finally:
        client.close()
    await STATE["hub"].close()


async def test_a_gap_becomes_a_gap_event(base_url: str) -> None:
    hub = STATE["hub"] = squall.pubsub.connect("memory://?maxlen=2")
    ids = [await hub.publish("room", str(n)) for n in range(5)]
    client = await SSEClient.open(base_url, "/feed", {"Last-Event-ID": ids[0]})
    try:
        assert await client.event() == {"event": "gap", "data": ids[0]}
        assert [(await client.event())["data"] for _ in range(2)] == ["3", "4"]  # type: ignore[index]
    finally:
        client.close()
    await hub.close()


# -------------------------------------------------------------------------- in a browser

PAGE = """<!doctype html><meta charset="utf-8"><title>sse</title><ul id="got"></ul>
<script>
const got = [];
const source = new EventSource("/stream");
source.addEventListener("chat", (event) => {
  got.push(event.lastEventId + "=" + event.data);
  const item = document.createElement("li"); item.textContent = event.data;
  document.getElementById("got").append(item);
});
window.got = got;
</script>"""


class Page(RequestHandler):
    def get(self) -> None:
        self.write(PAGE)


class Stream(EventSourceHandler):
    """Sends the messages after Last-Event-ID, at most two per connection, then ends the
    response, so that the browser has to reconnect (and resume) to get the rest."""

    async def get(self) -> None:
        seen = self.application.settings["seen"]
        seen.append(self.request.headers.get("Last-Event-ID"))
        hub = self.application.settings["hub"]
        sent = 0
        async with hub.subscribe("room", since=self.last_event_id) as sub:
            self.start_events(retry=50)
            async for message in sub:
                await self.send_event(message.data, event="chat", id=message.id)
                sent += 1
                if sent == 2:
                    return


@pytest.fixture
def browser_server() -> Iterator[tuple[str, Any, Any, list[Any]]]:
    from squall.ioloop import IOLoop

    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        hub = squall.pubsub.connect("memory://")
        seen: list[Any] = []
        app = Application([("/", Page), ("/stream", Stream)], hub=hub, seen=seen)
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(app)
        server.add_sockets(sockets)
        stop = asyncio.Event()
        box.update(port=port, hub=hub, seen=seen, stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        await stop.wait()
        server.stop()
        await hub.close()

    thread = threading.Thread(target=lambda: IOLoop(make_current=False).run_sync(serve, None))
    thread.start()
    assert ready.wait(20)
    loop = box["loop"]

    def publish(data: str) -> str:
        return asyncio.run_coroutine_threadsafe(box["hub"].publish("room", data), loop).result(10)

    try:
        yield f"http://127.0.0.1:{box['port']}", publish, loop, box["seen"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(20)


def test_browser_event_source_resumes_with_last_event_id(browser_server: Any) -> None:
    from test_chat_browser import CHROMIUM, CHROMIUM_FLAGS, missing

    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    url, publish, _loop, seen = browser_server
    ids = [publish(f"message {n}") for n in range(5)]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_function("window.got && window.got.length >= 0")
            # the first connection has no cursor: it sees what comes next; publish more
            # than one response carries, so that the browser reconnects twice
            page.wait_for_timeout(200)
            later = [publish(f"later {n}") for n in range(5)]
            page.wait_for_function("window.got.length >= 5", timeout=15000)
            got = page.evaluate("window.got")
        finally:
            browser.close()
    assert got == [f"{i}=later {n}" for n, i in enumerate(later)]  # in order, nothing twice
    assert seen[0] is None and seen[1:3] == [later[1], later[3]]  # resumed with Last-Event-ID
    assert ids  # (published before the page opened: not part of its stream)


async def test_a_draining_server_ends_event_streams_cleanly(base_url: str, http_server: Any) -> None:
    from squall.pubsub import connect

    hub = connect("memory://")
    STATE["hub"] = hub
    idle = await SSEClient.open(base_url, "/idle")
    feed = await SSEClient.open(base_url, "/feed")
    try:
        await STATE["opened"].wait()
        await hub.publish("room", "before the drain")
        assert (await feed.event())["data"] == "before the drain"  # type: ignore[index]
        await http_server.drain(10, reason="reload")
        # both streams end with the chunked terminator (EventSource then reconnects), and
        # the server says it closes the connection
        assert await idle.event() is None and await feed.event() is None
        assert STATE["returned"] is True
        assert await idle.reader.read() == b"" and await feed.reader.read() == b""
    finally:
        idle.close()
        feed.close()
        await hub.close()
