"""HTTP utilities shared by the server, the client and the web framework.

Holds the header multidict, the request object handed to applications, the delegate
interfaces between the connection layer and the layers above it, and the parsers for
start lines, cookies, query strings and form bodies.
"""

from __future__ import annotations

import abc
import calendar
import copy
import dataclasses
import datetime
import email.utils
import http.client
import http.cookies
import re
import time
import unicodedata
import urllib.parse
import warnings
from collections.abc import Awaitable, Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Union

from squall.util import ObjectDict

if TYPE_CHECKING:
    from squall.concurrent import Future

__all__ = [
    "HTTPHeaders",
    "HTTPServerRequest",
    "HTTPInputError",
    "HTTPOutputError",
    "HTTPServerConnectionDelegate",
    "HTTPMessageDelegate",
    "HTTPConnection",
    "url_concat",
    "HTTPFile",
    "ParseMultipartConfig",
    "ParseUrlEncodedConfig",
    "ParseBodyConfig",
    "set_parse_body_config",
    "parse_body_arguments",
    "parse_multipart_form_data",
    "format_timestamp",
    "RequestStartLine",
    "parse_request_start_line",
    "ResponseStartLine",
    "parse_response_start_line",
    "encode_username_password",
    "split_host_and_port",
    "qs_to_qsl",
    "parse_cookie",
    "responses",
    "HTTP_WHITESPACE",
]

# The only characters HTTP treats as optional whitespace around field values (RFC 9110
# section 5.6.3); str.strip() with no argument would also eat NBSP and friends.
HTTP_WHITESPACE = " \t"

# Status code -> reason phrase, e.g. ``responses[404] == "Not Found"``.
responses: dict[int, str] = dict(http.client.responses)


class _ABNF:
    """Regular expressions for the HTTP grammar of RFC 9110 / 9112 / 3986.

    Each attribute is a compiled pattern meant for ``fullmatch``. The property tests
    generate valid input from these same patterns, so they must describe exactly what
    the parsers accept.
    """

    _tchar = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
    _vchar = r"[\x21-\x7e]"
    _obs_text = r"[\x80-\xff]"
    _field_vchar = r"[\x21-\x7e\x80-\xff]"
    _field_value = r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
    _unreserved = r"[A-Za-z0-9\-._~]"
    _sub_delims = r"[!$&'()*+,;=]"
    _pct_encoded = r"%[0-9A-Fa-f]{2}"
    _ip_literal = r"\[[0-9A-Za-z:.\-_~!$&'()*+,;=]*\]"
    _reg_name = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
    _uri_host = "(?:" + _ip_literal + "|" + _reg_name + ")"
    _uri_port = r"[0-9]*"
    # Lenient on purpose: any visible character except controls and space, so that
    # non-ASCII paths sent raw by clients are still routed (the application decides).
    _request_target = r"[^\x00-\x20\x7f]+"
    _http_version = r"HTTP/[0-9]\.[0-9]"
    _reason_phrase = r"[\t\x20-\x7e\x80-\xff]+"

    tchar = re.compile(_tchar)
    token = re.compile(_tchar + "+")
    field_name = token
    VCHAR = re.compile(_vchar)
    obs_text = re.compile(_obs_text)
    field_vchar = re.compile(_field_vchar)
    field_value = re.compile(_field_value)
    method = token
    request_target = re.compile(_request_target)
    HTTP_version = re.compile(_http_version)
    request_line = re.compile("(" + _tchar + "+) (" + _request_target + ") (" + _http_version + ")")
    status_code = re.compile("[0-9]{3}")
    reason_phrase = re.compile(_reason_phrase)
    status_line = re.compile("(" + _http_version + ") ([0-9]{3}) (" + _reason_phrase + ")?")
    uri_unreserved = re.compile(_unreserved)
    uri_sub_delims = re.compile(_sub_delims)
    uri_pct_encoded = re.compile(_pct_encoded)
    uri_host = re.compile(_uri_host)
    uri_port = re.compile(_uri_port)
    host = re.compile(_uri_host + "(?::" + _uri_port + ")?")


# Values whose characters are already text (multipart part headers decoded as UTF-8)
# may hold any non-ASCII character, not only the latin1 range.
_FIELD_VALUE_TEXT = re.compile(
    r"(?:[\x21-\x7e\x80-\U0010ffff](?:[\t\x20-\x7e\x80-\U0010ffff]*[\x21-\x7e\x80-\U0010ffff])?)?"
)


