"""Non-blocking byte streams over asyncio transports.

``IOStream`` wraps a TCP socket, ``SSLIOStream`` a TLS connection and ``PipeIOStream`` a pipe.
Each stream owns one asyncio protocol object; the transport pushes received chunks into the
stream's read buffer (or, once a protocol layer has taken reads over, straight into its
handler), and writes go to ``transport.write`` at once. Nothing here polls file descriptors
for data, so a faster event loop (uvloop) speeds every stream up.

Reads are one at a time: ``read_bytes``, ``read_until``, ``read_until_regex``, ``read_into``
and ``read_until_close`` each return a Future. ``write`` returns a Future resolved once the
data has left squall's buffers.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import io
import os
import re
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Optional, Union

from squall import netutil
from squall._iostream_buffer import _StreamBuffer, as_byte_view
from squall._iostream_transport import (
    _DrainWatch,
    _EarlyBytesProtocol,
    _feed_early_bytes,
    _PipeHandle,
    _PipeWriterProtocol,
    _StreamProtocol,
    _TLSSocketView,
)
from squall.ioloop import IOLoop
from squall.log import gen_log

__all__ = [
    "BaseIOStream",
    "IOStream",
    "SSLIOStream",
    "PipeIOStream",
    "StreamClosedError",
    "UnsatisfiableReadError",
    "StreamBufferFullError",
]

_ERRNO_CONNRESET = (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT)
_WINDOWS = sys.platform.startswith("win")

_client_ssl_defaults = netutil._client_ssl_defaults
_server_ssl_defaults = netutil._server_ssl_defaults

_ExcInfo = Union[
    None,
    bool,
    BaseException,
    tuple[Optional[type[BaseException]], Optional[BaseException], Optional[TracebackType]],
]

# Kinds of pending read.
_NO_READ = 0
_READ_BYTES = 1
_READ_UNTIL = 2
_READ_REGEX = 3
_READ_INTO = 4
_READ_UNTIL_CLOSE = 5

# The read buffer while a data handler owns reads: nothing is buffered then, and an idle
# server connection need not keep a bytearray of its own. Immutable, so a stray write to it
# fails loudly instead of leaking bytes between streams.
_NO_READ_BUFFER: Any = b""

_DEFAULT_MAX_BUFFER_SIZE = 104857600
_DEFAULT_READ_CHUNK_SIZE = 65536


# One finished Future shared by every write that left at once. It holds the last loop
# that asked; a finished Future ignores cancel() and accepts callbacks and awaits, and
# squall never resolves a Future that write() returned.
_finished_write_cache: list[Any] = [None, None]


def _finished_write(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    cache = _finished_write_cache
    if cache[0] is loop:
        return cache[1]  # type: ignore[no-any-return]
    future: asyncio.Future[None] = loop.create_future()
    future.set_result(None)
    cache[0] = loop
    cache[1] = future
    return future


class StreamClosedError(IOError):
    """The stream is closed; ``real_error`` holds the cause, when there was one."""

    def __init__(self, real_error: BaseException | None = None) -> None:
        super().__init__("Stream is closed")
        self.real_error = real_error


class UnsatisfiableReadError(Exception):
    """A read cannot complete within its byte limit (``max_bytes``)."""


class StreamBufferFullError(Exception):
    """A read or write buffer reached its configured maximum size."""


def _is_connection_reset(exc: BaseException | None) -> bool:
    return isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) or (
        isinstance(exc, OSError) and exc.errno in _ERRNO_CONNRESET
    )


def _exception_from_exc_info(exc_info: _ExcInfo) -> BaseException | None:
    if not exc_info:
        return None
    if isinstance(exc_info, tuple):
        return exc_info[1]
    if isinstance(exc_info, BaseException):
        return exc_info
    return sys.exc_info()[1]


# Every stream with a transport, until it closes (an open transport keeps its stream alive
# anyway, through its protocol): what IOLoop.close(all_fds=True) closes, as Tornado closes
# the descriptors its streams registered with the IOLoop.
_open_streams: set[BaseIOStream] = set()


def _close_streams_on(loop: asyncio.AbstractEventLoop) -> None:
    """Closes every squall stream still open on ``loop``."""
    for stream in [s for s in _open_streams if s._loop is loop]:
        try:
            stream.close()
        except Exception:
            _open_streams.discard(stream)


class BaseIOStream:
    """Buffered reads and writes over an asyncio transport (see the subclasses)."""

    # One stream per connection: slots keep it small and its hot attributes fast. "__dict__"
    # stays so callers and subclasses may still set attributes of their own.
    __slots__ = (
        "__dict__",
        "io_loop",
        "_loop",
        "max_buffer_size",
        "read_chunk_size",
        "max_write_buffer_size",
        "error",
        "_read_buffer",
        "_write_buffer",
        "_write_futures",
        "_read_future",
        "_read_kind",
        "_read_max",
        "_read_partial",
        "_read_target",
        "_read_pos",
        "_close_callback",
        "_connect_future",
        "_closed",
        "_transport",
        "_write_transport",
        "_attach_task",
        "_attach_started",
        "_watch_descriptor",
        "_data_handler",
        "_paused_by_user",
        "_paused_for_buffer",
        "_reading_paused",
        "_protocol",
        "_copy_mutable_writes",
    )

    def __init__(
        self, max_buffer_size: int | None = None, read_chunk_size: int | None = None,
        max_write_buffer_size: int | None = None,
    ) -> None:
        self.io_loop = IOLoop.current()
        self._loop: asyncio.AbstractEventLoop = self.io_loop.asyncio_loop  # type: ignore[attr-defined]
        self.max_buffer_size = max_buffer_size or _DEFAULT_MAX_BUFFER_SIZE
        # asyncio transports choose their own receive size; the value is kept for callers
        # and bounded by max_buffer_size as before.
        self.read_chunk_size = min(
            read_chunk_size or _DEFAULT_READ_CHUNK_SIZE, self.max_buffer_size // 2
        )
        self.max_write_buffer_size = max_write_buffer_size
        self.error: BaseException | None = None
        self._read_buffer = bytearray()
        # Data written before the transport exists, and futures of writes not yet drained:
        # made on first need, since most idle connections never use either.
        self._write_buffer: _StreamBuffer | None = None
        self._write_futures: list[asyncio.Future[None]] | None = None
        self._read_future: asyncio.Future[Any] | None = None
        self._read_kind = _NO_READ
        self._read_max: int | None = None
        self._read_partial = False
        # What the pending read is after, by _read_kind: a byte count, a delimiter, a compiled
        # pattern or the caller's buffer (a memoryview). One slot for all: a stream is kept
        # per connection, so every slot counts.
        self._read_target: Any = None
        # Progress of the pending read: where a delimiter search resumes, or how much of a
        # read_into buffer is filled.
        self._read_pos = 0
        self._close_callback: Callable[[], None] | None = None
        self._connect_future: asyncio.Future[Any] | None = None
        self._closed = False
        # Typed loosely: uvloop's transports do not derive from asyncio's transport classes.
        self._transport: Any = None
        self._write_transport: Any = None
        self._attach_task: asyncio.Future[Any] | None = None
        self._attach_started = False  # whether the attach task has handed anything to the loop
        # Whether the socket's descriptor is checked before a read waits. Its number is
        # looked up only then: an int object kept per connection costs memory.
        self._watch_descriptor = False
        self._data_handler: Callable[[bytes], Any] | None = None
        self._paused_by_user = False
        self._paused_for_buffer = False
        self._reading_paused = False
        # A subclass may have put in an adopted protocol already (an accepted connection's).
        protocol = getattr(self, "_protocol", None)
        if protocol is None:
            self._protocol = _StreamProtocol(self)
        else:
            protocol.bind(self)
        self._copy_mutable_writes = type(self._loop).__module__.startswith("uvloop")

    # ---------------------------------------------------------------- subclass interface

    def fileno(self) -> Any:
        """The file descriptor (or socket object) this stream is built on."""
        transport = self._transport or self._write_transport
        return transport.get_extra_info("socket") if transport is not None else None

    def close_fd(self) -> None:
        """Close the underlying transport or file descriptor (``close`` calls this)."""
        self._close_transports()

    def get_fd_error(self) -> Exception | None:
        """The pending error on the file descriptor, if the platform can report one."""
        return None

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        """Move already-received bytes into ``buf`` without waiting.

        Returns the number of bytes copied, ``None`` when nothing is available yet and ``0``
        once the stream is closed and drained.
        """
        available = len(self._read_buffer)
        if not available:
            return 0 if self._closed else None
        view = as_byte_view(buf)
        count = min(available, len(view))
        with memoryview(self._read_buffer) as source:
            view[:count] = source[:count]
        del self._read_buffer[:count]
        self._maybe_resume_for_buffer()
        return count

    def write_to_fd(self, data: memoryview) -> int:
        """Hand ``data`` to the transport without a Future; returns the bytes accepted."""
        self._write_nowait(data)
        return data.nbytes if isinstance(data, memoryview) else len(data)

    # ---------------------------------------------------------------- reads

    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        """Read until ``regex`` matches; the result includes the match.

        With ``max_bytes``, a match ending beyond that many bytes closes the stream
        (``UnsatisfiableReadError`` becomes the ``real_error``).
        """
        future = self._start_read(_READ_REGEX)
        self._read_target = re.compile(regex)
        self._read_max = max_bytes
        self._run_inline_read(future)
        return future

    def read_until(self, delimiter: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        """Read until ``delimiter``; the result includes it (``max_bytes`` as above)."""
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        future = self._start_read(_READ_UNTIL)
        self._read_target = bytes(delimiter)
        self._read_max = max_bytes
        self._run_inline_read(future)
        return future

    def read_bytes(self, num_bytes: int, partial: bool = False) -> Awaitable[bytes]:
        """Read ``num_bytes`` bytes (with ``partial``, whatever is available, at least one)."""
        if not isinstance(num_bytes, int) or num_bytes < 0:
            raise ValueError("num_bytes must be a non-negative integer")
        future = self._start_read(_READ_BYTES)
        self._read_target = num_bytes
        self._read_partial = partial
        self._run_inline_read(future)
        return future

    def read_into(self, buf: bytearray, partial: bool = False) -> Awaitable[int]:
        """Fill ``buf`` (or, with ``partial``, part of it) and resolve to the byte count."""
        future = self._start_read(_READ_INTO)
        view = as_byte_view(buf)
        size = len(view)
        self._read_partial = partial
        filled = 0
        available = len(self._read_buffer)
        if available and size:
            filled = min(available, size)
            with memoryview(self._read_buffer) as source:
                view[:filled] = source[:filled]
            del self._read_buffer[:filled]
        if filled == size or (partial and filled):
            view.release()
            self._clear_read()
            future.set_result(filled)
            self._maybe_resume_for_buffer()
            return future
        self._read_target = view
        self._read_pos = filled
        self._run_inline_read(future)
        return future

    def read_until_close(self) -> Awaitable[bytes]:
        """Read everything until the peer closes the stream."""
        future = self._start_read(_READ_UNTIL_CLOSE)
        self._run_inline_read(future)
        return future

    def _start_read(self, kind: int) -> asyncio.Future[Any]:
        pending = self._read_future
        if pending is not None:
            if not pending.cancelled():
                raise RuntimeError("Already reading")
            self._clear_read()
        if self._data_handler is not None:
            raise RuntimeError("reads on this stream are taken over by a data handler")
        future = self._loop.create_future()
        self._read_future = future
        self._read_kind = kind
        self._read_pos = 0
        return future

    def _clear_read(self) -> None:
        self._read_future = None
        kind = self._read_kind
        self._read_kind = _NO_READ
        target = self._read_target
        self._read_target = None
        if kind == _READ_INTO and target is not None:
            target.release()

    def _run_inline_read(self, future: asyncio.Future[Any]) -> None:
        try:
            self._try_inline_read()
        except BaseException:
            if self._read_future is future:
                self._clear_read()
            future.cancel()
            raise

    def _try_inline_read(self) -> None:
        """Satisfy the pending read from buffered data, or arrange to wait for more."""
        if self._satisfy_read():
            return
        if self._read_future is None:  # failed and closed the stream
            return
        if self._closed:
            if self._read_kind == _READ_UNTIL_CLOSE and self._closed_cleanly():
                self._finish_read(len(self._read_buffer))
                return
            self._clear_read()
            raise StreamClosedError(real_error=self.error)
        if len(self._read_buffer) >= self.max_buffer_size and self._read_kind != _READ_INTO:
            self._fail_buffer_full()
            return
        if self._watch_descriptor:
            try:
                os.fstat(self._plain_socket().fileno())
            except OSError as error:
                # The descriptor was closed behind the transport's back: fail now, before
                # the loop trips over it (or over whatever reuses its number).
                self._forget_descriptor()
                self.close(exc_info=error)
                self._clear_read()
                raise
        if self._paused_for_buffer:
            self._maybe_resume_for_buffer()

    def _forget_descriptor(self) -> None:
        """Stop the file object from closing a descriptor number it no longer owns."""

    def _plain_socket(self) -> Any:
        return None

    def _closed_cleanly(self) -> bool:
        return self.error is None or _is_connection_reset(self.error)

    def _read_end(self, data: bytes | bytearray) -> int:
        """Where the pending read ends in ``data``; -1 if more bytes are needed."""
        kind = self._read_kind
        if kind == _READ_BYTES:
            num = self._read_target
            size = len(data)
            if size >= num:
                return num
            if self._read_partial and size:
                return size
            return -1
        if kind == _READ_UNTIL:
            delimiter = self._read_target
            pos = data.find(delimiter, self._read_pos)
            max_bytes = self._read_max
            if pos >= 0:
                end = pos + len(delimiter)
                if max_bytes is not None and end > max_bytes:
                    raise UnsatisfiableReadError(
                        f"delimiter {delimiter!r} not found within {max_bytes} bytes"
                    )
                return end
            size = len(data)
            if max_bytes is not None and size >= max_bytes:
                raise UnsatisfiableReadError(
                    f"delimiter {delimiter!r} not found within {max_bytes} bytes"
                )
            # A later match can only start in the last len(delimiter)-1 bytes seen so far.
            self._read_pos = max(0, size - len(delimiter) + 1)
            return -1
        if kind == _READ_REGEX:
            regex = self._read_target
            match = regex.search(data)
            max_bytes = self._read_max
            if match is not None:
                end = match.end()
                if max_bytes is not None and end > max_bytes:
                    raise UnsatisfiableReadError(
                        f"pattern {regex.pattern!r} not found within {max_bytes} bytes"
                    )
                return end
            if max_bytes is not None and len(data) >= max_bytes:
                raise UnsatisfiableReadError(
                    f"pattern {regex.pattern!r} not found within {max_bytes} bytes"
                )
            return -1
        return -1

    def _satisfy_read(self) -> bool:
        """Complete the pending read from the buffer if possible; True when done."""
        kind = self._read_kind
        if kind == _NO_READ:
            return True
        future = self._read_future
        assert future is not None
        if future.cancelled():
            self._clear_read()
            return True
        if kind == _READ_INTO:
            return self._fill_read_into(b"")
        if kind == _READ_UNTIL_CLOSE:
            return False
        if kind == _READ_BYTES and self._read_target == 0:
            self._finish_read(0)
            return True
        try:
            end = self._read_end(self._read_buffer)
        except UnsatisfiableReadError as exc:
            gen_log.info("Unsatisfiable read, closing connection: %s", exc)
            self.close(exc_info=exc)
            return False
        if end < 0:
            return False
        self._finish_read(end)
        return True

    def _finish_read(self, end: int) -> None:
        future = self._read_future
        assert future is not None
        self._clear_read()
        buf = self._read_buffer
        if end == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            with memoryview(buf) as view:
                data = view[:end].tobytes()
            del buf[:end]
        if not future.done():
            future.set_result(data)
        if self._paused_for_buffer:
            self._maybe_resume_for_buffer()

    def _fill_read_into(self, data: bytes) -> bool:
        """Copy ``data`` into the pending read_into buffer; leftovers go to the read buffer."""
        view = self._read_target
        assert view is not None
        filled = self._read_pos
        if data:
            room = len(view) - filled
            if len(data) <= room:
                view[filled : filled + len(data)] = data
                filled += len(data)
            else:
                view[filled:] = memoryview(data)[:room]
                filled += room
                self._read_buffer += memoryview(data)[room:]
            self._read_pos = filled
        if filled == len(view) or (self._read_partial and filled):
            future = self._read_future
            assert future is not None
            self._clear_read()
            if not future.done():
                future.set_result(filled)
            return True
        return False

    # ---------------------------------------------------------------- receiving

    def _data_received(self, data: bytes) -> None:
        kind = self._read_kind
        buf = self._read_buffer
        if kind != _NO_READ and self._read_future.cancelled():  # type: ignore[union-attr]
            # The reader gave up: keep the bytes for the next read instead.
            self._clear_read()
            kind = _NO_READ
        if kind == _NO_READ or kind == _READ_UNTIL_CLOSE:
            buf += data
        elif kind == _READ_INTO:
            if self._fill_read_into(data) or not buf:
                return
        elif buf:
            buf += data
            self._satisfy_read()
        else:
            # Empty buffer: try to complete the read from this chunk alone, without copying.
            try:
                end = self._read_end(data)
            except UnsatisfiableReadError:
                buf += data
                self._satisfy_read()  # logs and closes
                return
            if end < 0:
                buf += data
            else:
                future = self._read_future
                assert future is not None
                self._clear_read()
                if end == len(data):
                    result = data
                else:
                    result = data[:end]
                    buf += memoryview(data)[end:]
                if not future.done():
                    future.set_result(result)
        if len(buf) >= self.max_buffer_size:
            if self._read_kind != _NO_READ and not self._closed:
                self._fail_buffer_full()
            else:
                self._pause_for_buffer()

    def _fail_buffer_full(self) -> None:
        gen_log.error("Reached maximum read buffer size")
        exc = StreamBufferFullError("Reached maximum read buffer size")
        gen_log.warning("error on read: %s", exc)
        self.close(exc_info=exc)

    def _eof_received(self) -> bool:
        self._on_peer_closed(None)
        return False

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._on_peer_closed(exc)

    def _on_peer_closed(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        if exc is not None and self.error is None:
            self.error = exc
            if not _is_connection_reset(exc) and self._read_kind != _NO_READ:
                gen_log.warning("error on read: %s", exc)
        self.close()

    # ---------------------------------------------------------------- flow control

    def _set_reading_paused(self) -> None:
        paused = self._paused_by_user or self._paused_for_buffer
        if paused == self._reading_paused:
            return
        transport = self._transport
        if transport is None or not hasattr(transport, "pause_reading"):
            return
        if transport.is_closing():
            return
        self._reading_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _pause_for_buffer(self) -> None:
        if not self._paused_for_buffer:
            self._paused_for_buffer = True
            self._set_reading_paused()

    def _maybe_resume_for_buffer(self) -> None:
        if self._paused_for_buffer and len(self._read_buffer) < self.max_buffer_size:
            self._paused_for_buffer = False
            self._set_reading_paused()

    def _pause_reading(self) -> None:
        """Stop reading from the transport until ``_resume_reading``."""
        self._paused_by_user = True
        self._set_reading_paused()

    def _resume_reading(self) -> None:
        """Undo ``_pause_reading``."""
        self._paused_by_user = False
        self._set_reading_paused()

    def _pause_writing(self) -> None:
        # Write futures are held until the transport's buffer drains (limits are set to 0).
        pass

    def _resume_writing(self) -> None:
        futures = self._write_futures
        # While connecting, write futures wait for the connect future to resolve first; once
        # closed, they fail instead (closing may drain a transport on its way out).
        if futures and self._connect_future is None and not self._closed:
            self._write_futures = None
            for future in futures:
                if not future.done():
                    future.set_result(None)

    # ---------------------------------------------------------------- read take-over

    def _set_data_handler(self, handler: Callable[[bytes], Any] | None) -> None:
        """Send every received chunk to ``handler`` instead of the read buffer (None: undo).

        Bytes already buffered are handed over before this returns.
        """
        pending = self._read_future
        if handler is not None and pending is not None:
            if not pending.cancelled():
                raise RuntimeError("cannot take over reads while a read is pending")
            self._clear_read()
        if self._closed:
            # The protocol no longer reports to this stream; only buffered bytes remain.
            self._drop_data_handler()
            if handler is not None and self._read_buffer:
                data = bytes(self._read_buffer)
                self._read_buffer.clear()
                handler(data)
            return
        if handler is None:
            self._drop_data_handler()
        else:
            self._data_handler = handler
        protocol = self._protocol
        protocol.data_received = handler or self._data_received  # type: ignore[method-assign,assignment]
        transport = self._transport
        if transport is not None and not transport.is_closing():
            # Some loops (uvloop) cache the protocol's callbacks; setting it again refreshes them.
            transport.set_protocol(protocol)
        if handler is not None:
            buffered = self._read_buffer
            self._read_buffer = _NO_READ_BUFFER
            if buffered:
                self._maybe_resume_for_buffer()
                handler(bytes(buffered))

    def _drop_data_handler(self) -> None:
        self._data_handler = None
        if self._read_buffer is _NO_READ_BUFFER:
            self._read_buffer = bytearray()

    def _unread(self, data: bytes) -> None:
        """Put ``data`` back at the front of the read buffer."""
        if data:
            if self._read_buffer is _NO_READ_BUFFER:
                self._read_buffer = bytearray()
            self._read_buffer[0:0] = data
            if self._read_kind == _READ_UNTIL:
                self._read_pos = 0  # earlier delimiter scans covered what is now further on
            if self._read_kind != _NO_READ:
                self._satisfy_read()

    # ---------------------------------------------------------------- writes

    def write(self, data: bytes | memoryview) -> asyncio.Future[None]:
        """Write ``data``; the Future resolves once everything written so far has left
        squall's buffers."""
        if self._closed:
            raise StreamClosedError(real_error=self.error)
        transport = self._write_transport
        if (
            type(data) is bytes
            and transport is not None
            and self.max_write_buffer_size is None
            and self._write_buffer is None
        ):
            # The common case (a response to a connected peer, no write limit): straight
            # to the transport, none of _write_nowait's checks apply.
            if data:
                transport.write(data)
        elif data:
            self._write_nowait(data)
        if (
            transport is not None
            and self._settles_on_write_transport
            and not transport.get_write_buffer_size()
        ):
            buffer = self._write_buffer
            if (buffer is None or not len(buffer)) and not transport.is_closing():
                # Everything left at once (the usual case): no Future to allocate.
                return _finished_write(self._loop)
        future: asyncio.Future[None] = self._loop.create_future()
        # A transport that is already closing failed the write; connection_lost fails the future.
        if not self.writing() and (transport is None or not transport.is_closing()):
            future.set_result(None)
        elif self._write_futures is None:
            self._write_futures = [future]
        else:
            self._write_futures.append(future)
        return future

    def _write_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` without creating a Future."""
        if self._closed:
            raise StreamClosedError(real_error=self.error)
        if type(data) is memoryview and (data.itemsize != 1 or data.format != "B"):
            data = data.cast("B")
        transport = self._write_transport
        if self.max_write_buffer_size is not None:
            if self._pending_write_size() + len(data) > self.max_write_buffer_size:
                raise StreamBufferFullError("Reached maximum write buffer size")
        if transport is not None:
            if self._copy_mutable_writes and (
                type(data) is bytearray or (type(data) is memoryview and not data.readonly)
            ):
                # uvloop keeps a view of unsent data; a copy lets the caller reuse its buffer.
                data = bytes(data)
            transport.write(data)
        else:
            buffer = self._write_buffer
            if buffer is None:
                buffer = self._write_buffer = _StreamBuffer()
            buffer.append(data)

    def _pending_write_size(self) -> int:
        """Bytes written but not yet handed to the kernel: squall's buffer plus the
        transport's (for TLS, the encrypted bytes the plain transport still holds too)."""
        buffer = self._write_buffer
        size = len(buffer) if buffer is not None else 0
        transport = self._write_transport
        if transport is not None:
            size += transport.get_write_buffer_size()
        return size

    # Whether an empty write transport buffer means every written byte has left squall.
    _settles_on_write_transport = True

    def writing(self) -> bool:
        """True while written data is still waiting in squall's buffers."""
        buffer = self._write_buffer
        if buffer is not None and len(buffer):
            return True
        transport = self._write_transport
        return transport is not None and transport.get_write_buffer_size() > 0

    def reading(self) -> bool:
        """True while a read is pending."""
        future = self._read_future
        return future is not None and not future.cancelled()

    # ---------------------------------------------------------------- transport attachment

    def _connection_made(self, transport: Any) -> None:
        if self._closed:
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = transport
        _open_streams.add(self)
        connect_future = self._connect_future
        if connect_future is not None:
            # Connected: resolve now, before an immediate EOF could close the stream first.
            self._connect_future = None
            if not connect_future.done():
                connect_future.set_result(self)
        if hasattr(transport, "write"):
            self._write_transport = transport  # type: ignore[assignment]
            transport.set_write_buffer_limits(high=0)
            self._flush_early_writes(transport)
            self._resolve_drained_writes()
        if self._paused_by_user or self._paused_for_buffer:
            self._reading_paused = False
            self._set_reading_paused()

    def _set_write_transport(self, transport: asyncio.WriteTransport) -> None:
        # For streams whose reading and writing sides are separate transports (pipes).
        self._write_transport = transport
        transport.set_write_buffer_limits(high=0)
        self._flush_early_writes(transport)
        self._resolve_drained_writes()

    def _flush_early_writes(self, transport: Any) -> None:
        # From now on writes go straight to the transport: the early buffer is done with.
        buffer = self._write_buffer
        if buffer is not None:
            self._write_buffer = None
            if buffer:
                transport.write(buffer.take_all())

    def _resolve_drained_writes(self) -> None:
        transport = self._write_transport
        if (
            self._write_futures
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        ):
            self._resume_writing()

    # ---------------------------------------------------------------- closing

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (no arguments) once the stream is closed."""
        self._close_callback = callback
        if callback is not None and self._closed:
            self._schedule_close_callback()

    def close(self, exc_info: _ExcInfo = False) -> None:
        """Close the stream; ``exc_info`` (an exception, a tuple or True) records the cause."""
        if self._closed:
            return
        self._watch_descriptor = False
        exc = _exception_from_exc_info(exc_info)
        if exc is not None:
            self.error = exc
        self._closed = True
        _open_streams.discard(self)
        self.close_fd()
        self._signal_closed()
        # Nothing more arrives: drop what refers back to this stream's owners (the
        # protocol's bound methods, a take-over handler), so no cycle keeps it alive.
        self._protocol.unbind()
        self._drop_data_handler()

    def _attaching_elsewhere(self) -> bool:
        # True when a running attach task owns the socket (and closes it when cancelled).
        task = self._attach_task
        return (
            task is not None
            and not task.done()
            and self._attach_started
            and asyncio.current_task(self._loop) is not task
        )

    def _close_transports(self) -> None:
        task = self._attach_task
        if task is not None and not task.done() and asyncio.current_task(self._loop) is not task:
            task.cancel()
        transport = self._transport
        writer = self._write_transport
        self._transport = None
        self._write_transport = None
        for item in (transport, writer) if writer is not transport else (transport,):
            if item is None or item.is_closing():
                continue
            if item is writer and item.get_write_buffer_size():
                # Unsent bytes are dropped, as when a socket is closed with data queued.
                item.abort()
            else:
                item.close()

    def _signal_closed(self) -> None:
        error = self.error
        future = self._read_future
        if future is not None:
            if self._read_kind == _READ_UNTIL_CLOSE and self._closed_cleanly():
                self._finish_read(len(self._read_buffer))
            else:
                self._clear_read()
                if not future.done():
                    future.set_exception(StreamClosedError(real_error=error))
                    future.exception()  # the caller may not be waiting; do not log it
        futures = self._write_futures or []
        self._write_futures = None
        connect_future = self._connect_future
        self._connect_future = None
        if connect_future is not None:
            futures.append(connect_future)
        futures.extend(self._extra_close_futures())
        for waiter in futures:
            if not waiter.done():
                waiter.set_exception(StreamClosedError(real_error=error))
                waiter.exception()
        buffer = self._write_buffer
        if buffer is not None:
            buffer.clear()  # releases views of the callers' data
        if self._close_callback is not None:
            self._schedule_close_callback()

    def _extra_close_futures(self) -> list[asyncio.Future[Any]]:
        return []

    def _schedule_close_callback(self) -> None:
        callback = self._close_callback
        self._close_callback = None
        if callback is not None:
            self.io_loop.add_callback(callback)

    def closed(self) -> bool:
        """True once the stream is closed (buffered data may still be read)."""
        return self._closed

    def _check_closed(self) -> None:
        if self._closed:
            raise StreamClosedError(real_error=self.error)

    def set_nodelay(self, value: bool) -> None:
        """Turn Nagle's algorithm off (True) or on; streams that are not TCP ignore it."""
        return None


class IOStream(BaseIOStream):
    """A stream over a TCP (or Unix) socket.

    The socket may be connected already (an accepted connection, say) or not, in which case
    call ``connect``::

        stream = IOStream(socket.socket())
        await stream.connect(("example.com", 80))
        await stream.write(b"GET / HTTP/1.0\\r\\nHost: example.com\\r\\n\\r\\n")
        head = await stream.read_until(b"\\r\\n\\r\\n")
    """

    __slots__ = ("socket",)

    def __init__(self, socket: Any, *args: Any, **kwargs: Any) -> None:
        transport = kwargs.pop("_transport", None)
        protocol = kwargs.pop("_protocol", None)
        self.socket = socket
        # The protocol the server already gave the transport, if any, is adopted (and bound
        # to this stream) by BaseIOStream.__init__.
        self._protocol = protocol
        super().__init__(*args, **kwargs)
        if transport is not None:
            return
        if isinstance(socket, ssl.SSLSocket):
            self._adopt_tls_socket(socket)
            return
        if _is_connected(socket):
            self._attach_task = self._loop.create_task(self._attach_connected())

    def _adopt_tls_socket(self, sock: ssl.SSLSocket) -> None:
        raise ValueError("an ssl.SSLSocket needs SSLIOStream")

    async def _attach_connected(self) -> None:
        self._attach_started = True
        # Keep the socket object itself: once the loop made a transport, ``self.socket`` is
        # the transport's view of it, which has no close() (uvloop's raises, asyncio's lacks
        # it). Closing the original is safe either way: a transport that adopted it either
        # holds an I/O reference (uvloop) or shares the same object (asyncio).
        sock = self.socket
        try:
            await self._loop.connect_accepted_socket(lambda: self._protocol, sock)
        except asyncio.CancelledError:
            _close_quietly(sock)
            raise
        except Exception as exc:
            self.close(exc_info=exc)

    @classmethod
    def _from_transport(
        cls, transport: Any, protocol: _StreamProtocol | None = None, **kwargs: Any
    ) -> IOStream:
        """A stream for an accepted connection whose transport asyncio already made.

        ``protocol``, when given, is the transport's current protocol; the stream adopts it
        instead of swapping in its own.
        """
        stream = cls(
            transport.get_extra_info("socket"), _transport=transport, _protocol=protocol, **kwargs
        )
        # Setting the protocol (again) also refreshes loops that cache its callbacks (uvloop).
        transport.set_protocol(stream._protocol)
        stream._connection_made(transport)
        return stream

    def fileno(self) -> Any:
        return self.socket

    def close_fd(self) -> None:
        had_transport = self._transport is not None or self._write_transport is not None
        attaching = self._attaching_elsewhere()
        if not had_transport and self._write_buffer and self._connect_future is None:
            self._flush_before_attach()
        self._close_transports()
        if not had_transport and not attaching:
            # Nobody else owns the socket yet (a cancelled attach closes it itself).
            try:
                self._plain_socket().close()
            except (OSError, AttributeError):
                pass

    def _forget_descriptor(self) -> None:
        sock = self._plain_socket()
        inner = getattr(sock, "_sock", sock)  # asyncio's TransportSocket wraps the socket
        try:
            inner.detach()
        except Exception:
            pass  # nothing to detach (uvloop already owns the descriptor)

    def _connection_made(self, transport: Any) -> None:
        # The loop may have taken the socket object over (uvloop detaches it): from now on
        # the transport's view of the socket is the live one.
        sock = transport.get_extra_info("socket")
        if sock is not None and not self._closed:
            self._set_plain_socket(sock)
            try:
                self._watch_descriptor = sock.fileno() >= 0
            except (OSError, ValueError):
                self._watch_descriptor = False
        super()._connection_made(transport)

    def _set_plain_socket(self, sock: Any) -> None:
        self.socket = sock

    def _flush_before_attach(self) -> None:
        # Closed right after writing to a connected socket the loop has not taken over yet:
        # send what the kernel accepts now, as a plain socket would have.
        sock = self._plain_socket()
        if not isinstance(sock, socket.socket) or not _is_connected(sock):
            return
        buffer = self._write_buffer
        if buffer is None:
            return
        data = buffer.take_all()
        try:
            sock.setblocking(False)
            sock.send(data)
        except OSError:
            pass

    def get_fd_error(self) -> Exception | None:
        code = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return OSError(code, os.strerror(code))

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        return super().read_from_fd(buf)

    def write_to_fd(self, data: memoryview) -> int:
        return super().write_to_fd(data)

    def connect(self, address: Any, server_hostname: str | None = None) -> asyncio.Future[Any]:
        """Connect the (unconnected) socket to ``address``; resolves to this stream.

        Writes issued before the connection is up are sent once it is; on failure the
        Future raises ``StreamClosedError`` and ``error`` holds the cause.
        """
        if self._closed:
            raise StreamClosedError(real_error=self.error)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._connect_future = future
        self._attach_task = self._loop.create_task(self._connect(address, server_hostname))
        future.add_done_callback(self._on_connect_future_done)
        return future

    def _on_connect_future_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.close()

    def _plain_socket(self) -> Any:
        return self.socket

    async def _connect(self, address: Any, server_hostname: str | None) -> None:
        self._attach_started = True
        sock = self._plain_socket()
        try:
            sock.setblocking(False)
            try:
                sock.connect(address)
            except (BlockingIOError, InterruptedError):
                await self._wait_for_connect(sock)
            await self._open_client_transport(sock, server_hostname)
        except asyncio.CancelledError:
            _close_quietly(sock)
            raise
        except Exception as exc:
            self._fail_connect(exc)
            return
        future = self._connect_future
        self._connect_future = None
        if future is not None and not future.done():
            future.set_result(self)
        self._resolve_drained_writes()

    def _fail_connect(self, exc: BaseException) -> None:
        self.close(exc_info=exc)

    async def _wait_for_connect(self, sock: socket.socket) -> None:
        loop = self._loop
        ready: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()
        # (A module function, not a closure: compiled, a coroutine's locals and its
        # closures share one scope, and a closure kept in a local would be a cycle.)
        loop.add_writer(fd, _resolve_ready, ready)
        try:
            await ready
        finally:
            loop.remove_writer(fd)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))

    async def _open_client_transport(
        self, sock: socket.socket, server_hostname: str | None
    ) -> None:
        await self._loop.create_connection(lambda: self._protocol, sock=sock)

    def start_tls(
        self,
        server_side: bool,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Awaitable[SSLIOStream]:
        """Upgrade this connected, idle stream to TLS; resolves to a new ``SSLIOStream``.

        This stream must not be used afterwards; its close callback moves to the new one.
        """
        if (
            self._read_future is not None
            or self._write_futures
            or self._connect_future is not None
            or self._closed
            or self._read_buffer
            or self.writing()
            or self._transport is None
        ):
            raise ValueError("IOStream is not idle; cannot convert to SSL")
        if ssl_options is None:
            ssl_options = _server_ssl_defaults if server_side else _client_ssl_defaults
        context = netutil.ssl_options_to_context(ssl_options, server_side=server_side)
        raw_transport: Any = self._transport
        close_callback = self._close_callback
        self._close_callback = None
        self._transport = None
        self._write_transport = None
        self._closed = True
        tls_stream = SSLIOStream(
            self.socket,
            ssl_options=context,
            max_buffer_size=self.max_buffer_size,
            read_chunk_size=self.read_chunk_size,
            max_write_buffer_size=self.max_write_buffer_size,
            _transport=raw_transport,
        )
        tls_stream.set_close_callback(close_callback)
        handshake = tls_stream._start_handshake(raw_transport, server_side, server_hostname)
        self._protocol.unbind()  # the transport now reports to the TLS stream
        return handshake

    def set_nodelay(self, value: bool) -> None:
        _set_tcp_nodelay(self.socket, value, self._closed)


def _resolve_ready(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except (OSError, AttributeError, TypeError):
        pass  # a transport's socket view, or already gone


def _is_connected(sock: Any) -> bool:
    try:
        sock.getpeername()
    except (OSError, AttributeError):
        return False
    return True


class SSLIOStream(IOStream):
    """A TLS stream.

    Pass ``ssl_options`` (an ``ssl.SSLContext`` or a dict for ``ssl_options_to_context``) and
    call ``connect`` for a client, or wrap an ``ssl.SSLSocket`` made with
    ``do_handshake_on_connect=False``. Reads and writes wait for the handshake.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ssl_options = kwargs.pop("ssl_options", _client_ssl_defaults)
        self._handshake_done = False
        self._handshake_future: asyncio.Future[Any] | None = None
        self._handshake_waiter: asyncio.Future[Any] | None = None
        self._server_hostname: str | None = None
        # The plain transport under TLS (kept after the handshake for write accounting).
        self._raw_transport: Any = None
        super().__init__(*args, **kwargs)
        self._raw_socket = self.socket
        self.socket = _TLSSocketView(self.socket, self)

    def _plain_socket(self) -> Any:
        return self._raw_socket

    def _set_plain_socket(self, sock: Any) -> None:
        self._raw_socket = sock
        self.socket = _TLSSocketView(sock, self)

    def _ssl_object(self) -> Any:
        transport = self._transport
        if transport is None or not self._handshake_done:
            return None
        return transport.get_extra_info("ssl_object")

    def _adopt_tls_socket(self, sock: ssl.SSLSocket) -> None:
        context = sock.context
        server_side = sock.server_side
        server_hostname = sock.server_hostname
        connected = _is_connected(sock)
        raw = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.socket = raw
        self._ssl_options = context
        if connected:
            self._attach_task = self._loop.create_task(
                self._attach_tls(raw, context, server_side, server_hostname)
            )

    async def _attach_connected(self) -> None:
        self._attach_started = True
        context = netutil.ssl_options_to_context(self._ssl_options, server_side=False)
        await self._attach_tls(self._raw_socket, context, False, None)

    async def _attach_tls(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        self._attach_started = True
        try:
            await self._plain_then_tls(sock, context, server_side, server_hostname)
        except asyncio.CancelledError:
            _close_quietly(sock)
            raise
        except Exception as exc:
            self._handshake_failed(exc)

    async def _plain_then_tls(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        """Give the connected ``sock`` a plain transport, then run TLS over it.

        Going through ``start_tls`` (rather than letting the loop wrap the socket) keeps the
        plain transport in reach, so its buffer counts in ``writing()`` and write futures.
        """
        early = _EarlyBytesProtocol()
        loop = self._loop
        if server_side:
            raw, _ = await loop.connect_accepted_socket(lambda: early, sock)
        else:
            raw, _ = await loop.create_connection(lambda: early, sock=sock)
        raw.pause_reading()
        self._raw_transport = raw
        await self._run_start_tls(raw, early, context, server_side, server_hostname)

    def _connection_made(self, transport: Any) -> None:
        self._handshake_done = True
        # A data handler may have been set during the handshake; loops that cache the
        # protocol's callbacks (uvloop) pick it up when the protocol is set again.
        if not self._closed and transport.get_protocol() is self._protocol:
            transport.set_protocol(self._protocol)
        super()._connection_made(transport)

    def _handshake_succeeded(self) -> None:
        self._handshake_done = True
        for name in ("_handshake_future", "_handshake_waiter"):
            future = getattr(self, name)
            setattr(self, name, None)
            if future is not None and not future.done():
                future.set_result(self)

    def _handshake_failed(self, exc: BaseException) -> None:
        tls_error = isinstance(exc, (ssl.SSLError, ssl.CertificateError, ValueError))
        if tls_error or not _is_connection_reset(exc):
            gen_log.warning(
                "SSL Error on %s %s: %s", self._fileno_for_log(), self._peer_name(), exc
            )
        # The handshake's own waiters see a TLS error itself; a lost connection is reported
        # like any other closed stream.
        for name in ("_handshake_future", "_handshake_waiter", "_connect_future"):
            future = getattr(self, name)
            setattr(self, name, None)
            if future is not None and not future.done():
                future.set_exception(exc if tls_error else StreamClosedError(real_error=exc))
                future.exception()
        self.close(exc_info=exc)

    def _peer_name(self) -> Any:
        try:
            return self._raw_socket.getpeername()
        except (OSError, AttributeError, ValueError):
            return None

    def _fileno_for_log(self) -> Any:
        try:
            return self._raw_socket.fileno()
        except (OSError, AttributeError, ValueError):
            return -1

    def _start_handshake(
        self, raw_transport: asyncio.Transport, server_side: bool, server_hostname: str | None
    ) -> asyncio.Future[Any]:
        """Run TLS over an existing plain transport; resolves to this stream."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._handshake_future = future
        self._raw_transport = raw_transport
        context = netutil.ssl_options_to_context(self._ssl_options, server_side=server_side)
        # Until the TLS layer is in place, whatever arrives (a ClientHello, typically: some
        # loops keep reading despite pause_reading) is held here, then handed to TLS.
        early = _EarlyBytesProtocol()
        raw_transport.set_protocol(early)
        raw_transport.pause_reading()
        self._attach_task = self._loop.create_task(
            self._run_start_tls(raw_transport, early, context, server_side, server_hostname)
        )
        future.add_done_callback(self._on_handshake_future_done)
        return future

    def _on_handshake_future_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self.close()

    async def _run_start_tls(
        self,
        raw_transport: asyncio.Transport,
        early: _EarlyBytesProtocol,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        if early.lost is not None or raw_transport.is_closing():
            raw_transport.abort()
            self._handshake_failed(
                early.lost or ConnectionResetError("connection lost before the TLS handshake")
            )
            return
        # Runs after start_tls has installed its protocol and before that protocol starts the
        # handshake or reading resumes, so held bytes keep their place in the stream.
        self._loop.call_soon(_feed_early_bytes, raw_transport, early)
        try:
            tls_transport = await self._loop.start_tls(
                raw_transport,
                self._protocol,
                context,
                server_side=server_side,
                server_hostname=server_hostname if not server_side else None,
            )
        except asyncio.CancelledError:
            raw_transport.abort()
            raise
        except Exception as exc:
            raw_transport.abort()
            self._handshake_failed(exc)
            return
        if tls_transport is None or self._closed:
            if tls_transport is not None:
                tls_transport.abort()
            return
        tls_protocol = raw_transport.get_protocol()
        if hasattr(tls_protocol, "get_buffer"):
            # Watch the plain transport drain too: its buffer is part of what write() waits for.
            raw_transport.set_protocol(_DrainWatch(tls_protocol, self._raw_drained))
            raw_transport.set_write_buffer_limits(high=0)
        else:
            self._raw_transport = None  # cannot watch it: count the TLS layer's buffer alone
        self._connection_made(tls_transport)
        self._handshake_succeeded()

    async def _open_client_transport(
        self, sock: socket.socket, server_hostname: str | None
    ) -> None:
        context = netutil.ssl_options_to_context(self._ssl_options, server_side=False)
        hostname = server_hostname if server_hostname is not None else self._server_hostname
        await self._plain_then_tls(sock, context, False, hostname)

    def connect(self, address: Any, server_hostname: str | None = None) -> asyncio.Future[Any]:
        self._server_hostname = server_hostname
        return super().connect(address, server_hostname)

    def wait_for_handshake(self) -> asyncio.Future[Any]:
        """A Future resolved (to this stream) when the TLS handshake has completed."""
        if self._handshake_waiter is not None:
            raise RuntimeError("Already waiting")
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._handshake_done:
            future.set_result(self)
        elif self._closed:
            future.set_exception(StreamClosedError(real_error=self.error))
        else:
            self._handshake_waiter = future
        return future

    def _extra_close_futures(self) -> list[asyncio.Future[Any]]:
        futures = []
        for name in ("_handshake_future", "_handshake_waiter"):
            future = getattr(self, name)
            setattr(self, name, None)
            if future is not None:
                futures.append(future)
        return futures

    def close_fd(self) -> None:
        raw = self._raw_transport
        self._raw_transport = None
        if raw is not None and self._transport is None and not raw.is_closing():
            # No TLS transport yet to close it: the handshake is still running.
            raw.abort()  # type: ignore[attr-defined]
        had_transport = self._transport is not None
        attaching = self._attaching_elsewhere()
        self._close_transports()
        if not had_transport and not attaching and raw is None:
            try:
                self._raw_socket.close()
            except (OSError, AttributeError):
                pass

    def set_nodelay(self, value: bool) -> None:
        _set_tcp_nodelay(self._raw_socket, value, self._closed)

    def get_fd_error(self) -> Exception | None:
        code = self._raw_socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return OSError(code, os.strerror(code))

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        return super().read_from_fd(buf)

    def write_to_fd(self, data: memoryview) -> int:
        return super().write_to_fd(data)

    def reading(self) -> bool:
        return super().reading()

    # Encrypted bytes may still wait in the plain transport below the TLS one.
    _settles_on_write_transport = False

    def writing(self) -> bool:
        if super().writing():
            return True
        raw = self._raw_transport
        return raw is not None and self._transport is not None and raw.get_write_buffer_size() > 0

    def _pending_write_size(self) -> int:
        size = super()._pending_write_size()
        raw = self._raw_transport
        if raw is not None and self._transport is not None:
            size += raw.get_write_buffer_size()
        return size

    def _resume_writing(self) -> None:
        # The TLS layer drained; the plain transport below may still hold bytes.
        if not self.writing():
            super()._resume_writing()

    def _raw_drained(self) -> None:
        if not self.writing():
            super()._resume_writing()


class PipeIOStream(BaseIOStream):
    """A stream over a pipe (or another non-socket file descriptor).

    A read-only descriptor can only be read and a write-only one only written; the stream
    takes ownership of ``fd`` and closes it.
    """

    def __init__(self, fd: int, *args: Any, **kwargs: Any) -> None:
        self.fd = fd
        # The stream keeps ``fd`` itself; each transport gets a duplicate it may close as it
        # likes (uvloop closes descriptors on its own, asyncio through the file object), so
        # no descriptor is ever closed twice.
        self._fio = io.FileIO(fd, "r+", closefd=True)
        super().__init__(*args, **kwargs)
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        self._readable = mode in (os.O_RDONLY, os.O_RDWR)
        self._writable = mode in (os.O_WRONLY, os.O_RDWR)
        self._attach_task = self._loop.create_task(self._attach_pipe())

    async def _attach_pipe(self) -> None:
        self._attach_started = True
        loop = self._loop
        loop_closes_fds = type(loop).__module__.startswith("uvloop")
        try:
            if self._readable:
                reader = _PipeHandle(os.dup(self.fd), close_on_close=not loop_closes_fds)
                await loop.connect_read_pipe(lambda: self._protocol, reader)
            if self._writable:
                writer_protocol = _PipeWriterProtocol(self)
                writer = _PipeHandle(os.dup(self.fd), close_on_close=not loop_closes_fds)
                await loop.connect_write_pipe(lambda: writer_protocol, writer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.close(exc_info=exc)

    def _connection_made(self, transport: Any) -> None:
        if self._closed:
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = transport
        _open_streams.add(self)
        if self._paused_by_user or self._paused_for_buffer:
            self._reading_paused = False
            self._set_reading_paused()

    def _write_nowait(self, data: bytes | bytearray | memoryview) -> None:
        if not self._writable and not self._closed:
            exc = OSError(errno.EBADF, "pipe is not open for writing")
            self.close(exc_info=exc)
        super()._write_nowait(data)

    def fileno(self) -> int:
        return self.fd

    def close_fd(self) -> None:
        self._close_transports()
        self._fio.close()

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        return super().read_from_fd(buf)

    def write_to_fd(self, data: memoryview) -> int:
        return super().write_to_fd(data)


def doctests() -> Any:
    """The module's doctests, as a unittest suite."""
    import doctest

    return doctest.DocTestSuite(sys.modules[__name__])


def _set_tcp_nodelay(sock: Any, value: bool, closed: bool) -> None:
    """Sets TCP_NODELAY on a TCP socket; quietly does nothing for other sockets."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)
    except ValueError:
        return  # a socket view whose descriptor is already gone
    except OSError as exc:
        # The connection may already be gone (EINVAL on some platforms).
        if exc.errno != errno.EINVAL and not closed:
            raise
