"""The listening sockets the manager owns and every worker accepts on."""

from __future__ import annotations

import os
import socket
import ssl
from typing import Optional

from squall.netutil import bind_sockets, bind_unix_socket
from squall.serve._config import ServeConfig


def open_listeners(config: ServeConfig) -> list[socket.socket]:
    """Binds (or adopts, for ``--fd``) the sockets named by the options."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.detach()
            raise ValueError(f"descriptor {config.fd} is not a listening socket")
        sock.setblocking(False)
        return [sock]
    if config.uds is not None:
        # A proxy usually runs as another user: let it connect (the directory guards access).
        return [bind_unix_socket(config.uds, mode=0o666, backlog=config.backlog)]
    return bind_sockets(config.port, config.host or None, backlog=config.backlog)


def describe(sock: socket.socket, scheme: str) -> str:
    """The address a user would type to reach ``sock``."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return f"unix:{name}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def server_ssl_context(config: ServeConfig) -> Optional[ssl.SSLContext]:
    if not config.ssl_certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile)
    return context


def close_listeners(sockets: list[socket.socket], config: ServeConfig) -> None:
    for sock in sockets:
        sock.close()
    if config.uds and not config.uds.startswith("\0"):
        try:
            os.remove(config.uds)
        except OSError:
            pass
