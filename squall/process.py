"""Multi-process servers and asynchronous child processes.

:func:`fork_processes` forks one worker per CPU (restarting workers that crash) so a server
can share listening sockets across cores; :func:`task_id` tells a worker which one it is.
:class:`Subprocess` wraps :class:`subprocess.Popen` with non-blocking pipe streams and an
exit notification.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from squall.log import gen_log

if TYPE_CHECKING:
    from squall.ioloop import IOLoop

__all__ = ["CalledProcessError", "Subprocess", "cpu_count", "fork_processes", "task_id"]

# Re-exported so callers of Subprocess.wait_for_exit need not import subprocess.
CalledProcessError = subprocess.CalledProcessError

_DEFAULT_MAX_RESTARTS = 100

# Index of this worker among those fork_processes started; None in the parent or when
# fork_processes was never called.
_task_id: int | None = None


def cpu_count() -> int:
    """The number of processors this process may run on (1 if it cannot be determined)."""
    try:
        # Respects CPU affinity (taskset, container CPU sets), unlike os.cpu_count().
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        pass
    count = os.cpu_count()
    if count:
        return count
    gen_log.error("Could not detect number of processors; assuming 1")
    return 1


def _reseed_random() -> None:
    # A forked child inherits the parent's PRNG state; without a reseed every worker
    # would draw the same "random" numbers.
    if "random" in sys.modules:
        random.seed()


def fork_processes(num_processes: int | None, max_restarts: int | None = None) -> int:
    """Fork ``num_processes`` workers (one per CPU if it is None or <= 0).

    Returns in each worker its task id, an integer from 0 to ``num_processes - 1``. The
    parent never returns: it waits for its workers, restarts any that die from a signal or
    exit with a non-zero status (up to ``max_restarts`` times in total, default 100, then
    RuntimeError), and calls ``sys.exit(0)`` once every worker has exited cleanly.

    Call it before creating any event loop or thread: an event loop must not be shared
    across a fork. Listening sockets may be bound before, to be shared by the workers.
    Not available on Windows.
    """
    if sys.platform == "win32":
        raise RuntimeError("fork_processes is not available on Windows")
    if max_restarts is None:
        max_restarts = _DEFAULT_MAX_RESTARTS
    if num_processes is None or num_processes <= 0:
        num_processes = cpu_count()
    gen_log.info("Starting %d processes", num_processes)
    workers: dict[int, int] = {}  # pid -> task id
    for index in range(num_processes):
        if _fork_worker(index, workers):
            return index
    restarts = 0
    while workers:
        # os.wait retries by itself on EINTR (PEP 475).
        pid, status = os.wait()
        index = workers.pop(pid, -1)  # -1: some other child of ours, not a worker
        if index < 0 or not _worker_needs_restart(index, pid, status):
            continue
        restarts += 1
        if restarts > max_restarts:
            raise RuntimeError("Too many child restarts, giving up")
        if _fork_worker(index, workers):
            return index
    # Every worker finished cleanly: returning would let the parent go on to serve as if
    # it were a worker, so it ends here.
    sys.exit(0)


def _fork_worker(index: int, workers: dict[int, int]) -> bool:
    """Forks worker ``index``; True in the new child, False in the parent."""
    global _task_id
    pid = os.fork()
    if pid:
        workers[pid] = index
        return False
    _reseed_random()
    _task_id = index
    return True


def _worker_needs_restart(index: int, pid: int, status: int) -> bool:
    """Logs how a worker ended; True unless it exited with status 0."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        gen_log.info("child %d (pid %d) exited normally", index, pid)
        return False
    # A negative code is the signal that killed the child.
    how = "killed by signal" if code < 0 else "exited with status"
    gen_log.warning("child %d (pid %d) %s %d, restarting", index, pid, how, abs(code))
    return True


def task_id() -> int | None:
    """This worker's index from :func:`fork_processes`, or None outside a worker."""
    return _task_id


def _current_ioloop() -> IOLoop:
    # Imported late: squall.ioloop installs the event loop policy, which merely importing
    # squall.process (e.g. for task_id) should not do.
    from squall.ioloop import IOLoop

    current = IOLoop.current()
    assert current is not None
    return current


