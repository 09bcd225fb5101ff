"""A TCP server base class: subclass ``TCPServer`` and override ``handle_stream``."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import ssl
from collections.abc import Awaitable, Iterable
from typing import Any

from squall import netutil, process
from squall._iostream_transport import _AcceptedProtocol
from squall.ioloop import IOLoop
from squall.iostream import IOStream, SSLIOStream, _StreamProtocol
from squall.log import app_log
from squall.netutil import _DEFAULT_BACKLOG, bind_sockets, ssl_options_to_context

__all__ = ["TCPServer"]


class TCPServer:
    """Accepts TCP connections and hands each one, as an ``IOStream``, to ``handle_stream``.

    Start it in one of three ways::

        server = MyServer()
        server.listen(8888)                     # one process

        server.bind(8888); server.start(0)      # fork one process per CPU (before any loop)

        sockets = bind_sockets(8888)            # explicit sockets, e.g. around fork_processes
        server.add_sockets(sockets)

    ``ssl_options`` (an ``ssl.SSLContext`` or a dict for ``ssl_options_to_context``) makes
    every connection TLS; ``handle_stream`` then gets an ``SSLIOStream`` before the
    handshake (``wait_for_handshake`` waits for it).
    """

    def __init__(
        self, ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
        max_buffer_size: int | None = None, read_chunk_size: int | None = None,
    ) -> None:
        self.ssl_options = ssl_options
        self._sockets: dict[int, socket.socket] = {}  # fileno -> socket
        # fileno -> what accepts on it: an asyncio server or an _AcceptLoop (uvloop)
        self._servers: dict[int, asyncio.AbstractServer | _AcceptLoop] = {}
        self._pending_sockets: list[socket.socket] = []
        self._started = False
        self._stopped = False
        self.max_buffer_size = max_buffer_size
        self.read_chunk_size = read_chunk_size
        self._ssl_context: ssl.SSLContext | None = None
        if self.ssl_options is not None:
            if isinstance(self.ssl_options, dict):
                if "certfile" not in self.ssl_options:
                    raise KeyError('missing key "certfile" in ssl_options')
                if not os.path.exists(self.ssl_options["certfile"]):
                    raise ValueError('certfile "%s" does not exist' % self.ssl_options["certfile"])
                keyfile = self.ssl_options.get("keyfile")
                if keyfile and not os.path.exists(keyfile):
                    raise ValueError('keyfile "%s" does not exist' % keyfile)
            self._ssl_context = ssl_options_to_context(self.ssl_options, server_side=True)

    def listen(
        self, port: int, address: str | None = None,
        family: socket.AddressFamily = socket.AF_UNSPEC, backlog: int = _DEFAULT_BACKLOG,
        flags: int | None = None, reuse_port: bool = False,
    ) -> None:
        """Bind ``port`` (on ``address``) and start accepting on the current loop."""
        self.add_sockets(bind_sockets(port, address, family, backlog, flags, reuse_port))

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Start accepting connections on already listening sockets."""
        loop: asyncio.AbstractEventLoop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        for sock in sockets:
            fileno = sock.fileno()
            self._sockets[fileno] = sock
            server = _start_server(loop, self._protocol_factory, sock)
            self._servers[fileno] = server

    def add_socket(self, socket: socket.socket) -> None:
        """``add_sockets`` for a single socket."""
        self.add_sockets([socket])

    def bind(
        self, port: int, address: str | None = None,
        family: socket.AddressFamily = socket.AF_UNSPEC, backlog: int = _DEFAULT_BACKLOG,
        flags: int | None = None, reuse_port: bool = False,
    ) -> None:
        """Bind ``port`` now and accept once ``start`` runs (may be called several times)."""
        sockets = bind_sockets(port, address, family, backlog, flags, reuse_port)
        if self._started:
            self.add_sockets(sockets)
        else:
            self._pending_sockets.extend(sockets)

    def start(self, num_processes: int | None = 1, max_restarts: int | None = None) -> None:
        """Start accepting on the sockets from ``bind``.

        ``num_processes`` other than 1 forks that many children first (None or <= 0: one
        per CPU), each accepting on the shared sockets; call it before any event loop runs.
        """
        if self._started:
            raise RuntimeError("TCPServer.start() called twice")
        self._started = True
        if num_processes != 1:
            # The children inherit the bound sockets and each accepts on its own loop.
            process.fork_processes(num_processes, max_restarts)
        pending, self._pending_sockets = self._pending_sockets, []
        self.add_sockets(pending)

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (open connections stay open)."""
        if self._stopped:
            return
        self._stopped = True
        for fileno, sock in list(self._sockets.items()):
            server = self._servers.pop(fileno, None)
            if server is not None:
                server.close()
            try:
                sock.close()
            except OSError:
                pass
        self._sockets.clear()
        for sock in self._pending_sockets:
            sock.close()
        self._pending_sockets = []

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> Awaitable[None] | None:
        """Serve one connection (override this); may be a coroutine."""
        stream.close()
        return None

    # ---------------------------------------------------------------- internals

    def _protocol_factory(self) -> _StreamProtocol:
        # Until connection_made builds the stream, the protocol drops whatever it is told.
        return _AcceptedProtocol(self)

    def _on_connection(self, protocol: _StreamProtocol, transport: Any) -> None:
        address = transport.get_extra_info("peername")
        try:
            stream = self._make_stream(transport, protocol)
        except Exception:
            app_log.error(
                "Error creating a stream for a connection from %s", address, exc_info=True
            )
            transport.abort()
            return
        try:
            result = self.handle_stream(stream, address)
        except Exception:
            app_log.error("Error in connection callback", exc_info=True)
            return
        if result is not None:
            # A coroutine handler runs as a task; its failure is logged, not lost.
            IOLoop.current().add_future(asyncio.ensure_future(result), _result_or_log)

    def _make_stream(self, transport: Any, protocol: _StreamProtocol) -> IOStream:
        options = {"max_buffer_size": self.max_buffer_size, "read_chunk_size": self.read_chunk_size}
        context = self._ssl_context
        if context is None:
            return IOStream._from_transport(transport, protocol, **options)
        stream = SSLIOStream(
            transport.get_extra_info("socket"), ssl_options=context, _transport=transport, **options
        )
        stream._start_handshake(transport, True, None)
        return stream


def _start_server(
    loop: asyncio.AbstractEventLoop, factory: Any, sock: socket.socket
) -> asyncio.AbstractServer | _AcceptLoop:
    backlog = netutil._listen_backlogs.get(sock, _DEFAULT_BACKLOG)
    if type(loop).__module__.partition(".")[0] == "uvloop":
        return _AcceptLoop(loop, factory, sock, backlog)
    # With sock= and start_serving, loop.create_server never waits on I/O (asyncio's only
    # yields a bare "sleep(0)"), so drive it to completion here: add_sockets stays synchronous
    # and accepting starts at once, as callers expect.
    coroutine = loop.create_server(factory, sock=sock, backlog=backlog)
    for _ in range(8):
        try:
            yielded = coroutine.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if yielded is not None:
            break
    coroutine.close()
    raise RuntimeError("the event loop cannot start a server synchronously")


# accept() failures that mean "out of descriptors or memory": retrying at once would spin.
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0


class _AcceptLoop:
    """Accepts every connection waiting on a listening socket each time it is readable.

    Used on uvloop instead of ``create_server``: libuv (since libuv#3696, 2022) accepts one
    connection per loop iteration, and each iteration also serves every connection already
    accepted, so the last of a burst of connects waits for as many busy iterations as came
    before it (64 connects against a loaded server: ~300 ms). asyncio's own server accepts
    up to ``backlog`` per wakeup; so does this.
    """

    __slots__ = ("_loop", "_factory", "_sock", "_backlog", "_fd", "_retry")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, factory: Any, sock: socket.socket, backlog: int
    ) -> None:
        self._loop = loop
        self._factory = factory
        self._sock = sock
        self._backlog = max(backlog, 1)
        self._fd = sock.fileno()
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        loop.add_reader(self._fd, self._accept_waiting)

    def close(self) -> None:
        """Stop accepting (the listening socket itself stays open)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1

    def _accept_waiting(self) -> None:
        accept = self._sock.accept
        for _ in range(self._backlog):
            if self._fd < 0:
                return  # stopped by a callback run while adopting (the socket may be closed)
            try:
                connection, _address = accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the peer gave up while queued
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise
                app_log.error("Cannot accept a connection, pausing accepts: %s", exc)
                self._loop.remove_reader(self._fd)
                self._retry = self._loop.call_later(_ACCEPT_RETRY_DELAY, self._resume)
                return
            connection.setblocking(False)
            self._adopt(connection)

    def _resume(self) -> None:
        self._retry = None
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._accept_waiting)

    def _adopt(self, connection: socket.socket) -> None:
        # connect_accepted_socket builds the transport before its only wait (for
        # connection_made), so one step here starts the connection; the rest of the
        # coroutine runs when that wait ends, without a task per connection.
        coroutine = self._loop.connect_accepted_socket(self._factory, connection)
        try:
            waiter = coroutine.send(None)
        except StopIteration:
            return
        except Exception:
            app_log.error("Error adopting an accepted connection", exc_info=True)
            connection.close()
            return
        _resume_adopting(self._loop, coroutine, waiter)


def _resume_adopting(loop: asyncio.AbstractEventLoop, coroutine: Any, waiter: Any) -> None:
    # Resume the coroutine when what it waits for is done; anything but a future (a bare
    # yield) resumes on the next loop iteration.
    add_done_callback = getattr(waiter, "add_done_callback", None)
    if add_done_callback is None:
        loop.call_soon(_step_adopting, loop, coroutine, None)
    else:
        add_done_callback(functools.partial(_step_adopting, loop, coroutine))


def _step_adopting(loop: asyncio.AbstractEventLoop, coroutine: Any, _done: Any) -> None:
    try:
        waiter = coroutine.send(None)
    except StopIteration:
        return
    except Exception:
        # The connection failed before connection_made; the loop closed its transport.
        app_log.debug("An accepted connection failed while starting", exc_info=True)
        return
    _resume_adopting(loop, coroutine, waiter)


def _result_or_log(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        app_log.error("Exception in callback %r", future, exc_info=exc)
