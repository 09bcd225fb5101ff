"""The chat as a cluster: two server processes sharing a Redis stream hub, behind nginx.

A long poll whose requests nginx sends to one process and then the other misses nothing
(ids are the hub's, so a cursor from one process works on the other). In Chromium, a
WebSocket user, a long-polling user and a server-sent-events user, pinned by nginx to
different processes, see every message in the same order, also across a Redis restart
(kill -9, started again without its data). Needs redis-server, nginx and Chromium; in CI
(the CI environment variable set) a missing one fails, elsewhere these tests skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _servers import (
    NGINX,
    REDIS_SERVER,
    Nginx,
    RedisServer,
    free_port,
    missing_reason,
    wait_for_port,
)
from test_chat_browser import CHROMIUM, CHROMIUM_FLAGS
from test_chat_browser import missing as browser_missing

from squall.pubsub import id_key
from squall.web import create_signed_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "cluster-test-cookie-secret"
XSRF = "0123456789abcdef"
MISSING = missing_reason(REDIS_SERVER, "redis-server") or missing_reason(NGINX, "nginx")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
# notices a dead or restarted Redis within about a second
HUB_OPTIONS = "health_interval=0.5&health_timeout=1&backoff_base=0.05&backoff_max=0.5&timeout=2"


class Cluster:
    def __init__(self, redis: RedisServer, servers: list[subprocess.Popen[bytes]],
                 ports: list[int], nginx: Nginx) -> None:
        self.redis = redis
        self.ports = ports
        self.servers = servers
        self.nginx = nginx


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    redis = RedisServer(str(tmp_path))
    redis.start()
    servers: list[subprocess.Popen[bytes]] = []
    nginx: Nginx | None = None
    try:
        ports = [free_port(), free_port()]
        for port in ports:
            servers.append(subprocess.Popen(
                [
                    sys.executable, "-m", "examples.chat", f"--port={port}",
                    f"--data_dir={tmp_path}", f"--cookie_secret={SECRET}",
                    f"--pubsub={redis.stream_url}?{HUB_OPTIONS}", "--logging=warning",
                ],
                cwd=ROOT,
            ))
        for port, server in zip(ports, servers, strict=True):
            wait_for_port(port, process=server)
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        nginx = Nginx(str(nginx_dir), ports)
        nginx.start()
        yield Cluster(redis, servers, ports, nginx)
    finally:
        if nginx is not None:
            nginx.close()
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        redis.close()


def _sign_in(browser: Any, url: str, nickname: str, transport: str, backend: int) -> Any:
    context = browser.new_context(viewport={"width": 900, "height": 640})
    context.add_cookies([{"name": "backend", "value": str(backend), "url": url}])
    page = context.new_page()
    page.goto(url + "/login")
    page.fill("#nickname", nickname)
    page.click("#login button")
    page.wait_for_selector("#room")
    response = page.goto(url + f"/?transport={transport}")
    page.wait_for_selector("#room")
    page.upstream = response.headers.get("x-upstream")  # the server nginx chose
    return page


def _send(page: Any, text: str) -> None:
    page.fill("#body", text)
    page.click("#composer button")


def _bodies(page: Any) -> list[str]:
    return list(page.locator("#inbox li .body").all_text_contents())


def _wait_for(page: Any, text: str, timeout: int = 15000) -> None:
    page.wait_for_function(
        "text => [...document.querySelectorAll('#inbox li .body')]"
        ".some(node => node.textContent === text)",
        arg=text, timeout=timeout,
    )


def _send_until_delivered(sender: Any, pages: list[Any], text: str) -> None:
    """Sends ``text``, again while the chat answers that it was not sent (Redis away)."""
    for attempt in range(40):  # bounded: about 20 s
        _send(sender, text)
        sender.wait_for_timeout(500)
        if sender.locator("#error").is_hidden() or text in _bodies(sender):
            break
        print(f"{text!r} not sent (attempt {attempt + 1}): {sender.text_content('#error')}")
    for page in pages:
        _wait_for(page, text)


def _request(url: str, path: str, fields: dict[str, str] | None = None) -> tuple[Any, str]:
    """A signed-in request through nginx (a POST when ``fields`` are given): the decoded
    JSON answer and the upstream that served it."""
    user = create_signed_value(SECRET, "chat_user", "dave").decode()
    headers = {"Cookie": f"chat_user={user}; _xsrf={XSRF}"}
    body = None
    if fields is not None:
        body = urllib.parse.urlencode({**fields, "_xsrf": XSRF}).encode()
    request = urllib.request.Request(url + path, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()), response.headers["X-Upstream"]


def test_a_long_poll_taking_turns_between_processes_misses_nothing(cluster: Cluster) -> None:
    url = cluster.nginx.url
    posted = []
    for number in range(6):  # without a backend cookie nginx alternates between the two
        message, _ = _request(url, "/a/message/new", {"body": f"message {number}"})
        posted.append(message)
    ids = [message["id"] for message in posted]
    assert [id_key(i) for i in ids] == sorted(id_key(i) for i in ids)
    # each poll hands the cursor it got from one process to the other
    cursor, seen, upstreams = "0", [], set()
    for _ in range(20):  # bounded
        if len(seen) == len(posted):
            break
        answer, upstream = _request(url, "/a/message/updates", {"cursor": cursor})
        upstreams.add(upstream)
        batch = answer["messages"][:2]  # as if the client were slow to read the rest
        seen += batch
        cursor = batch[-1]["id"]
    assert seen == posted  # in order, nothing twice, whichever process answered
    assert len(upstreams) == 2


def test_three_transports_on_two_processes_through_redis_and_nginx(cluster: Cluster) -> None:
    if browser_missing:
        pytest.skip(browser_missing)
    from playwright.sync_api import sync_playwright

    url = cluster.nginx.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            socket_user = _sign_in(browser, url, "alice", "websocket", backend=0)
            polling = _sign_in(browser, url, "bob", "poll", backend=1)
            streaming = _sign_in(browser, url, "carol", "sse", backend=1)
            pages = [socket_user, polling, streaming]
            ports = [str(port) for port in cluster.ports]
            assert socket_user.upstream == f"127.0.0.1:{ports[0]}"
            assert polling.upstream == streaming.upstream == f"127.0.0.1:{ports[1]}"
            assert socket_user.text_content("#transport") == "WebSocket"
            assert polling.text_content("#transport") == "long polling"
            assert streaming.text_content("#transport") == "server-sent events"
            socket_user.wait_for_timeout(500)  # lets the socket, the poll and the stream open

            sent = []
            for round_number in range(3):
                for page, name in ((socket_user, "alice"), (polling, "bob"),
                                   (streaming, "carol")):
                    text = f"{name} says {round_number}"
                    _send(page, text)
                    sent.append(text)
                    for other in pages:
                        _wait_for(other, text)
            for page in pages:
                assert _bodies(page) == sent  # every message, once, in the hub's order

            # Redis dies and comes back without its data; everyone goes on
            cluster.redis.kill()
            polling.wait_for_timeout(300)
            cluster.redis.start()
            after = []
            for page, name in ((socket_user, "alice"), (streaming, "carol"), (polling, "bob")):
                text = f"{name} after the restart"
                _send_until_delivered(page, pages, text)
                after.append(text)
            for page in pages:
                assert _bodies(page) == sent + after
            assert all(server.poll() is None for server in cluster.servers)
        finally:
            browser.close()


def test_the_chat_under_squall_serve_survives_a_rolling_reload(tmp_path: Any) -> None:
    """``squall serve`` with two workers on a Redis stream, behind nginx: a WebSocket user,
    a long-polling user and an event-stream user keep seeing every message in order while
    SIGHUP replaces both workers (sockets get 1012 and reconnect, polls are answered by the
    drain and poll again, event streams end and EventSource resumes after Last-Event-ID)."""
    if browser_missing:
        pytest.skip(browser_missing)
    from playwright.sync_api import sync_playwright
    from test_serve import Served

    redis = RedisServer(str(tmp_path))
    redis.start()
    nginx: Nginx | None = None
    served = Served(
        "examples.chat.app:serve_app", "--workers", "2", cwd=ROOT,
        env={
            "CHAT_PUBSUB": f"{redis.stream_url}?{HUB_OPTIONS}",
            "CHAT_DATA_DIR": str(tmp_path),
            "CHAT_COOKIE_SECRET": SECRET,
        },
    )
    try:
        served.wait_for(r"ready", count=2)
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        nginx = Nginx(str(nginx_dir), [served.port])
        nginx.start()
        url = nginx.url
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                pages = [
                    _sign_in(browser, url, name, transport, backend=0)
                    for name, transport in (("alice", "websocket"), ("bob", "poll"),
                                            ("carol", "sse"))
                ]
                pages[0].wait_for_timeout(500)
                sent = []
                for page, name in zip(pages, ("alice", "bob", "carol"), strict=True):
                    text = f"{name} before the reload"
                    _send(page, text)
                    sent.append(text)
                    for other in pages:
                        _wait_for(other, text)
                old = set(served.ready_pids())
                served.signal(__import__("signal").SIGHUP)
                served.wait_for(r"reload complete", timeout=60)
                assert not old & set(served.ready_pids()[-2:])  # both workers are new
                for page, name in zip(pages, ("carol", "alice", "bob"), strict=True):
                    text = f"{name} after the reload"
                    _send_until_delivered(page, pages, text)
                    sent.append(text)
                for page in pages:
                    assert _bodies(page) == sent  # in order, nothing lost, nothing twice
            finally:
                browser.close()
    finally:
        if nginx is not None:
            nginx.close()
        served.stop()
        redis.close()
