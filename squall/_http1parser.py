"""Sans-IO HTTP/1.x message parser: bytes in, message heads, body pieces and ends out.

The same parser reads requests (server side) and responses (client side). It does no
I/O and knows no delegates: ``HTTP1Connection`` feeds it what the stream receives and
turns its events into delegate calls. It is strict about framing, because two parties
that disagree on where a message ends are what request smuggling feeds on:

* Content-Length must be plain decimal digits; repeated values must agree.
* Transfer-Encoding must be exactly ``chunked`` (once) and excludes Content-Length.
* Chunk sizes are plain hex digits; every chunk line and chunk ends in CRLF.
* Header lines may not be folded and may hold no control characters; a bare CR is an
  error anywhere. A head's lines may end in a bare LF (RFC 9112 section 2.2 allows
  recipients to accept that); the body framing may not.
* An HTTP/1.1 request needs exactly one valid Host header.

Every step is linear in the input: the search for the end of a head resumes where
the previous one stopped, and buffered input is bounded by the configured limits.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from squall.httputil import (
    _ABNF,
    HTTP_WHITESPACE,
    HTTPHeaders,
    HTTPInputError,
    RequestStartLine,
    ResponseStartLine,
    _parse_header_block,
    parse_request_start_line,
    parse_response_start_line,
)

__all__ = [
    "HTTP1Parser",
    "ParseError",
    "HEAD",
    "DATA",
    "END",
    "parse_int",
    "parse_hex_int",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_CHUNK_SIZE",
]

DEFAULT_MAX_HEADER_SIZE = 64 * 1024
DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024

# Event kinds returned by HTTP1Parser.next_event, as the first item of a tuple:
# (HEAD, start_line, headers), (DATA, bytes), (END,).
HEAD = 1
DATA = 2
END = 3
_END_EVENT = (END,)

Event = Union[
    tuple[int, Union[RequestStartLine, ResponseStartLine], HTTPHeaders],
    tuple[int, bytes],
    tuple[int],
]

DIGITS = re.compile(rb"[0-9]+")
HEXDIGITS = re.compile(rb"[0-9a-fA-F]+")
_STR_DIGITS = re.compile(r"[0-9]+")
# chunk-size [ chunk-ext ]: extensions are ignored, but must not smuggle control bytes.
_CHUNK_LINE = re.compile(rb"([0-9a-fA-F]+)((?:[ \t]*;[\x20-\x7e\t\x80-\xff]*)?)")
# Longest chunk-size line (with extensions) and trailer section we are willing to buffer.
_MAX_CHUNK_LINE = 4096
# More hex digits than this cannot be a size anyone means (and would make a huge int).
_MAX_SIZE_DIGITS = 16
# A request line as parse_request_start_line accepts it (HTTP/1.x only), with its CRLF
# or LF: what the fast path of _parse_head matches at the start of a head.
_REQUEST_LINE = re.compile(
    "(" + _ABNF._tchar + "+) (" + _ABNF._request_target + r") (HTTP/1\.[0-9])\r?\n"
)
_match_request_line = _REQUEST_LINE.match
# Builds a RequestStartLine from a tuple of its fields without the NamedTuple's
# Python-level __new__.
_new_tuple = tuple.__new__


class ParseError(HTTPInputError):
    """Malformed or over-limit input; ``status_code`` is the answer a server gives."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def parse_int(s: str) -> int:
    """Parses a non-negative decimal integer strictly (no sign, space or underscore)."""
    if not _STR_DIGITS.fullmatch(s):
        raise ValueError("not a decimal integer: %r" % s)
    return int(s)


def parse_hex_int(s: str) -> int:
    """Parses a non-negative hexadecimal integer strictly (no ``0x``, sign or space)."""
    if not re.fullmatch(r"[0-9a-fA-F]+", s):
        raise ValueError("not a hexadecimal integer: %r" % s)
    return int(s, 16)


