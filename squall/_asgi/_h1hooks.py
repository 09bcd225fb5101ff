"""The two places where the ASGI server reaches below ``HTTPConnection``.

Trailers and zero-copy file bodies need to know how ``HTTP1Connection`` frames the body
it is sending, which its public interface does not say. Everything that reads or changes
its private state lives here, each step checking that the state looks as expected; when
it does not (another connection class, a changed ``HTTP1Connection``), the callers take
their portable path: trailers are dropped, files are sent through ``write()``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional

from squall.iostream import StreamClosedError

# a file goes out in pieces of this size when it cannot go zero-copy
_COPY_PIECE = 256 * 1024
# largest single sendfile call; the kernel takes what fits in the socket buffer anyway
_SENDFILE_PIECE = 4 * 1024 * 1024
# written through the transport when the socket is full, so that its drain tells us when
# the kernel has room again (there is no way to wait for writability on a socket asyncio
# or uvloop already watch)
_NUDGE_PIECE = 16 * 1024


def _is_http1(conn: Any) -> bool:
    from squall.http1connection import HTTP1Connection

    return isinstance(conn, HTTP1Connection)


def is_chunking(conn: Any) -> bool:
    """True when ``conn`` frames the body it is writing as HTTP/1.1 chunks."""
    return _is_http1(conn) and getattr(conn, "_chunking_output", None) is True


def finish_with_trailers(conn: Any, fields: list[tuple[bytes, bytes]]) -> bool:
    """Ends a chunked body with trailer fields; False when ``conn`` cannot carry them
    (then the caller just finishes)."""
    stream = getattr(conn, "stream", None)
    if not is_chunking(conn) or stream is None or stream.closed():
        return False
    lines = [b"0\r\n"]
    for name, value in fields:
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    # the last chunk goes out here, so the connection must not write its own
    conn._chunking_output = False
    stream.write(b"".join(lines)).add_done_callback(_consume)
    conn.finish()
    return True


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def zero_copy_stream(conn: Any, count: int) -> Optional[Any]:
    """The plain TCP stream to ``os.sendfile`` ``count`` body bytes into, or None.

    Only for an HTTP/1 response framed by Content-Length that still expects exactly
    ``count`` bytes, on a stream that is not TLS.
    """
    if not _is_http1(conn):
        return None
    if getattr(conn, "_chunking_output", None) is not False:
        return None
    if getattr(conn, "_body_allowed", None) is not True:
        return None
    if getattr(conn, "_expected_content_remaining", None) != count:
        return None
    stream = getattr(conn, "stream", None)
    if stream is None or stream.closed():
        return None
    from squall.iostream import SSLIOStream

    if isinstance(stream, SSLIOStream):
        return None
    sock = getattr(stream, "socket", None)
    try:
        sock.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return None
    return stream


def count_body(conn: Any, sent: int) -> None:
    """Tells ``conn`` that ``sent`` body bytes went out around it (by sendfile)."""
    conn._expected_content_remaining -= sent


async def sendfile(stream: Any, fd: int, offset: int, count: int) -> int:
    """Sends ``count`` bytes of file ``fd`` from ``offset``; returns how many went out.

    ``os.sendfile`` moves the bytes in the kernel while the socket has room; when it is
    full, a small piece goes through the stream, and its write future resolves once the
    kernel took it, i.e. once there is room again. Fewer bytes than ``count`` means the
    file was shorter than announced.
    """
    sock_fd = stream.socket.fileno()
    sent_total = 0
    while sent_total < count:
        if stream.closed():
            raise StreamClosedError()
        if stream.writing():
            # bytes queued before ours must go first
            await stream.write(b"")
            continue
        piece = min(count - sent_total, _SENDFILE_PIECE)
        try:
            sent = os.sendfile(sock_fd, fd, offset + sent_total, piece)
        except BlockingIOError:
            data = os.pread(fd, min(piece, _NUDGE_PIECE), offset + sent_total)
            if not data:
                return sent_total
            sent_total += len(data)
            await stream.write(data)
            continue
        except (BrokenPipeError, ConnectionError) as error:
            raise StreamClosedError(real_error=error) from None
        if sent == 0:
            return sent_total  # end of file
        sent_total += sent
    return sent_total


async def copy_file(conn: Any, fd: int, offset: int, count: int) -> int:
    """The portable path: the file through ``conn.write`` in pieces, each awaited."""
    sent_total = 0
    while sent_total < count:
        data = os.pread(fd, min(count - sent_total, _COPY_PIECE), offset + sent_total)
        if not data:
            break
        sent_total += len(data)
        await conn.write(data)
    return sent_total
