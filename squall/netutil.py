"""Socket helpers: listening sockets, accept loops, name resolution and TLS contexts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import socket
import ssl
import stat
import sys
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from squall.concurrent import dummy_executor
from squall.ioloop import IOLoop
from squall.util import Configurable

__all__ = [
    "bind_sockets",
    "bind_unix_socket",
    "add_accept_handler",
    "is_valid_ip",
    "Resolver",
    "DefaultExecutorResolver",
    "DefaultLoopResolver",
    "ExecutorResolver",
    "BlockingResolver",
    "ThreadedResolver",
    "OverrideResolver",
    "ssl_options_to_context",
    "ssl_wrap_socket",
]

# Default listen() backlog; the kernel caps it at somaxconn anyway.
_DEFAULT_BACKLOG = 128

_client_ssl_defaults = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
_server_ssl_defaults = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
if hasattr(ssl, "OP_NO_COMPRESSION"):
    # Compression under TLS enables CRIME-style attacks.
    _client_ssl_defaults.options |= ssl.OP_NO_COMPRESSION
    _server_ssl_defaults.options |= ssl.OP_NO_COMPRESSION

# The backlog each listening socket was given here: re-listening (asyncio's servers call
# listen() again) must not silently change it.
_listen_backlogs: weakref.WeakKeyDictionary[socket.socket, int] = weakref.WeakKeyDictionary()

# The keys an ssl_options dict may hold (the old ssl.wrap_socket arguments).
_SSL_CONTEXT_KEYWORDS = frozenset(
    ["ssl_version", "certfile", "keyfile", "cert_reqs", "ca_certs", "ciphers"]
)


def bind_sockets(
    port: int,
    address: str | None = None,
    family: socket.AddressFamily = socket.AF_UNSPEC,
    backlog: int = _DEFAULT_BACKLOG,
    flags: int | None = None,
    reuse_port: bool = False,
) -> list[socket.socket]:
    """Listening, non-blocking sockets for every address ``address`` resolves to.

    ``address`` None or "" means every interface. With ``port`` 0 all the sockets share the
    first port the system picks. ``reuse_port`` sets SO_REUSEPORT (ValueError where missing).
    """
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("the platform does not support SO_REUSEPORT")
    sockets: list[socket.socket] = []
    if address == "":
        address = None
    if not socket.has_ipv6 and family == socket.AF_UNSPEC:
        family = socket.AF_INET
    if flags is None:
        flags = socket.AI_PASSIVE
    bound_port = None
    seen: set[tuple[Any, Any]] = set()
    infos = socket.getaddrinfo(address, port, family, socket.SOCK_STREAM, 0, flags)
    for af, socktype, proto, _canonname, resolved in sorted(infos, key=lambda info: info[0]):
        sockaddr: tuple[Any, ...] = tuple(resolved)
        key = (af, sockaddr)
        if key in seen:
            continue
        seen.add(key)
        if af == socket.AF_INET6 and not socket.has_ipv6:
            continue
        if (
            sys.platform == "darwin"
            and address == "localhost"
            and af == socket.AF_INET6
            and sockaddr[3] != 0
        ):
            # macOS lists a link-local ::1%lo0 that cannot be bound next to ::1.
            continue
        try:
            sock = socket.socket(af, socktype, proto)
        except OSError as exc:
            if exc.errno == errno.EAFNOSUPPORT:
                continue
            raise
        try:
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if af == socket.AF_INET6:
                # One socket per family: keep the IPv6 one from also taking IPv4 traffic.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and bound_port is not None:
                sockaddr = (sockaddr[0], bound_port) + tuple(sockaddr[2:])
            sock.setblocking(False)
            sock.bind(sockaddr)
            bound_port = sock.getsockname()[1]
            sock.listen(backlog)
            _listen_backlogs[sock] = backlog
        except BaseException:
            sock.close()
            for other in sockets:
                other.close()
            raise
        sockets.append(sock)
    return sockets


def bind_unix_socket(
    file: str, mode: int = 0o600, backlog: int = _DEFAULT_BACKLOG
) -> socket.socket:
    """A listening Unix socket at path ``file`` (a stale socket file there is replaced).

    A name starting with NUL is Linux's abstract namespace: no file, so no mode either.
    """
    abstract = file.startswith("\0")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        if not abstract:
            try:
                existing = os.stat(file)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISSOCK(existing.st_mode):
                    os.remove(file)
                else:
                    raise ValueError(f"File {file} exists and is not a socket")
        sock.bind(file)
        if not abstract:
            os.chmod(file, mode)
        sock.listen(backlog)
        _listen_backlogs[sock] = backlog
    except BaseException:
        sock.close()
        raise
    return sock


def add_accept_handler(
    sock: socket.socket, callback: Callable[[socket.socket, Any], None]
) -> Callable[[], None]:
    """Call ``callback(connection, address)`` for each connection accepted on ``sock``.

    Returns a function that stops accepting (the socket itself stays open).
    """
    io_loop = IOLoop.current()
    removed = False

    def accept_handler(fd: Any, events: int) -> None:
        # Accept a bounded batch per wake-up so one busy listener cannot starve the loop.
        for _ in range(_DEFAULT_BACKLOG):
            if removed:
                return
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                # The peer gave up before we accepted; try the next one.
                continue
            callback(connection, address)

    def remove_handler() -> None:
        nonlocal removed
        if not removed:
            io_loop.remove_handler(sock)
            removed = True

    io_loop.add_handler(sock, accept_handler, IOLoop.READ)
    return remove_handler


def is_valid_ip(ip: str) -> bool:
    """True if ``ip`` is an IPv4 or IPv6 address literal."""
    if not ip or "\x00" in ip:
        return False
    try:
        infos = socket.getaddrinfo(
            ip, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
    except socket.gaierror:
        return False
    except UnicodeError:
        return False
    return bool(infos)


def _resolve_addr(
    host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
) -> list[tuple[int, Any]]:
    # SOCK_STREAM keeps one entry per address instead of one per socket type.
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    return [(info[0], info[4]) for info in infos]


class Resolver(Configurable):
    """Asynchronous name resolution; ``Resolver()`` builds the configured implementation
    (``DefaultLoopResolver`` unless ``Resolver.configure`` chose another)."""

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        return Resolver

    @classmethod
    def configurable_default(cls) -> type[Configurable]:
        return DefaultLoopResolver

    def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> Awaitable[list[tuple[int, Any]]]:
        """Resolve ``host``/``port`` to a list of ``(family, address)`` pairs.

        Raises ``IOError`` (``socket.gaierror``) for unknown names. Subclasses override it;
        this base version asks the event loop.
        """
        return _loop_resolve(host, port, family)

    def close(self) -> None:
        """Release the resolver's resources."""