# A whole header line: name, colon, optional whitespace, then an optional non-empty
# value with its trailing whitespace (group 2 is None for an empty value). Whitespace
# after an empty value is all taken by the first run, so no run of spaces can be split
# two ways: a failing match stays linear in the line length.
_VALUE = r"[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?"
_VALUE_TEXT = (
    r"[\x21-\x7e\x80-\U0010ffff](?:[\t\x20-\x7e\x80-\U0010ffff]*[\x21-\x7e\x80-\U0010ffff])?"
)
_HEADER_LINE = re.compile("(" + _ABNF._tchar + "+):[ \t]*(?:(" + _VALUE + ")[ \t]*)?")
_HEADER_LINE_TEXT = re.compile("(" + _ABNF._tchar + "+):[ \t]*(?:(" + _VALUE_TEXT + ")[ \t]*)?")
# Header lines for findall, each taken with the newline before it: a match starts only
# at a newline (a literal the regex engine scans for quickly) and must cover the whole
# line after it, so a block is valid when every line yields a match. The value keeps
# its surrounding whitespace (the caller strips it): letting the regex drop it would
# need optional groups, which cost more than the strip, or overlapping whitespace
# runs, which backtrack quadratically on a bad line.
_HEADER_LINES = re.compile("\n(" + _ABNF._tchar + "+):([\t\x20-\x7e\x80-\xff]*)\r?(?=\n)")


class HTTPInputError(Exception):
    """Malformed HTTP input: a bad request or response from the peer."""


class HTTPOutputError(Exception):
    """The application tried to write something that is not valid HTTP."""


# Header-name normalization is on the hot path of every parsed line; the cache keeps the
# few dozen names real traffic uses. It is bounded so hostile input cannot grow it.
_NORMALIZED_NAMES: dict[str, str] = {}
_NORMALIZED_NAMES_LIMIT = 1000


def _normalize_name(name: str) -> str:
    try:
        return _NORMALIZED_NAMES[name]
    except KeyError:
        pass
    normalized = "-".join(part.capitalize() for part in name.split("-"))
    if len(_NORMALIZED_NAMES) < _NORMALIZED_NAMES_LIMIT:
        _NORMALIZED_NAMES[name] = normalized
    return normalized


_new_object = object.__new__


def _rebuild_headers(pairs: list[tuple[str, Any]]) -> HTTPHeaders:
    headers = HTTPHeaders()
    for name, value in pairs:
        headers._append(_normalize_name(name), value)
    return headers


class HTTPHeaders(MutableMapping[str, str]):
    """A case-insensitive, ordered multidict of HTTP header fields.

    ``headers["Name"]`` gives all values joined with commas; ``get_list`` gives them
    one by one and ``get_all`` yields every (name, value) pair. Assigning replaces
    all values of a name (keeping its position); ``add`` appends one.
    """

    __slots__ = ("_values", "_joined")

    def __init__(self, *args: Any, **kwargs: str) -> None:
        # Normalized name -> values in arrival order; the dict keeps first-seen order.
        self._values: dict[str, list[Any]] = {}
        # Comma-joined values of multi-valued names, filled by __getitem__ on demand.
        self._joined: dict[str, str] = {}
        if not args and not kwargs:
            return
        if len(args) == 1 and not kwargs and isinstance(args[0], HTTPHeaders):
            for name, values in args[0]._values.items():
                self._values[name] = list(values)
        else:
            self.update(*args, **kwargs)

    def _append(self, normalized: str, value: Any) -> None:
        values = self._values.get(normalized)
        if values is None:
            self._values[normalized] = [value]
        else:
            values.append(value)
            if self._joined:
                self._joined.pop(normalized, None)

    def add(self, name: str, value: str, *, _chars_are_bytes: bool = True) -> None:
        """Adds a value for ``name``, keeping any values it already has."""
        if not _ABNF.field_name.fullmatch(name):
            raise HTTPInputError("Invalid header name %r" % name)
        if isinstance(value, str):
            pattern = _ABNF.field_value if _chars_are_bytes else _FIELD_VALUE_TEXT
            if not pattern.fullmatch(value):
                raise HTTPInputError("Invalid header value %r" % value)
        self._append(_normalize_name(name), value)

    def get_list(self, name: str) -> list[str]:
        """All values of ``name`` as a new list (empty when absent)."""
        values = self._values.get(_normalize_name(name))
        return list(values) if values is not None else []

    def get_all(self) -> Iterator[tuple[str, str]]:
        """Yields every (name, value) pair; a repeated name yields one pair per value."""
        for name, values in self._values.items():
            for value in values:
                yield name, value

    def parse_line(self, line: str, *, _chars_are_bytes: bool = True) -> None:
        """Adds one ``Name: value`` line; a trailing CRLF or LF is ignored, as is a blank line."""
        if line.endswith("\n"):
            line = line[:-2] if line.endswith("\r\n") else line[:-1]
            if not line:
                return
        if line[:1] in (" ", "\t"):
            raise HTTPInputError("header line cannot start with whitespace, folding not supported")
        name, colon, value = line.partition(":")
        if not colon:
            raise HTTPInputError("no colon in header line")
        if not _ABNF.field_name.fullmatch(name):
            raise HTTPInputError("Invalid header name %r" % name)
        value = value.strip(HTTP_WHITESPACE)
        pattern = _ABNF.field_value if _chars_are_bytes else _FIELD_VALUE_TEXT
        if not pattern.fullmatch(value):
            raise HTTPInputError("Invalid header value %r" % value)
        self._append(_normalize_name(name), value)

    @classmethod
    def parse(cls, headers: str, *, _chars_are_bytes: bool = True) -> HTTPHeaders:
        """Parses a header block: lines ending in CRLF or LF, blank lines ignored.

        A CR that does not end a line is an error, as are folded lines.
        """
        result = cls()
        values = result._values
        names = _NORMALIZED_NAMES
        if headers[-2:] == "\r\n" and headers.count("\n") == 1:
            # One field line (common for simple clients): no split, no loop.
            match = (_HEADER_LINE if _chars_are_bytes else _HEADER_LINE_TEXT).fullmatch(
                headers, 0, len(headers) - 2
            )
            if match is not None:
                name, value = match.groups()
                values[names.get(name) or _normalize_name(name)] = [value or ""]
                return result
        # One combined match per line does what parse_line does with several steps;
        # a line it refuses goes through parse_line, which names the exact problem.
        line_pattern = _HEADER_LINE if _chars_are_bytes else _HEADER_LINE_TEXT
        for line in headers.split("\n"):
            if line[-1:] == "\r":
                line = line[:-1]
            if not line:
                continue
            match = line_pattern.fullmatch(line)
            if match is None:
                result.parse_line(line, _chars_are_bytes=_chars_are_bytes)
                continue
            name, value = match.groups()
            result._append(names.get(name) or _normalize_name(name), value or "")
        return result

    # MutableMapping interface

    def __setitem__(self, name: str, value: str) -> None:
        normalized = _NORMALIZED_NAMES.get(name) or _normalize_name(name)
        self._values[normalized] = [value]
        if self._joined:
            self._joined.pop(normalized, None)

    def __getitem__(self, name: str) -> str:
        normalized = _NORMALIZED_NAMES.get(name) or _normalize_name(name)
        values = self._values[normalized]
        if len(values) == 1:
            return values[0]
        joined = self._joined.get(normalized)
        if joined is None:
            joined = ",".join(values)
            self._joined[normalized] = joined
        return joined

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        # A missing name is the common case for optional headers: answer it without
        # raising and catching a KeyError.
        values = self._values.get(_NORMALIZED_NAMES.get(name) or _normalize_name(name))
        if values is None:
            return default
        if len(values) == 1:
            return values[0]
        return self[name]

    def __contains__(self, name: object) -> bool:
        if type(name) is not str:
            return isinstance(name, str) and _normalize_name(name) in self._values
        return (_NORMALIZED_NAMES.get(name) or _normalize_name(name)) in self._values

    def __delitem__(self, name: str) -> None:
        normalized = _normalize_name(name)
        del self._values[normalized]
        self._joined.pop(normalized, None)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def copy(self) -> HTTPHeaders:
        """A copy whose value lists are independent of this one's."""
        return HTTPHeaders(self)

    def __copy__(self) -> HTTPHeaders:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> HTTPHeaders:
        return _rebuild_headers(copy.deepcopy(list(self.get_all()), memo))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_headers, (list(self.get_all()),))

    def __str__(self) -> str:
        return "".join("%s: %s\n" % (name, value) for name, value in self.get_all())

    __unicode__ = __str__

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, dict(self._values))


