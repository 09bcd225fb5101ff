"""The manager <-> worker control channel: one JSON object per line over a socketpair.

Worker to manager: ``ready``, ``hb`` (heartbeat, sent from the worker's event loop),
``boot-failed``, ``recycle`` (asks to be replaced: a limit was reached), ``draining``.
Manager to worker: ``drain`` (with ``reason`` and ``timeout``), ``stop`` (fast), ``reopen``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Optional

_MAX_LINE = 64 * 1024


class Channel:
    """One end of the control socketpair, on the running event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=_MAX_LINE)
        return cls(reader, writer)

    def send(self, kind: str, **fields: Any) -> None:
        """Queues one message; never blocks (a closed peer is ignored)."""
        if self._writer.is_closing():
            return
        fields["t"] = kind
        self._writer.write(json.dumps(fields, separators=(",", ":")).encode() + b"\n")

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def receive(self) -> Optional[dict[str, Any]]:
        """The next message, or None once the other end has gone away."""
        while True:
            try:
                line = await self._reader.readline()
            except (ConnectionError, ValueError, asyncio.LimitOverrunError):
                return None
            if not line:
                return None
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours; a stray write must not kill the channel
            if isinstance(message, dict) and isinstance(message.get("t"), str):
                return message

    def close(self) -> None:
        self._writer.close()
