"""Byte buffers used by :mod:`squall.iostream`.

``_StreamBuffer`` holds outgoing data queued before a stream has a transport. Small pieces are
merged into bytearrays; large ones are kept by reference (as memoryviews) so a big write is not
copied, and every view is released as soon as its bytes are consumed so the caller can resize
its own buffer again.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Union

Buffer = Union[bytes, bytearray, memoryview]


def as_byte_view(data: Buffer) -> memoryview:
    """A one-byte-per-item memoryview of ``data`` (typed memoryviews are cast)."""
    view = memoryview(data)
    if view.itemsize != 1 or view.format != "B":
        view = view.cast("B")
    return view


class _StreamBuffer:
    """A FIFO of bytes supporting append, peek and advance without quadratic copying."""

    __slots__ = ("_buffers", "_first_pos", "_size", "_large_buf_threshold")

    def __init__(self) -> None:
        # Each entry is (is_large, data): small entries are bytearrays we own and may extend;
        # large entries are memoryviews over the caller's objects.
        self._buffers: collections.deque[tuple[bool, bytearray | memoryview]] = collections.deque()
        self._first_pos = 0
        self._size = 0
        self._large_buf_threshold = 2048

    def __len__(self) -> int:
        return self._size

    def append(self, data: Buffer) -> None:
        """Queue ``data`` at the end."""
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size == 0:
            return
        if size > self._large_buf_threshold:
            self._buffers.append((True, as_byte_view(data)))
        else:
            buffers = self._buffers
            if buffers:
                is_large, last = buffers[-1]
                if not is_large and len(last) < self._large_buf_threshold:
                    last += data  # type: ignore[operator]
                    self._size += size
                    return
            buffers.append((False, bytearray(data)))
        self._size += size

    @contextlib.contextmanager
    def peek(self, size: int) -> Iterator[memoryview]:
        """A view of at most ``size`` bytes from the front (released on exit)."""
        if not self._buffers:
            view = memoryview(b"")
        else:
            _, first = self._buffers[0]
            pos = self._first_pos
            view = memoryview(first)[pos : pos + size]
        try:
            yield view
        finally:
            view.release()

    def advance(self, size: int) -> None:
        """Drop ``size`` bytes from the front."""
        if not 0 < size <= self._size:
            if size == 0:
                return
            raise ValueError("cannot advance past the end of the buffer")
        self._size -= size
        buffers = self._buffers
        pos = self._first_pos
        while size:
            is_large, first = buffers[0]
            remaining = len(first) - pos
            if size < remaining:
                pos += size
                break
            size -= remaining
            buffers.popleft()
            if is_large:
                first.release()  # type: ignore[union-attr]
            pos = 0
        if pos and not buffers[0][0]:
            # Trim consumed bytes from an owned bytearray (amortised O(1) in CPython).
            del buffers[0][1][:pos]  # type: ignore[union-attr]
            pos = 0
        self._first_pos = pos

    def take_all(self) -> bytes:
        """Everything queued, joined into one bytes object; the buffer is left empty."""
        pos = self._first_pos
        parts = [
            bytes(item[1][pos:]) if index == 0 else bytes(item[1])
            for index, item in enumerate(self._buffers)
        ]
        self.clear()
        return b"".join(parts)

    def clear(self) -> None:
        """Drop everything and release every view of the caller's data."""
        for is_large, item in self._buffers:
            if is_large:
                item.release()  # type: ignore[union-attr]
        self._buffers.clear()
        self._first_pos = 0
        self._size = 0