def _parse_header_block(text: str, start: int) -> Optional[HTTPHeaders]:
    """Header lines of ``text`` from ``start`` (just after a newline), or None for "use parse".

    The fast path for message heads (a plain function: the parser calls it for every
    request): ``text`` must end with a newline. Anything unusual (a bad line, a blank
    line, a bare CR) answers None, and ``HTTPHeaders.parse`` then names the problem.
    """
    # One match per line, or the block goes to parse. Every line ends in a
    # newline, so the count of newlines is the count of lines.
    pairs = _HEADER_LINES.findall(text, start - 1)
    if len(pairs) != text.count("\n", start):
        return None
    names = _NORMALIZED_NAMES
    values: dict[str, list[Any]] = {}
    for name, value in pairs:
        value = value.strip(HTTP_WHITESPACE)
        normalized = names.get(name) or _normalize_name(name)
        existing = values.get(normalized)
        if existing is None:
            values[normalized] = [value]
        else:
            existing.append(value)
    # Built without __init__, whose generic argument handling costs more than the
    # whole parse of a short head.
    headers = _new_object(HTTPHeaders)
    headers._values = values
    headers._joined = {}
    return headers


# A Date header value is the same for every response within one second; computing it
# once per second keeps email.utils off the response path.
_cached_date: tuple[int, str] = (0, "")


def _http_date_now() -> str:
    """The current time as an HTTP-date, cached per second."""
    global _cached_date
    now = int(time.time())
    if _cached_date[0] != now:
        _cached_date = (now, email.utils.formatdate(now, usegmt=True))
    return _cached_date[1]


# Host header value -> host name, for the few hosts a server is reached by; bounded so
# that clients sending arbitrary Host values cannot grow it.
_HOST_NAMES: dict[str, str] = {}
_HOST_NAMES_LIMIT = 256


# What Morsel() builds (its dict entries and attributes), copied into each new morsel:
# Morsel.__init__ fills every reserved attribute one by one, which costs more than
# parsing the cookie it is for. Taken from a real Morsel, so it follows the stdlib.
_MORSEL_ITEMS = dict(http.cookies.Morsel())
_MORSEL_ATTRIBUTES = dict(vars(http.cookies.Morsel()))
_dict_update = dict.update


