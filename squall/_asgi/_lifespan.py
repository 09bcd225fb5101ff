"""The ASGI lifespan protocol: one long-running call of the application that hears
``lifespan.startup`` before the server serves and ``lifespan.shutdown`` after it stopped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from squall._asgi._errors import ASGIProtocolError, LifespanFailure
from squall._asgi._scope import asgi_info

log = logging.getLogger("squall.general")
app_log = logging.getLogger("squall.application")

LIFESPAN_MODES = ("auto", "on", "off")


class Lifespan:
    """Runs an application's lifespan; ``state`` is what its requests get a copy of.

    ``mode``: "on" (an application without lifespan support is an error), "auto" (one that
    fails or returns before answering the startup is taken to have none, and serving goes
    on) or "off" (never called).
    """

    def __init__(self, app: Any, mode: str = "auto") -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan must be one of {', '.join(LIFESPAN_MODES)}, not {mode!r}")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        # None until known: whether the application speaks the protocol
        self.supported: Optional[bool] = None
        self._events: list[dict[str, Any]] = []
        self._waiter: Optional[asyncio.Future[None]] = None
        self._startup: Optional[asyncio.Future[Optional[str]]] = None
        self._shutdown: Optional[asyncio.Future[Optional[str]]] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._phase = "idle"

    async def startup(self) -> None:
        """Sends ``lifespan.startup`` and waits for the answer.

        Raises ``LifespanFailure`` on ``lifespan.startup.failed``, and in mode "on" when
        the application does not take part.
        """
        if self.mode == "off" or self._phase != "idle":
            return
        loop = asyncio.get_running_loop()
        self._startup = loop.create_future()
        self._phase = "startup"
        self._task = loop.create_task(self._main())
        self._put({"type": "lifespan.startup"})
        failure = await self._startup
        if failure is not None:
            raise LifespanFailure(failure)

    async def shutdown(self, timeout: Optional[float] = 30.0) -> None:
        """Sends ``lifespan.shutdown`` and waits (at most ``timeout`` seconds) for the answer.

        Raises ``LifespanFailure`` on ``lifespan.shutdown.failed`` or a failing application.
        """
        if not self.supported or self._phase != "started":
            return
        loop = asyncio.get_running_loop()
        self._shutdown = loop.create_future()
        self._phase = "shutdown"
        self._put({"type": "lifespan.shutdown"})
        try:
            failure = await asyncio.wait_for(asyncio.shield(self._shutdown), timeout)
        except asyncio.TimeoutError:
            log.warning("ASGI lifespan shutdown did not finish within %s s", timeout)
            failure = None
        task = self._task
        if task is not None and not task.done():
            # a well-behaved application returns right after shutdown.complete
            done, _ = await asyncio.wait([task], timeout=1.0)
            if not done:
                task.cancel()
        if failure is not None:
            raise LifespanFailure(failure)

    def _put(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _receive(self) -> dict[str, Any]:
        while not self._events:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        return self._events.pop(0)

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            future = self._startup
            if self._phase != "startup" or future is None or future.done():
                raise ASGIProtocolError(f"{kind!r} sent outside the startup")
            self.supported = True
            if kind == "lifespan.startup.complete":
                self._phase = "started"
                future.set_result(None)
            else:
                self._phase = "failed"
                future.set_result(str(message.get("message", "")) or "startup failed")
            return
        if kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            future = self._shutdown
            if self._phase != "shutdown" or future is None or future.done():
                raise ASGIProtocolError(f"{kind!r} sent outside the shutdown")
            self._phase = "stopped"
            if kind == "lifespan.shutdown.complete":
                future.set_result(None)
            else:
                future.set_result(str(message.get("message", "")) or "shutdown failed")
            return
        raise ASGIProtocolError(f"unexpected ASGI message {kind!r} in the lifespan")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": asgi_info(), "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as error:
            self._ended(error)
            if not isinstance(error, Exception):
                raise
        else:
            self._ended(None)

    def _ended(self, error: Optional[BaseException]) -> None:
        startup = self._startup
        if startup is not None and not startup.done():
            if self.mode == "auto":
                # most likely an application without lifespan support (many raise for
                # scope types they do not know): serve without it
                self.supported = False
                self._phase = "unsupported"
                log.info("ASGI lifespan unsupported by the application; serving without it")
                if error is not None:
                    log.debug("the application's lifespan error", exc_info=_info(error))
                startup.set_result(None)
            else:
                self._phase = "failed"
                if error is not None:
                    app_log.error("Exception in ASGI lifespan startup", exc_info=_info(error))
                    startup.set_result(f"the application raised {error!r}")
                else:
                    startup.set_result("the application returned before the startup completed")
            return
        shutdown = self._shutdown
        if shutdown is not None and not shutdown.done():
            self._phase = "stopped"
            if error is not None:
                app_log.error("Exception in ASGI lifespan shutdown", exc_info=_info(error))
                shutdown.set_result(f"the application raised {error!r}")
            else:
                shutdown.set_result(None)
            return
        if error is not None and not isinstance(error, asyncio.CancelledError):
            app_log.error("Exception in the ASGI lifespan task", exc_info=_info(error))
        if self._phase == "started":
            # returned (or failed) between startup and shutdown: nothing to tell it later
            self._phase = "stopped"


def _info(error: BaseException) -> tuple[Any, BaseException, Any]:
    return (type(error), error, error.__traceback__)