async def _loop_resolve(host: str, port: int, family: int) -> list[tuple[int, Any]]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, family=family, type=socket.SOCK_STREAM
    )
    return [(info[0], info[4]) for info in infos]


class DefaultExecutorResolver(Resolver):
    """Runs ``socket.getaddrinfo`` on the event loop's default thread pool."""

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return await asyncio.get_running_loop().run_in_executor(
            None, _resolve_addr, host, port, family
        )


class DefaultLoopResolver(Resolver):
    """Resolves through the event loop's own ``getaddrinfo`` (the default)."""

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return await _loop_resolve(host, port, family)


class ExecutorResolver(Resolver):
    """Runs ``socket.getaddrinfo`` on a ``concurrent.futures.Executor``.

    Without an executor the lookup blocks the loop (``BlockingResolver``).
    ``close_executor`` says whether ``close()`` shuts the executor down.
    """

    executor: concurrent.futures.Executor | None
    close_executor: bool

    def initialize(
        self, executor: concurrent.futures.Executor | None = None, close_executor: bool = True
    ) -> None:
        if executor is not None:
            self.executor = executor
            self.close_executor = close_executor
        else:
            self.executor = dummy_executor
            self.close_executor = False

    def close(self) -> None:
        if self.close_executor and self.executor is not None:
            self.executor.shutdown()
        self.executor = None

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        executor = self.executor
        if executor is None:
            raise RuntimeError("resolve() called on a closed resolver")
        return await asyncio.wrap_future(executor.submit(_resolve_addr, host, port, family))


class BlockingResolver(ExecutorResolver):
    """Resolves on the calling thread, blocking the event loop meanwhile."""

    def initialize(self) -> None:  # type: ignore[override]
        super().initialize()