def _new_morsel() -> http.cookies.Morsel:
    morsel: http.cookies.Morsel = http.cookies.Morsel.__new__(http.cookies.Morsel)
    _dict_update(morsel, _MORSEL_ITEMS)
    vars(morsel).update(_MORSEL_ATTRIBUTES)
    return morsel


def _split_absolute_target(target: str) -> Optional[tuple[str, str]]:
    """``(authority, origin-form target)`` for an absolute http(s) URI, else None."""
    scheme, sep, rest = target.partition("://")
    if scheme.lower() not in ("http", "https"):
        return None
    authority, slash, path = rest.partition("/")
    query = ""
    if not slash:
        authority, question, query = authority.partition("?")
        path = ("?" + query) if question else ""
    if not authority or not _ABNF.host.fullmatch(authority):
        return None  # (userinfo or junk: left as it came, so it routes nowhere)
    return authority, "/" + path


class HTTPServerRequest:
    """One HTTP request as an application sees it.

    Attributes: ``method``, ``uri``, ``path``, ``query``, ``version``, ``headers``,
    ``body``, ``remote_ip``, ``protocol``, ``host``, ``host_name``, ``arguments``
    (query and body arguments together), ``query_arguments``, ``body_arguments``,
    ``files``, ``connection`` and ``server_connection``.
    """

    # __dict__ stays available (created lazily) because applications commonly attach
    # their own attributes to the request.
    __slots__ = (
        "method",
        "uri",
        "version",
        "headers",
        "body",
        "remote_ip",
        "protocol",
        "host",
        "host_name",
        "files",
        "connection",
        "server_connection",
        "_start_time",
        "_finish_time",
        "path",
        "query",
        "arguments",
        "query_arguments",
        "body_arguments",
        "_cookies",
        "__dict__",
    )

    path: str
    query: str

    def __init__(
        self,
        method: Optional[str] = None,
        uri: Optional[str] = None,
        version: str = "HTTP/1.0",
        headers: Optional[HTTPHeaders] = None,
        body: Optional[bytes] = None,
        host: Optional[str] = None,
        files: Optional[dict[str, list[HTTPFile]]] = None,
        connection: Optional[HTTPConnection] = None,
        start_line: Optional[RequestStartLine] = None,
        server_connection: Optional[object] = None,
    ) -> None:
        if start_line is not None:
            method, uri, version = start_line
        else:
            # the old signature; what is left out means "GET /", as in Tornado
            warnings.warn(
                "HTTPServerRequest(method, uri, version) is deprecated; pass start_line",
                DeprecationWarning,
                stacklevel=2,
            )
            method = method or "GET"
            uri = uri or "/"
        if uri[:1] != "/" and "://" in uri:
            # The absolute form (GET http://host/path HTTP/1.1), which servers must accept
            # (RFC 9112 3.2.2): route on its path, and its authority replaces Host.
            absolute = _split_absolute_target(uri)
            if absolute is not None:
                host, uri = absolute
        self.method = method
        self.uri = uri
        self.version = version
        if headers is None:
            headers = HTTPHeaders()
        self.headers = headers
        self.body = body or b""
        context = getattr(connection, "context", None)
        self.remote_ip = getattr(context, "remote_ip", None)
        self.protocol = getattr(context, "protocol", "http")
        if not host:
            if type(headers) is HTTPHeaders:
                hosts = headers._values.get("Host")
                host = (hosts[0] if len(hosts) == 1 else headers["Host"]) if hosts else None
            else:
                host = headers.get("Host")
        host = self.host = host or "127.0.0.1"
        host_name = _HOST_NAMES.get(host)
        if host_name is None:
            host_name = split_host_and_port(host.lower())[0]
            if len(_HOST_NAMES) < _HOST_NAMES_LIMIT:
                _HOST_NAMES[host] = host_name
        self.host_name = host_name
        self.files = files or {}
        self.connection = connection
        self.server_connection = server_connection
        self._start_time = time.time()
        self._finish_time: Optional[float] = None
        self._cookies: Optional[dict[str, http.cookies.Morsel]] = None
        if "?" in uri:
            path, _, query = uri.partition("?")
            self.path = path
            self.query = query
            self.query_arguments = _parse_qs_bytes(
                query, _active_parse_body_config.urlencoded.max_arguments
            )
            self.arguments: dict[str, list[bytes]] = {
                name: list(values) for name, values in self.query_arguments.items()
            }
        else:
            # Most requests: no split and no argument parsing.
            self.path = uri
            self.query = ""
            self.query_arguments = {}
            self.arguments = {}
        self.body_arguments: dict[str, list[bytes]] = {}

    @property
    def cookies(self) -> dict[str, http.cookies.Morsel]:
        """The request's cookies as ``name -> http.cookies.Morsel``."""
        if self._cookies is None:
            cookies: dict[str, http.cookies.Morsel] = {}
            header = self.headers.get("Cookie")
            if header:
                try:
                    parsed = parse_cookie(header)
                except Exception:
                    parsed = {}
                for name, value in parsed.items():
                    morsel = _new_morsel()
                    try:
                        morsel.set(name, value, value)
                    except http.cookies.CookieError:
                        # A name the stdlib refuses (reserved or illegal) is skipped.
                        continue
                    cookies[name] = morsel
            self._cookies = cookies
        return self._cookies

    def full_url(self) -> str:
        """The reconstructed URL: protocol, host and uri."""
        return self.protocol + "://" + self.host + self.uri

    def request_time(self) -> float:
        """Seconds the request took, or has taken so far if it is not finished."""
        end = self._finish_time if self._finish_time is not None else time.time()
        return end - self._start_time

    def get_ssl_certificate(self, binary_form: bool = False) -> Union[None, dict[str, Any], bytes]:
        """The client's TLS certificate, when the server asked for one and got it.

        The dict form is only filled when the certificate was verified (``cert_reqs``
        in the server's SSL options); ``binary_form=True`` gives the DER bytes.
        """
        stream = getattr(self.connection, "stream", None)
        # A TLS stream's socket answers getpeercert (plain sockets do not have it).
        peercert = getattr(getattr(stream, "socket", None), "getpeercert", None)
        if peercert is None:
            return None
        try:
            return peercert(binary_form=binary_form)
        except ValueError:
            return None

    def _parse_body(self) -> None:
        content_type = self.headers.get("Content-Type", "")
        parse_body_arguments(content_type, self.body, self.body_arguments, self.files, self.headers)
        # ``arguments`` has the query's values of a name first, then the body's.
        _add_arguments(self.arguments, self.body_arguments)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _REPR_FIELDS)
        return f"{type(self).__name__}({shown})"


