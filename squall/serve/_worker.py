"""A worker process of ``squall serve``: loads the app, serves the inherited sockets.

Started by the manager as ``python -m squall.serve._worker`` with the configuration and
descriptor numbers in its environment. It proves it is alive with a heartbeat sent from its
own event loop (a stuck loop goes quiet and gets replaced), asks to be recycled when a limit
is reached, and drains when told to, or on SIGTERM, or when the manager goes away.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
import time
import traceback
from typing import Any, Callable, Optional

from squall.serve import _drain, _logs
from squall.serve._channel import Channel
from squall.serve._config import ServeConfig
from squall.serve._sockets import server_ssl_context
from squall.serve._target import TargetError, import_attribute, resolve_target, serves_as_asgi

ENV_CONFIG = "SQUALL_SERVE_CONFIG"
ENV_CONTROL_FD = "SQUALL_SERVE_CONTROL_FD"
ENV_LISTEN_FDS = "SQUALL_SERVE_LISTEN_FDS"
ENV_WORKER_ID = "SQUALL_SERVE_WORKER_ID"

EXIT_BOOT_FAILED = 3


def _resident_mib() -> Optional[float]:
    """This process's resident set size now, in MiB (None where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


def _make_server(config: ServeConfig, target: Any, on_request: Optional[Callable[[], None]]) -> Any:
    from squall.httpserver import HTTPServer

    options: dict[str, Any] = {"xheaders": config.xheaders}
    context = server_ssl_context(config)
    if context is not None:
        options["ssl_options"] = context
    if on_request is None:
        return HTTPServer(target, **options)
    count = on_request

    class CountingHTTPServer(HTTPServer):
        """Counts requests for --max-requests (only then: it costs a call per request)."""

        def start_request(self, server_conn: Any, request_conn: Any) -> Any:
            count()
            return super().start_request(server_conn, request_conn)

    return CountingHTTPServer(target, **options)


