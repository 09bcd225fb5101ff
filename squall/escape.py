"""Escaping and unescaping for HTML, URLs and JSON, plus str/bytes conversion helpers."""

from __future__ import annotations

import html
import html.entities
import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, overload

__all__ = [
    "json_decode",
    "json_encode",
    "linkify",
    "native_str",
    "parse_qs_bytes",
    "recursive_unicode",
    "squeeze",
    "to_basestring",
    "to_unicode",
    "url_escape",
    "url_unescape",
    "utf8",
    "xhtml_escape",
    "xhtml_unescape",
]


def xhtml_escape(value: str | bytes) -> str:
    """Escape ``& < > " '`` so the text is safe in HTML content and quoted attributes."""
    return html.escape(to_unicode(value))


_ENTITY = re.compile(r"&(#?)(\w+?);")


def _decode_entity(match: re.Match[str]) -> str:
    if match.group(1):
        digits = match.group(2)
        try:
            if digits[:1] in ("x", "X"):
                return chr(int(digits[1:], 16))
            return chr(int(digits))
        except ValueError:
            return match.group(0)
    codepoint = html.entities.name2codepoint.get(match.group(2))
    if codepoint is None:
        return match.group(0)
    return chr(codepoint)


def xhtml_unescape(value: str | bytes) -> str:
    """Replace named and numeric character references with the characters they stand for."""
    return _ENTITY.sub(_decode_entity, to_unicode(value))


