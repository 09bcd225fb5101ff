"""The manager process of ``squall serve``.

It owns the listening sockets (one socket shared by every worker, so connections queued in
it survive any one worker), spawns the workers, watches their heartbeats, replaces the ones
that die or hang (with a back-off), and turns signals into graceful stops, fast stops,
rolling reloads and changes of the worker count.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any, Optional

import squall
from squall.serve import _logs
from squall.serve._channel import Channel
from squall.serve._config import ServeConfig
from squall.serve._sockets import close_listeners, describe
from squall.serve._worker import (
    ENV_CONFIG,
    ENV_CONTROL_FD,
    ENV_LISTEN_FDS,
    ENV_WORKER_ID,
    EXIT_BOOT_FAILED,
)

log = _logs.serve_log

BOOT_TIMEOUT = 60.0  # seconds a new worker may take to import the app and say "ready"
KILL_MARGIN = 5.0  # past the graceful timeout, a draining worker is killed
FAST_STOP_WAIT = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0  # a worker up this long resets the crash back-off


class WorkerProcess:
    """The manager's view of one worker."""

    def __init__(self, number: int, process: subprocess.Popen[bytes], channel: Channel) -> None:
        self.number = number
        self.process = process
        self.channel = channel
        self.pid = process.pid
        self.state = "starting"  # starting, ready, draining, gone
        self.started = time.monotonic()
        self.last_beat = self.started
        self.ready = asyncio.Event()
        self.boot_error: Optional[str] = None
        self.exit_expected = False
        self.drain_deadline: Optional[float] = None
        self.replacement_started = False
        self.exited: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def __str__(self) -> str:
        return f"worker {self.number} (pid {self.pid})"

    def drain(self, reason: str, timeout: float) -> None:
        self.exit_expected = True
        if self.state != "gone":
            self.state = "draining"
            deadline = time.monotonic() + timeout + KILL_MARGIN
            if self.drain_deadline is None or deadline < self.drain_deadline:
                self.drain_deadline = deadline
        self.channel.send("drain", reason=reason, timeout=timeout)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Manager:
    def __init__(self, config: ServeConfig, listeners: list[socket.socket]) -> None:
        self.config = config
        self.listeners = listeners
        self.wanted = config.worker_count()
        self.workers: list[WorkerProcess] = []
        self._numbers = itertools.count(1)
        self._stopping: Optional[str] = None  # "graceful" or "fast"
        self._done: Optional[asyncio.Future[int]] = None
        self._crashes = 0
        self._reloading: Optional[asyncio.Task[None]] = None
        self._reload_again = False
        self._tasks: set[asyncio.Future[object]] = set()
        self.exit_code = 0

    # -- running --------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        for signum, handler in (
            (signal.SIGTERM, self._on_term),
            (signal.SIGINT, self._on_int),
            (signal.SIGQUIT, self._on_int),
            (signal.SIGHUP, self._on_hup),
            (signal.SIGTTIN, self._on_ttin),
            (signal.SIGTTOU, self._on_ttou),
            (signal.SIGUSR1, self._on_usr1),
        ):
            loop.add_signal_handler(signum, handler)
        where = ", ".join(describe(sock, self.config.scheme()) for sock in self.listeners)
        log.info(
            "squall %s serving %s on %s with %d worker%s (manager pid %d)",
            squall.version,
            self.config.app,
            where,
            self.wanted,
            "" if self.wanted == 1 else "s",
            os.getpid(),
        )
        first = [await self._spawn() for _ in range(self.wanted)]
        self._spawn_background(self._check_first_boot(first))
        self._spawn_background(self._monitor())
        code = await self._done
        for task in list(self._tasks):
            task.cancel()
        close_listeners(self.listeners, self.config)
        log.info("squall serve stopped")
        return code

    def _spawn_background(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_first_boot(self, first: list[WorkerProcess]) -> None:
        for worker in first:
            await self._wait_ready(worker)
            if worker.boot_error is not None and not self.config.reload:
                log.error("%s could not load the app (%s); stopping", worker, worker.boot_error)
                self.exit_code = EXIT_BOOT_FAILED
                self._stop("fast")
                return

    def _finish(self, code: int) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    # -- workers --------------------------------------------------------------------------

    def _worker_environment(self, number: int, control_fd: int) -> dict[str, str]:
        env = dict(os.environ)
        env[ENV_CONFIG] = self.config.to_json()
        env[ENV_CONTROL_FD] = str(control_fd)
        env[ENV_LISTEN_FDS] = ",".join(str(sock.fileno()) for sock in self.listeners)
        env[ENV_WORKER_ID] = str(number)
        if self.config.loop == "asyncio":
            env["SQUALL_NO_UVLOOP"] = "1"
        elif self.config.loop == "uvloop":
            env.pop("SQUALL_NO_UVLOOP", None)
        # Workers import squall the way this process did, installed or from a source tree.
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(squall.__file__)))
        if os.path.basename(package_parent) not in ("site-packages", "dist-packages"):
            existing = env.get("PYTHONPATH")
            env["PYTHONPATH"] = package_parent + (os.pathsep + existing if existing else "")
        return env

    async def _spawn(self) -> WorkerProcess:
        number = next(self._numbers)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "squall.serve._worker"],
                pass_fds=[theirs.fileno(), *(sock.fileno() for sock in self.listeners)],
                env=self._worker_environment(number, theirs.fileno()),
                # Ctrl-C in a terminal signals the whole foreground group: the manager alone
                # decides what the workers do about it.
                start_new_session=True,
            )
        finally:
            theirs.close()
        worker = WorkerProcess(number, process, await Channel.open(ours))
        self.workers.append(worker)
        log.info("%s started", worker)
        self._spawn_background(self._supervise(worker))
        return worker

    async def _supervise(self, worker: WorkerProcess) -> None:
        while True:
            message = await worker.channel.receive()
            if message is None:
                break
            self._on_message(worker, message)
        code = await asyncio.to_thread(worker.process.wait)
        worker.channel.close()
        self._on_exit(worker, code)

    def _on_message(self, worker: WorkerProcess, message: dict[str, object]) -> None:
        kind = message["t"]
        worker.last_beat = time.monotonic()
        if kind == "hb":
            return
        if kind == "ready":
            if worker.state == "starting":
                worker.state = "ready"
            worker.ready.set()
            log.info("%s ready", worker)
        elif kind == "boot-failed":
            worker.boot_error = str(message.get("error", "unknown error"))
            worker.ready.set()
            if self.config.reload:
                log.error(
                    "%s cannot load the app (%s); waiting for a fix", worker, worker.boot_error
                )
        elif kind == "recycle":
            log.info("%s asks to be replaced: %s", worker, message.get("why", ""))
            self._replace(worker, "recycle")
        elif kind == "draining":
            if not worker.exit_expected and not self._stopping:
                # drained on its own (SIGTERM sent to it directly): replace it right away
                log.info(
                    "%s is draining (%s); starting its replacement", worker, message.get("reason")
                )
                worker.exit_expected = True
                worker.state = "draining"
                worker.drain_deadline = (
                    time.monotonic() + self.config.graceful_timeout + KILL_MARGIN
                )
                if len(self._live()) < self.wanted:
                    self._spawn_background(self._spawn())
        elif kind == "reloading":
            log.info("%s restarts itself: a source file changed", worker)
            worker.state = "starting"
            worker.started = time.monotonic()
            worker.ready.clear()
            worker.boot_error = None

    def _live(self) -> list[WorkerProcess]:
        """Workers that are serving or about to (not draining, not gone)."""
        return [w for w in self.workers if w.state in ("starting", "ready") and not w.exit_expected]

    def _on_exit(self, worker: WorkerProcess, code: int) -> None:
        worker.state = "gone"
        if worker in self.workers:
            self.workers.remove(worker)
        if not worker.exited.done():
            worker.exited.set_result(code)
        if worker.exit_expected or self._stopping:
            log.info("%s stopped (%s)", worker, _describe_exit(code))
        else:
            log.warning("%s died (%s)", worker, _describe_exit(code))
        if self._stopping:
            if not self.workers:
                self._finish(self.exit_code)
            return
        if worker.boot_error is not None and not self.config.reload and code == EXIT_BOOT_FAILED:
            return  # a failed boot during a reload: the old workers carry on
        if worker.exit_expected:
            return
        uptime = time.monotonic() - worker.started
        self._crashes = 1 if uptime > STABLE_AFTER else self._crashes + 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._crashes - 1))
        self._spawn_background(self._restart_after(delay))

    async def _restart_after(self, delay: float) -> None:
        if delay > BACKOFF_FIRST:
            log.info("starting a replacement in %.1f s", delay)
        await asyncio.sleep(delay)
        if not self._stopping and len(self._live()) < self.wanted:
            await self._spawn()

    async def _wait_ready(self, worker: WorkerProcess) -> bool:
        """True once ``worker`` serves; False if it failed, died or took too long."""
        waiter: asyncio.Future[object] = asyncio.ensure_future(worker.ready.wait())
        done, _ = await asyncio.wait(
            {waiter, worker.exited}, timeout=BOOT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if worker.ready.is_set() and worker.boot_error is None and worker.state != "gone":
            return True
        if not done:
            log.error("%s did not become ready within %.0f s", worker, BOOT_TIMEOUT)
            worker.exit_expected = True
            worker.kill()
        return False

    def _replace(self, old: WorkerProcess, reason: str) -> None:
        if old.replacement_started or old.exit_expected or self._stopping:
            return
        old.replacement_started = True
        self._spawn_background(self._replace_one(old, reason))

    async def _replace_one(self, old: WorkerProcess, reason: str) -> bool:
        new = await self._spawn()
        if not await self._wait_ready(new):
            log.error("%s failed to start (%s); %s keeps serving", new, new.boot_error, old)
            new.exit_expected = True
            if new.state != "gone":
                new.drain("shutdown", 0.0)
            old.replacement_started = False
            return False
        if old.state != "gone":
            old.drain(reason, self.config.graceful_timeout)
        return True

    async def _monitor(self) -> None:
        timeout = self.config.timeout_worker_healthcheck
        while True:
            await asyncio.sleep(0.25 if timeout and timeout < 2 else 0.5)
            now = time.monotonic()
            for worker in list(self.workers):
                if worker.state == "gone":
                    continue
                if worker.drain_deadline is not None and now > worker.drain_deadline:
                    log.warning("%s did not finish draining in time: killing it", worker)
                    worker.kill()
                    worker.drain_deadline = None
                    continue
                limit = BOOT_TIMEOUT if worker.state == "starting" else timeout
                if limit and now - worker.last_beat > limit:
                    log.warning(
                        "%s has not answered for %.1f s (its event loop is blocked): killing it",
                        worker,
                        now - worker.last_beat,
                    )
                    worker.kill()
                    worker.last_beat = now  # once; its exit brings the replacement

    # -- reload ---------------------------------------------------------------------------

    async def _rolling_reload(self) -> None:
        while True:
            self._reload_again = False
            old_workers = [w for w in self.workers if w.state == "ready" and not w.exit_expected]
            log.info("reload: replacing %d worker(s), one at a time", len(old_workers))
            complete = True
            for old in old_workers:
                if self._stopping:
                    return
                if old.state == "gone" or old.exit_expected:
                    continue
                old.replacement_started = True
                if not await self._replace_one(old, "reload"):
                    complete = False
                    break
            # workers added with TTIN or lost meanwhile
            while not self._stopping and len(self._live()) < self.wanted:
                if not await self._wait_ready(await self._spawn()):
                    complete = False
                    break
            if complete:
                log.info("reload complete")
            else:
                log.error("reload aborted: the new code does not start; old workers kept")
            if not self._reload_again or self._stopping:
                return

    # -- signals --------------------------------------------------------------------------

    def _on_term(self) -> None:
        self._stop("graceful")

    def _on_int(self) -> None:
        if self._stopping == "fast" or self._stopping == "graceful":
            log.warning("second stop signal: killing the workers now")
            for worker in list(self.workers):
                worker.kill()
            self.exit_code = self.exit_code or 130
            if not self.workers:
                self._finish(self.exit_code)
            return
        self._stop("fast")

    def _stop(self, how: str) -> None:
        if self._stopping:
            return
        self._stopping = how
        log.info("%s stop: stopping %d worker(s)", how, len(self.workers))
        timeout = self.config.graceful_timeout if how == "graceful" else 0.0
        for worker in list(self.workers):
            if worker.state == "gone":
                continue
            if how == "graceful":
                worker.drain("shutdown", timeout)
            else:
                worker.exit_expected = True
                worker.drain_deadline = time.monotonic() + FAST_STOP_WAIT
                worker.channel.send("stop")
        if not self.workers:
            self._finish(self.exit_code)

    def _on_hup(self) -> None:
        if self._stopping:
            return
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.ensure_future(self._rolling_reload())

    def _on_ttin(self) -> None:
        if self._stopping:
            return
        self.wanted += 1
        log.info("TTIN: %d worker(s) wanted", self.wanted)
        self._spawn_background(self._spawn())

    def _on_ttou(self) -> None:
        if self._stopping or self.wanted <= 1:
            return
        self.wanted -= 1
        log.info("TTOU: %d worker(s) wanted", self.wanted)
        live = self._live()
        if len(live) > self.wanted:
            oldest = min(live, key=lambda w: w.started)
            oldest.drain("recycle", self.config.graceful_timeout)

    def _on_usr1(self) -> None:
        reopened = _logs.reopen_files()
        log.info("USR1: reopened %d log file(s) here, asking the workers", reopened)
        for worker in self.workers:
            worker.channel.send("reopen")
