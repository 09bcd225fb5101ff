"""The chat's handlers and Application."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from typing import Any

import squall.web
import squall.websocket
from examples.chat.messages import Message, MessageBuffer

HERE = os.path.dirname(os.path.abspath(__file__))
USER_COOKIE = "chat_user"
MAX_NICKNAME = 32
MAX_MESSAGE = 2000
POLL_TIMEOUT = 25.0


class ChatError(Exception):
    """A message or nickname the chat refuses, with the text shown to the user."""


def clean_message(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ChatError("A message cannot be empty.")
    if len(text) > MAX_MESSAGE:
        raise ChatError(f"A message can be at most {MAX_MESSAGE} characters long.")
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
    pass


class MainHandler(BaseHandler):
    @squall.web.authenticated
    def get(self) -> None:
        transport = "poll" if self.get_query_argument("transport", "") == "poll" else "websocket"
        self.render(
            "index.html",
            messages=list(self.buffer.messages),
            cursor=self.buffer.last_id,
            transport=transport,
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
    def post(self) -> None:
        try:
            body = clean_message(self.get_body_argument("body", ""))
        except ChatError as error:
            raise squall.web.HTTPError(400, reason=str(error)) from None
        self.write(self.buffer.add(self.current_user, body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"error": self._reason})


class MessageUpdatesHandler(BaseHandler):
    """POST /a/message/updates: long poll for messages after the ``cursor`` argument."""

    poll: asyncio.Future[list[Message]] | None = None

    @squall.web.authenticated
    async def post(self) -> None:
        try:
            cursor = int(self.get_body_argument("cursor", "0"))
        except ValueError:
            raise squall.web.HTTPError(400, reason="The cursor must be a number.") from None
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

    def open(self) -> None:
        if not self.current_user:
            self.close(4001, "sign in first")
            return
        try:
            cursor = int(self.get_query_argument("cursor", "0"))
        except ValueError:
            cursor = self.buffer.last_id
        for message in self.buffer.since(cursor):
            self.send(message)
        self.buffer.subscribers.add(self)

    def send(self, message: Message) -> None:
        try:
            self.write_message(json.dumps({"messages": [message]}))
        except squall.websocket.WebSocketClosedError:
            self.buffer.subscribers.discard(self)

    def on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
            body = clean_message(data.get("body") if isinstance(data, dict) else None)
        except ChatError as error:
            self.write_message(json.dumps({"error": str(error)}))
            return
        except ValueError:
            self.write_message(json.dumps({"error": "Messages are JSON objects."}))
            return
        self.buffer.add(self.current_user, body)

    def on_close(self) -> None:
        self.buffer.subscribers.discard(self)


def load_cookie_secret(data_dir: str, given: str = "") -> str:
    """The option's secret, else one generated once and kept (mode 0600) in ``data_dir``."""
    if given:
        return given
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, "cookie_secret")
    try:
        with open(path) as existing:
            secret = existing.read().strip()
        if secret:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret)
    return secret


def make_app(cookie_secret: str, debug: bool = False, history: int = 200) -> squall.web.Application:
    return squall.web.Application(
        [
            (r"/", MainHandler),
            (r"/login", LoginHandler),
            (r"/logout", LogoutHandler),
            (r"/a/message/new", NewMessageHandler),
            (r"/a/message/updates", MessageUpdatesHandler),
            (r"/chatsocket", ChatSocketHandler),
        ],
        cookie_secret=cookie_secret,
        login_url="/login",
        template_path=os.path.join(HERE, "templates"),
        static_path=os.path.join(HERE, "static"),
        xsrf_cookies=True,
        websocket_max_message_size=64 * 1024,
        message_buffer=MessageBuffer(history),
        debug=debug,
    )
