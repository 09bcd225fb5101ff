import json
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall.escape import (
    _unquote_to_bytes,
    json_decode,
    json_encode,
    linkify,
    parse_qs_bytes,
    recursive_unicode,
    squeeze,
    to_unicode,
    url_escape,
    url_unescape,
    utf8,
    xhtml_escape,
    xhtml_unescape,
)


def test_xhtml_escape_and_unescape():
    assert (
        xhtml_escape("<a href=\"x\">'&'</a>")
        == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
    )
    assert xhtml_escape(b"<\xc3\xa9>") == "&lt;\u00e9&gt;"
    assert xhtml_unescape("&lt;&#32;&#x41;&amp;&unknown;&#xyz;") == "< A&&unknown;&#xyz;"


def test_url_escape_and_unescape():
    assert url_escape("+ #%") == "%2B+%23%25"
    assert url_escape("+ #%", plus=False) == "%2B%20%23%25"
    assert url_escape("\u00e9") == "%C3%A9"
    assert url_unescape("a+b%C3%A9") == "a b\u00e9"
    assert url_unescape("a+b", plus=False) == "a+b"
    assert url_unescape(b"%C3%A9", encoding=None) == "\u00e9".encode()


@pytest.mark.parametrize(
    "data", [b"", b"%41%3d", b"%%41", b"%zz%4", b"a%", b"%\r\nb", b"=%41=", bytes(range(256))]
)
def test_unquote_to_bytes_matches_stdlib(data):
    assert _unquote_to_bytes(data) == urllib.parse.unquote_to_bytes(data)


def test_unquote_to_bytes_long_input_split_at_escape_boundaries():
    data = (b"ab%41%" + b"%4" + b"x%2") * 5000
    assert _unquote_to_bytes(data) == urllib.parse.unquote_to_bytes(data)


def test_parse_qs_bytes():
    parsed = parse_qs_bytes(b"a=1&b=%41+%2B&a=2&&c&d=", keep_blank_values=True)
    assert parsed == {"a": [b"1", b"2"], "b": [b"A +"], "c": [b""], "d": [b""]}
    assert parse_qs_bytes("%E9=%E9") == {"\xe9": [b"\xe9"]}
    assert parse_qs_bytes(b"c&d=") == {}
    # An empty query string has no fields, even when parsing strictly.
    assert parse_qs_bytes(b"", strict_parsing=True, max_num_fields=0) == {}
    with pytest.raises(ValueError):
        parse_qs_bytes(b"a=1&&b=2", strict_parsing=True)
    with pytest.raises(ValueError):
        parse_qs_bytes(b"a=1&b=2", max_num_fields=1)


def test_json_helpers_escape_script_end():
    assert json_encode("</script>") == '"<\\/script>"'
    assert json_decode(b'"\xc3\xa9"') == "\u00e9"


def test_conversions():
    assert utf8("\u00e9") == b"\xc3\xa9"
    assert utf8(None) is None
    assert to_unicode(b"\xc3\xa9") == "\u00e9"
    with pytest.raises(TypeError):
        utf8(1)  # type: ignore[call-overload]
    assert recursive_unicode({b"k": [b"v", (b"t",)]}) == {"k": ["v", ("t",)]}
    assert squeeze("a  \t\n b ") == "a b"


@pytest.mark.parametrize(
    "text,kwargs,html",
    [
        ("see http://x.com/a.", {}, 'see <a href="http://x.com/a">http://x.com/a</a>.'),
        ("www.x.com", {}, '<a href="http://www.x.com">www.x.com</a>'),
        ("www.x.com", {"require_protocol": True}, "www.x.com"),
        ("file:///etc and http://a.b", {}, 'file:///etc and <a href="http://a.b">http://a.b</a>'),
        ("http://a.b/c_(d)", {}, '<a href="http://a.b/c_(d)">http://a.b/c_(d)</a>'),
        ("<http://a.b>", {}, '&lt;<a href="http://a.b">http://a.b</a>&gt;'),
        (
            "http://a.b",
            {"extra_params": lambda href: " rel=x "},
            '<a href="http://a.b" rel=x>http://a.b</a>',
        ),
        (
            "http://reallylong.com/link/that/exceedsthelenglimit.html",
            {"shorten": True},
            '<a href="http://reallylong.com/link/that/exceedsthelenglimit.html"'
            ' title="http://reallylong.com/link/that/exceedsthelenglimit.html">'
            "http://reallylong.com/link...</a>",
        ),
    ],
)
def test_linkify(text, kwargs, html):
    assert linkify(text, **kwargs) == html


def test_linkify_does_not_backtrack_catastrophically():
    text = "http://x.com/" + "(" * 5000 + "." * 5000
    assert linkify(text).startswith('<a href="http://x.com/">')


# Property checks against the standard library, on inputs built from the pieces that
# matter to percent-decoding and query parsing.

_pieces = st.sampled_from(
    [b"%", b"=", b"&", b"+", b"a", b"2", b"F", b"g", b"\r\n", b"\xff", b"%41", b"%3d", b"%25"]
)
_query_bytes = st.lists(_pieces, max_size=30).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.booleans())
def test_url_escape_round_trips_text(text, plus):
    escaped = url_escape(text, plus=plus)
    assert escaped.isascii()
    assert url_unescape(escaped, plus=plus) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_xhtml_escape_round_trips(text):
    escaped = xhtml_escape(text)
    assert not set("<>\"'") & set(escaped)
    assert xhtml_unescape(escaped) == text


@settings(max_examples=300, deadline=None)
@given(_query_bytes)
def test_unquote_to_bytes_agrees_with_stdlib(data):
    assert _unquote_to_bytes(data) == urllib.parse.unquote_to_bytes(data)


@settings(max_examples=300, deadline=None)
@given(_query_bytes, st.booleans(), st.booleans())
def test_parse_qs_bytes_agrees_with_stdlib(data, keep_blank, strict):
    def outcome(parse):
        try:
            return parse()
        except ValueError:
            return "ValueError"

    expected = outcome(
        lambda: {
            key: [value.encode("latin1") for value in values]
            for key, values in urllib.parse.parse_qs(
                data.decode("latin1"), keep_blank, strict, encoding="latin1"
            ).items()
        }
    )
    assert outcome(lambda: parse_qs_bytes(data, keep_blank, strict)) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"message": "Hello, World!"},
        "a</b",
        1.5,
        float("nan"),
        float("-inf"),
        None,
        [1, {"nested": [None, True]}],
        {"\u00e9": "\u00fc\u2028"},
        {1: 2, 2.5: 3, None: 4, False: 5},
    ],
)
def test_json_encode_gives_the_text_json_dumps_gives(value: object) -> None:
    assert json_encode(value) == json.dumps(value).replace("</", "<\\/")


def test_json_encode_names_a_cycle_and_an_unserializable_value() -> None:
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        json_encode(cycle)
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_encode({"a": object()})
    # A failure leaves the shared encoder usable.
    assert json_encode({"a": 1}) == '{"a": 1}'