# What repr(HTTPServerRequest) shows, in this order.
_REPR_FIELDS = ("protocol", "host", "method", "uri", "version", "remote_ip")


def _add_arguments(target: dict[str, list[bytes]], source: dict[str, list[bytes]]) -> None:
    """Appends each of ``source``'s values to ``target``'s list for that name (a new list
    when ``target`` has none, so the two dicts never share one)."""
    for name, values in source.items():
        have = target.get(name)
        if have is None:
            target[name] = list(values)
        else:
            have.extend(values)


class HTTPServerConnectionDelegate(metaclass=abc.ABCMeta):
    """What a server (``HTTPServer``) implements to receive requests from connections."""

    @abc.abstractmethod
    def start_request(
        self, server_conn: object, request_conn: HTTPConnection
    ) -> HTTPMessageDelegate:
        """Called when a new request starts; returns the delegate that will receive it.

        ``server_conn`` identifies the underlying connection (several requests may
        share it); ``request_conn`` is what the response is written to.
        """

    def on_close(self, server_conn: object) -> None:  # noqa: B027 - optional hook
        """Called when a connection started by this delegate closes."""


class HTTPMessageDelegate:
    """Receives one HTTP message (request or response) piece by piece.

    Any of the methods may return an awaitable; the connection then stops reading
    until it is done.
    """

    __slots__ = ()

    def headers_received(
        self,
        start_line: Union[RequestStartLine, ResponseStartLine],
        headers: HTTPHeaders,
    ) -> Optional[Awaitable[None]]:
        """Called once the start line and headers are in."""
        return None

    def data_received(self, chunk: bytes) -> Optional[Awaitable[None]]:
        """Called for each piece of the body."""
        return None

    def finish(self) -> None:
        """Called after the last piece of the body."""

    def on_connection_close(self) -> None:
        """Called when the connection closes before the message was finished."""


class HTTPConnection:
    """What the application writes its response (or a client its request) to.

    An interface (HTTP1Connection implements it): each method raises NotImplementedError
    here. A plain class rather than an ABC, so that the compiled build can make it the base
    of its extension type (see http1connection.pxd).
    """

    __slots__ = ()

    def write_headers(
        self,
        start_line: Union[RequestStartLine, ResponseStartLine],
        headers: HTTPHeaders,
        chunk: Optional[bytes] = None,
    ) -> Future[None]:
        """Writes the start line and headers, with the first piece of body if given.

        Returns a future resolved once the data has been written out.
        """
        raise NotImplementedError()

    def write(self, chunk: bytes) -> Future[None]:
        """Writes a piece of body; returns a future resolved once it is written out."""
        raise NotImplementedError()

    def finish(self) -> None:
        """Marks the message complete."""
        raise NotImplementedError()


