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

# Compression under TLS enables CRIME-style attacks; every context made here turns it off
# (0, a no-op, where the ssl module lacks the flag).
_NO_COMPRESSION = getattr(ssl, "OP_NO_COMPRESSION", 0)

_client_ssl_defaults = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
_server_ssl_defaults = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
_client_ssl_defaults.options |= _NO_COMPRESSION
_server_ssl_defaults.options |= _NO_COMPRESSION

# The backlog each listening socket was given here: re-listening (asyncio's servers call
# listen() again) must not silently change it.
_listen_backlogs: weakref.WeakKeyDictionary[socket.socket, int] = weakref.WeakKeyDictionary()

# The keys an ssl_options dict may hold (the old ssl.wrap_socket arguments).
_SSL_CONTEXT_KEYWORDS = frozenset(
    ["ssl_version", "certfile", "keyfile", "cert_reqs", "ca_certs", "ciphers"]
)


def bind_sockets(
    port: int, address: str | None = None, family: socket.AddressFamily = socket.AF_UNSPEC,
    backlog: int = _DEFAULT_BACKLOG, flags: int | None = None, reuse_port: bool = False,
) -> list[socket.socket]:
    """Listening, non-blocking sockets for every address ``address`` resolves to.

    ``address`` None or "" means every interface. With ``port`` 0 all the sockets share the
    first port the system picks. ``reuse_port`` sets SO_REUSEPORT (ValueError where missing).
    """
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("the platform does not support SO_REUSEPORT")
    host = address or None
    if family == socket.AF_UNSPEC and not socket.has_ipv6:
        family = socket.AF_INET
    passive = socket.AI_PASSIVE if flags is None else flags
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, passive)
    sockets: list[socket.socket] = []
    try:
        for af, socktype, proto, sockaddr in _listen_targets(infos, host):
            if port == 0 and sockets:
                # The system chose the first socket's port: the others take the same one.
                sockaddr = (sockaddr[0], sockets[-1].getsockname()[1], *sockaddr[2:])
            sock = _tcp_listener(af, socktype, proto, sockaddr, backlog, reuse_port)
            if sock is not None:
                sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listen_targets(
    infos: list[tuple[Any, ...]], host: str | None
) -> list[tuple[Any, Any, Any, tuple[Any, ...]]]:
    """getaddrinfo's answers as distinct (family, type, proto, sockaddr), IPv4 first."""
    distinct = dict.fromkeys(
        (info[0], info[1], info[2], tuple(info[4]))
        for info in infos
        if info[0] != socket.AF_INET6 or socket.has_ipv6
    )
    targets = sorted(distinct, key=lambda target: target[0])
    if sys.platform == "darwin" and host == "localhost":
        # macOS lists a link-local ::1%lo0 that cannot be bound next to ::1.
        targets = [t for t in targets if t[0] != socket.AF_INET6 or t[3][3] == 0]
    return targets