class Worker:
    def __init__(
        self, config: ServeConfig, control: socket.socket, listeners: list[socket.socket]
    ) -> None:
        self.config = config
        self.control = control
        self.listeners = listeners
        self.server: Any = None
        self.lifespan: Any = None  # an ASGI app's (squall.asgi)
        self.channel: Optional[Channel] = None
        self.requests = 0
        self.request_limit = 0
        if config.max_requests:
            self.request_limit = config.max_requests + random.randint(0, config.max_requests_jitter)
        self._recycle_asked = False
        self._stop = asyncio.Event()
        self._stop_reason = "shutdown"
        self._stop_timeout = config.graceful_timeout
        self._started = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> int:
        self.channel = await Channel.open(self.control)
        loop = asyncio.get_running_loop()
        if self.config.reload:
            self._start_reloader()
        try:
            value = import_attribute(self.config.app, self.config.app_dir)
            target = await resolve_target(value, self.config.factory, self.config.interface)
            if serves_as_asgi(target, self.config.interface):
                target = await self._asgi_delegate(target)
        except Exception as exc:
            return await self._boot_failed(exc)
        if self.config.access_log is not None:
            settings = getattr(target, "settings", None)
            if isinstance(settings, dict) and "log_function" not in settings:
                settings["log_function"] = _logs.access_log_function(self.config.log_format)
        self.server = _make_server(
            self.config, target, self._count_request if self.request_limit else None
        )
        self.server.add_sockets(self.listeners)
        for signum, handler in (
            (signal.SIGTERM, self._on_term),
            (signal.SIGINT, self._on_int),
            (signal.SIGQUIT, self._on_int),
            (signal.SIGUSR1, _logs.reopen_files),
        ):
            loop.add_signal_handler(signum, handler)
        # the terminal's HUP (and the manager's own) is not for workers
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.channel.send("ready", pid=os.getpid())
        tasks = [
            asyncio.ensure_future(self._heartbeat()),
            asyncio.ensure_future(self._listen_to_manager()),
        ]
        if self.config.worker_lifetime or self.config.worker_max_rss:
            tasks.append(asyncio.ensure_future(self._watch_limits()))
        await self._stop.wait()
        if self._stop_reason != "manager-gone":
            self.channel.send("draining", reason=self._stop_reason)
        await _drain.drain([self.server], self._stop_timeout, self._stop_reason)
        await self._asgi_shutdown()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.channel.send("stopped")
        await self.channel.drain()
        self.channel.close()
        return 0

    async def _asgi_delegate(self, app: Any) -> Any:
        """The ASGI app behind an ``ASGIDelegate``, its lifespan started (before "ready")."""
        from squall._asgi._lifespan import Lifespan
        from squall._asgi._server import ASGIDelegate

        config = self.config
        self.lifespan = Lifespan(app, config.lifespan)
        await self.lifespan.startup()
        server_cert = None
        if config.ssl_certfile:
            with open(config.ssl_certfile, encoding="ascii", errors="replace") as f:
                server_cert = f.read()
        return ASGIDelegate(
            app,
            root_path=config.root_path,
            state=self.lifespan.state if config.lifespan != "off" else None,
            server_cert=server_cert,
            log_function=(
                _logs.access_log_function(config.log_format) if config.access_log else None
            ),
        )

    async def _asgi_shutdown(self) -> None:
        if self.lifespan is None:
            return
        try:
            await self.lifespan.shutdown(max(self._stop_timeout, 1.0))
        except Exception as exc:
            sys.stderr.write(f"squall serve: the ASGI lifespan shutdown failed: {exc}\n")

    def stop(self, reason: str, timeout: float) -> None:
        if self._stop.is_set():
            # a second, faster stop shortens the wait
            self._stop_timeout = min(self._stop_timeout, timeout)
            _drain.shorten([self.server], timeout)
            return
        self._stop_reason = reason
        self._stop_timeout = timeout
        self._stop.set()

    def _on_term(self) -> None:
        self.stop("shutdown", self.config.graceful_timeout)

    def _on_int(self) -> None:
        self.stop("shutdown", 0.0)

    async def _boot_failed(self, exc: BaseException) -> int:
        assert self.channel is not None
        if isinstance(exc, TargetError):
            text = f"{exc}\n"
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(f"squall serve: cannot load {self.config.app}:\n{text}")
        sys.stderr.flush()
        self.channel.send(
            "boot-failed", error=text.strip().splitlines()[-1], reload=self.config.reload
        )
        await self.channel.drain()
        if not self.config.reload:
            return EXIT_BOOT_FAILED
        # Development: wait for a fix to any file in the traceback; autoreload restarts us.
        from squall import autoreload

        for frame in traceback.extract_tb(exc.__traceback__):
            autoreload.watch(frame.filename)
        if isinstance(exc, SyntaxError) and exc.filename:
            autoreload.watch(exc.filename)
        heartbeat = asyncio.ensure_future(self._heartbeat())
        manager = asyncio.ensure_future(self._listen_to_manager())
        await self._stop.wait()
        heartbeat.cancel()
        manager.cancel()
        return EXIT_BOOT_FAILED

    def _start_reloader(self) -> None:
        from squall import autoreload

        for directory in self.config.reload_dirs:
            for root, dirs, files in os.walk(directory):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
                for name in files:
                    if name.endswith(".py"):
                        autoreload.watch(os.path.join(root, name))
        autoreload.add_reload_hook(self._before_reload)
        autoreload.start()

    def _before_reload(self) -> None:
        # autoreload re-executes this process next; the listening sockets are inheritable
        # (the manager passed them), so the new program picks them up again.
        if self.channel is not None:
            self.channel.send("reloading", pid=os.getpid())
        for sock in self.listeners:
            sock.set_inheritable(True)
        self.control.set_inheritable(True)

    # -- background duties ----------------------------------------------------------------

    async def _heartbeat(self) -> None:
        assert self.channel is not None
        interval = max(0.1, min(1.0, (self.config.timeout_worker_healthcheck or 5.0) / 5))
        while True:
            self.channel.send("hb")
            await asyncio.sleep(interval)

    async def _listen_to_manager(self) -> None:
        assert self.channel is not None
        while True:
            message = await self.channel.receive()
            if message is None:
                # Without a manager nobody would replace or stop us: drain and leave.
                self.stop("manager-gone", self.config.graceful_timeout)
                return
            kind = message["t"]
            if kind == "drain":
                self.stop(str(message.get("reason", "shutdown")), float(message.get("timeout", 0)))
            elif kind == "stop":
                self.stop("shutdown", 0.0)
            elif kind == "reopen":
                _logs.reopen_files()

    def _count_request(self) -> None:
        self.requests += 1
        if self.requests >= self.request_limit:
            self._ask_recycle(f"served {self.requests} requests")

    def _ask_recycle(self, why: str) -> None:
        if self._recycle_asked or self._stop.is_set() or self.channel is None:
            return
        self._recycle_asked = True
        self.channel.send("recycle", why=why)

    async def _watch_limits(self) -> None:
        lifetime = self.config.worker_lifetime
        max_rss = self.config.worker_max_rss
        while not self._recycle_asked:
            if lifetime and time.monotonic() - self._started >= lifetime:
                self._ask_recycle(f"reached its lifetime of {lifetime:g} s")
            elif max_rss:
                rss = _resident_mib()
                if rss is not None and rss > max_rss:
                    self._ask_recycle(f"uses {rss:.0f} MiB, over --worker-max-rss {max_rss}")
            await asyncio.sleep(min(1.0, lifetime / 4) if lifetime else 1.0)


def main() -> None:
    config = ServeConfig.from_json(os.environ[ENV_CONFIG])
    role = f"worker {os.environ.get(ENV_WORKER_ID, '?')}"
    _logs.configure(config.log_format, config.log_level, role, config.access_log)
    control = socket.socket(fileno=int(os.environ[ENV_CONTROL_FD]))
    listeners = [socket.socket(fileno=int(fd)) for fd in os.environ[ENV_LISTEN_FDS].split(",")]
    for sock in listeners:
        sock.setblocking(False)
    worker = Worker(config, control, listeners)
    code = asyncio.run(worker.run())
    sys.stdout.flush()
    sys.stderr.flush()
    # Whatever the app left running (threads, executors) must not keep a drained worker up.
    os._exit(code)


if __name__ == "__main__":
    main()
