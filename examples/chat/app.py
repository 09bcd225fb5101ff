"""The chat's handlers and Application."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any

import squall.pubsub
import squall.serve
import squall.web
import squall.websocket
from examples.chat.messages import CHANNEL, START, Message, MessageBuffer, decode
from squall.pubsub import PublishError, id_key
from squall.web import EventSourceHandler

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.path.join(HERE, "data")
USER_COOKIE = "chat_user"
MAX_NICKNAME = 32
MAX_MESSAGE = 2000
POLL_TIMEOUT = 25.0
TRANSPORTS = {"websocket": "WebSocket", "poll": "long polling", "sse": "server-sent events"}


class ChatError(Exception):
    """A message or nickname the chat refuses, with the text shown to the user."""


def clean_message(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ChatError("A message cannot be empty.")
    if len(text) > MAX_MESSAGE:
        raise ChatError(f"A message can be at most {MAX_MESSAGE} characters long.")
    return text


def clean_cursor(text: str | None) -> str:
    text = text or START
    try:
        id_key(text)
    except ValueError:
        raise ChatError("The cursor must be a message id.") from None
    return text


def clean_nickname(text: str | None) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise ChatError("Choose a nickname.")
    if len(text) > MAX_NICKNAME:
        raise ChatError(f"A nickname can be at most {MAX_NICKNAME} characters long.")
    return text


class ChatMixin:
    """What every chat handler shares: the message buffer and the signed-in nickname."""

    application: squall.web.Application
    get_signed_cookie: Any

    @property
    def buffer(self) -> MessageBuffer:
        return self.application.settings["message_buffer"]  # type: ignore[no-any-return]

    def get_current_user(self) -> str | None:
        value = self.get_signed_cookie(USER_COOKIE, max_age_days=30)
        return value.decode("utf-8") if value else None


class BaseHandler(ChatMixin, squall.web.RequestHandler):
    async def prepare(self) -> None:
        await self.buffer.start()


class MainHandler(BaseHandler):
    @squall.web.authenticated
    def get(self) -> None:
        transport = self.get_query_argument("transport", "")
        if transport not in TRANSPORTS:
            transport = "websocket"
        self.render(
            "index.html",
            messages=list(self.buffer.messages),
            cursor=self.buffer.last_id,
            transport=transport,
            transports=TRANSPORTS,
            max_message=MAX_MESSAGE,
        )


class LoginHandler(BaseHandler):
    def get(self) -> None:
        self.render("login.html", error=None, next_url=self.get_query_argument("next", "/"))

    def post(self) -> None:
        next_url = self.get_body_argument("next", "/")
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = "/"  # never redirect off-site
        try:
            nickname = clean_nickname(self.get_body_argument("nickname", ""))
        except ChatError as error:
            self.set_status(400)
            self.render("login.html", error=str(error), next_url=next_url)
            return
        self.set_signed_cookie(
            USER_COOKIE, nickname, expires_days=30, httponly=True, samesite="Lax"
        )
        self.redirect(next_url)


class LogoutHandler(BaseHandler):
    def post(self) -> None:
        self.clear_cookie(USER_COOKIE)
        self.redirect("/login")


class NewMessageHandler(BaseHandler):
    """POST /a/message/new: adds a message; answers the message as JSON."""

    @squall.web.authenticated
    async def post(self) -> None:
        try:
            body = clean_message(self.get_body_argument("body", ""))
        except ChatError as error:
            raise squall.web.HTTPError(400, reason=str(error)) from None
        try:
            self.write(await self.buffer.post(self.current_user, body))
        except PublishError:
            raise squall.web.HTTPError(503, reason="The message was not sent: try again.")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"error": self._reason})


class MessageUpdatesHandler(BaseHandler):
    """POST /a/message/updates: long poll for messages after the ``cursor`` argument."""

    poll: asyncio.Future[list[Message]] | None = None

    @squall.web.authenticated
    async def post(self) -> None:
        try:
            cursor = clean_cursor(self.get_body_argument("cursor", START))
        except ChatError as error:
            raise squall.web.HTTPError(400, reason=str(error)) from None
        self.poll = asyncio.ensure_future(self.buffer.wait_for_news(cursor, POLL_TIMEOUT))
        try:
            messages = await self.poll
        except asyncio.CancelledError:
            return  # the client went away; nobody is left to answer
        if self.request.connection.stream.closed():  # type: ignore[attr-defined]
            return
        self.write({"messages": messages})

    def on_connection_close(self) -> None:
        # frees the waiter at once instead of when the poll would have timed out
        if self.poll is not None:
            self.poll.cancel()


class ChatSocketHandler(ChatMixin, squall.websocket.WebSocketHandler):
    """WebSocket clients: receive every message as JSON, send ``{"body": ...}`` to post."""

    async def prepare(self) -> None:
        await self.buffer.start()

    def open(self) -> None:
        if not self.current_user:
            self.close(4001, "sign in first")
            return
        try:
            cursor = clean_cursor(self.get_query_argument("cursor", START))
        except ChatError:
            cursor = self.buffer.last_id
        for message in self.buffer.since(cursor):
            self.send(message)
        self.buffer.subscribers.add(self)

    def send(self, message: Message) -> None:
        try:
            self.write_message(json.dumps({"messages": [message]}))
        except squall.websocket.WebSocketClosedError:
            self.buffer.subscribers.discard(self)

    async def on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
            body = clean_message(data.get("body") if isinstance(data, dict) else None)
        except ChatError as error:
            self.write_message(json.dumps({"error": str(error)}))
            return
        except ValueError:
            self.write_message(json.dumps({"error": "Messages are JSON objects."}))
            return
        try:
            await self.buffer.post(self.current_user, body)
        except PublishError:
            if not self.close_code:
                self.write_message(json.dumps({"error": "The message was not sent: try again."}))

    def on_close(self) -> None:
        self.buffer.subscribers.discard(self)


class MessageEventsHandler(ChatMixin, EventSourceHandler):
    """GET /a/message/events: the room as server-sent events, straight from the hub.

    Each event is one message (JSON) whose id is the hub's id, so the browser's
    ``EventSource`` resumes after it (``Last-Event-ID``) when it reconnects; the first
    connection passes the page's cursor as ``?lastEventId=``.
    """

    heartbeat_interval = 15.0

    async def get(self) -> None:
        if not self.current_user:
            raise squall.web.HTTPError(403)
        since = self.last_event_id
        try:
            since = None if clean_cursor(since) == START else since
        except ChatError:
            raise squall.web.HTTPError(400, reason="The cursor must be a message id.") from None
        try:
            await self.send_subscription(
                self.buffer.hub, CHANNEL, since=since,
                transform=lambda event: json.dumps(decode(event)),
            )
        except squall.pubsub.PubSubError:
            if not self.started:
                raise squall.web.HTTPError(503, reason="The room is not reachable.") from None


def load_cookie_secret(data_dir: str, given: str = "") -> str:
    """The option's secret, else one generated once and kept (mode 0600) in ``data_dir``.

    Several chat processes started together on one data directory agree on one secret:
    the first to create the file writes it, the others read it."""
    if given:
        return given
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, "cookie_secret")
    for _ in range(50):  # bounded: another process may be writing it right now
        try:
            with open(path) as existing:
                secret = existing.read().strip()
            if secret:
                return secret
        except FileNotFoundError:
            secret = secrets.token_urlsafe(48)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(descriptor, "w") as out:
                out.write(secret)
            return secret
        time.sleep(0.02)
    secret = secrets.token_urlsafe(48)  # an empty file left behind: replace it
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret)
    return secret


def make_app(
    cookie_secret: str, debug: bool = False, history: int = 200, pubsub: str = "memory://"
) -> squall.web.Application:
    """The chat; ``pubsub`` is the hub's URL (``memory://`` for one process, a Redis URL
    such as ``redis+stream://127.0.0.1:6379`` for several)."""
    return squall.web.Application(
        [
            (r"/", MainHandler),
            (r"/login", LoginHandler),
            (r"/logout", LogoutHandler),
            (r"/a/message/new", NewMessageHandler),
            (r"/a/message/updates", MessageUpdatesHandler),
            (r"/a/message/events", MessageEventsHandler),
            (r"/chatsocket", ChatSocketHandler),
        ],
        cookie_secret=cookie_secret,
        login_url="/login",
        template_path=os.path.join(HERE, "templates"),
        static_path=os.path.join(HERE, "static"),
        xsrf_cookies=True,
        websocket_max_message_size=64 * 1024,
        message_buffer=MessageBuffer(squall.pubsub.connect(pubsub), history),
        debug=debug,
    )


