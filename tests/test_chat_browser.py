"""The chat demo in a real browser: headless Chromium driven by Playwright.

Two pages sign in as different users, one receiving over long polling and one over
WebSocket; each sees the other's messages, a reload shows the history, and markup in a
message shows as text. In CI (the CI environment variable set) a missing browser fails;
elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# the README's picture is refreshed by running this test with SQUALL_SCREENSHOT=docs/chat.png
SCREENSHOT = os.environ.get("SQUALL_SCREENSHOT", "")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing_reason() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


missing = _browser_missing_reason()
if missing and os.environ.get("CI"):
    raise RuntimeError(f"browser tests must run in CI: {missing}")
pytestmark = pytest.mark.skipif(missing is not None, reason=missing or "")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chat_url(tmp_path: object) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.chat",
            f"--port={port}",
            f"--data_dir={tmp_path}",
            "--logging=warning",
        ],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the chat server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def browser(tmp_path: object) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def _sign_in(browser: object, url: str, nickname: str, transport: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 900, "height": 640})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(url + "/login")
    page.fill("#nickname", nickname)
    page.click("#login button")
    page.wait_for_selector("#room")
    if transport == "poll":
        page.goto(url + "/?transport=poll")
    page.wait_for_selector("#room")
    return page


def _send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#body", text)
    page.click("#composer button")


def test_long_polling_and_websocket_users_see_each_other(browser, chat_url):  # type: ignore[no-untyped-def]
    polling = _sign_in(browser, chat_url, "alice", "poll")
    socket_user = _sign_in(browser, chat_url, "bob", "websocket")
    assert polling.text_content("#transport") == "long polling"
    assert socket_user.text_content("#transport") == "WebSocket"
    socket_user.wait_for_timeout(300)  # lets the socket open and the first poll start

    _send(polling, "hello from alice")
    socket_user.wait_for_selector("#inbox li:has-text('hello from alice')", timeout=2000)

    _send(socket_user, "hi alice, bob here")
    polling.wait_for_selector("#inbox li:has-text('bob here')", timeout=2000)

    _send(socket_user, "<script>window.owned = 1</script><b>bold?</b>")
    polling.wait_for_selector("#inbox li:has-text('bold?')", timeout=2000)
    for page in (polling, socket_user):
        last = page.locator("#inbox li .body").last
        assert last.text_content() == "<script>window.owned = 1</script><b>bold?</b>"
        assert page.evaluate("window.owned") is None
        assert page.locator("#inbox li b:text('bold?')").count() == 0

    polling.reload()
    polling.wait_for_selector("#room")
    bodies = polling.locator("#inbox li .body").all_text_contents()
    assert bodies[:2] == ["hello from alice", "hi alice, bob here"]
    assert bodies[2].startswith("<script>")
    assert polling.evaluate("window.owned") is None

    if SCREENSHOT:
        socket_user.screenshot(path=SCREENSHOT)