def _listener_options(af: Any, reuse_port: bool) -> list[tuple[int, int]]:
    """The (level, option) flags a listening TCP socket gets turned on.

    SO_REUSEADDR lets a restarted server bind while old connections linger in TIME_WAIT
    (on Windows it would let two servers share a port, so not there); V6ONLY keeps an IPv6
    socket off IPv4 traffic, which has a socket of its own.
    """
    choices = (
        ((socket.SOL_SOCKET, socket.SO_REUSEADDR), os.name != "nt"),
        ((socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT", -1)), reuse_port),
        ((socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), af == socket.AF_INET6),
    )
    return [option for option, wanted in choices if wanted]


def _tcp_listener(
    af: Any, socktype: Any, proto: Any, sockaddr: tuple[Any, ...], backlog: int, reuse_port: bool
) -> socket.socket | None:
    """A socket listening on ``sockaddr``; None when the kernel lacks the family."""
    try:
        sock = socket.socket(af, socktype, proto)
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            return None
        raise
    try:
        for level, option in _listener_options(af, reuse_port):
            sock.setsockopt(level, option, 1)
        _listen(sock, sockaddr, backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen(
    sock: socket.socket, address: Any, backlog: int, after_bind: Callable[[], None] | None = None
) -> None:
    sock.setblocking(False)
    sock.bind(address)
    if after_bind is not None:
        after_bind()
    sock.listen(backlog)
    _listen_backlogs[sock] = backlog


def bind_unix_socket(
    file: str, mode: int = 0o600, backlog: int = _DEFAULT_BACKLOG
) -> socket.socket:
    """A listening Unix socket at path ``file`` (a stale socket file there is replaced).

    A name starting with NUL is Linux's abstract namespace: no file, so no mode either.
    """
    in_filesystem = not file.startswith("\0")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if in_filesystem:
            _remove_stale_socket(file)
            # The mode is set before listen(), so no client connects under the umask's.
            _listen(sock, file, backlog, after_bind=lambda: os.chmod(file, mode))
        else:
            _listen(sock, file, backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: str) -> None:
    """Removes a socket file an earlier server left at ``path``; anything else is an error."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"File {path} exists and is not a socket")
    os.remove(path)


def add_accept_handler(
    sock: socket.socket, callback: Callable[[socket.socket, Any], None]
) -> Callable[[], None]:
    """Call ``callback(connection, address)`` for each connection accepted on ``sock``.

    Returns a function that stops accepting (the socket itself stays open).
    """
    return _AcceptHandler(sock, callback).remove


class _AcceptHandler:
    """Accepts on a listening socket whenever the loop reports it readable."""

    __slots__ = ("_sock", "_callback", "_io_loop", "_active")

    def __init__(self, sock: socket.socket, callback: Callable[[socket.socket, Any], None]):
        self._sock = sock
        self._callback = callback
        self._active = True
        self._io_loop = IOLoop.current()
        self._io_loop.add_handler(sock, self._on_readable, IOLoop.READ)

    def _on_readable(self, fd: Any, events: int) -> None:
        # At most a backlog's worth per wake-up, so one busy listener cannot starve the loop;
        # the callback may also remove the handler, which ends the batch.
        budget = _DEFAULT_BACKLOG
        while budget > 0 and self._active:
            budget -= 1
            try:
                connection, address = self._sock.accept()
            except BlockingIOError:
                break
            except ConnectionAbortedError:
                # The peer gave up before we accepted; go on with the next one.
                continue
            self._callback(connection, address)

    def remove(self) -> None:
        if self._active:
            self._io_loop.remove_handler(self._sock)
            self._active = False


def is_valid_ip(ip: str) -> bool:
    """True if ``ip`` is an IPv4 or IPv6 address literal."""
    # NUL would cut the string short on its way into getaddrinfo.
    if not ip or "\x00" in ip:
        return False
    # AI_NUMERICHOST: a literal resolves to itself, a name fails instead of being looked up.
    try:
        found = socket.getaddrinfo(
            ip, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeError):
        return False
    return bool(found)


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
        # Without an executor lookups run inline, and there is no executor of ours to shut down.
        self.close_executor = executor is not None and close_executor
        self.executor = dummy_executor if executor is None else executor

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
        # One pool per process: a pool inherited through fork() has no threads behind it.
        pid = os.getpid()
        pool = cls._threadpool if cls._threadpool_pid == pid else None
        if pool is None:
            pool = cls._threadpool = concurrent.futures.ThreadPoolExecutor(num_threads)
            cls._threadpool_pid = pid
        return pool


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

    def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> Awaitable[list[tuple[int, Any]]]:
        mapping = self.mapping
        # The most specific key wins; a bare host key replaces the host only.
        for key in ((host, port, family), (host, port)):
            if key in mapping:
                host, port = mapping[key]
                break
        else:
            host = mapping.get(host, host)
        return self.resolver.resolve(host, port, family)

    def close(self) -> None:
        self.resolver.close()


# The protocol a context gets by side (server, client, unsaid) when ssl_options names none.
_DEFAULT_TLS_PROTOCOL: dict[bool | None, ssl._SSLMethod] = {
    True: ssl.PROTOCOL_TLS_SERVER,
    False: ssl.PROTOCOL_TLS_CLIENT,
    None: ssl.PROTOCOL_TLS,
}


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
    default_protocol = _DEFAULT_TLS_PROTOCOL.get(server_side, ssl.PROTOCOL_TLS)
    context = ssl.SSLContext(ssl_options.get("ssl_version", default_protocol))
    certfile = ssl_options.get("certfile")
    if certfile is not None:
        context.load_cert_chain(certfile, ssl_options.get("keyfile"))
    cert_reqs = ssl_options.get("cert_reqs")
    if cert_reqs is not None:
        if cert_reqs == ssl.CERT_NONE:
            # Hostname checks need a verified certificate; they must go first.
            context.check_hostname = False
        context.verify_mode = cert_reqs
    ca_certs = ssl_options.get("ca_certs")
    if ca_certs is not None:
        context.load_verify_locations(ca_certs)
    elif server_side is False and context.verify_mode != ssl.CERT_NONE:
        # A bare client context trusts nothing until it has the system's CAs.
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    ciphers = ssl_options.get("ciphers")
    if ciphers is not None:
        context.set_ciphers(ciphers)
    context.options |= _NO_COMPRESSION
    return context


def ssl_wrap_socket(
    socket: socket.socket, ssl_options: dict[str, Any] | ssl.SSLContext,
    server_hostname: str | None = None, server_side: bool | None = None, **kwargs: Any,
) -> ssl.SSLSocket:
    """Wrap ``socket`` in an ``ssl.SSLSocket`` (extra keyword arguments go to ``wrap_socket``)."""
    context = ssl_options_to_context(ssl_options, server_side=server_side)
    return context.wrap_socket(
        socket, server_hostname=server_hostname, server_side=bool(server_side), **kwargs
    )
