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

    ``data_received``, the only hot callback, is an instance slot bound straight to the
    stream's method (or to a take-over handler), so a received chunk costs one call. The
    rare callbacks are plain methods that look the stream up: one bound method per callback
    per connection would cost more memory than the extra call costs time.
    """

    __slots__ = ("data_received", "_stream")

    def __init__(self, stream: Any | None = None) -> None:
        self._stream = None
        self.data_received = _ignore  # type: ignore[method-assign,assignment]
        if stream is not None:
            self.bind(stream)

    def bind(self, stream: Any) -> None:
        self._stream = stream
        self.data_received = stream._data_handler or stream._data_received  # type: ignore[method-assign,assignment]

    def unbind(self) -> None:
        """Let go of a closed stream (its methods refer back to it: a cycle otherwise).

        A transport that still reports to this protocol only gets closed again.
        """
        self._stream = None
        self.data_received = _ignore  # type: ignore[method-assign,assignment]

    def connection_made(self, transport: Any) -> None:
        stream = self._stream
        if stream is None:
            transport.abort()
        else:
            stream._connection_made(transport)

    def eof_received(self) -> bool:
        stream = self._stream
        return stream._eof_received() if stream is not None else False  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        stream = self._stream
        if stream is not None:
            stream._connection_lost(exc)

    def pause_writing(self) -> None:
        stream = self._stream
        if stream is not None:
            stream._pause_writing()

    def resume_writing(self) -> None:
        stream = self._stream
        if stream is not None:
            stream._resume_writing()


class _AcceptedProtocol(_StreamProtocol):
    """The protocol a listening server gives each new transport.

    Until its first callback, ``_stream`` holds the server (nothing else can arrive before
    ``connection_made``); that callback hands the connection to ``server._on_connection``,
    which binds a stream to this same object. No extra slot: one per connection adds up.
    """

    __slots__ = ()

    def __init__(self, server: Any) -> None:
        super().__init__()
        self._stream = server

    def connection_made(self, transport: Any) -> None:
        server = self._stream
        # Let go of the server first: a failed accept leaves a protocol that only aborts.
        self._stream = None
        if server is None:
            transport.abort()
        else:
            server._on_connection(self, transport)


class _PipeWriterProtocol(_StreamProtocol):
    """The protocol of a pipe stream's separate write transport."""

    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        stream = self._stream
        if stream is None:
            transport.abort()
        else:
            stream._set_write_transport(transport)


def _ignore(argument: Any) -> None:
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
        for name in (
            "get_buffer",
            "buffer_updated",
            "data_received",
            "eof_received",
            "connection_lost",
            "pause_writing",
        ):
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
