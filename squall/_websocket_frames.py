"""Sans-IO WebSocket framing (RFC 6455) and permessage-deflate (RFC 7692).

Nothing here touches a socket: a :class:`MessageReader` is fed received bytes and hands back
whole messages and control frames, a :class:`MessageWriter` turns messages into bytes to
send, and the handshake helpers compute accept keys and negotiate compression. The same
code can therefore serve HTTP/1.1 upgrades, HTTP/2 or ASGI transports, and is tested
without any I/O.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import os
import struct
import zlib
from typing import Any

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA

# The bits of a frame header (RFC 6455 section 5.2). First byte: FIN, three reserved bits
# (RSV1 marks a compressed message, RFC 7692), then the opcode in the low nibble.
FIN, RSV1, RSV2, RSV3 = 0x80, 0x40, 0x20, 0x10
RSV_MASK = RSV1 | RSV2 | RSV3
OPCODE_MASK = 0x0F
# Second byte: the MASK flag, then a 7-bit length.
MASK_BIT = 0x80

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MANDATORY_EXTENSION = 1010
CLOSE_INTERNAL_ERROR = 1011

# Control frames carry at most 125 bytes (RFC 6455 section 5.5).
MAX_CONTROL_PAYLOAD = 125

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Every compressed message ends with this empty stored block; RFC 7692 strips it on the
# wire and the receiver appends it back before inflating.
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_DATA_OPCODES = (OPCODE_TEXT, OPCODE_BINARY)
_CONTROL_OPCODES = (OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG)

# compression_options as WebSocketHandler.get_compression_options returns it (None: no
# compression).
_Options = dict[str, Any] | None

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_unpack_16 = struct.Struct("!H").unpack_from
_unpack_64 = struct.Struct("!Q").unpack_from
_utf8_incremental = codecs.getincrementaldecoder("utf-8")


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must fail with close ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class _DecompressTooLargeError(Exception):
    """A compressed message inflates past the allowed message size."""


def mask_payload(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated over its length (RFC 6455 5.3).

    The XOR runs on two big integers, so its cost is a few C-level passes over the data
    rather than a Python loop per byte.
    """
    if len(mask) != 4:
        raise ValueError("a WebSocket mask must be exactly 4 bytes")
    length = len(data)
    if not length:
        return b""
    key = mask * (length >> 2) + mask[: length & 3]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
        length, "little"
    )


def compute_accept_value(key: str | bytes) -> str:
    """The ``Sec-WebSocket-Accept`` value answering a ``Sec-WebSocket-Key``."""
    if isinstance(key, str):
        key = key.encode("latin-1")
    return base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest()).decode("ascii")


def is_valid_key(key: str) -> bool:
    """True when ``key`` is the base64 form of 16 bytes, as RFC 6455 4.1 requires."""
    if len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False


def new_key() -> str:
    """A fresh random ``Sec-WebSocket-Key`` for a client handshake."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def is_sendable_close_code(code: int) -> bool:
    """Codes an endpoint may put in a close frame (1005, 1006 and 1015 are local only)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def encode_close_payload(code: int | None, reason: str | None) -> bytes:
    """Payload of a close frame; an empty payload when there is no code."""
    if code is None:
        if reason is None:
            return b""
        code = CLOSE_NORMAL
    if not is_sendable_close_code(code):
        raise ValueError(f"invalid WebSocket close code {code}")
    encoded = reason.encode("utf-8") if reason else b""
    if len(encoded) > MAX_CONTROL_PAYLOAD - 2:
        # Cut at a character boundary so the reason stays valid UTF-8.
        encoded = encoded[: MAX_CONTROL_PAYLOAD - 2].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + encoded


def decode_close_payload(payload: bytes) -> tuple[int | None, str | None]:
    """The (code, reason) of a received close frame; :class:`ProtocolError` if malformed."""
    if not payload:
        return None, None
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "truncated close code")
    code = _unpack_16(payload)[0]
    if not is_sendable_close_code(code):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "invalid close code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8")
    return code, reason


# --- permessage-deflate --------------------------------------------------------------------


def _window_bits(value: int | None) -> int:
    if value is None:
        return zlib.MAX_WBITS
    if not 8 <= value <= zlib.MAX_WBITS:
        raise ValueError(f"window bits must be between 8 and 15, not {value}")
    return value


