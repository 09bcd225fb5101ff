"""Transport-side helpers of :mod:`squall.iostream`.

The protocol object every stream hands its transport, the holder for bytes that arrive before
a TLS layer is in place, the socket view ``SSLIOStream.socket`` returns, and the file object
pipe transports get.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


class _StreamProtocol(asyncio.Protocol):
    """The asyncio protocol of one stream.

    Its callbacks are instance slots bound straight to the stream's methods (or, for
    ``data_received``, to a take-over handler), so a received chunk costs one call.
    """

    __slots__ = (
        "connection_made",
        "data_received",
        "eof_received",
        "connection_lost",
        "pause_writing",
        "resume_writing",
    )

    def __init__(self, stream: Any | None = None) -> None:
        if stream is not None:
            self.bind(stream)

    def bind(self, stream: Any) -> None:
        self.connection_made = stream._connection_made  # type: ignore[method-assign,assignment]
        self.data_received = stream._data_handler or stream._data_received  # type: ignore[method-assign,assignment]
        self.eof_received = stream._eof_received  # type: ignore[method-assign,assignment]
        self.connection_lost = stream._connection_lost  # type: ignore[method-assign,assignment]
        self.pause_writing = stream._pause_writing  # type: ignore[method-assign,assignment]
        self.resume_writing = stream._resume_writing  # type: ignore[method-assign,assignment]


    def unbind(self) -> None:
        """Let go of a closed stream (its methods refer back to it: a cycle otherwise).

        A transport that still reports to this protocol only gets closed again.
        """
        self.connection_made = _abort_transport  # type: ignore[method-assign,assignment]
        self.data_received = _ignore  # type: ignore[method-assign,assignment]
        self.eof_received = _no_keep_open  # type: ignore[method-assign,assignment]
        self.connection_lost = _ignore  # type: ignore[method-assign,assignment]
        self.pause_writing = _nothing  # type: ignore[method-assign,assignment]
        self.resume_writing = _nothing  # type: ignore[method-assign,assignment]


def _abort_transport(transport: Any) -> None:
    transport.abort()


def _ignore(argument: Any) -> None:
    return None


def _no_keep_open() -> bool:
    return False


def _nothing() -> None:
    return None


class _EarlyBytesProtocol(asyncio.Protocol):
    """Holds what a plain transport receives while it waits for its TLS layer."""

    __slots__ = ("data", "lost")

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: BaseException | None = None

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        return True  # let the TLS layer see the end of the stream

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("connection closed before the TLS handshake")


def _feed_early_bytes(transport: Any, early: _EarlyBytesProtocol) -> None:
    data = early.data
    if not data:
        return
    early.data = bytearray()
    protocol = transport.get_protocol()
    if hasattr(protocol, "get_buffer"):
        view = memoryview(data)
        while view:
            target = protocol.get_buffer(len(view))
            count = min(len(target), len(view))
            target[:count] = view[:count]
            protocol.buffer_updated(count)
            view = view[count:]
    else:
        protocol.data_received(bytes(data))


class _DrainWatch(asyncio.BufferedProtocol):
    """Stands between a plain transport and the TLS protocol above it, to learn when the
    plain transport's buffer drains; everything else goes straight to the TLS protocol
    (its bound methods sit in the slots, so received data costs no extra call)."""

    __slots__ = (
        "get_buffer",
        "buffer_updated",
        "data_received",
        "eof_received",
        "connection_lost",
        "pause_writing",
        "_tls_protocol",
        "_on_drained",
    )

    def __init__(self, tls_protocol: Any, on_drained: Any) -> None:
        self._tls_protocol = tls_protocol
        self._on_drained = on_drained
        for name in ("get_buffer", "buffer_updated", "data_received", "eof_received",
                     "connection_lost", "pause_writing"):
            method = getattr(tls_protocol, name, None)
            if method is not None:
                setattr(self, name, method)

    def resume_writing(self) -> None:
        self._tls_protocol.resume_writing()
        self._on_drained()


class _TLSSocketView:
    """``SSLIOStream.socket``: the TCP socket, plus the TLS queries of an ``ssl.SSLSocket``
    answered from the transport's TLS object (``None`` before the handshake)."""

    __slots__ = ("_sock", "_stream")

    _TLS_METHODS = frozenset(
        {
            "cipher",
            "getpeercert",
            "selected_alpn_protocol",
            "selected_npn_protocol",
            "version",
            "compression",
            "shared_ciphers",
            "get_channel_binding",
        }
    )

    def __init__(self, sock: Any, stream: Any) -> None:
        self._sock = sock
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        if name in self._TLS_METHODS:
            ssl_object = self._stream._ssl_object()
            if ssl_object is None:
                return lambda *args, **kwargs: None
            return getattr(ssl_object, name)
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<TLS view of {self._sock!r}>"


class _PipeHandle:
    """The file object a pipe transport gets: a descriptor it owns, closed at most once."""

    __slots__ = ("_fd", "_close_on_close")

    def __init__(self, fd: int, close_on_close: bool) -> None:
        self._fd = fd
        self._close_on_close = close_on_close

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        if self._close_on_close:
            os.close(fd)
