"""``TCPClient``: open TCP (optionally TLS) connections with "happy eyeballs" fallback."""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import numbers
import socket
import ssl
from collections.abc import Callable
from typing import Any

from squall.ioloop import IOLoop
from squall.iostream import IOStream
from squall.netutil import Resolver

__all__ = ["TCPClient"]

# How long the first address family gets before the other one is tried in parallel (RFC 6555).
_INITIAL_CONNECT_TIMEOUT = 0.3

_AddrInfo = list[tuple[int, Any]]
_StreamFactory = Callable[[int, Any], tuple[Any, "asyncio.Future[Any]"]]


def _format_addr(addr: Any) -> str:
    """``host:port`` for an IPv4 address, ``[host]:port`` for IPv6, anything else as is."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        if ":" in str(host):
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    return str(addr)


class _Connector:
    """Races connection attempts over a resolved address list (RFC 6555).

    Addresses of the first family are tried one after another; the other family starts
    after ``timeout`` seconds or as soon as an attempt of the first fails. The first success
    wins and every other stream is closed. ``connect(af, addr)`` returns ``(stream, future)``.
    """

    def __init__(self, addrinfo: _AddrInfo, connect: _StreamFactory) -> None:
        self.io_loop = IOLoop.current()
        self.connect = connect
        self.future: asyncio.Future[tuple[int, Any, Any]] = asyncio.Future(
            loop=self.io_loop.asyncio_loop  # type: ignore[attr-defined]
        )
        self.timeout: object | None = None
        self.connect_timeout: object | None = None
        self.last_error: BaseException | None = None
        primary, secondary = self.split(addrinfo)
        self._primary_queue = collections.deque(primary)
        self._secondary_queue = collections.deque(secondary)
        self.streams: set[Any] = set()
        # Attempts in flight: address -> stream, for the timeout message and cleanup.
        self.pending: dict[Any, Any] = {}
        self._secondary_started = False

    @staticmethod
    def split(addrinfo: _AddrInfo) -> tuple[_AddrInfo, _AddrInfo]:
        """Split into (addresses of the first entry's family, all the others), order kept."""
        if not addrinfo:
            return [], []
        first_family = addrinfo[0][0]
        primary = [entry for entry in addrinfo if entry[0] == first_family]
        secondary = [entry for entry in addrinfo if entry[0] != first_family]
        return primary, secondary

    def start(
        self,
        timeout: float = _INITIAL_CONNECT_TIMEOUT,
        connect_timeout: float | datetime.timedelta | None = None,
    ) -> asyncio.Future[tuple[int, Any, Any]]:
        """Begin connecting; resolves to ``(af, address, stream)``.

        ``connect_timeout`` is a deadline on the loop's clock (``IOLoop.time()``).
        """
        self.future.add_done_callback(self._on_future_done)
        self.try_connect(self._primary_queue)
        if not self.future.done():
            self.set_timeout(timeout)
            if connect_timeout is not None:
                self.set_connect_timeout(connect_timeout)
        return self.future

    def try_connect(self, queue: collections.deque[tuple[int, Any]]) -> None:
        """Start the next attempt from ``queue``; synchronous failures move on at once."""
        while not self.future.done():
            if not queue:
                self._maybe_fail()
                return
            af, addr = queue.popleft()
            try:
                stream, future = self.connect(af, addr)
            except Exception as exc:
                self.last_error = exc
                if queue is self._primary_queue:
                    self._start_secondary()
                continue
            self.streams.add(stream)
            self.pending[addr] = stream
            future.add_done_callback(functools.partial(self.on_connect_done, queue, af, addr))
            return

    def on_connect_done(
        self,
        queue: collections.deque[tuple[int, Any]],
        af: int,
        addr: Any,
        future: asyncio.Future[Any],
    ) -> None:
        """One attempt finished: win, or try the next address."""
        stream = self.pending.pop(addr, None)
        if future.cancelled() or future.exception() is not None:
            if future.cancelled():
                self.last_error = OSError(
                    f"connection attempt to {_format_addr(addr)} was cancelled"
                )
            else:
                self.last_error = future.exception()
            if stream is not None:
                stream.close()
            if self.future.done():
                return
            self.try_connect(queue)
            if queue is self._primary_queue:
                # An early failure is as good as a timeout: bring in the other family now.
                self._start_secondary()
            self._maybe_fail()
            return
        result = future.result()
        if self.future.done():
            # Another attempt won (or the caller gave up): this connection is not wanted.
            result.close()
            return
        self.streams.discard(result)
        self.clear_timeouts()
        self.close_streams()
        self.future.set_result((af, addr, result))

    def _maybe_fail(self) -> None:
        if self.future.done() or self.pending or self._primary_queue:
            return
        if self._secondary_queue:
            self._start_secondary()
            return
        self.clear_timeouts()
        self.future.set_exception(self.last_error or OSError("no addresses to connect to"))

    def _start_secondary(self) -> None:
        if self._secondary_started or self.future.done():
            return
        self._secondary_started = True
        self.try_connect(self._secondary_queue)

    def on_timeout(self) -> None:
        """The first family had its head start: try the other family too."""
        self.timeout = None
        if not self.future.done():
            self._start_secondary()

    def clear_timeout(self) -> None:
        if self.timeout is not None:
            self.io_loop.remove_timeout(self.timeout)
            self.timeout = None

    def set_timeout(self, timeout: float) -> None:
        self.timeout = self.io_loop.add_timeout(self.io_loop.time() + timeout, self.on_timeout)

    def set_connect_timeout(self, connect_timeout: float | datetime.timedelta) -> None:
        self.connect_timeout = self.io_loop.add_timeout(connect_timeout, self.on_connect_timeout)

    def on_connect_timeout(self) -> None:
        """The caller's deadline passed: give up on every attempt."""
        self.connect_timeout = None
        if not self.future.done():
            targets = ", ".join(sorted(_format_addr(addr) for addr in self.pending))
            self.future.set_exception(TimeoutError(f"Timeout while connecting to {targets}"))
        self.close_streams()

    def clear_timeouts(self) -> None:
        self.clear_timeout()
        if self.connect_timeout is not None:
            self.io_loop.remove_timeout(self.connect_timeout)
            self.connect_timeout = None

    def close_streams(self) -> None:
        for stream in self.streams:
            stream.close()

    def _on_future_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.clear_timeouts()
            self.close_streams()


class TCPClient:
    """Opens client connections: resolves the host, races the addresses, optionally
    starts TLS, and returns the connected ``IOStream``."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        # Only a resolver made here is ours to close.
        self._own_resolver = resolver is None
        self.resolver = Resolver() if resolver is None else resolver

    def close(self) -> None:
        """Close the resolver if this client created it."""
        if self._own_resolver:
            self.resolver.close()

    async def connect(
        self, host: str, port: int, af: socket.AddressFamily = socket.AF_UNSPEC,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
        max_buffer_size: int | None = None,
        source_ip: str | None = None, source_port: int | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> IOStream:
        """Connect to ``host``:``port``; returns an ``IOStream`` (``SSLIOStream`` with
        ``ssl_options``). ``timeout`` (seconds or a timedelta) bounds the whole operation and
        raises ``TimeoutError``; connection failures raise ``OSError``."""
        io_loop = IOLoop.current()
        deadline = None
        if timeout is not None:
            if isinstance(timeout, datetime.timedelta):
                timeout = timeout.total_seconds()
            if not isinstance(timeout, numbers.Real):
                raise TypeError(f"unsupported timeout {timeout!r}")
            deadline = io_loop.time() + float(timeout)
        resolving = self.resolver.resolve(host, port, af)
        if deadline is None:
            addrinfo = await resolving
        else:
            try:
                addrinfo = await asyncio.wait_for(
                    asyncio.ensure_future(resolving), max(0.0, deadline - io_loop.time())
                )
            except asyncio.TimeoutError:
                raise TimeoutError(f"Timeout while resolving {host}") from None
        connector = _Connector(
            addrinfo,
            functools.partial(
                self._create_stream, max_buffer_size, source_ip=source_ip, source_port=source_port
            ),
        )
        _family, addr, stream = await connector.start(connect_timeout=deadline)
        if ssl_options is None:
            return stream  # type: ignore[no-any-return]
        handshake = stream.start_tls(False, ssl_options=ssl_options, server_hostname=host)
        if deadline is None:
            return await handshake  # type: ignore[no-any-return]
        try:
            return await asyncio.wait_for(handshake, max(0.0, deadline - io_loop.time()))  # type: ignore[no-any-return]
        except asyncio.TimeoutError:
            raise TimeoutError(f"Timeout during TLS handshake with {_format_addr(addr)}") from None

    def _create_stream(
        self,
        max_buffer_size: int | None,
        af: socket.AddressFamily,
        addr: Any,
        source_ip: str | None = None,
        source_port: int | None = None,
    ) -> tuple[IOStream, asyncio.Future[Any]]:
        source_port_bind = source_port if isinstance(source_port, int) else 0
        source_ip_bind = source_ip
        if source_port_bind and not source_ip:
            # A source port alone still needs an address of the right family to bind.
            source_ip_bind = "::1" if af == socket.AF_INET6 else "127.0.0.1"
        sock = socket.socket(af)
        if source_ip_bind or source_port_bind:
            try:
                sock.bind((source_ip_bind, source_port_bind))
            except OSError:
                sock.close()
                raise
        stream = IOStream(sock, max_buffer_size=max_buffer_size)
        return stream, stream.connect(addr)