class Subprocess:
    """A :class:`subprocess.Popen` with non-blocking pipes and exit notification.

    Pass ``Subprocess.STREAM`` as ``stdin``, ``stdout`` or ``stderr`` to get that pipe as
    a :class:`~squall.iostream.PipeIOStream` in the attribute of the same name (other
    values behave as in ``Popen`` and the attribute is ``Popen``'s). All other arguments
    go to ``Popen``.

    :meth:`set_exit_callback` and :meth:`wait_for_exit` report the exit on the IOLoop that
    was current when the object was created; they need no ``SIGCHLD`` handler.
    """

    STREAM = object()

    _initialized = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.io_loop = _current_ioloop()
        # For each STREAM pipe: (attribute, our end, the child's end). Our ends become
        # PipeIOStreams; the child's are closed here once Popen has handed them over.
        pipes: list[tuple[str, int, int]] = []
        for name in ("stdin", "stdout", "stderr"):
            if kwargs.get(name) is Subprocess.STREAM:
                read_end, write_end = os.pipe()
                ours, theirs = (write_end, read_end) if name == "stdin" else (read_end, write_end)
                kwargs[name] = theirs
                pipes.append((name, ours, theirs))
        started = False
        try:
            self.proc = subprocess.Popen(*args, **kwargs)
            started = True
        finally:
            for _name, ours, theirs in pipes:
                os.close(theirs)
                if not started:
                    os.close(ours)
        self.pid = self.proc.pid
        self.returncode: int | None = None
        self._exit_callback: Callable[[int], None] | None = None
        self._watching = False

        self.stdin: Any = self.proc.stdin
        self.stdout: Any = self.proc.stdout
        self.stderr: Any = self.proc.stderr
        if pipes:
            from squall.iostream import PipeIOStream

            for name, ours, _theirs in pipes:
                setattr(self, name, PipeIOStream(ours))

    def set_exit_callback(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(returncode)`` on this object's IOLoop when the process exits.

        The process is reaped by squall; its exit code is also in :attr:`returncode`.
        """
        self._exit_callback = callback
        Subprocess.initialize()
        self._watch_exit()

    def wait_for_exit(self, raise_error: bool = True) -> asyncio.Future[int]:
        """A Future resolved with the exit code once the process exits.

        A non-zero exit code raises :exc:`subprocess.CalledProcessError` unless
        ``raise_error`` is false.
        """
        future: asyncio.Future[int] = self.io_loop.asyncio_loop.create_future()

        def on_exit(returncode: int) -> None:
            if future.cancelled():
                return
            if returncode != 0 and raise_error:
                future.set_exception(CalledProcessError(returncode, self.proc.args))
            else:
                future.set_result(returncode)

        self.set_exit_callback(on_exit)
        return future

    @classmethod
    def initialize(cls) -> None:
        """Prepare for exit notifications (kept for Tornado compatibility).

        Tornado installs a ``SIGCHLD`` handler here. Squall needs none: it watches each
        child through a pidfd on Linux (or a waiting thread elsewhere), which also works
        under uvloop and never reaps processes it did not start. Calling this is optional.
        """
        cls._initialized = True

    @classmethod
    def uninitialize(cls) -> None:
        """Undo :meth:`initialize` (exit watches already started carry on)."""
        cls._initialized = False

    def _watch_exit(self) -> None:
        if self._watching:
            return
        self._watching = True
        loop = self.io_loop.asyncio_loop
        if self.proc.poll() is not None:
            loop.call_soon(self._set_returncode, self.proc.returncode)
            return
        pidfd = _open_pidfd(self.pid)
        if pidfd is None:
            self._wait_in_thread()
            return

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            # The child is a zombie now, so this does not block; None means another
            # thread holds Popen's wait lock, and the thread fallback takes over.
            returncode = self.proc.poll()
            if returncode is None:
                self._wait_in_thread()
            else:
                self._set_returncode(returncode)

        try:
            loop.add_reader(pidfd, on_exit)
        except Exception:
            os.close(pidfd)
            self._wait_in_thread()

    def _wait_in_thread(self) -> None:
        loop = self.io_loop.asyncio_loop

        def wait() -> None:
            returncode = self.proc.wait()
            try:
                loop.call_soon_threadsafe(self._set_returncode, returncode)
            except RuntimeError:
                pass  # the loop was closed meanwhile: nobody is left to tell

        threading.Thread(target=wait, name=f"squall-wait-{self.pid}", daemon=True).start()

    def _set_returncode(self, returncode: int) -> None:
        self.returncode = returncode
        callback, self._exit_callback = self._exit_callback, None
        if callback is not None:
            callback(returncode)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None where unsupported."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None