class _PerMessageDeflateCompressor:
    """Compresses whole messages for permessage-deflate.

    ``persistent`` keeps the LZ77 window from one message to the next (context takeover);
    otherwise each message is compressed on its own.
    """

    __slots__ = ("_persistent", "_compressor")

    def __init__(
        self, persistent: bool, max_wbits: int | None, compression_options: _Options = None
    ) -> None:
        wbits = _window_bits(max_wbits)
        if wbits < 9:
            # zlib cannot deflate with a 256-byte window; negotiation never agrees to it.
            raise ValueError("zlib cannot compress with an 8-bit window")
        options = compression_options or {}
        self._persistent = persistent
        self._compressor = zlib.compressobj(
            options.get("compression_level", zlib.Z_DEFAULT_COMPRESSION),
            zlib.DEFLATED,
            -wbits,
            options.get("mem_level", 8),
        )

    def compress(self, data: bytes) -> bytes:
        """One message's compressed payload, without the trailing empty block."""
        compressor = self._compressor
        # A full flush also forgets the window, so no later message refers back to this one.
        mode = zlib.Z_SYNC_FLUSH if self._persistent else zlib.Z_FULL_FLUSH
        out = compressor.compress(data) + compressor.flush(mode)
        if out.endswith(_DEFLATE_TAIL):
            return out[:-4]
        return out


class _PerMessageDeflateDecompressor:
    """Inflates permessage-deflate messages, never producing more than the size limit.

    Output is requested with zlib's ``max_length``, so a small "bomb" that would inflate to
    gigabytes costs at most ``max_message_size`` bytes before it is refused.
    """

    __slots__ = ("_persistent", "_wbits", "_max_message_size", "_decompressor")

    def __init__(
        self,
        persistent: bool,
        max_wbits: int | None,
        max_message_size: int | None,
        compression_options: _Options = None,
    ) -> None:
        # Inflating with a larger window than the sender used is always correct, and zlib may
        # itself deflate with 9 bits when 8 were asked for.
        self._wbits = max(9, _window_bits(max_wbits))
        self._persistent = persistent
        self._max_message_size = max_message_size
        self._decompressor = zlib.decompressobj(-self._wbits)

    def decompress(self, data: bytes) -> bytes:
        """Inflate one whole message; :class:`_DecompressTooLargeError` past the limit."""
        limit = self._max_message_size
        return self.decompress_part(data + _DEFLATE_TAIL, limit, last=True)

    def decompress_part(self, data: bytes, limit: int | None, *, last: bool) -> bytes:
        """Inflate part of a message, allowing at most ``limit`` more bytes of output.

        ``last`` marks the end of the message: the caller has appended the empty block and
        the window is dropped unless context takeover was agreed.
        """
        decompressor = self._decompressor
        try:
            if limit is None:
                out = decompressor.decompress(data)
            else:
                # Asking for one byte more than allowed tells "exactly full" from "too big".
                out = decompressor.decompress(data, limit + 1)
                if len(out) > limit:
                    raise _DecompressTooLargeError()
        except zlib.error as exc:
            raise ProtocolError(CLOSE_INVALID_DATA, f"invalid compressed data: {exc}")
        if last and (not self._persistent or decompressor.eof):
            # A sender that ended its stream (BFINAL) starts a new one with the next message.
            self._decompressor = zlib.decompressobj(-self._wbits)
        return out