def answer_long_polls_on_drain(app: squall.web.Application) -> None:
    """A draining server (squall serve's reload or stop) answers the pending long polls at
    once, so those clients poll again, reaching a worker that stays. (WebSockets get 1012
    or 1001 and event streams end from the drain itself; the browser reconnects both.)"""
    buffer: MessageBuffer = app.settings["message_buffer"]
    squall.serve.add_drain_callback(lambda reason: buffer.wake_everyone())


async def serve_app() -> squall.web.Application:
    """The chat for ``squall serve examples.chat.app:serve_app`` (any number of workers).

    Settings come from the environment the workers inherit: ``CHAT_PUBSUB`` (the hub's
    URL, e.g. ``redis+stream://127.0.0.1:6379``; ``memory://`` keeps each worker's room to
    itself), ``CHAT_DATA_DIR`` and ``CHAT_COOKIE_SECRET`` (as the command's options).
    """
    secret = load_cookie_secret(
        os.environ.get("CHAT_DATA_DIR", DEFAULT_DATA_DIR), os.environ.get("CHAT_COOKIE_SECRET", "")
    )
    app = make_app(secret, pubsub=os.environ.get("CHAT_PUBSUB", "memory://"))
    await app.settings["message_buffer"].start()
    answer_long_polls_on_drain(app)
    return app

