"""A ``Resolver`` backed by c-ares (the optional ``pycares`` package).

Use it with ``Resolver.configure("squall.platform.caresresolver.CaresResolver")``. pycares is
imported when the first resolver is built, so importing this module never fails; building a
resolver without pycares raises ``ImportError`` saying what to install.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from squall.ioloop import IOLoop
from squall.netutil import Resolver, is_valid_ip

__all__ = ["CaresResolver"]


def _import_pycares() -> Any:
    try:
        import pycares  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError("CaresResolver needs the pycares package (pip install pycares)") from exc
    return pycares


def _family_of(address: str) -> int:
    # c-ares answers in text: a dot means a dotted IPv4 quad, else a colon means IPv6.
    for mark, found in ((".", socket.AF_INET), (":", socket.AF_INET6)):
        if mark in address:
            return found
    return socket.AF_UNSPEC


class CaresResolver(Resolver):
    """Non-blocking name resolution with c-ares, driven by the IOLoop.

    c-ares does not read ``/etc/hosts`` the way the system resolver does, so results can
    differ from ``socket.getaddrinfo``; IP literals are answered without a lookup.
    """

    channel: Any
    fds: dict[int, int]
    io_loop: IOLoop

    def initialize(self) -> None:
        pycares = _import_pycares()
        self._pycares = pycares
        self.io_loop = IOLoop.current()
        self.channel = pycares.Channel(sock_state_cb=self._sock_state_cb)
        self.fds = {}
        self._timer: asyncio.TimerHandle | None = None

    def _sock_state_cb(self, fd: int, readable: bool, writable: bool) -> None:
        # c-ares says which events it wants on each of its sockets; mirror that in the
        # IOLoop's handlers (nothing wanted: the socket is done with).
        wanted = (IOLoop.READ if readable else 0) | (IOLoop.WRITE if writable else 0)
        have = self.fds.pop(fd, 0)
        if wanted and not have:
            self.io_loop.add_handler(fd, self._handle_events, wanted)
        elif have and not wanted:
            self.io_loop.remove_handler(fd)
        elif wanted != have:
            self.io_loop.update_handler(fd, wanted)
        if wanted:
            self.fds[fd] = wanted
        self._schedule_timeout()

    def _handle_events(self, fd: int, events: int) -> None:
        bad = self._pycares.ARES_SOCKET_BAD
        read_fd = fd if events & IOLoop.READ else bad
        write_fd = fd if events & IOLoop.WRITE else bad
        self.channel.process_fd(read_fd, write_fd)
        self._schedule_timeout()

    def _schedule_timeout(self) -> None:
        # c-ares retries and gives up on its own clock; wake it when it asks to be woken.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.fds:
            return
        delay = self.channel.timeout()
        if delay:
            loop = self.io_loop.asyncio_loop  # type: ignore[attr-defined]
            self._timer = loop.call_later(delay, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        bad = self._pycares.ARES_SOCKET_BAD
        self.channel.process_fd(bad, bad)
        self._schedule_timeout()

    async def resolve(self, host: str, port: int, family: int = 0) -> list[tuple[int, Any]]:
        if is_valid_ip(host):
            addresses = [host]
        else:
            loop = self.io_loop.asyncio_loop  # type: ignore[attr-defined]
            answer: asyncio.Future[Any] = loop.create_future()

            def on_answer(result: Any, error: Any) -> None:
                if answer.done():
                    return
                if error:
                    message = self._pycares.errno.strerror(error)
                    answer.set_exception(
                        OSError(f"C-Ares returned error {error}: {message} while resolving {host}")
                    )
                else:
                    answer.set_result(result)

            self.channel.gethostbyname(host, family or socket.AF_INET, on_answer)
            result = await answer
            addresses = list(result.addresses)
        pairs: list[tuple[int, Any]] = []
        for address in addresses:
            found = _family_of(address)
            if family and found != family:
                raise OSError(f"Requested socket family {family} but got {found}")
            sockaddr = (address, port, 0, 0) if found == socket.AF_INET6 else (address, port)
            pairs.append((found, sockaddr))
        return pairs

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in list(self.fds):
            self.io_loop.remove_handler(fd)
        self.fds.clear()
        self.channel.cancel()