# Parser states.
_S_HEAD = 0  # waiting for (the rest of) a message head
_S_BODY_START = 1  # head delivered; body limits are checked on the next step
_S_LENGTH = 2  # Content-Length body
_S_CHUNK_SIZE = 3  # waiting for a chunk-size line
_S_CHUNK_DATA = 4  # inside a chunk
_S_CHUNK_END = 5  # waiting for the CRLF after a chunk's data
_S_TRAILERS = 6  # after the last chunk, until the empty line
_S_UNTIL_CLOSE = 7  # response body delimited by the end of the connection
_S_DONE = 8  # message complete; waiting for start_next_message()
_S_BROKEN = 9  # an error was raised; nothing more will be parsed

# States whose next step takes body bytes straight from the input.
_BODY_DATA_STATES = (_S_LENGTH, _S_CHUNK_DATA, _S_UNTIL_CLOSE)

# Body framings, decided when a head is parsed.
_NO_BODY = 0
_LENGTH = 1
_CHUNKED = 2
_UNTIL_CLOSE = 3


class HTTP1Parser:
    """Parses a stream of HTTP/1.x requests (``is_client=False``) or responses.

    Call ``feed`` with received bytes (``feed_eof`` at the end of the stream) and then
    ``next_event`` until it returns None. After an ``END`` event the parser waits for
    ``start_next_message`` before it looks at the next message, so a server answers
    pipelined requests one at a time. ``max_body_size`` may be changed between the
    ``HEAD`` event and the next call (the body limit is checked then).
    """

    __slots__ = (
        "is_client",
        "max_header_size",
        "max_body_size",
        "chunk_size",
        "_buffer",
        "_pos",
        "_scan",
        "_state",
        "_eof",
        "_framing",
        "_remaining",
        "_body_size",
        "_request_method",
        "_informational",
        "messages",
        "_direct",
        "_valid_host",
    )

    def __init__(
        self,
        is_client: bool,
        max_header_size: Optional[int] = None,
        max_body_size: Optional[int] = None,
        chunk_size: Optional[int] = None,
    ) -> None:
        self.is_client = is_client
        self.max_header_size = max_header_size or DEFAULT_MAX_HEADER_SIZE
        self.max_body_size = max_body_size or DEFAULT_MAX_BODY_SIZE
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        self._buffer = bytearray()
        self._pos = 0
        # Where the search for the end of the current head resumes.
        self._scan = 0
        self._state = _S_HEAD
        self._eof = False
        self._framing = _NO_BODY
        self._remaining = 0
        self._body_size = 0
        # Client side: the method of the request the next response answers.
        self._request_method = "GET"
        self._informational = False
        # Number of complete messages parsed so far.
        self.messages = 0
        # Received body bytes not copied into _buffer (see feed); _buffer is empty then.
        self._direct: Optional[bytes] = None
        # The last Host value that passed validation: a keep-alive client repeats it.
        self._valid_host = ""

    # Input

    def feed(self, data: bytes) -> None:
        """Adds received bytes."""
        if self._state == _S_BROKEN or not data:
            return
        buffer = self._buffer
        if self._pos == len(buffer):
            if self._pos:
                # Everything so far was consumed: start over instead of growing.
                buffer.clear()
                self._pos = 0
                self._scan = 0
            if self._direct is None and self._state in _BODY_DATA_STATES:
                # Body bytes arriving into an empty buffer are handed out as they are,
                # saving the copy in and out of the buffer (the common upload case).
                self._direct = data if type(data) is bytes else bytes(data)
                return
        if self._direct is not None:
            buffer += self._direct
            self._direct = None
        buffer += data

    def feed_eof(self) -> None:
        """Records that the peer closed the connection."""
        self._eof = True

    def expect_response(self, method: str) -> None:
        """Client side: the next response answers a request with this method."""
        self._request_method = method

    def start_next_message(self) -> None:
        """Allows the parser to go on with the message after the one just finished."""
        if self._state == _S_DONE:
            self._state = _S_HEAD
            self._scan = self._pos

    def take_unparsed(self) -> bytes:
        """Removes and returns the bytes received but not parsed (e.g. after an upgrade)."""
        data = bytes(self._buffer[self._pos :])
        if self._direct is not None:
            data += self._direct
            self._direct = None
        self._buffer = bytearray()
        self._pos = 0
        self._scan = 0
        return data

    # State

    @property
    def eof(self) -> bool:
        """True once ``feed_eof`` was called."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed."""
        direct = self._direct
        return len(self._buffer) - self._pos + (len(direct) if direct is not None else 0)

    @property
    def in_message(self) -> bool:
        """True between a message's first byte and its end."""
        if self._state == _S_HEAD:
            return self._pos < len(self._buffer)
        return self._state not in (_S_DONE, _S_BROKEN)

    @property
    def in_body(self) -> bool:
        """True after a head that announced a body and before the end of that body."""
        state = self._state
        if state == _S_BODY_START:
            return self._framing != _NO_BODY
        return state in (
            _S_BODY_START,
            _S_LENGTH,
            _S_CHUNK_SIZE,
            _S_CHUNK_DATA,
            _S_CHUNK_END,
            _S_TRAILERS,
            _S_UNTIL_CLOSE,
        )

    @property
    def done(self) -> bool:
        """True once a message is complete and before ``start_next_message``."""
        return self._state == _S_DONE

    @property
    def body_until_close(self) -> bool:
        """True when the current response's body ends with the connection."""
        return self._framing == _UNTIL_CLOSE

    @property
    def chunked(self) -> bool:
        """True when the current message's body uses chunked framing."""
        return self._framing == _CHUNKED

    # Output

    def next_event(self) -> Optional[Event]:
        """The next event, or None when more input is needed (or after an END)."""
        state = self._state
        if self._direct is not None and state not in _BODY_DATA_STATES:
            self._buffer += self._direct
            self._direct = None
        try:
            if state == _S_HEAD:
                return self._parse_head()
            if state == _S_BODY_START:
                if self._framing == _NO_BODY:
                    # (_finish_message inlined: the END right after a bodiless head
                    # is the most common event after HEAD itself.)
                    self._state = _S_DONE
                    self.messages += 1
                    if self._pos > 65536:
                        self._compact()
                    return _END_EVENT
                return self._start_body()
            if state == _S_LENGTH:
                return self._read_length_body()
            if state == _S_CHUNK_DATA:
                return self._read_chunk_data()
            if state == _S_CHUNK_SIZE:
                return self._read_chunk_size()
            if state == _S_CHUNK_END:
                return self._read_chunk_end()
            if state == _S_TRAILERS:
                return self._read_trailers()
            if state == _S_UNTIL_CLOSE:
                return self._read_until_close()
            return None
        except HTTPInputError as e:
            self._state = _S_BROKEN
            if isinstance(e, ParseError):
                raise
            raise ParseError(str(e)) from None

    def _finish_message(self) -> tuple[int]:
        self._state = _S_DONE
        self.messages += 1
        if self._pos > 65536:
            self._compact()
        return _END_EVENT

    def _compact(self) -> None:
        # Drop consumed bytes once they dominate the buffer, so that a long-lived
        # connection does not hold every byte it ever received.
        pos = self._pos
        if pos > 65536 and pos * 2 > len(self._buffer):
            del self._buffer[:pos]
            self._scan -= pos
            self._pos = 0

    # Heads

    def _parse_head(self) -> Optional[Event]:
        buffer = self._buffer
        pos = self._pos
        size = len(buffer)
        if pos >= size:
            return None
        byte = buffer[pos]
        if byte == 10 or byte == 13:
            # Empty lines before a request line are ignored (RFC 9112 section 2.2),
            # such as the stray CRLF some HTTP/1.0 clients send after a body.
            while pos < size:
                byte = buffer[pos]
                if byte == 10:
                    pos += 1
                elif byte == 13 and pos + 1 < size and buffer[pos + 1] == 10:
                    pos += 2
                else:
                    break
            if pos != self._pos:
                self._pos = pos
                self._scan = max(self._scan, pos)
            if pos >= size:
                return None
        scan = self._scan
        if scan < pos:
            scan = pos
        end_crlf = buffer.find(b"\n\r\n", scan)
        # A bare-LF head end counts only if it comes first (the search stops there).
        end_lf = buffer.find(b"\n\n", scan, size if end_crlf == -1 else end_crlf + 1)
        if end_lf == -1 and end_crlf == -1:
            if size - pos > self.max_header_size:
                self._state = _S_BROKEN
                raise ParseError("header section too large", 431)
            # The terminator may straddle this input and the next: back up enough.
            self._scan = max(pos, size - 2)
            return None
        if end_crlf != -1 and (end_lf == -1 or end_crlf < end_lf):
            head_end, body_start = end_crlf + 1, end_crlf + 3
        else:
            head_end, body_start = end_lf + 1, end_lf + 2
        if head_end - pos > self.max_header_size:
            self._state = _S_BROKEN
            raise ParseError("header section too large", 431)
        head = buffer[pos:head_end].decode("latin1")
        self._pos = body_start
        self._scan = body_start
        self._body_size = 0
        if not self.is_client:
            # Fast path for a well-formed request head: the request line and the
            # header lines are matched in two regex calls, with no per-line work
            # beyond filling the dict. Any mismatch falls through to the general
            # path below, which checks in the usual order and names the problem.
            match = _match_request_line(head)
            if match is not None:
                headers = _parse_header_block(head, match.end())
                if headers is not None:
                    request_line = _new_tuple(RequestStartLine, match.groups())
                    values = headers._values
                    hosts = values.get("Host")
                    if hosts is not None and len(hosts) == 1 and hosts[0] == self._valid_host:
                        # A keep-alive client's usual request: the Host it sent
                        # before, already validated. (_informational stays False
                        # on a server: only responses set it.)
                        if "Content-Length" not in values and "Transfer-Encoding" not in values:
                            self._framing = _NO_BODY
                        else:
                            self._framing = self._request_body_framing(request_line, headers)
                    else:
                        self._framing = self._request_framing(request_line, headers)
                    self._state = _S_BODY_START
                    return (HEAD, request_line, headers)
        line_end = head.find("\n")
        start_text = head[:line_end]
        if start_text.endswith("\r"):
            start_text = start_text[:-1]
        # (Responses take the header fast path too; a request got here because its
        # request line or some header line is unusual.)
        parsed = _parse_header_block(head, line_end + 1)
        headers = parsed if parsed is not None else HTTPHeaders.parse(head[line_end + 1 :])
        start_line: Union[RequestStartLine, ResponseStartLine]
        if self.is_client:
            start_line = parse_response_start_line(start_text)
            self._framing = self._response_framing(start_line, headers)
        else:
            start_line = parse_request_start_line(start_text)
            self._framing = self._request_framing(start_line, headers)
        if self._informational:
            # A 1xx response has no body and is followed by another head for the same
            # request, so no END event is produced for it.
            self._state = _S_HEAD
        else:
            self._state = _S_BODY_START
        return (HEAD, start_line, headers)

    def _request_framing(self, start_line: RequestStartLine, headers: HTTPHeaders) -> int:
        self._informational = False
        hosts = headers._values.get("Host")
        if hosts is not None:
            if len(hosts) > 1:
                raise ParseError("Multiple Host headers")
            host = hosts[0]
            if host != self._valid_host:
                if not _ABNF.host.fullmatch(host):
                    raise ParseError("Invalid Host header %r" % host)
                self._valid_host = host
        elif start_line.version == "HTTP/1.1":
            raise ParseError("Missing Host header")
        return self._request_body_framing(start_line, headers)

    def _request_body_framing(self, start_line: RequestStartLine, headers: HTTPHeaders) -> int:
        if start_line.version == "HTTP/1.0" and "Transfer-Encoding" in headers._values:
            # HTTP/1.0 has no chunked coding: RFC 9112 6.1 calls such framing faulty, and a
            # 1.0 peer (a proxy, say) may well have framed the body otherwise.
            raise ParseError("Transfer-Encoding in an HTTP/1.0 request")
        return self._body_framing(headers, allow_until_close=False)

    def _response_framing(self, start_line: ResponseStartLine, headers: HTTPHeaders) -> int:
        code = start_line.code
        self._informational = 100 <= code < 200 and code != 101
        if code < 200 or code == 204:
            if "Transfer-Encoding" in headers or (
                "Content-Length" in headers and headers["Content-Length"] != "0"
            ):
                raise ParseError("Response with code %d should not have body" % code)
            return _NO_BODY
        framing = self._body_framing(headers, allow_until_close=True)
        if code == 304 or self._request_method == "HEAD":
            # The headers describe the representation, but no body follows.
            return _NO_BODY
        return framing

    def _body_framing(self, headers: HTTPHeaders, allow_until_close: bool) -> int:
        # Names in the headers' storage are normalized, so the dict answers directly.
        values = headers._values
        if "Transfer-Encoding" in values:
            if "Content-Length" in values:
                raise ParseError("Message with both Transfer-Encoding and Content-Length")
            codings = headers["Transfer-Encoding"]
            if codings.strip(HTTP_WHITESPACE).lower() != "chunked":
                # Only a lone "chunked" is accepted: any other coding (or chunked
                # applied twice) would need a decoder we do not have, and guessing the
                # framing is how proxies and servers come to disagree.
                raise ParseError("Unsupported Transfer-Encoding %s" % codings)
            return _CHUNKED
        if "Content-Length" in values:
            self._remaining = _parse_content_length(headers)
            return _LENGTH
        return _UNTIL_CLOSE if allow_until_close else _NO_BODY

    # Bodies

    def _start_body(self) -> Optional[Event]:
        framing = self._framing
        if framing == _NO_BODY:
            return self._finish_message()
        if framing == _LENGTH:
            if self._remaining > self.max_body_size:
                raise ParseError("Content-Length too long", 413)
            self._state = _S_LENGTH
            return self._read_length_body()
        if framing == _CHUNKED:
            self._state = _S_CHUNK_SIZE
            return self._read_chunk_size()
        self._state = _S_UNTIL_CLOSE
        return self._read_until_close()

    def _take(self, limit: int) -> Optional[bytes]:
        direct = self._direct
        if direct is not None:
            count = min(len(direct), limit, self.chunk_size)
            self._direct = None
            if count == len(direct):
                return direct
            # The buffer is empty while bytes are held directly: the rest moves there.
            self._buffer += memoryview(direct)[count:]
            return direct[:count]
        buffer = self._buffer
        pos = self._pos
        available = len(buffer) - pos
        if available <= 0:
            return None
        # (Comparisons instead of min(): this runs for every piece of every body.)
        count = available if available < limit else limit
        if count > self.chunk_size:
            count = self.chunk_size
        if pos == 0 and count == available:
            data = bytes(buffer)
            buffer.clear()
            self._scan = 0
        else:
            end = pos + count
            data = bytes(buffer[pos:end])
            self._pos = end
            if end > 65536:
                self._compact()
        return data

    def _read_length_body(self) -> Optional[Event]:
        if self._remaining == 0:
            return self._finish_message()
        data = self._take(self._remaining)
        if data is None:
            return None
        self._remaining -= len(data)
        return (DATA, data)

    def _read_until_close(self) -> Optional[Event]:
        data = self._take(self.chunk_size)
        if data is None:
            if self._eof:
                return self._finish_message()
            return None
        self._body_size += len(data)
        if self._body_size > self.max_body_size:
            raise ParseError("Body too long", 413)
        return (DATA, data)

    def _read_chunk_size(self) -> Optional[Event]:
        buffer = self._buffer
        pos = self._pos
        line_end = buffer.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE)
        if line_end == -1:
            if len(buffer) - pos >= _MAX_CHUNK_LINE:
                raise ParseError("invalid chunk size line")
            if b"\n" in buffer[pos:] or b"\r" in buffer[pos : len(buffer) - 1]:
                raise ParseError("invalid chunk size line (bare CR or LF)")
            return None
        match = _CHUNK_LINE.fullmatch(buffer, pos, line_end)
        if match is None or len(match.group(1)) > _MAX_SIZE_DIGITS:
            raise ParseError("invalid chunk size %r" % bytes(buffer[pos:line_end])[:40])
        size = int(match.group(1), 16)
        self._pos = line_end + 2
        if size == 0:
            self._state = _S_TRAILERS
            self._scan = self._pos
            return self._read_trailers()
        self._body_size += size
        if self._body_size > self.max_body_size:
            raise ParseError("chunked body too large", 413)
        self._remaining = size
        self._state = _S_CHUNK_DATA
        return self._read_chunk_data()

    def _read_chunk_data(self) -> Optional[Event]:
        data = self._take(self._remaining)
        if data is None:
            return None
        self._remaining -= len(data)
        if self._remaining == 0:
            self._state = _S_CHUNK_END
        return (DATA, data)

    def _read_chunk_end(self) -> Optional[Event]:
        buffer = self._buffer
        pos = self._pos
        if len(buffer) - pos < 2:
            if len(buffer) - pos == 1 and buffer[pos] != 13:
                raise ParseError("improperly terminated chunk")
            return None
        if buffer[pos] != 13 or buffer[pos + 1] != 10:
            raise ParseError("improperly terminated chunk")
        self._pos = pos + 2
        self._state = _S_CHUNK_SIZE
        return self._read_chunk_size()

    def _read_trailers(self) -> Optional[Event]:
        # Trailer fields are checked for syntax and then dropped: nothing above this
        # layer asks for them, and merging them into the headers invites confusion.
        buffer = self._buffer
        while True:
            pos = self._pos
            # Resume the search where the previous one stopped, so a trailer section
            # arriving a byte at a time is still scanned once.
            newline = buffer.find(b"\n", max(pos, self._scan))
            if newline == -1:
                self._scan = len(buffer)
                if len(buffer) - pos > self.max_header_size:
                    raise ParseError("trailer section too large", 431)
                return None
            if newline == pos or buffer[newline - 1] != 13:
                raise ParseError("invalid trailer line (bare LF)")
            line_end = newline - 1
            self._pos = self._scan = newline + 1
            if line_end == pos:
                return self._finish_message()
            if line_end - pos > self.max_header_size:
                raise ParseError("trailer section too large", 431)
            HTTPHeaders().parse_line(buffer[pos:line_end].decode("latin1"))


def _parse_content_length(headers: HTTPHeaders) -> int:
    values = headers._values["Content-Length"]
    if len(values) == 1:
        value = values[0]
        # One plain number, the usual case: ASCII digits only (isdigit alone would
        # take the latin1 superscripts too).
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
    pieces = set()
    for value in headers.get_list("Content-Length"):
        for piece in value.split(","):
            pieces.add(piece.strip(HTTP_WHITESPACE))
    if len(pieces) > 1:
        raise ParseError("Multiple unequal Content-Lengths: %r" % headers["Content-Length"])
    (value,) = pieces
    if not _STR_DIGITS.fullmatch(value) or len(value) > 18:
        raise ParseError("Only integer Content-Length is allowed: %s" % value)
    return int(value)
