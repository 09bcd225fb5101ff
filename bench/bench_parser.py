"""Request-head parsing cost: squall's pure-Python HTTP1Parser against an httptools reader.

    .venv/bin/python -m bench.bench_parser [--iterations 50000] [--repeats 5]

Everything runs in this process, without sockets. For each request shape, one keep-alive
request is parsed per iteration the way the server does it: squall's parser is fed the
whole request, its events are taken until END and ``start_next_message`` is called; the
httptools reader (one llhttp parser reused across requests) is fed the same bytes and
builds the same ``RequestStartLine`` and ``HTTPHeaders``. A third column times httptools
with callbacks that do nothing: the floor any integration starts from, so the difference
between it and the full reader is what the per-header Python callbacks cost.

Both readers are checked to give equal results before anything is timed. Each figure is
the median over the repeats of the mean time per request, in microseconds.

httptools is optional and not a squall dependency: ``.venv/bin/pip install httptools``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Callable, Optional

from squall._http1parser import DATA, END, HTTP1Parser, ParseError
from squall.httputil import _ABNF, HTTPHeaders, RequestStartLine, _normalize_name

try:
    import httptools
except ImportError:  # pragma: no cover - reported at run time
    httptools = None  # type: ignore[assignment]

SHAPES: list[tuple[str, bytes]] = [
    ("wrk GET (1 header)", b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n\r\n"),
    (
        "browser GET (11 headers)",
        b"GET /articles/42?ref=home HTTP/1.1\r\n"
        b"Host: www.example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
        b"Referer: https://www.example.com/\r\n"
        b"Connection: keep-alive\r\n"
        b"Cookie: session=3f2a9c0d1e8b4a7f; theme=dark; _ga=GA1.2.123456789.1700000000\r\n"
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"Sec-Fetch-Dest: document\r\n"
        b"Sec-Fetch-Mode: navigate\r\n"
        b"\r\n",
    ),
    (
        "POST, 20-byte body",
        b"POST /submit HTTP/1.1\r\n"
        b"Host: 127.0.0.1:8888\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 20\r\n"
        b"\r\n"
        b"name=squall&lang=py3",
    ),
]

Result = tuple[RequestStartLine, HTTPHeaders, bytes]


# --- squall ----------------------------------------------------------------------------


def squall_reader() -> Callable[[bytes], Result]:
    """One server-side parser; each call parses one keep-alive request as the server does."""
    parser = HTTP1Parser(False, None, None, None)
    feed = parser.feed
    next_event = parser.next_event
    start_next_message = parser.start_next_message

    def read(request: bytes) -> Result:
        feed(request)
        head = next_event()
        # A whole request was fed, so the events are HEAD, at most one DATA (the body
        # is far below chunk_size), then END; the server takes them the same way.
        event = next_event()
        body = b""
        if event[0] == DATA:  # type: ignore[index]
            body = event[1]  # type: ignore[index,misc,assignment]
            event = next_event()
        start_next_message()
        return head[1], head[2], body  # type: ignore[index,misc,return-value]

    return read


# --- httptools -------------------------------------------------------------------------

# Raw header name -> normalized name, so that a repeated name costs one dict lookup and no
# decode; bounded like squall's own cache so that hostile names cannot grow it forever.
_NAME_CACHE: dict[bytes, str] = {}
_NAME_CACHE_LIMIT = 1000
_METHOD_NAMES: dict[bytes, str] = {}
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_OWS_BYTES = (32, 9)  # space, horizontal tab
_new_tuple = tuple.__new__


def _normalized_name(name: bytes) -> str:
    normalized = _normalize_name(name.decode("latin1"))
    if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
        _NAME_CACHE[name] = normalized
    return normalized


class HttptoolsRequestReader:
    """Builds squall's request objects from llhttp callbacks, one parser per connection.

    llhttp (strict mode) already rejects what squall's header grammar rejects: bad name
    characters, control characters in values, bare CR, obs-fold, and conflicting framing.
    What is left to Python is stripping trailing whitespace (llhttp keeps it), the Host
    rules and the version check.
    """

    __slots__ = (
        "parser",
        "url",
        "headers",
        "values",
        "start_line",
        "finished_headers",
        "body",
        "complete",
        "valid_host",
    )

    def __init__(self) -> None:
        assert httptools is not None
        self.url = b""
        self.headers = HTTPHeaders()
        self.values = self.headers._values
        self.start_line: Optional[RequestStartLine] = None
        self.finished_headers: Optional[HTTPHeaders] = None
        self.body = b""
        self.complete = False
        self.valid_host = ""
        # Created last: the parser looks the callbacks up once, at construction.
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        # The target may arrive in pieces when it straddles two reads.
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        normalized = _NAME_CACHE.get(name) or _normalized_name(name)
        if value and value[-1] in _OWS_BYTES:
            value = value.rstrip(b" \t")
        existing = self.values.get(normalized)
        if existing is None:
            self.values[normalized] = [value.decode("latin1")]
        else:
            existing.append(value.decode("latin1"))

    def on_headers_complete(self) -> None:
        parser = self.parser
        values = self.values
        raw_version = parser.get_http_version()
        version = _VERSIONS.get(raw_version)
        if version is None:
            if not raw_version.startswith("1."):
                raise ParseError("Unexpected HTTP version %r" % raw_version)
            version = "HTTP/" + raw_version
        hosts = values.get("Host")
        if hosts is None:
            if version == "HTTP/1.1":
                raise ParseError("Missing Host header")
        elif len(hosts) > 1:
            raise ParseError("Multiple Host headers")
        elif hosts[0] != self.valid_host:
            if not _ABNF.host.fullmatch(hosts[0]):
                raise ParseError("Invalid Host header %r" % hosts[0])
            self.valid_host = hosts[0]
        raw_method = parser.get_method()
        method = _METHOD_NAMES.get(raw_method)
        if method is None:
            method = _METHOD_NAMES[raw_method] = raw_method.decode("ascii")
        self.start_line = _new_tuple(RequestStartLine, (method, self.url.decode("latin1"), version))
        self.finished_headers = self.headers
        # Ready for the next request on this connection.
        self.url = b""
        self.body = b""
        self.headers = HTTPHeaders()
        self.values = self.headers._values

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def httptools_reader() -> Callable[[bytes], Result]:
    reader = HttptoolsRequestReader()
    feed = reader.parser.feed_data

    def read(request: bytes) -> Result:
        feed(request)
        return reader.start_line, reader.finished_headers, reader.body  # type: ignore[return-value]

    return read


class _EmptyCallbacks:
    """Every callback the reader uses, doing nothing: llhttp plus the call overhead."""

    __slots__ = ()

    def on_url(self, url: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        pass

    def on_headers_complete(self) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        pass

    def on_message_complete(self) -> None:
        pass


def httptools_floor() -> Callable[[bytes], object]:
    return httptools.HttpRequestParser(_EmptyCallbacks()).feed_data  # type: ignore[no-any-return]


def llhttp_only() -> Callable[[bytes], object]:
    class NoCallbacks:
        __slots__ = ()

    return httptools.HttpRequestParser(NoCallbacks()).feed_data  # type: ignore[no-any-return]


# --- validation probes -----------------------------------------------------------------

_BASE = b"GET / HTTP/1.1\r\nHost: a\r\n"
PROBES: list[tuple[str, bytes]] = [
    ("bare CR inside a value", _BASE + b"X: a\rb\r\n\r\n"),
    ("bare CR ending the request line", b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
    ("obs-fold (continuation line)", _BASE + b"X: a\r\n b\r\n\r\n"),
    ("space in a header name", _BASE + b"X Y: a\r\n\r\n"),
    ("space before the colon", _BASE + b"X : a\r\n\r\n"),
    ("'@' in a header name", _BASE + b"X@Y: a\r\n\r\n"),
    ("NUL in a value", _BASE + b"X: a\x00b\r\n\r\n"),
    ("DEL in a value", _BASE + b"X: a\x7fb\r\n\r\n"),
    ("line without colon", _BASE + b"XY\r\n\r\n"),
    (
        "Content-Length and Transfer-Encoding",
        _BASE + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    ("two different Content-Lengths", _BASE + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx"),
    ("Content-Length: +1", _BASE + b"Content-Length: +1\r\n\r\nx"),
    ("Transfer-Encoding: gzip", _BASE + b"Transfer-Encoding: gzip\r\n\r\n"),
    ("control char in target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two Host headers", _BASE + b"Host: b\r\n\r\n"),
    ("invalid Host value", b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n"),
    ("HTTP/2.0 in a request line", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
    ("two spaces after the method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\n\n"),
    ("unregistered method FOO", b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("lowercase method get", b"get / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("byte \\xe9 in target", b"GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("Content-Length: 1,1", _BASE + b"Content-Length: 1,1\r\n\r\nx"),
]


def _squall_verdict(request: bytes) -> str:
    parser = HTTP1Parser(False, None, None, None)
    parser.feed(request)
    try:
        while True:
            event = parser.next_event()
            if event is None or event[0] == END:
                return "accepts"
    except ParseError:
        return "rejects"


def _httptools_verdict(request: bytes) -> str:
    reader = HttptoolsRequestReader()
    try:
        reader.parser.feed_data(request)
    except httptools.HttpParserError:
        return "rejects"
    return "accepts" if reader.start_line is not None else "incomplete"


# --- timing ----------------------------------------------------------------------------


def time_per_call(
    call: Callable[[bytes], object], request: bytes, iterations: int, repeats: int
) -> float:
    """Median over ``repeats`` of the mean microseconds per call."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        # Both contenders allocate alike; keeping the collector out makes repeats steadier.
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(iterations):
                call(request)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        samples.append(elapsed / iterations * 1e6)
    return statistics.median(samples)


