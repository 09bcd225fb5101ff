"""The asyncio implementation of ``IOLoop``, plus asyncio interoperability helpers.

The loop itself is chosen by ``squall._loop_policy`` when the package is imported: uvloop
when it is installed, unless ``SQUALL_NO_UVLOOP`` is set.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import errno
import functools
import queue
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


def _abort_open_transports(loop: asyncio.AbstractEventLoop) -> None:
    """Closes the sockets of every transport still open on ``loop`` (for ``all_fds``).

    In Tornado every stream's descriptor is registered with the IOLoop, so
    ``close(all_fds=True)`` closes them all; squall's streams live on asyncio transports
    instead: their streams are closed, and on asyncio's selector loops, which keep their
    transports in a private table, any other transport too (uvloop closes its own handles
    when the loop closes, but warns about those still open).
    """
    if loop.is_closed():
        return
    iostream = sys.modules.get("squall.iostream")
    if iostream is not None:
        iostream._close_streams_on(loop)  # type: ignore[attr-defined]
    if loop.is_running():
        return
    transports = getattr(loop, "_transports", None)
    if not transports:
        loop.run_until_complete(asyncio.sleep(0))  # (the streams' closes finish there)
        return
    # (closing ones too: a close() still waiting to flush its buffer would never finish)
    open_ones = list(transports.values())
    for transport in open_ones:
        transport.abort()
    if open_ones:
        # abort() finishes on the next loop pass (connection_lost, then the socket closes)
        loop.run_until_complete(asyncio.sleep(0))


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
        if all_fds:
            _abort_open_transports(self.asyncio_loop)
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
        self._watch_events(fd_number, events)

    def update_handler(self, fd: int | _Selectable, events: int) -> None:
        self._watch_events(self.split_fd(fd)[0], events)

    def remove_handler(self, fd: int | _Selectable) -> None:
        fd_number = self.split_fd(fd)[0]
        if self.handlers.pop(fd_number, None) is not None:
            self._watch_events(fd_number, 0)

    def _watch_events(self, fd: int, events: int) -> None:
        """Have the selector loop watch ``fd`` for exactly the READ/WRITE bits of ``events``."""
        selector = self.selector_loop
        directions = (
            (IOLoop.READ, self.readers, selector.add_reader, selector.remove_reader),
            (IOLoop.WRITE, self.writers, selector.add_writer, selector.remove_writer),
        )
        for bit, watched, start, stop in directions:
            wanted = bool(events & bit)
            if wanted == (fd in watched):
                continue
            if wanted:
                start(fd, self._handle_events, fd, bit)
                watched.add(fd)
            else:
                stop(fd)
                watched.discard(fd)

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
        if "asyncio_loop" in kwargs:
            super().initialize(**kwargs)
            return
        # A loop made here is ours to close, also when wrapping it fails.
        fresh = asyncio.new_event_loop()
        try:
            super().initialize(asyncio_loop=fresh, **kwargs)
        except Exception:
            fresh.close()
            raise

    def close(self, all_fds: bool = False) -> None:
        self._clear_current_hook()  # does nothing unless this loop is current
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

# select() errors that mean "one of the fds was closed under us" (WSAENOTSOCK on Windows).
_CLOSED_FD_ERRNOS = frozenset(
    {errno.EBADF, errno.EINTR, getattr(errno, "WSAENOTSOCK", errno.EBADF)}
)

_Handlers = dict[int, Callable[[], Any]]


class SelectorThread:
    """Watches fds with ``select()`` on a helper thread for a loop that cannot (proactor).

    The loop thread and the helper take turns: the loop thread posts a round (the fds to
    watch) on a queue, the helper selects on them and posts the ready ones back to the
    loop, where their callbacks run; only then is the next round posted, so a fd that
    stays ready is not reported again before its callback had a chance to consume it.
    A socket pair wakes the helper early when the watched set changes.
    """

    _closed = False

    def __init__(self, real_loop: asyncio.AbstractEventLoop) -> None:
        self._real_loop = real_loop
        # Callbacks run in the context of whoever created the selector, not the helper's.
        self._main_context = contextvars.copy_context()
        self._readers: _Handlers = {}
        self._writers: _Handlers = {}
        # Rounds for the helper: (read fds, write fds), or None to make it exit.
        self._rounds: queue.SimpleQueue[tuple[list[int], list[int]] | None] = queue.SimpleQueue()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_manager_task: asyncio.Task[Any] | None = None
        self._launcher: Any = None
        self._waker_r, self._waker_w = socket.socketpair()
        for end in (self._waker_r, self._waker_w):
            end.setblocking(False)
        _selector_loops.add(self)
        self._lifetime = self._thread_lifetime()
        real_loop.call_soon(self._launch)
        self.add_reader(self._waker_r.fileno(), self._drain_waker)

    # -- helper thread lifetime -------------------------------------------------------

    def _launch(self) -> None:
        if not self._closed:
            self._launcher = self._start_lifetime()
            self._thread_manager_task = self._real_loop.create_task(self._launcher)

    async def _start_lifetime(self) -> None:
        # One iteration late on purpose: a loop stopped right away (as in tests) is then
        # left with a pending task that close() disposes of, on asyncio and uvloop alike.
        await asyncio.sleep(0)
        if not self._closed:
            await self._lifetime.__anext__()

    async def _thread_lifetime(self) -> Any:
        # An async generator ties the helper to the loop: loop.shutdown_asyncgens() (which
        # asyncio.run calls) closes it, and the finally below stops the thread.
        self._thread = threading.Thread(
            target=self._select_rounds, name="squall selector", daemon=True
        )
        self._thread.start()
        self._post_round()
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
            # Created but never run (the loop stopped first): neither the task nor its
            # coroutine may complain when they are collected.
            task.cancel()
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            self._launcher.close()
        _selector_loops.discard(self)

    def _shutdown_thread(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._rounds.put(None)
        self._wake()
        if self._thread is not None:
            self._thread.join()
        self._waker_r.close()
        self._waker_w.close()

    # -- the helper thread ------------------------------------------------------------

    def _select_rounds(self) -> None:
        for readers, writers in iter(self._rounds.get, None):
            try:
                readable, writable, failed = select.select(readers, writers, writers)
                writable += failed
            except OSError as error:
                if error.errno not in _CLOSED_FD_ERRNOS:
                    raise
                # Which fd went away is for the loop thread to find out: its callback
                # fails (or sees EOF) there.
                readable, writable = readers, writers
            try:
                self._real_loop.call_soon_threadsafe(
                    self._dispatch, readable, writable, context=self._main_context
                )
            except RuntimeError:
                return  # the loop was closed while we selected

    # -- the loop thread --------------------------------------------------------------

    def _post_round(self) -> None:
        self._rounds.put((list(self._readers), list(self._writers)))

    def _dispatch(self, readable: list[int], writable: list[int]) -> None:
        if self._stopping:
            return
        for ready, handlers in ((readable, self._readers), (writable, self._writers)):
            for fd in ready:
                handler = handlers.get(fd)
                if handler is not None:
                    _run_selector_callback(handler)
        if not self._stopping:
            self._post_round()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._waker_w.send(b"\0")

    def _drain_waker(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError once it is empty
            while self._waker_r.recv(4096):
                pass

    def _watch(
        self, handlers: _Handlers, fd: Any, callback: Callable[..., None], args: Any
    ) -> None:
        handlers[_fileno(fd)] = functools.partial(callback, *args)
        self._wake()

    def _unwatch(self, handlers: _Handlers, fd: Any) -> bool:
        if handlers.pop(_fileno(fd), None) is None:
            return False
        self._wake()
        return True

    def add_reader(self, fd: Any, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._watch(self._readers, fd, callback, args)

    def add_writer(self, fd: Any, callback: Callable[..., None], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""
        self._watch(self._writers, fd, callback, args)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        return self._unwatch(self._readers, fd)

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        return self._unwatch(self._writers, fd)


def _run_selector_callback(handler: Callable[[], Any]) -> None:
    try:
        handler()
    except Exception:
        from squall.ioloop import _app_log

        _app_log.error("Exception in selector callback %r", handler, exc_info=True)


def _fileno(fd: Any) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class AddThreadSelectorEventLoop(asyncio.AbstractEventLoop):
    """Wraps an event loop lacking ``add_reader``/``add_writer`` (a proactor loop) and adds
    them through a ``SelectorThread``; everything else is the wrapped loop's."""

    __slots__ = ("_real_loop", "_selector")

    # Every name this class itself defines (filled in below the class). Those are answered
    # by the wrapper; any other name, including the NotImplementedError stubs of
    # AbstractEventLoop, is looked up on the wrapped loop.
    MY_ATTRIBUTES: frozenset[str] = frozenset()

    def __getattribute__(self, name: str) -> Any:
        if name in _WRAPPER_NAMES:
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_real_loop"), name)

    def __init__(self, real_loop: asyncio.AbstractEventLoop) -> None:
        # The selector's helper thread reports ready fds to the wrapped loop.
        self._selector = SelectorThread(real_loop)
        self._real_loop = real_loop

    def close(self) -> None:
        # The helper thread stops first: until then it may post to the wrapped loop.
        self._selector.close()
        self._real_loop.close()

    def add_reader(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., None], *args: Any
    ) -> None:
        self._selector.add_reader(fd, callback, *args)

    def add_writer(  # type: ignore[override]
        self, fd: Any, callback: Callable[..., None], *args: Any
    ) -> None:
        self._selector.add_writer(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:  # type: ignore[override]
        return self._selector.remove_reader(fd)

    def remove_writer(self, fd: Any) -> bool:  # type: ignore[override]
        return self._selector.remove_writer(fd)


_WRAPPER_NAMES = AddThreadSelectorEventLoop.MY_ATTRIBUTES = frozenset(
    vars(AddThreadSelectorEventLoop)
)
