"""The asyncio implementation of ``IOLoop``, plus asyncio interoperability helpers.

The loop itself is chosen by ``squall._loop_policy`` when the package is imported: uvloop
when it is installed, unless ``SQUALL_NO_UVLOOP`` is set.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import errno
import functools
import select
import socket
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from squall.concurrent import Future, chain_future, future_set_exc_info  # noqa: F401
from squall.ioloop import IOLoop, _event_loop_set_for_thread, _Selectable

__all__ = [
    "AddThreadSelectorEventLoop",
    "AsyncIOLoop",
    "AsyncIOMainLoop",
    "BaseAsyncIOLoop",
    "SelectorThread",
    "to_asyncio_future",
    "to_tornado_future",
]

_T = TypeVar("_T")


class BaseAsyncIOLoop(IOLoop):
    """``IOLoop`` on top of an asyncio event loop; fd handlers map to add_reader/add_writer."""

    def initialize(  # type: ignore[override]
        self, asyncio_loop: asyncio.AbstractEventLoop, **kwargs: Any
    ) -> None:
        self.asyncio_loop = asyncio_loop
        # Proactor loops (Windows) cannot watch fds themselves; a helper thread does it.
        self.selector_loop: Any = asyncio_loop
        if sys.platform == "win32" and not hasattr(asyncio_loop, "_selector"):
            self.selector_loop = AddThreadSelectorEventLoop(asyncio_loop)
        # fd -> (the object given to add_handler, handler)
        self.handlers: dict[int, tuple[int | _Selectable, Callable[..., None]]] = {}
        self.readers: set[int] = set()
        self.writers: set[int] = set()
        self.closing = False
        registry = IOLoop._ioloop_for_asyncio
        # Loops closed through asyncio never told us; forget them now.
        for stale in [loop for loop in registry if loop.is_closed()]:
            registry.pop(stale, None)
        if asyncio_loop in registry:
            raise RuntimeError(f"IOLoop already exists for asyncio loop {asyncio_loop!r}")
        registry[asyncio_loop] = self
        super().initialize(**kwargs)

    def close(self, all_fds: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        for fd in list(self.handlers):
            fileobj, _ = self.handlers[fd]
            self.remove_handler(fd)
            if all_fds:
                self.close_fd(fileobj)
        if IOLoop._ioloop_for_asyncio.get(self.asyncio_loop) is self:
            del IOLoop._ioloop_for_asyncio[self.asyncio_loop]
        if self.selector_loop is not self.asyncio_loop:
            self.selector_loop.close()
        self.asyncio_loop.close()

    def add_handler(self, fd: int | _Selectable, handler: Callable[..., None], events: int) -> None:
        fd_number, fileobj = self.split_fd(fd)
        if fd_number in self.handlers:
            raise ValueError(f"fd {fd_number} added twice")
        self.handlers[fd_number] = (fileobj, handler)
        if events & IOLoop.READ:
            self.selector_loop.add_reader(fd_number, self._handle_events, fd_number, IOLoop.READ)
            self.readers.add(fd_number)
        if events & IOLoop.WRITE:
            self.selector_loop.add_writer(fd_number, self._handle_events, fd_number, IOLoop.WRITE)
            self.writers.add(fd_number)

    def update_handler(self, fd: int | _Selectable, events: int) -> None:
        fd_number, _ = self.split_fd(fd)
        if events & IOLoop.READ:
            if fd_number not in self.readers:
                self.selector_loop.add_reader(
                    fd_number, self._handle_events, fd_number, IOLoop.READ
                )
                self.readers.add(fd_number)
        elif fd_number in self.readers:
            self.selector_loop.remove_reader(fd_number)
            self.readers.remove(fd_number)
        if events & IOLoop.WRITE:
            if fd_number not in self.writers:
                self.selector_loop.add_writer(
                    fd_number, self._handle_events, fd_number, IOLoop.WRITE
                )
                self.writers.add(fd_number)
        elif fd_number in self.writers:
            self.selector_loop.remove_writer(fd_number)
            self.writers.remove(fd_number)

    def remove_handler(self, fd: int | _Selectable) -> None:
        fd_number, _ = self.split_fd(fd)
        if fd_number not in self.handlers:
            return
        if fd_number in self.readers:
            self.selector_loop.remove_reader(fd_number)
            self.readers.remove(fd_number)
        if fd_number in self.writers:
            self.selector_loop.remove_writer(fd_number)
            self.writers.remove(fd_number)
        del self.handlers[fd_number]

    def _handle_events(self, fd: int, events: int) -> None:
        entry = self.handlers.get(fd)
        if entry is None:
            # Removed by an earlier handler in the same iteration.
            return
        fileobj, handler = entry
        try:
            handler(fileobj, events)
        except Exception:
            from squall.ioloop import _app_log

            _app_log.error("Exception in callback %r", handler, exc_info=True)

    def start(self) -> None:
        previous = _event_loop_set_for_thread()
        try:
            asyncio.set_event_loop(self.asyncio_loop)
            self.asyncio_loop.run_forever()
        finally:
            asyncio.set_event_loop(previous)

    def stop(self) -> None:
        self.asyncio_loop.stop()

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> object:
        if args or kwargs:
            callback = functools.partial(callback, *args, **kwargs)
        # IOLoop.time() is the asyncio loop's clock, so deadlines carry over unchanged.
        return self.asyncio_loop.call_at(when, self._run_callback, callback)

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> object:
        if args or kwargs:
            callback = functools.partial(callback, *args, **kwargs)
        return self.asyncio_loop.call_later(delay, self._run_callback, callback)

    def remove_timeout(self, timeout: object) -> None:
        timeout.cancel()  # type: ignore[attr-defined]

    def add_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            callback = functools.partial(callback, *args, **kwargs)
        loop = self.asyncio_loop
        try:
            if asyncio._get_running_loop() is loop:
                loop.call_soon(self._run_callback, callback)
            else:
                loop.call_soon_threadsafe(self._run_callback, callback)
        except RuntimeError:
            # The loop was closed (possibly by another thread): the callback is dropped,
            # as it would be had it been queued just before the close.
            pass

    def add_callback_from_signal(
        self, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        warnings.warn(
            "add_callback_from_signal is deprecated; use asyncio's add_signal_handler",
            DeprecationWarning,
            stacklevel=2,
        )
        if args or kwargs:
            callback = functools.partial(callback, *args, **kwargs)
        try:
            self.asyncio_loop.call_soon_threadsafe(self._run_callback, callback)
        except RuntimeError:
            pass

    def run_in_executor(
        self, executor: Executor | None, func: Callable[..., _T], *args: Any
    ) -> Awaitable[_T]:
        return self.asyncio_loop.run_in_executor(executor, func, *args)

    def set_default_executor(self, executor: Executor) -> None:
        self.asyncio_loop.set_default_executor(executor)


class AsyncIOMainLoop(BaseAsyncIOLoop):
    """The ``IOLoop`` of an asyncio loop created elsewhere (e.g. by ``asyncio.run``)."""

    def initialize(self, **kwargs: Any) -> None:  # type: ignore[override]
        loop = asyncio._get_running_loop()
        if loop is None:
            loop = _event_loop_set_for_thread()
        if loop is None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        super().initialize(loop, **kwargs)

    def _make_current(self) -> None:
        # The wrapped loop is already this thread's loop.
        pass


class AsyncIOLoop(BaseAsyncIOLoop):
    """An ``IOLoop`` owning a new asyncio loop (pass ``asyncio_loop=`` to wrap one)."""

    def initialize(self, **kwargs: Any) -> None:  # type: ignore[override]
        self.is_current = False
        self.old_asyncio: asyncio.AbstractEventLoop | None = None
        created = None
        if "asyncio_loop" not in kwargs:
            kwargs["asyncio_loop"] = created = asyncio.new_event_loop()
        try:
            super().initialize(**kwargs)
        except Exception:
            if created is not None:
                created.close()
            raise

    def close(self, all_fds: bool = False) -> None:
        if self.is_current:
            self._clear_current_hook()
        super().close(all_fds=all_fds)

    def _make_current(self) -> None:
        if not self.is_current:
            self.old_asyncio = _event_loop_set_for_thread()
            self.is_current = True
        asyncio.set_event_loop(self.asyncio_loop)

    def _clear_current_hook(self) -> None:
        if self.is_current:
            if _event_loop_set_for_thread() is self.asyncio_loop:
                asyncio.set_event_loop(None)
            self.is_current = False
            self.old_asyncio = None


def to_tornado_future(asyncio_future: asyncio.Future[_T]) -> asyncio.Future[_T]:
    """Identity: asyncio futures are squall futures (kept for older code)."""
    return asyncio_future


def to_asyncio_future(tornado_future: Any) -> asyncio.Future[Any]:
    """Turn a squall future or any awaitable into an ``asyncio.Future``."""
    from squall.gen import convert_yielded

    return convert_yielded(tornado_future)  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    if name == "AnyThreadEventLoopPolicy":
        warnings.warn(
            "AnyThreadEventLoopPolicy is deprecated, use asyncio.run or asyncio.new_event_loop",
            DeprecationWarning,
            stacklevel=2,
        )
        return _any_thread_policy_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _any_thread_policy_class() -> type:
    # Built on first use: the policy classes are themselves deprecated in newer Pythons,
    # and merely importing this module must not touch them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        base = asyncio.DefaultEventLoopPolicy

    class AnyThreadEventLoopPolicy(base):  # type: ignore[valid-type,misc]
        """An event loop policy that creates a loop on demand in any thread."""

        def get_event_loop(self) -> asyncio.AbstractEventLoop:
            try:
                return super().get_event_loop()  # type: ignore[no-any-return]
            except RuntimeError:
                loop = self.new_event_loop()
                self.set_event_loop(loop)
                return loop  # type: ignore[no-any-return]

    AnyThreadEventLoopPolicy.__module__ = __name__
    return AnyThreadEventLoopPolicy


# Every SelectorThread not yet closed; the interpreter exit hook shuts them down.
_selector_loops: set[SelectorThread] = set()


def _atexit_callback() -> None:
    for selector in list(_selector_loops):
        selector._shutdown_thread()
    _selector_loops.clear()


atexit.register(_atexit_callback)


class SelectorThread:
    """Watches fds with ``select()`` on a helper thread for a loop that cannot (proactor).

    Ready fds are reported back on the loop's thread, where the callbacks run.
    """

    _closed = False

    def __init__(self, real_loop: asyncio.AbstractEventLoop) -> None:
        self._real_loop = real_loop
        self._select_cond = threading.Condition()
        self._select_args: tuple[list[int], list[int]] | None = None
        self._closing_selector = False
        self._thread: threading.Thread | None = None
        self._thread_manager_task: asyncio.Task[Any] | None = None
        # Callbacks run in the context of whoever created the selector, not the helper thread's.
        self._main_context = contextvars.copy_context()
        self._readers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._writers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        _selector_loops.add(self)
        self._manager = self._thread_manager()
        self._manager_step: Any = None
        real_loop.call_soon(self._start_manager)
        self.add_reader(self._waker_r.fileno(), self._consume_waker)

    def _start_manager(self) -> None:
        # Running the manager as an async generator ties the thread's lifetime to the loop:
        # loop.shutdown_asyncgens() (done by asyncio.run) closes it, which stops the thread.
        if self._closed:
            return
        self._manager_step = self._advance_manager()
        self._thread_manager_task = self._real_loop.create_task(self._manager_step)

    async def _advance_manager(self) -> None:
        # Start the thread one iteration later: a loop stopped right away (as in tests)
        # then leaves a pending task that close() can dispose of, on asyncio and uvloop alike.
        await asyncio.sleep(0)
        if not self._closed:
            await self._manager.__anext__()

    async def _thread_manager(self) -> Any:
        self._thread = threading.Thread(
            name="squall selector", daemon=True, target=self._run_select
        )
        self._thread.start()
        self._start_select()
        try:
            yield None
        finally:
            self.close()

    def close(self) -> None:
        """Stop the helper thread and release the waker sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._shutdown_thread()
        task = self._thread_manager_task
        if task is not None and not task.done():
            # Created but never run (the loop stopped first): make sure neither the task nor
            # its awaitable complain when they are collected.
            task.cancel()
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            if self._manager_step is not None:
                self._manager_step.close()
        _selector_loops.discard(self)

    def _shutdown_thread(self) -> None:
        with self._select_cond:
            if self._closing_selector:
                return
            self._closing_selector = True
            self._select_cond.notify()
        self._wake_selector()
        if self._thread is not None:
            self._thread.join()
        self._waker_r.close()
        self._waker_w.close()

    def _wake_selector(self) -> None:
        if self._closing_selector and self._waker_w.fileno() == -1:
            return
        try:
            self._waker_w.send(b"a")
        except OSError:
            pass

    def _consume_waker(self) -> None:
        try:
            while self._waker_r.recv(1024):
                pass
        except OSError:
            pass

    def _start_select(self) -> None:
        with self._select_cond:
            assert self._select_args is None
            self._select_args = (list(self._readers), list(self._writers))
            self._select_cond.notify()

    def _run_select(self) -> None:
        while True:
            with self._select_cond:
                while self._select_args is None and not self._closing_selector:
                    self._select_cond.wait()
                if self._closing_selector:
                    return
                assert self._select_args is not None
                to_read, to_write = self._select_args
                self._select_args = None
            try:
                readable, writable, errored = select.select(to_read, to_write, to_write)
                writable = writable + errored
            except OSError as error:
                if error.errno == getattr(errno, "WSAENOTSOCK", errno.EBADF) or error.errno in (
                    errno.EBADF,
                    errno.EINTR,
                ):
                    # An fd was closed under us: find out which on the loop thread.
                    readable, writable = list(to_read), list(to_write)
                else:
                    raise
            try:
                self._real_loop.call_soon_threadsafe(
                    self._handle_select, readable, writable, context=self._main_context
                )
            except RuntimeError:
                # The loop closed while we were selecting.
                return

    def _handle_select(self, readable: list[int], writable: list[int]) -> None:
        for fd in readable:
            self._handle_event(fd, self._readers)
        for fd in writable:
            self._handle_event(fd, self._writers)
        if not self._closing_selector:
            self._start_select()

    def _handle_event(
        self, fd: int, callbacks: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]]
    ) -> None:
        entry = callbacks.get(fd)
        if entry is None:
            return
        callback, args = entry
        try:
            callback(*args)
        except Exception:
            from squall.ioloop import _app_log

            _app_log.error("Exception in selector callback %r", callback, exc_info=True)

    def add_reader(self, fd: Any, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._readers[_fileno(fd)] = (callback, args)
        self._wake_selector()

    def add_writer(self, fd: Any, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""
        self._writers[_fileno(fd)] = (callback, args)
        self._wake_selector()

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        try:
            del self._readers[_fileno(fd)]
        except KeyError:
            return False
        self._wake_selector()
        return True

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        try:
            del self._writers[_fileno(fd)]
        except KeyError:
            return False
        self._wake_selector()
        return True


def _fileno(fd: Any) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class AddThreadSelectorEventLoop(asyncio.AbstractEventLoop):
    """Wraps an event loop lacking ``add_reader``/``add_writer`` (a proactor loop) and adds
    them through a ``SelectorThread``; everything else goes to the wrapped loop."""

    MY_ATTRIBUTES = {
        "_real_loop",
        "_selector",
        "add_reader",
        "add_writer",
        "close",
        "remove_reader",
        "remove_writer",
    }

    def __getattribute__(self, name: str) -> Any:
        if name in AddThreadSelectorEventLoop.MY_ATTRIBUTES:
            return super().__getattribute__(name)
        return getattr(self._real_loop, name)

    def __init__(self, real_loop: asyncio.AbstractEventLoop) -> None:
        self._real_loop = real_loop
        self._selector = SelectorThread(real_loop)

    def close(self) -> None:
        self._selector.close()
        self._real_loop.close()

    def add_reader(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., None], *args: Any
    ) -> None:
        return self._selector.add_reader(fd, callback, *args)

    def add_writer(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., None], *args: Any
    ) -> None:
        return self._selector.add_writer(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:  # type: ignore[override]
        return self._selector.remove_reader(fd)

    def remove_writer(self, fd: Any) -> bool:  # type: ignore[override]
        return self._selector.remove_writer(fd)