def url_concat(
    url: str,
    args: Union[None, dict[str, str], list[tuple[str, str]], tuple[tuple[str, str], ...]],
) -> str:
    """Appends query arguments to ``url``, after any it already has.

    >>> url_concat("http://example.com/foo?a=b", dict(c="d"))
    'http://example.com/foo?a=b&c=d'
    """
    if args is None:
        return url
    parts = urllib.parse.urlparse(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if isinstance(args, dict):
        pairs.extend(args.items())
    elif isinstance(args, (list, tuple)):
        pairs.extend(args)
    else:
        raise TypeError("'args' parameter should be dict, list or tuple. Not {}".format(type(args)))
    return urllib.parse.urlunparse(
        (
            parts.scheme,
            parts.netloc,
            parts.path,
            parts.params,
            urllib.parse.urlencode(pairs),
            parts.fragment,
        )
    )


class HTTPFile(ObjectDict):
    """An uploaded file: ``filename``, ``body`` and ``content_type``.

    Also readable as a dict (``file["body"]``) for backwards compatibility.
    """

    filename: str
    body: bytes
    content_type: str


@dataclasses.dataclass
class ParseMultipartConfig:
    """Limits for ``multipart/form-data`` bodies."""

    enabled: bool = True
    max_parts: int = 100
    max_part_header_size: int = 10 * 1024


@dataclasses.dataclass
class ParseUrlEncodedConfig:
    """Limits for ``application/x-www-form-urlencoded`` bodies and query strings."""

    max_arguments: int = 1000


@dataclasses.dataclass
class ParseBodyConfig:
    """Limits applied when parsing form bodies (see ``set_parse_body_config``)."""

    multipart: ParseMultipartConfig = dataclasses.field(default_factory=ParseMultipartConfig)
    urlencoded: ParseUrlEncodedConfig = dataclasses.field(default_factory=ParseUrlEncodedConfig)


_DEFAULT_PARSE_BODY_CONFIG = ParseBodyConfig()
_active_parse_body_config = _DEFAULT_PARSE_BODY_CONFIG


def set_parse_body_config(config: ParseBodyConfig) -> None:
    """Sets the limits used when ``parse_body_arguments`` is called without ``config``."""
    global _active_parse_body_config
    _active_parse_body_config = config


_unquote_to_bytes = urllib.parse.unquote_to_bytes


def _parse_qs_bytes(query: Union[str, bytes], max_arguments: int) -> dict[str, list[bytes]]:
    # Keys come out as latin1-decoded text and values as the raw bytes, so that the
    # application chooses the charset of values (see RequestHandler.decode_argument).
    if isinstance(query, bytes):
        query = query.decode("latin1")
    # The same split and unquoting as the stdlib's parse_qs (which stays the reference,
    # and the path for text beyond latin1), without its several calls per piece, which
    # cost microseconds for a short query. With latin1, unquoting a piece is the
    # same as unquote_to_bytes on its latin1 bytes, and only pieces with a "%" need it.
    if query and max_arguments is not None and query.count("&") >= max_arguments:
        raise HTTPInputError("Max number of fields exceeded")
    found: dict[str, list[bytes]] = {}
    try:
        for piece in query.split("&"):
            if not piece:
                continue
            name, _, value = piece.partition("=")
            name = name.replace("+", " ")
            encoded = value.replace("+", " ").encode("latin1")
            if "%" in piece:
                if "%" in name:
                    name = _unquote_to_bytes(name.encode("latin1")).decode("latin1")
                if b"%" in encoded:
                    encoded = _unquote_to_bytes(encoded)
            values = found.get(name)
            if values is None:
                found[name] = [encoded]
            else:
                values.append(encoded)
        return found
    except UnicodeEncodeError:
        # Text beyond latin1 (only from a uri built by hand): the general path
        # raises the error it always raised.
        pass
    try:
        parsed = urllib.parse.parse_qs(
            query,
            keep_blank_values=True,
            encoding="latin1",
            errors="strict",
            max_num_fields=max_arguments,
        )
    except ValueError as e:
        raise HTTPInputError(str(e)) from None
    return {name: [value.encode("latin1") for value in values] for name, values in parsed.items()}


def parse_body_arguments(
    content_type: str,
    body: bytes,
    arguments: dict[str, list[bytes]],
    files: dict[str, list[HTTPFile]],
    headers: Optional[HTTPHeaders] = None,
    *,
    config: Optional[ParseBodyConfig] = None,
) -> None:
    """Parses a form body into ``arguments`` and ``files``.

    Understands ``application/x-www-form-urlencoded`` and ``multipart/form-data``;
    other content types are left alone. Raises ``HTTPInputError`` on a malformed body
    or one over the configured limits.
    """
    if config is None:
        config = _active_parse_body_config
    if headers is not None and "Content-Encoding" in headers:
        raise HTTPInputError("Unsupported Content-Encoding: %s" % headers["Content-Encoding"])
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            parsed = _parse_qs_bytes(body, config.urlencoded.max_arguments)
        except HTTPInputError as e:
            raise HTTPInputError("Invalid x-www-form-urlencoded body: %s" % e) from None
        _add_arguments(arguments, parsed)
    elif content_type.startswith("multipart/form-data"):
        _, params = _parse_header(content_type)
        boundary = params.get("boundary")
        if not boundary:
            raise HTTPInputError("Invalid multipart/form-data: no boundary")
        parse_multipart_form_data(
            boundary.encode("latin1"), body, arguments, files, config=config.multipart
        )


def parse_multipart_form_data(
    boundary: bytes,
    data: bytes,
    arguments: dict[str, list[bytes]],
    files: dict[str, list[HTTPFile]],
    *,
    config: Optional[ParseMultipartConfig] = None,
) -> None:
    """Parses a ``multipart/form-data`` body into ``arguments`` and ``files``.

    ``boundary`` comes from the Content-Type header (quotes are allowed). Raises
    ``HTTPInputError`` on the first malformed part, before anything is added.
    """
    if config is None:
        config = _active_parse_body_config.multipart
    if not config.enabled:
        raise HTTPInputError("multipart/form-data parsing is disabled")
    if len(boundary) >= 2 and boundary.startswith(b'"') and boundary.endswith(b'"'):
        boundary = boundary[1:-1]
    final = data.rfind(b"--" + boundary + b"--")
    if final == -1:
        raise HTTPInputError("Invalid multipart/form-data: no final boundary found")
    delimiter = b"--" + boundary + b"\r\n"
    # Results are collected first and merged at the end, so a bad part leaves the
    # caller's dicts untouched.
    new_arguments: list[tuple[str, bytes]] = []
    new_files: list[tuple[str, HTTPFile]] = []
    count = 0
    position = 0
    while position < final:
        next_delimiter = data.find(delimiter, position, final)
        part_end = final if next_delimiter == -1 else next_delimiter
        if part_end > position:
            count += 1
            if count > config.max_parts:
                raise HTTPInputError("multipart/form-data has too many parts")
            _parse_part(data, position, part_end, config, new_arguments, new_files)
        if next_delimiter == -1:
            break
        position = next_delimiter + len(delimiter)
    for name, value in new_arguments:
        arguments.setdefault(name, []).append(value)
    for name, file in new_files:
        files.setdefault(name, []).append(file)


def _parse_part(
    data: bytes,
    start: int,
    end: int,
    config: ParseMultipartConfig,
    arguments: list[tuple[str, bytes]],
    files: list[tuple[str, HTTPFile]],
) -> None:
    header_end = data.find(b"\r\n\r\n", start, end)
    if header_end == -1:
        raise HTTPInputError("multipart/form-data missing headers")
    if header_end - start > config.max_part_header_size:
        raise HTTPInputError("multipart/form-data part header too large")
    try:
        header_text = data[start:header_end].decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPInputError("Invalid multipart/form-data: part headers are not UTF-8")
    headers = HTTPHeaders.parse(header_text, _chars_are_bytes=False)
    disposition_header = headers.get("Content-Disposition", "")
    disposition, params = _parse_header(disposition_header)
    if disposition != "form-data" or data[end - 2 : end] != b"\r\n":
        raise HTTPInputError("Invalid multipart/form-data")
    name = params.get("name")
    if not name:
        raise HTTPInputError("multipart/form-data value missing name")
    # The CRLF ending an empty value may be the second half of the header terminator.
    value = data[header_end + 4 : end - 2] if end - 2 > header_end + 4 else b""
    filename = params.get("filename")
    if filename:
        content_type = headers.get("Content-Type", "application/unknown")
        files.append((name, HTTPFile(filename=filename, body=value, content_type=content_type)))
    else:
        arguments.append((name, value))


def format_timestamp(
    ts: Union[int, float, tuple, time.struct_time, datetime.datetime],
) -> str:
    """Formats a time as an HTTP-date (``Sun, 27 Jan 2013 18:43:20 GMT``).

    Accepts a Unix timestamp, a ``time.gmtime`` tuple or a datetime (naive ones are
    taken as UTC).
    """
    # Every accepted form is brought down to seconds since the epoch, in two steps.
    when = ts.utctimetuple() if isinstance(ts, datetime.datetime) else ts
    if isinstance(when, (tuple, time.struct_time)):
        when = calendar.timegm(when)
    elif not isinstance(when, (int, float)):
        raise TypeError("unknown timestamp type: %r" % ts)
    return email.utils.formatdate(when, usegmt=True)


class RequestStartLine(NamedTuple):
    """``method``, ``path`` and ``version`` of a request line."""

    method: str
    path: str
    version: str


class ResponseStartLine(NamedTuple):
    """``version``, ``code`` and ``reason`` of a status line."""

    version: str
    code: int
    reason: str


def parse_request_start_line(line: str) -> RequestStartLine:
    """Parses a request line such as ``GET /foo HTTP/1.1``.

    Raises ``HTTPInputError`` unless it is exactly method, target and an HTTP/1.x
    version separated by single spaces.
    """
    match = _ABNF.request_line.fullmatch(line)
    if match is None:
        raise HTTPInputError("Malformed HTTP request line")
    method, path, version = match.groups()
    if not version.startswith("HTTP/1."):
        raise HTTPInputError("Unexpected HTTP version %r" % version)
    return RequestStartLine(method, path, version)


def parse_response_start_line(line: str) -> ResponseStartLine:
    """Parses a status line such as ``HTTP/1.1 200 OK``.

    The reason phrase may be empty (it is then None), but the space before it is
    required.
    """
    match = _ABNF.status_line.fullmatch(line)
    if match is None:
        raise HTTPInputError("Error parsing response start line")
    version, code, reason = match.groups()
    if not version.startswith("HTTP/1."):
        raise HTTPInputError("Unexpected HTTP version %r" % version)
    return ResponseStartLine(version, int(code), reason)  # type: ignore[arg-type]


# One parameter of a header value: ``; name=value`` where the value is a token-ish run
# or a quoted string. Quoted strings are matched whole, so semicolons inside them are
# not separators, and the pattern never backtracks over the input.
_HEADER_PARAM = re.compile(
    r';[ \t]*([^=;" \t]+)[ \t]*(?:=[ \t]*("(?:[^"\\]|\\.)*"|[^;]*))?', re.DOTALL
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def _unquote_header_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
        if "\\" in value:
            value = _QUOTED_PAIR.sub(r"\1", value)
    return value


def _parse_header(line: str) -> tuple[str, dict[str, str]]:
    """Splits a header value like Content-Type into its main value and parameters.

    >>> _parse_header('form-data; name="files"; filename="a b.txt"')
    ('form-data', {'name': 'files', 'filename': 'a b.txt'})

    RFC 2231/5987 extended parameters (``filename*=UTF-8''...``) are decoded and stored
    under the plain name, taking precedence over it.
    """
    semicolon = line.find(";")
    if semicolon == -1:
        return line.strip(HTTP_WHITESPACE), {}
    key = line[:semicolon].strip(HTTP_WHITESPACE)
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for match in _HEADER_PARAM.finditer(line, semicolon):
        name = match.group(1).lower()
        raw = match.group(2)
        if raw is None:
            continue
        raw = raw.strip(HTTP_WHITESPACE)
        if name.endswith("*"):
            decoded = _decode_extended_value(raw)
            if decoded is not None:
                extended[name[:-1]] = decoded
            continue
        params[name] = _unquote_header_value(raw)
    params.update(extended)
    return key, params


def _decode_extended_value(value: str) -> Optional[str]:
    # charset'language'percent-encoded-value (RFC 5987 section 3.2)
    charset, quote1, rest = value.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not quote1 or not quote2:
        return None
    try:
        return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


def _encode_header(key: str, pdict: dict[str, Optional[str]]) -> str:
    """Inverse of ``_parse_header``: builds ``key; name=value`` text."""
    if not pdict:
        return key
    out = [key]
    for name, value in sorted(pdict.items()):
        if value is None:
            out.append(name)
        elif _ABNF.token.fullmatch(value):
            out.append("%s=%s" % (name, value))
        else:
            out.append('%s="%s"' % (name, value.replace("\\", "\\\\").replace('"', '\\"')))
    return "; ".join(out)


def encode_username_password(username: Union[str, bytes], password: Union[str, bytes]) -> bytes:
    """``username:password`` as UTF-8 bytes, for HTTP basic authentication."""
    if isinstance(username, str):
        username = unicodedata.normalize("NFC", username).encode("utf-8")
    if isinstance(password, str):
        password = unicodedata.normalize("NFC", password).encode("utf-8")
    return username + b":" + password


def doctests() -> Any:
    """The doctests of this module as a unittest suite."""
    import doctest

    return doctest.DocTestSuite()


_HOST_PORT = re.compile(r"^(.+):([0-9]+)$")


def split_host_and_port(netloc: str) -> tuple[str, Optional[int]]:
    """Splits ``host:port`` into ``(host, port)``; port is None when absent."""
    match = _HOST_PORT.match(netloc)
    if match:
        return match.group(1), int(match.group(2))
    return netloc, None


def qs_to_qsl(qs: Mapping[str, list[Any]]) -> Iterable[tuple[str, Any]]:
    """Turns ``parse_qs`` output back into ``(name, value)`` pairs."""
    for name, values in qs.items():
        for value in values:
            yield name, value


# A backslash escape inside a quoted cookie value: three octal digits (up to \377) or
# any single character. One pass of re.sub keeps unquoting linear in the value size.
_COOKIE_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))", re.DOTALL)


def _replace_cookie_escape(match: re.Match[str]) -> str:
    octal = match.group(1)
    if octal is not None:
        return chr(int(octal, 8))
    return match.group(2)


def _unquote_cookie(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    value = value[1:-1]
    if "\\" not in value:
        return value
    return _COOKIE_ESCAPE.sub(_replace_cookie_escape, value)


def parse_cookie(cookie: str) -> dict[str, str]:
    """Parses a Cookie header value into ``name -> value`` the way browsers do.

    Every semicolon separates cookies (even inside quotes); a piece without ``=`` is
    a cookie with an empty name; the last of several same-named cookies wins.
    """
    cookies: dict[str, str] = {}
    for chunk in cookie.split(";"):
        if not chunk:
            continue
        name, equals, value = chunk.partition("=")
        if not equals:
            name, value = "", chunk
        name = name.strip()
        value = value.strip()
        if name or value:
            # (Only a value starting with a quote can need unquoting.)
            cookies[name] = _unquote_cookie(value) if value[:1] == '"' else value
    return cookies
