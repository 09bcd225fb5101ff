"""The WebSocket client against a raw, misbehaving server: what arrived whole before a bad
frame is delivered, in order, and then the connection fails with the right close code."""

import asyncio
import base64
import hashlib
import struct

import pytest

from squall.websocket import websocket_connect

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """An unmasked server frame."""
    first = (0x80 if fin else 0) | rsv | opcode
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    return bytes([first, 126]) + struct.pack("!H", len(payload)) + payload


class RawServer:
    """Accepts one WebSocket handshake, then writes ``frames`` in a single TCP write and
    records every close frame the client sends back."""

    def __init__(self, frames: bytes) -> None:
        self.frames = frames
        self.client_close: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                + self.frames
            )
            await writer.drain()
            # the client's answer: a masked close frame (2-byte head + 4-byte mask + payload)
            head2 = await asyncio.wait_for(reader.readexactly(2), 10)
            length = head2[1] & 0x7F
            mask = await reader.readexactly(4)
            payload = await reader.readexactly(length)
            unmasked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if not self.client_close.done():
                self.client_close.set_result(bytes([head2[0]]) + unmasked)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as error:
            if not self.client_close.done():
                self.client_close.set_exception(error)
        finally:
            writer.close()


BAD_FRAMES = {
    "reserved opcode": frame(0x3, b"x"),
    "reserved bit": frame(0x1, b"x", rsv=0x40),
    "invalid UTF-8": frame(0x1, b"\xc3\x28"),
    "invalid UTF-8 in a first fragment": frame(0x1, b"ok \xff", fin=False) + frame(0x0, b"!"),
    "fragmented control frame": frame(0x9, b"", fin=False),
    "continuation without a start": frame(0x0, b"x"),
    "oversized control frame": frame(0x9, b"p" * 126),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_client_delivers_valid_messages_before_failing(name: str) -> None:
    good = frame(0x1, b"first") + frame(0x2, b"\x00second") + frame(0x1, "thïrd".encode())
    frames = good + BAD_FRAMES[name] + frame(0x1, b"never delivered")
    server = RawServer(frames)
    async with server as port:
        client = await websocket_connect(f"ws://127.0.0.1:{port}/")
        received = []
        while True:
            message = await asyncio.wait_for(client.read_message(), 10)
            if message is None:
                break
            received.append(message)
        assert received == ["first", b"\x00second", "thïrd"]
        expected = 1007 if "UTF-8" in name else 1002
        # the close frame the client sent: opcode 0x88, then the code
        sent = await asyncio.wait_for(server.client_close, 10)
        assert sent[0] == 0x88
        assert struct.unpack("!H", sent[1:3])[0] == expected
        client.close()