def _compact_encoder() -> Callable[[Any], str] | None:
    # json.dumps builds a new C encoder on every call, which costs several times what
    # encoding a small object does. One C encoder with json.dumps' default settings,
    # made once, gives the same text. It runs without a circular-reference registry
    # (a shared one would not be thread-safe); a cycle ends in RecursionError, and
    # json_encode then lets json.dumps report it the usual way.
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring_ascii,
        )
    except ImportError:
        return None
    if c_make_encoder is None:
        return None
    encoder = c_make_encoder(
        None,  # no circular-reference registry (see above)
        json.JSONEncoder().default,
        encode_basestring_ascii,
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


_encode_json = _compact_encoder()


def json_encode(value: Any) -> str:
    """JSON-encode ``value``, safe to embed inside an HTML ``<script>`` element."""
    if _encode_json is None:
        text = json.dumps(value)
    else:
        try:
            text = _encode_json(value)
        except RecursionError:
            text = json.dumps(value)  # names a cycle as such (or fails the same way)
    # "</" would let a string close the surrounding script tag.
    return text.replace("</", "<\\/")


def json_decode(value: str | bytes) -> Any:
    """Parse JSON from text or UTF-8 bytes."""
    return json.loads(value)


_WHITESPACE_RUN = re.compile(r"[\x00-\x20]+")


def squeeze(value: str) -> str:
    """Collapse each run of whitespace into one space and strip both ends."""
    return _WHITESPACE_RUN.sub(" ", value).strip()


def url_escape(value: str | bytes, plus: bool = True) -> str:
    """Percent-encode ``value`` (UTF-8 for text); spaces become ``+`` when ``plus``."""
    quote = urllib.parse.quote_plus if plus else urllib.parse.quote
    return quote(utf8(value))


# The standard library's unquote creates an object per escape; decoding in slices keeps the
# temporary memory bounded whatever the input size.
_UNQUOTE_SLICE = 8192


def _unquote_to_bytes(data: str | bytes) -> bytes:
    """Percent-decode ``data`` to bytes (invalid escapes are kept as they are)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if b"%" not in raw:
        return raw
    if len(raw) <= _UNQUOTE_SLICE:
        return urllib.parse.unquote_to_bytes(raw)
    pieces = []
    start = 0
    end_of_data = len(raw)
    while start < end_of_data:
        end = start + _UNQUOTE_SLICE
        if end >= end_of_data:
            end = end_of_data
        elif raw[end - 1] == 0x25:  # a "%" cut off from its two hex digits
            end -= 1
        elif raw[end - 2] == 0x25:
            end -= 2
        pieces.append(urllib.parse.unquote_to_bytes(raw[start:end]))
        start = end
    return b"".join(pieces)


@overload
def url_unescape(value: str | bytes, encoding: None, plus: bool = True) -> bytes: ...


@overload
def url_unescape(value: str | bytes, encoding: str = "utf-8", plus: bool = True) -> str: ...


def url_unescape(
    value: str | bytes, encoding: str | None = "utf-8", plus: bool = True
) -> str | bytes:
    """Decode a percent-encoded value; ``encoding=None`` returns bytes."""
    raw = utf8(value)
    if plus:
        raw = raw.replace(b"+", b" ")
    decoded = _unquote_to_bytes(raw)
    if encoding is None:
        return decoded
    return decoded.decode(encoding, "replace")


def parse_qs_bytes(
    qs: str | bytes, keep_blank_values: bool = False, strict_parsing: bool = False,
    *, max_num_fields: int | None = None,
) -> dict[str, list[bytes]]:
    """Parse a query string into ``{name: [value, ...]}``; names are latin-1 text, values bytes.

    Values stay bytes because their charset is not known at this point.
    """
    raw = qs.encode("latin1") if isinstance(qs, str) else qs
    fields = raw.split(b"&") if raw else []
    if max_num_fields is not None and len(fields) > max_num_fields:
        raise ValueError("Max number of fields exceeded")
    result: dict[str, list[bytes]] = {}
    for field in fields:
        if not field and not strict_parsing:
            continue
        name, has_value, value = field.partition(b"=")
        if not has_value:
            if strict_parsing:
                raise ValueError(f"bad query field: {field!r}")
            if not keep_blank_values:
                continue
        if not value and not keep_blank_values:
            continue
        key = _unquote_to_bytes(name.replace(b"+", b" ")).decode("latin1")
        result.setdefault(key, []).append(_unquote_to_bytes(value.replace(b"+", b" ")))
    return result


_UTF8_TYPES = (bytes, type(None))


@overload
def utf8(value: bytes) -> bytes: ...


@overload
def utf8(value: str) -> bytes: ...


@overload
def utf8(value: None) -> None: ...


def utf8(value: str | bytes | None) -> bytes | None:
    """Encode text as UTF-8; bytes and None pass through unchanged."""
    if isinstance(value, _UTF8_TYPES):
        return value
    if not isinstance(value, str):
        raise TypeError(f"Expected bytes, unicode, or None; got {type(value)!r}")
    return value.encode("utf-8")


_TO_UNICODE_TYPES = (str, type(None))


@overload
def to_unicode(value: str) -> str: ...


@overload
def to_unicode(value: bytes) -> str: ...


@overload
def to_unicode(value: None) -> None: ...


def to_unicode(value: str | bytes | None) -> str | None:
    """Decode UTF-8 bytes to text; text and None pass through unchanged."""
    if isinstance(value, _TO_UNICODE_TYPES):
        return value
    if not isinstance(value, bytes):
        raise TypeError(f"Expected bytes, unicode, or None; got {type(value)!r}")
    return value.decode("utf-8")


# Historical names for to_unicode.
_unicode = to_unicode
native_str = to_unicode
to_basestring = to_unicode


def recursive_unicode(obj: Any) -> Any:
    """Decode every bytes value inside nested dicts, lists and tuples."""
    if isinstance(obj, dict):
        return {recursive_unicode(k): recursive_unicode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [recursive_unicode(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(recursive_unicode(item) for item in obj)
    if isinstance(obj, bytes):
        return to_unicode(obj)
    return obj


# A link starts with "scheme:/" (one to three slashes) or "www.", then is made of runs of
# characters that end on something other than punctuation, or of balanced "(...)" groups.
# The text has already been HTML-escaped, so "&amp;" and "&quot;" count as single characters.
_LINK_CHAR = r"(?:[^\s&()]|&amp;|&quot;)"
_LINK_END_CHAR = r"[^!\"#$%&'()*+,.:;<=>?@\[\]^`{|}~\s]"
_LINK = re.compile(
    r"\b("
    r"(?:([\w-]+):(/{1,3})|www[.])"
    r"(?:" + _LINK_CHAR + r"*" + _LINK_END_CHAR + r"|\(" + _LINK_CHAR + r"*\))+"
    r")"
)

_SHORTEN_AT = 30


def _shortened(url: str, scheme: str | None, slashes: str | None) -> str:
    """A display form of a long link: host plus the start of the first path segment."""
    head = f"{scheme}:{slashes}" if scheme and slashes is not None else ""
    host, slash, path = url[len(head) :].partition("/")
    text = url
    if slash:
        # A hint of the path is enough: its first segment's first 8 characters, up to
        # any query or extension.
        hint = _PATH_HINT_END.split(path.split("/", 1)[0][:8], maxsplit=1)[0]
        text = head + host + "/" + hint
    if len(text) > _SHORTEN_AT * 1.5:
        text = text[:_SHORTEN_AT]
    if text == url:
        return url
    # The text is HTML-escaped: an "&" near the end may start an entity the cut broke.
    entity = text.rfind("&", _SHORTEN_AT - 4)
    return (text if entity < 0 else text[:entity]) + "..."


_PATH_HINT_END = re.compile(r"[?.]")


def linkify(
    text: str | bytes,
    shorten: bool = False,
    extra_params: str | Callable[[str], str] = "",
    require_protocol: bool = False,
    permitted_protocols: list[str] = ["http", "https"],  # noqa: B006 - never mutated
) -> str:
    """HTML-escape ``text`` and turn the URLs in it into links.

    ``extra_params`` is added inside each ``<a>`` tag (a callable gets the link's href).
    Links whose scheme is not in ``permitted_protocols`` stay plain text, and so do links
    without a scheme when ``require_protocol`` is set. ``shorten`` abbreviates long link texts.
    """
    if extra_params and not callable(extra_params):
        fixed_params = " " + extra_params.strip()
    else:
        fixed_params = ""

    def make_link(match: re.Match[str]) -> str:
        url = match.group(1)
        scheme = match.group(2)
        if require_protocol and not scheme:
            return url
        if scheme and scheme not in permitted_protocols:
            return url
        href = url if scheme else "http://" + url
        if callable(extra_params):
            params = " " + extra_params(href).strip()
        else:
            params = fixed_params
        shown = url
        if shorten and len(url) > _SHORTEN_AT:
            short = _shortened(url, scheme, match.group(3))
            if len(short) < len(url):
                shown = short
                params += f' title="{href}"'
        return f'<a href="{href}"{params}>{shown}</a>'

    return _LINK.sub(make_link, xhtml_escape(text))
