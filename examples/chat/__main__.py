"""Runs the chat: ``python -m examples.chat [--port=8888] [--address=127.0.0.1]
[--pubsub=redis+stream://127.0.0.1:6379]``."""

from __future__ import annotations

import asyncio
import logging
import signal

from examples.chat.app import (
    DEFAULT_DATA_DIR,
    answer_long_polls_on_drain,
    load_cookie_secret,
    make_app,
)
from squall.options import define, options, parse_command_line

define("port", default=8888, type=int, help="port to listen on")
define("address", default="127.0.0.1", help="address to listen on")
define(
    "data_dir",
    default=DEFAULT_DATA_DIR,
    help="where the generated cookie secret is kept",
)
define("cookie_secret", default="", help="signs the nickname cookie (generated when empty)")
define("debug", default=False, type=bool, help="reload on code changes, show tracebacks")
define(
    "pubsub",
    default="memory://",
    help="the hub that carries messages: memory:// (one process), redis:// or "
    "redis+stream:// (several processes; e.g. redis+stream://127.0.0.1:6379)",
)

log = logging.getLogger("squall.application")


async def serve() -> None:
    app = make_app(
        load_cookie_secret(options.data_dir, options.cookie_secret),
        options.debug,
        pubsub=options.pubsub,
    )
    buffer = app.settings["message_buffer"]
    await buffer.start()
    answer_long_polls_on_drain(app)
    server = app.listen(options.port, options.address)
    log.info("chat on http://%s:%d/ (messages through %s)", options.address, options.port,
             options.pubsub)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    log.info("shutting down")
    # pending polls answered, WebSockets closed with 1001, event streams ended, in-flight
    # requests finished: what squall serve does for each of its workers
    await server.drain(timeout=5)
    await buffer.close()


def main() -> None:
    parse_command_line()  # also sets up squall's log formatting
    asyncio.run(serve())


if __name__ == "__main__":
    main()