class ThreadedResolver(ExecutorResolver):
    """Resolves on a thread pool shared by every instance in the process."""

    _threadpool: concurrent.futures.ThreadPoolExecutor | None = None
    _threadpool_pid: int | None = None

    def initialize(self, num_threads: int = 10) -> None:  # type: ignore[override]
        threadpool = ThreadedResolver._create_threadpool(num_threads)
        super().initialize(executor=threadpool, close_executor=False)

    @classmethod
    def _create_threadpool(cls, num_threads: int) -> concurrent.futures.ThreadPoolExecutor:
        pid = os.getpid()
        if cls._threadpool_pid != pid:
            # A pool inherited through fork() has no threads behind it.
            cls._threadpool = None
        if cls._threadpool is None:
            cls._threadpool = concurrent.futures.ThreadPoolExecutor(num_threads)
            cls._threadpool_pid = pid
        return cls._threadpool


class OverrideResolver(Resolver):
    """Answers some lookups from ``mapping`` and passes the rest to ``resolver``.

    Keys are ``host``, ``(host, port)`` or ``(host, port, family)``; values are a host or a
    ``(host, port)`` pair to resolve instead.
    """

    resolver: Resolver
    mapping: dict[Any, Any]

    def initialize(self, resolver: Resolver, mapping: dict[Any, Any]) -> None:
        self.resolver = resolver
        self.mapping = mapping

    def close(self) -> None:
        self.resolver.close()

    def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> Awaitable[list[tuple[int, Any]]]:
        mapping = self.mapping
        if (host, port, family) in mapping:
            host, port = mapping[(host, port, family)]
        elif (host, port) in mapping:
            host, port = mapping[(host, port)]
        elif host in mapping:
            host = mapping[host]
        return self.resolver.resolve(host, port, family)


def ssl_options_to_context(
    ssl_options: dict[str, Any] | ssl.SSLContext, server_side: bool | None = None
) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` from an ``ssl_options`` dict (a context is returned as is).

    The dict takes the old ``ssl.wrap_socket`` keys: ``ssl_version``, ``certfile``,
    ``keyfile``, ``cert_reqs``, ``ca_certs`` and ``ciphers``.
    """
    if isinstance(ssl_options, ssl.SSLContext):
        return ssl_options
    if not isinstance(ssl_options, dict):
        raise TypeError(
            f"ssl_options must be a dict or an ssl.SSLContext, not {type(ssl_options).__name__}"
        )
    unknown = set(ssl_options) - _SSL_CONTEXT_KEYWORDS
    if unknown:
        raise ValueError(f"unknown ssl_options keys: {', '.join(sorted(unknown))}")
    if server_side is True:
        default_protocol = ssl.PROTOCOL_TLS_SERVER
    elif server_side is False:
        default_protocol = ssl.PROTOCOL_TLS_CLIENT
    else:
        default_protocol = ssl.PROTOCOL_TLS
    context = ssl.SSLContext(ssl_options.get("ssl_version", default_protocol))
    if "certfile" in ssl_options:
        context.load_cert_chain(ssl_options["certfile"], ssl_options.get("keyfile"))
    if "cert_reqs" in ssl_options:
        if ssl_options["cert_reqs"] == ssl.CERT_NONE:
            # Hostname checks need a verified certificate; turn them off first.
            context.check_hostname = False
        context.verify_mode = ssl_options["cert_reqs"]
    if "ca_certs" in ssl_options:
        context.load_verify_locations(ssl_options["ca_certs"])
    elif server_side is False and context.verify_mode != ssl.CERT_NONE:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if "ciphers" in ssl_options:
        context.set_ciphers(ssl_options["ciphers"])
    if hasattr(ssl, "OP_NO_COMPRESSION"):
        context.options |= ssl.OP_NO_COMPRESSION
    return context


def ssl_wrap_socket(
    socket: socket.socket,
    ssl_options: dict[str, Any] | ssl.SSLContext,
    server_hostname: str | None = None,
    server_side: bool | None = None,
    **kwargs: Any,
) -> ssl.SSLSocket:
    """Wrap ``socket`` in an ``ssl.SSLSocket`` (extra keyword arguments go to ``wrap_socket``)."""
    context = ssl_options_to_context(ssl_options, server_side=server_side)
    if server_side is None:
        server_side = False
    return context.wrap_socket(
        socket, server_hostname=server_hostname, server_side=server_side, **kwargs
    )