class DeflateParameters:
    """The permessage-deflate settings both sides agreed on, seen from one endpoint."""

    __slots__ = (
        "compress_persistent",
        "compress_wbits",
        "decompress_persistent",
        "decompress_wbits",
    )

    def __init__(
        self,
        compress_persistent: bool = True,
        compress_wbits: int = zlib.MAX_WBITS,
        decompress_persistent: bool = True,
        decompress_wbits: int = zlib.MAX_WBITS,
    ) -> None:
        self.compress_persistent = compress_persistent
        self.compress_wbits = compress_wbits
        self.decompress_persistent = decompress_persistent
        self.decompress_wbits = decompress_wbits

    def __repr__(self) -> str:
        return (
            f"DeflateParameters(compress_persistent={self.compress_persistent}, "
            f"compress_wbits={self.compress_wbits}, "
            f"decompress_persistent={self.decompress_persistent}, "
            f"decompress_wbits={self.decompress_wbits})"
        )

    def compressor(
        self, compression_options: _Options
    ) -> _PerMessageDeflateCompressor:
        return _PerMessageDeflateCompressor(
            self.compress_persistent, self.compress_wbits, compression_options
        )

    def decompressor(
        self, max_message_size: int | None, compression_options: _Options
    ) -> _PerMessageDeflateDecompressor:
        return _PerMessageDeflateDecompressor(
            self.decompress_persistent,
            self.decompress_wbits,
            max_message_size,
            compression_options,
        )


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in value:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def parse_extension_header(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse ``Sec-WebSocket-Extensions`` into ``[(name, [(param, value or None)])]``."""
    extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
    for item in _split_outside_quotes(value, ","):
        pieces = _split_outside_quotes(item, ";")
        name = pieces[0].strip().lower()
        if not name:
            continue
        params: list[tuple[str, str | None]] = []
        for piece in pieces[1:]:
            key, equals, raw = piece.partition("=")
            key = key.strip().lower()
            if not key:
                continue
            params.append((key, _unquote(raw.strip()) if equals else None))
        extensions.append((name, params))
    return extensions


def _parse_bits(value: str | None) -> int:
    if value is None or not value.isdigit() or len(value) > 2 or value.startswith("0"):
        raise ValueError("bad window bits")
    bits = int(value)
    if not 8 <= bits <= zlib.MAX_WBITS:
        raise ValueError("bad window bits")
    return bits


_DEFLATE_PARAMS = frozenset(
    [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    ]
)


def _option_bits(options: dict[str, Any], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    return _window_bits(int(value))


def _checked_params(params: list[tuple[str, str | None]]) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    for key, value in params:
        if key not in _DEFLATE_PARAMS or key in seen:
            raise ValueError(f"unsupported or repeated parameter {key}")
        if key.endswith("no_context_takeover") and value is not None:
            raise ValueError(f"{key} takes no value")
        seen[key] = value
    return seen


def _accept_one_offer(
    params: list[tuple[str, str | None]], options: dict[str, Any]
) -> tuple[str, DeflateParameters]:
    offer = _checked_params(params)
    response = ["permessage-deflate"]
    agreed = DeflateParameters()

    # Our compressor (server -> client direction). zlib cannot deflate with an 8-bit
    # window, so an offer that demands one is declined and our own preference is raised to 9.
    server_bits = zlib.MAX_WBITS
    bits_limited = False
    if "server_max_window_bits" in offer:
        server_bits = _parse_bits(offer["server_max_window_bits"])
        if server_bits < 9:
            raise ValueError("cannot compress with an 8-bit window")
        bits_limited = True
    wanted = _option_bits(options, "server_max_window_bits")
    if wanted is not None and max(9, wanted) < server_bits:
        server_bits, bits_limited = max(9, wanted), True
    if "server_no_context_takeover" in offer or options.get("server_no_context_takeover"):
        agreed.compress_persistent = False
        response.append("server_no_context_takeover")
    if bits_limited:
        response.append(f"server_max_window_bits={server_bits}")
    agreed.compress_wbits = server_bits

    # The peer's compressor (client -> server direction).
    if options.get("client_no_context_takeover"):
        agreed.decompress_persistent = False
        response.append("client_no_context_takeover")
    if "client_max_window_bits" in offer:
        offered = offer["client_max_window_bits"]
        client_bits = zlib.MAX_WBITS if offered is None else _parse_bits(offered)
        wanted = _option_bits(options, "client_max_window_bits")
        if wanted is not None:
            client_bits = min(client_bits, wanted)
        if offered is not None or wanted is not None:
            response.append(f"client_max_window_bits={client_bits}")
        agreed.decompress_wbits = client_bits
    return "; ".join(response), agreed


def server_negotiate_deflate(
    header: str | None, options: dict[str, Any] | None
) -> tuple[str, DeflateParameters] | None:
    """Pick the first acceptable permessage-deflate offer of a client.

    Returns the ``Sec-WebSocket-Extensions`` response value and the agreed parameters, or
    None when compression is disabled (``options`` is None) or no offer is acceptable.
    """
    if options is None or not header:
        return None
    for name, params in parse_extension_header(header):
        if name != "permessage-deflate":
            continue
        try:
            return _accept_one_offer(params, options)
        except ValueError:
            continue
    return None


def client_deflate_offer(options: dict[str, Any]) -> str:
    """The ``Sec-WebSocket-Extensions`` value a client sends to ask for compression."""
    offer = ["permessage-deflate"]
    if options.get("server_no_context_takeover"):
        offer.append("server_no_context_takeover")
    if options.get("client_no_context_takeover"):
        offer.append("client_no_context_takeover")
    server_bits = _option_bits(options, "server_max_window_bits")
    if server_bits is not None:
        offer.append(f"server_max_window_bits={server_bits}")
    client_bits = _option_bits(options, "client_max_window_bits")
    if client_bits is not None:
        offer.append(f"client_max_window_bits={max(9, client_bits)}")
    else:
        offer.append("client_max_window_bits")
    return "; ".join(offer)


def client_accept_deflate(header: str, options: dict[str, Any]) -> DeflateParameters:
    """Check a server's extension response to :func:`client_deflate_offer`.

    Raises ValueError when the server answered with anything the offer did not allow.
    """
    extensions = parse_extension_header(header)
    if len(extensions) != 1 or extensions[0][0] != "permessage-deflate":
        raise ValueError(f"unsupported WebSocket extension response {header!r}")
    answer = _checked_params(extensions[0][1])
    agreed = DeflateParameters()
    if "server_no_context_takeover" in answer:
        agreed.decompress_persistent = False
    if "server_max_window_bits" in answer:
        agreed.decompress_wbits = _parse_bits(answer["server_max_window_bits"])
    elif options.get("server_max_window_bits") is not None:
        raise ValueError("server ignored server_max_window_bits")
    if options.get("server_no_context_takeover") and agreed.decompress_persistent:
        raise ValueError("server ignored server_no_context_takeover")
    if "client_no_context_takeover" in answer or options.get("client_no_context_takeover"):
        agreed.compress_persistent = False
    wanted = _option_bits(options, "client_max_window_bits")
    bits = max(9, wanted) if wanted is not None else zlib.MAX_WBITS
    if "client_max_window_bits" in answer:
        answered = _parse_bits(answer["client_max_window_bits"])
        if answered > bits:
            raise ValueError("server raised client_max_window_bits")
        bits = answered
    if bits < 9:
        raise ValueError("cannot compress with an 8-bit window")
    agreed.compress_wbits = bits
    return agreed


# --- frames ---------------------------------------------------------------------------------


class MessageReader:
    """Turns received bytes into whole messages and control frames.

    :meth:`feed` buffers bytes; :meth:`next_message` returns ``(opcode, payload)`` for the
    next complete message (text as ``str``, everything else as ``bytes``) or control frame,
    None when more bytes are needed, and raises :class:`ProtocolError` when the peer breaks
    RFC 6455: the caller closes with ``error.code``. Sizes are checked against
    ``max_message_size`` from frame headers, before any payload is buffered, and again
    while inflating.
    """

    __slots__ = (
        "_buffer",
        "_offset",
        "_pending",
        "_pending_size",
        "_needed",
        "_expect_masked",
        "max_message_size",
        "decompressor",
        "_fragment_opcode",
        "_fragments",
        "_fragment_size",
        "_fragment_compressed",
        "_text_decoder",
        "wire_bytes",
        "message_bytes",
    )

    def __init__(
        self,
        *,
        expect_masked: bool,
        max_message_size: int | None = None,
        decompressor: _PerMessageDeflateDecompressor | None = None,
    ) -> None:
        self._buffer = b""
        self._offset = 0
        # Chunks received while a frame is incomplete are joined once, when it is complete,
        # so a large frame arriving in many reads is not copied over and over.
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._needed = 2
        self._expect_masked = expect_masked
        self.max_message_size = max_message_size
        self.decompressor = decompressor
        self._fragment_opcode = 0
        # One growing buffer, not a list of pieces: a message sent as a million one-byte
        # fragments then costs a million bytes, not a million objects.
        self._fragments = bytearray()
        self._fragment_size = 0
        self._fragment_compressed = False
        self._text_decoder: codecs.IncrementalDecoder | None = None
        self.wire_bytes = 0
        self.message_bytes = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._offset >= len(self._buffer):
            self._buffer = data
            self._offset = 0
        elif data:
            self._pending.append(data)
            self._pending_size += len(data)

    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a message."""
        return len(self._buffer) - self._offset + self._pending_size

    def next_message(self) -> tuple[int, Any] | None:
        """The next message or control frame, or None until more bytes arrive."""
        while True:
            buffer = self._buffer
            offset = self._offset
            available = len(buffer) - offset
            if self._pending:
                if available + self._pending_size < self._needed:
                    return None
                self._pending.insert(0, buffer[offset:])
                buffer = self._buffer = b"".join(self._pending)
                offset = self._offset = 0
                available = len(buffer)
                self._pending = []
                self._pending_size = 0
            if available < 2:
                self._needed = 2
                return None
            first = buffer[offset]
            second = buffer[offset + 1]
            length = second & 0x7F
            if (
                (first == 0x81 or first == 0x82)
                and length < 126
                and bool(second & MASK_BIT) == self._expect_masked
                and not self._fragment_opcode
                and (self.max_message_size is None or length <= self.max_message_size)
            ):
                # Fast path: a small, whole, uncompressed data message in one frame.
                header_size = 6 if second & MASK_BIT else 2
                end = offset + header_size + length
                if end <= len(buffer):
                    self._offset = end
                    self.wire_bytes += header_size + length
                    self.message_bytes += length
                    if header_size == 6:
                        key = buffer[offset + 2 : offset + 6]
                        key = key * (length >> 2) + key[: length & 3]
                        payload = (
                            int.from_bytes(buffer[offset + 6 : end], "little")
                            ^ int.from_bytes(key, "little")
                        ).to_bytes(length, "little")
                    else:
                        payload = buffer[offset + 2 : end]
                    if first == 0x82:
                        return OPCODE_BINARY, payload
                    try:
                        return OPCODE_TEXT, payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8")
            opcode = first & OPCODE_MASK
            header_size = 2
            if length == 126:
                header_size = 4
            elif length == 127:
                header_size = 10
            if second & MASK_BIT:
                header_size += 4
            if available < header_size:
                self._needed = header_size
                return None
            if length == 126:
                length = _unpack_16(buffer, offset + 2)[0]
            elif length == 127:
                length = _unpack_64(buffer, offset + 2)[0]
            compressed = self._check_header(first, second, opcode, length)
            end = offset + header_size + length
            if len(buffer) < end:
                self._needed = header_size + length
                return None
            self._needed = 2
            self._offset = end
            self.wire_bytes += header_size + length
            payload = buffer[end - length : end]
            if second & MASK_BIT:
                key_start = offset + header_size - 4
                payload = mask_payload(buffer[key_start : key_start + 4], payload)
            if opcode >= OPCODE_CLOSE:
                if opcode == OPCODE_CLOSE:
                    decode_close_payload(payload)
                return opcode, payload
            message = self._data_frame(first, opcode, payload, compressed)
            if message is not None:
                return message

    def _check_header(self, first: int, second: int, opcode: int, length: int) -> bool:
        """Validate a frame header; True when the frame starts a compressed message."""
        if bool(second & MASK_BIT) != self._expect_masked:
            if self._expect_masked:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "server frames must not be masked")
        rsv = first & RSV_MASK
        compressed = False
        if rsv:
            if rsv != RSV1 or self.decompressor is None:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "unexpected reserved bits")
            if opcode not in _DATA_OPCODES:
                # Only the first frame of a data message may carry the compression bit.
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 set on a non-initial frame")
            compressed = True
        if opcode >= OPCODE_CLOSE:
            if opcode not in _CONTROL_OPCODES:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not first & FIN:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frame too long")
            return False
        if opcode == OPCODE_CONTINUATION:
            if not self._fragment_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
        elif opcode in _DATA_OPCODES:
            if self._fragment_opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        else:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if length >> 63:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "frame length out of range")
        limit = self.max_message_size
        if limit is not None and self._fragment_size + length > limit:
            raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, "message too big")
        return compressed

    def _data_frame(
        self, first: int, opcode: int, payload: bytes, compressed: bool
    ) -> tuple[int, Any] | None:
        fin = first & FIN
        limit = self.max_message_size
        if opcode and fin:
            # The common case: a whole message in one frame.
            if compressed:
                assert self.decompressor is not None
                try:
                    payload = self.decompressor.decompress_part(
                        payload + _DEFLATE_TAIL, limit, last=True
                    )
                except _DecompressTooLargeError:
                    raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, "message too big")
            self.message_bytes += len(payload)
            if opcode == OPCODE_TEXT:
                try:
                    return OPCODE_TEXT, payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8")
            return OPCODE_BINARY, payload
        if opcode:
            self._fragment_opcode = opcode
            self._fragment_compressed = compressed
            self._fragment_size = 0
            self._fragments = bytearray()
            self._text_decoder = _utf8_incremental() if opcode == OPCODE_TEXT else None
        if self._fragment_compressed:
            assert self.decompressor is not None
            if fin:
                payload += _DEFLATE_TAIL
            remaining = None if limit is None else limit - self._fragment_size
            try:
                payload = self.decompressor.decompress_part(payload, remaining, last=bool(fin))
            except _DecompressTooLargeError:
                raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, "message too big")
        self._fragment_size += len(payload)
        decoder = self._text_decoder
        if decoder is not None:
            # Checking each fragment as it arrives fails a bad message early.
            try:
                decoder.decode(payload, bool(fin))
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8")
        self._fragments += payload
        if not fin:
            return None
        message_opcode = self._fragment_opcode
        data = bytes(self._fragments)
        self._fragment_opcode = 0
        self._fragments = bytearray()
        self.message_bytes += self._fragment_size
        self._fragment_size = 0
        self._text_decoder = None
        if message_opcode == OPCODE_TEXT:
            # Already validated fragment by fragment.
            return OPCODE_TEXT, data.decode("utf-8")
        return OPCODE_BINARY, data