def check_equal(request: bytes) -> None:
    """Both readers must produce the same objects, over several keep-alive requests."""
    squall_read = squall_reader()
    httptools_read = httptools_reader()
    for _ in range(3):
        squall_line, squall_headers, squall_body = squall_read(request)
        ht_line, ht_headers, ht_body = httptools_read(request)
        assert type(ht_line) is RequestStartLine, type(ht_line)
        assert type(ht_headers) is HTTPHeaders, type(ht_headers)
        assert ht_line == squall_line, (ht_line, squall_line)
        assert list(ht_headers.get_all()) == list(squall_headers.get_all()), (
            list(ht_headers.get_all()),
            list(squall_headers.get_all()),
        )
        assert ht_headers._values == squall_headers._values
        assert ht_body == squall_body, (ht_body, squall_body)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arguments.add_argument("--iterations", type=int, default=50000)
    arguments.add_argument("--repeats", type=int, default=5)
    options = arguments.parse_args()
    if httptools is None:
        sys.exit("httptools is not installed: .venv/bin/pip install httptools")

    for _, request in SHAPES:
        check_equal(request)
    # Trailing whitespace and a repeated name go through the same checks.
    check_equal(b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: v \t\r\nx-pad: w\r\n\r\n")
    # A request cut inside its target and inside a header still gives the same result.
    split_reader = HttptoolsRequestReader()
    request = SHAPES[1][1]
    split_reader.parser.feed_data(request[:20])
    split_reader.parser.feed_data(request[20:90])
    split_reader.parser.feed_data(request[90:])
    expected = squall_reader()(request)
    assert split_reader.start_line == expected[0]
    assert split_reader.finished_headers._values == expected[1]._values  # type: ignore[union-attr]

    print("httptools %s (llhttp), Python %s" % (httptools.__version__, sys.version.split()[0]))
    print(
        "per request, median of %d x %d iterations, in-process, no sockets (µs)"
        % (options.repeats, options.iterations)
    )
    header = "%-26s %9s %10s %9s %11s %9s" % (
        "shape",
        "squall",
        "httptools",
        "saved",
        "ht no-op cb",
        "llhttp",
    )
    print(header)
    print("-" * len(header))
    for name, request in SHAPES:
        iterations, repeats = options.iterations, options.repeats
        squall_us = time_per_call(squall_reader(), request, iterations, repeats)
        httptools_us = time_per_call(httptools_reader(), request, iterations, repeats)
        floor_us = time_per_call(httptools_floor(), request, iterations, repeats)
        bare_us = time_per_call(llhttp_only(), request, iterations, repeats)
        print(
            "%-26s %9.2f %10.2f %9.2f %11.2f %9.2f"
            % (name, squall_us, httptools_us, squall_us - httptools_us, floor_us, bare_us)
        )
    print(
        "saved = squall - httptools; 'ht no-op cb' = httptools with empty Python callbacks;"
        " 'llhttp' = no callbacks at all."
    )

    print()
    print("validation (same for both unless marked):")
    for label, request in PROBES:
        squall_says = _squall_verdict(request)
        httptools_says = _httptools_verdict(request)
        mark = "" if squall_says == httptools_says else "   <-- differs"
        print(
            "  %-38s squall %-8s httptools reader %-8s%s"
            % (label, squall_says, httptools_says, mark)
        )


if __name__ == "__main__":
    main()
