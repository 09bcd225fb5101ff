"""The sans-IO HTTP/1 parser, without sockets: framing, strictness, limits, linearity."""

import pytest

from squall._http1parser import DATA, END, HEAD, HTTP1Parser, ParseError, parse_hex_int, parse_int
from squall.httputil import HTTPHeaders, HTTPInputError


def events(parser, data=b"", eof=False, split=None):
    """Feeds ``data`` (in pieces of ``split`` bytes if given) and collects events."""
    out = []
    pieces = [data] if not split else [data[i : i + split] for i in range(0, len(data), split)]
    for piece in pieces:
        parser.feed(piece)
        while (event := parser.next_event()) is not None:
            out.append(event)
    if eof:
        parser.feed_eof()
        while (event := parser.next_event()) is not None:
            out.append(event)
    return out


def body_of(evts):
    return b"".join(e[1] for e in evts if e[0] == DATA)


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin1") + body


def test_simple_request_head_and_end():
    parser = HTTP1Parser(False)
    evts = events(parser, b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n")
    assert evts[0][0] == HEAD
    assert tuple(evts[0][1]) == ("GET", "/x?y=1", "HTTP/1.1")
    assert evts[0][2]["x-a"] == "1"
    assert evts[1:] == [(END,)]
    assert parser.done


@pytest.mark.parametrize("split", [None, 1, 3, 7])
def test_content_length_body_in_any_split(split):
    parser = HTTP1Parser(False)
    evts = events(
        parser, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", split=split
    )
    assert body_of(evts) == b"hello world"
    assert evts[-1] == (END,)


@pytest.mark.parametrize("split", [None, 1, 2, 5])
def test_chunked_body_in_any_split(split):
    parser = HTTP1Parser(False)
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    evts = events(parser, data, split=split)
    assert body_of(evts) == b"hello 0123456789"
    assert evts[-1] == (END,)


def test_chunk_size_upper_and_lower_hex():
    parser = HTTP1Parser(False)
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\na\r\n" + b"x" * 10
    data += b"\r\nA\r\n" + b"y" * 10 + b"\r\n0\r\n\r\n"
    assert body_of(events(parser, data)) == b"x" * 10 + b"y" * 10


def test_data_events_never_exceed_chunk_size():
    parser = HTTP1Parser(False, chunk_size=16)
    evts = events(parser, b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n" + b"z" * 50)
    assert [len(e[1]) for e in evts if e[0] == DATA] == [16, 16, 16, 2]


def test_pipelined_requests_wait_for_start_next_message():
    parser = HTTP1Parser(False)
    evts = events(parser, b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [e[0] for e in evts] == [HEAD, END]
    assert parser.buffered > 0
    parser.start_next_message()
    evts = events(parser)
    assert evts[0][1].path == "/2"
    assert evts[-1] == (END,)


def test_leading_empty_lines_before_request_are_ignored():
    parser = HTTP1Parser(False)
    evts = events(parser, b"\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    assert evts[0][1].method == "GET"


def test_bare_lf_head_accepted():
    parser = HTTP1Parser(False)
    evts = events(parser, b"GET / HTTP/1.0\nFoo: bar\n\n")
    assert evts[0][2]["Foo"] == "bar"


def test_http10_request_without_host_is_fine():
    evts = events(HTTP1Parser(False), b"GET / HTTP/1.0\r\n\r\n")
    assert evts[-1] == (END,)


def test_take_unparsed_returns_bytes_after_message():
    parser = HTTP1Parser(False)
    events(parser, b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    assert parser.take_unparsed() == b"\x81\x05hello"
    assert parser.buffered == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"asdf\r\n\r\n", "Malformed HTTP request line"),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "Malformed"),
        (b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", "Unexpected HTTP version"),
        (b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", "Malformed"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "Invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "Invalid header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "folding"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", "no colon"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n", "Invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\xe9: 1\r\n\r\n", "Invalid header name"),
        (b"GET / HTTP/1.1\r\n\r\n", "Missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "Multiple Host"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "Invalid Host header"),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "Invalid Host header"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "Only integer"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", "Only integer"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n", "Only integer"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n", "Only integer"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xd9\xa3\r\n\r\n", "Only integer"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xb2\r\n\r\n", "Only integer"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
            "Only integer",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "unequal",
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", "unequal"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "Unsupported"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "Unsupported",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "Unsupported Transfer-Encoding chunked,chunked",
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\n", "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\n", "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\n", "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\n", "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nx", "bare CR or LF"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"11111111111111111\r\n",
            "chunk size",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxY",
            "improperly terminated chunk",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\n",
            "improperly terminated chunk",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n",
            "no colon",
        ),
    ],
)
def test_malformed_requests_raise_parse_error(data, message):
    parser = HTTP1Parser(False)
    with pytest.raises(ParseError) as info:
        events(parser, data)
    assert message in str(info.value)
    assert info.value.status_code == 400
    # Once broken, the parser produces nothing more.
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_event() is None


def test_oversized_head_is_431_even_without_terminator():
    parser = HTTP1Parser(False, max_header_size=100)
    with pytest.raises(ParseError) as info:
        events(parser, b"GET / HTTP/1.1\r\nX: " + b"a" * 200, split=10)
    assert info.value.status_code == 431


def test_oversized_content_length_is_413_checked_after_head():
    parser = HTTP1Parser(False, max_body_size=10)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert parser.next_event()[0] == HEAD
    with pytest.raises(ParseError) as info:
        parser.next_event()
    assert info.value.status_code == 413


def test_max_body_size_can_be_raised_after_head():
    parser = HTTP1Parser(False, max_body_size=10)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n" + b"x" * 11)
    assert parser.next_event()[0] == HEAD
    parser.max_body_size = 100
    assert body_of(events(parser)) == b"x" * 11


def test_oversized_chunked_body_is_413():
    parser = HTTP1Parser(False, max_body_size=10)
    with pytest.raises(ParseError) as info:
        events(
            parser,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n",
        )
    assert info.value.status_code == 413


# Responses (client side)


def test_response_with_content_length():
    parser = HTTP1Parser(True)
    evts = events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert evts[0][1].code == 200
    assert body_of(evts) == b"ok"


def test_response_read_until_close():
    parser = HTTP1Parser(True)
    evts = events(parser, b"HTTP/1.0 200 OK\r\n\r\nhello", eof=True)
    assert body_of(evts) == b"hello"
    assert evts[-1] == (END,)
    assert parser.body_until_close


def test_response_until_close_without_eof_waits():
    parser = HTTP1Parser(True)
    evts = events(parser, b"HTTP/1.0 200 OK\r\n\r\nhello")
    assert evts[-1][0] == DATA
    assert parser.in_body


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_status_codes(code):
    parser = HTTP1Parser(True)
    evts = events(parser, b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code)
    assert [e[0] for e in evts] == [HEAD, END]


def test_not_modified_with_content_length_has_no_body():
    parser = HTTP1Parser(True)
    evts = events(parser, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n")
    assert [e[0] for e in evts] == [HEAD, END]


def test_head_response_has_no_body():
    parser = HTTP1Parser(True)
    parser.expect_response("HEAD")
    evts = events(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
    assert [e[0] for e in evts] == [HEAD, END]


def test_informational_responses_precede_the_final_one():
    parser = HTTP1Parser(True)
    evts = events(
        parser,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
    )
    assert [e[0] for e in evts] == [HEAD, HEAD, HEAD, DATA, END]
    assert [e[1].code for e in evts if e[0] == HEAD] == [100, 103, 200]


def test_switching_protocols_ends_without_body():
    parser = HTTP1Parser(True)
    evts = events(parser, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00")
    assert [e[0] for e in evts] == [HEAD, END]
    assert parser.take_unparsed() == b"\x81\x00"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_malformed_responses(data):
    with pytest.raises(ParseError):
        events(HTTP1Parser(True), data)


# Strict integer helpers


def test_parse_int_is_strict():
    assert parse_int("123") == 123
    for bad in ["+1", "-1", "1_0", " 1", "1 ", "", "0x1", "\u0663"]:
        with pytest.raises(ValueError):
            parse_int(bad)


def test_parse_hex_int_is_strict():
    assert parse_hex_int("fF") == 255
    for bad in ["0x1", "+1", "1_0", " a", ""]:
        with pytest.raises(ValueError):
            parse_hex_int(bad)


# Linear time. Instead of timing (too noisy to assert on), these count the bytes the
# parser searches through: resuming each search where the last one stopped is what
# keeps input that trickles in a byte at a time from being rescanned.


class CountingBuffer(bytearray):
    scanned = 0

    def find(self, sub, start=0, end=None):
        stop = len(self) if end is None else min(end, len(self))
        CountingBuffer.scanned += max(0, stop - start)
        return super().find(sub, start, stop)


def scanned_while_parsing(data, step, **kwargs):
    parser = HTTP1Parser(False, **kwargs)
    parser._buffer = CountingBuffer()
    CountingBuffer.scanned = 0
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
        while parser.next_event() is not None:
            pass
    assert parser.done
    return CountingBuffer.scanned


def test_head_arriving_byte_by_byte_is_scanned_linearly():
    data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: a\r\n" * 5000 + b"\r\n"
    # Two searches (for LF LF and LF CR LF) of a few bytes per byte received.
    assert scanned_while_parsing(data, 1, max_header_size=1 << 20) <= 8 * len(data)


def test_many_tiny_chunks_are_scanned_linearly():
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1\r\nx\r\n" * 5000
        + b"0\r\n\r\n"
    )
    assert scanned_while_parsing(data, 3) <= 4 * len(data)


def test_trailers_arriving_byte_by_byte_are_scanned_linearly():
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + b"T: "
        + b"v" * 20000
        + b"\r\n\r\n"
    )
    assert scanned_while_parsing(data, 1) <= 4 * len(data)


def test_body_bytes_fed_separately_are_passed_on_without_copy_and_in_order():
    parser = HTTP1Parser(False, chunk_size=4)
    events(parser, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
    piece = b"0123"
    parser.feed(piece)
    first = parser.next_event()
    assert first == (DATA, b"0123") and first[1] is piece
    # A piece holding the rest of the body and the next request.
    parser.feed(b"456789GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    evts = events(parser)
    assert body_of(evts) == b"456789"
    assert evts[-1] == (END,)
    parser.start_next_message()
    assert events(parser)[0][1].path == "/next"


# Properties: arbitrary input fails only with ParseError; valid input survives any split.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"POST /x HTTP/1.0\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"Host: a\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"3\r\nabc\r\n",
        b"0\r\n",
        b"abc",
        b":",
        b" ",
        b"\x00",
        b"\xff",
        b"1_0",
        b"X: y\r\n",
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_PIECES, max_size=30).map(b"".join), st.booleans(), st.integers(1, 8))
def test_arbitrary_input_fails_only_with_parse_error(data, is_client, step):
    parser = HTTP1Parser(is_client, max_header_size=256, max_body_size=64)
    try:
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
            for _ in range(len(data) + 10):
                event = parser.next_event()
                if event is None:
                    if parser.done:
                        parser.start_next_message()
                        continue
                    break
        parser.feed_eof()
        parser.next_event()
    except ParseError:
        pass


_NAMES = st.from_regex(r"X-[A-Za-z0-9]{1,8}", fullmatch=True)
_VALUES = st.from_regex(r"[!-~]([ -~]{0,10}[!-~])?", fullmatch=True)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, _VALUES), max_size=8),
    st.binary(max_size=100),
    st.booleans(),
    st.integers(1, 50),
)
def test_valid_requests_parse_the_same_in_any_split(headers, body, chunked, step):
    head = "POST /p HTTP/1.1\r\nHost: h\r\n" + "".join("%s: %s\r\n" % h for h in headers)
    if chunked:
        framed = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        data = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed
    else:
        data = (head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body
    evts = events(HTTP1Parser(False), data, split=step)
    assert evts[0][0] == HEAD and evts[-1] == (END,)
    parsed = evts[0][2]
    for name, _ in headers:
        assert parsed.get_list(name) == [v for n, v in headers if n.lower() == name.lower()]
    assert body_of(evts) == body


def test_in_body_only_when_the_head_announces_a_body():
    parser = HTTP1Parser(False)
    parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parser.next_event()[0] == HEAD
    assert not parser.in_body
    assert parser.next_event() == (END,)
    parser.start_next_message()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
    assert parser.next_event()[0] == HEAD
    assert parser.in_body


def test_single_line_header_block_matches_the_general_parse():
    one = HTTPHeaders.parse("Host:  example.com \r\n")
    assert list(one.get_all()) == [("Host", "example.com")]
    with pytest.raises(HTTPInputError):
        HTTPHeaders.parse("Bad Name: x\r\n")


# The request-head fast path must agree with the general path (HTTPHeaders.parse and
# parse_request_start_line) on every head: same start line, same fields, same error.

from squall.httputil import parse_request_start_line  # noqa: E402

_REQUEST_LINES = st.sampled_from(
    [
        "GET / HTTP/1.1",
        "GET /a?b=1 HTTP/1.0",
        "get /x HTTP/1.1",
        "GET / HTTP/2.0",
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET / HTTP/1.1\r",
        "GET /\x7f HTTP/1.1",
        "GET /caf\xe9 HTTP/1.1",
    ]
)
_FIELD_LINES = st.sampled_from(
    [
        "Host: h",
        "host: h",
        "HOST:h:80",
        "Host:",
        "X-A: 1",
        "x-a:  2 ",
        "X-A:\t",
        "X-B: a  b",
        "X-C: caf\xe9",
        "X: a\rb",
        "X: a\x00b",
        "X: a\r",
        "Bad Name: 1",
        " folded",
        "\tfolded",
        "NoColon",
        ":empty-name",
        "Content-Length: 0",
    ]
)


def _general_parse(head: str):
    line_end = head.find("\n")
    start_text = head[:line_end]
    if start_text.endswith("\r"):
        start_text = start_text[:-1]
    try:
        headers = HTTPHeaders.parse(head[line_end + 1 :])
        start_line = parse_request_start_line(start_text)
    except HTTPInputError as e:
        return ("error", str(e))
    return (tuple(start_line), list(headers.get_all()))


@settings(max_examples=300, deadline=None)
@given(
    _REQUEST_LINES,
    st.lists(st.tuples(_FIELD_LINES, st.sampled_from(["\r\n", "\n"])), max_size=6),
    st.sampled_from(["\r\n", "\n"]),
)
def test_request_head_fast_path_agrees_with_general_parse(request_line, fields, newline):
    head = request_line + newline + "".join(line + end for line, end in fields)
    expected = _general_parse(head)
    parser = HTTP1Parser(False)
    parser.feed((head + "\r\n").encode("latin1"))
    try:
        event = parser.next_event()
    except ParseError as e:
        if expected[0] == "error":
            assert str(e) == expected[1]
        else:
            # Only the framing checks after a good parse may add an error.
            assert "Host" in str(e)
        return
    assert event is not None and event[0] == HEAD
    assert (tuple(event[1]), list(event[2].get_all())) == expected
    assert type(event[1]).__name__ == "RequestStartLine"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["HTTP/1.1 200 OK", "HTTP/1.0 404 ", "HTTP/1.1 20 OK", "HTTP/2.0 200 OK"]),
    st.lists(st.tuples(_FIELD_LINES, st.sampled_from(["\r\n", "\n"])), max_size=6),
)
def test_response_head_fields_agree_with_general_parse(status_line, fields):
    head = status_line + "\r\n" + "".join(line + end for line, end in fields)
    line_end = head.find("\n")
    try:
        expected = list(HTTPHeaders.parse(head[line_end + 1 :]).get_all())
        error = None
    except HTTPInputError as e:
        error = str(e)
    parser = HTTP1Parser(True)
    parser.feed((head + "\r\n").encode("latin1"))
    try:
        event = parser.next_event()
    except ParseError as e:
        # Header errors come first; otherwise the status line or framing refused it.
        assert error is None or str(e) == error
        return
    assert error is None and event is not None
    assert list(event[2].get_all()) == expected


def test_body_framing_is_checked_again_when_the_host_is_already_known():
    # The second request repeats the Host, which skips its validation, not the framing.
    parser = HTTP1Parser(False)
    evts = events(parser, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n1234567")
    assert body_of(evts) == b"1234567" and evts[-1] == (END,)
    parser.start_next_message()
    with pytest.raises(ParseError, match="both Transfer-Encoding and Content-Length"):
        events(
            parser,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
        )