class MessageWriter:
    """Turns outgoing messages and control frames into wire bytes.

    A client masks every frame with a fresh key from the OS's random source (read in
    batches); a server never masks. Messages are compressed when a compressor is set.
    """

    __slots__ = (
        "mask_outgoing",
        "compressor",
        "wire_bytes",
        "message_bytes",
        "_keys",
        "_key_offset",
    )

    # One urandom call per 128 frames; small, since every client connection keeps a batch.
    _KEY_BATCH = 512

    def __init__(
        self,
        *,
        mask_outgoing: bool,
        compressor: _PerMessageDeflateCompressor | None = None,
    ) -> None:
        self.mask_outgoing = mask_outgoing
        self.compressor = compressor
        self.wire_bytes = 0
        self.message_bytes = 0
        self._keys = b""
        self._key_offset = 0

    def _next_key(self) -> bytes:
        offset = self._key_offset
        if offset + 4 > len(self._keys):
            self._keys = os.urandom(self._KEY_BATCH)
            offset = 0
        self._key_offset = offset + 4
        return self._keys[offset : offset + 4]

    def message(self, payload: bytes, binary: bool) -> bytes:
        """One whole message as a single frame."""
        length = len(payload)
        self.message_bytes += length
        first = (FIN | OPCODE_BINARY) if binary else (FIN | OPCODE_TEXT)
        if length < 126 and self.compressor is None and not self.mask_outgoing:
            # The common server case, without the general framing below.
            self.wire_bytes += length + 2
            return bytes((first, length)) + payload
        if self.compressor is not None:
            payload = self.compressor.compress(payload)
            first |= RSV1
        return self._frame(first, payload)

    def frame(self, fin: bool, opcode: int, payload: bytes, flags: int = 0) -> bytes:
        """One raw frame; ``flags`` holds reserved bits, e.g. RSV1 for compression."""
        if opcode >= OPCODE_CLOSE and (len(payload) > MAX_CONTROL_PAYLOAD or not fin):
            raise ValueError("control frames must be final and at most 125 bytes")
        return self._frame((FIN if fin else 0) | flags | opcode, payload)

    def close(self, code: int | None = None, reason: str | None = None) -> bytes:
        """A close frame."""
        return self._frame(FIN | OPCODE_CLOSE, encode_close_payload(code, reason))

    def ping(self, data: bytes = b"") -> bytes:
        return self.frame(True, OPCODE_PING, data)

    def pong(self, data: bytes = b"") -> bytes:
        return self.frame(True, OPCODE_PONG, data)

    def _frame(self, first: int, payload: bytes) -> bytes:
        length = len(payload)
        if self.mask_outgoing:
            if length < 126:
                head = bytes((first, MASK_BIT | length))
            elif length < 0x10000:
                head = _pack_16(first, MASK_BIT | 126, length)
            else:
                head = _pack_64(first, MASK_BIT | 127, length)
            key = self._next_key()
            frame = b"".join((head, key, mask_payload(key, payload)))
        else:
            if length < 126:
                frame = bytes((first, length)) + payload
            elif length < 0x10000:
                frame = _pack_16(first, 126, length) + payload
            else:
                frame = _pack_64(first, 127, length) + payload
        self.wire_bytes += len(frame)
        return frame
