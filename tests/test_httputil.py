"""httputil: header multidict, start lines, cookies, form bodies, request object."""

import copy
import datetime
import email.utils
import http.cookies
import pickle
import re
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall import httputil
from squall.httputil import (
    HTTPFile,
    HTTPHeaders,
    HTTPInputError,
    HTTPServerRequest,
    ParseBodyConfig,
    ParseMultipartConfig,
    ParseUrlEncodedConfig,
    RequestStartLine,
    ResponseStartLine,
    _parse_header,
    encode_username_password,
    format_timestamp,
    parse_body_arguments,
    parse_cookie,
    parse_multipart_form_data,
    parse_request_start_line,
    parse_response_start_line,
    qs_to_qsl,
    split_host_and_port,
    url_concat,
)

# HTTPHeaders


def test_headers_are_case_insensitive_and_multi_valued():
    headers = HTTPHeaders()
    headers.add("Set-Cookie", "a=1")
    headers.add("set-cookie", "b=2")
    headers["X-One"] = "1"
    assert headers["SET-COOKIE"] == "a=1,b=2"
    assert headers.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert list(headers) == ["Set-Cookie", "X-One"]
    assert list(headers.get_all()) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-One", "1")]
    assert "x-one" in headers and "X-Two" not in headers
    assert headers.get("x-two", "default") == "default"
    assert len(headers) == 2


def test_setting_replaces_all_values_but_keeps_position():
    headers = HTTPHeaders()
    headers.add("A", "1")
    headers.add("B", "2")
    headers.add("A", "3")
    headers["a"] = "4"
    assert list(headers.get_all()) == [("A", "4"), ("B", "2")]
    del headers["A"]
    headers.add("A", "5")
    assert list(headers.get_all()) == [("B", "2"), ("A", "5")]
    with pytest.raises(KeyError):
        del headers["missing"]


def test_joined_value_cache_is_invalidated_by_add():
    headers = HTTPHeaders()
    headers.add("X", "1")
    headers.add("X", "2")
    assert headers["X"] == "1,2"
    headers.add("X", "3")
    assert headers["X"] == "1,2,3"


def test_name_normalization():
    headers = HTTPHeaders.parse("content-md5: x\r\nWWW-AUTHENTICATE: y\r\nfoo_bar: z\r\n")
    assert list(headers) == ["Content-Md5", "Www-Authenticate", "Foo_bar"]


def test_parse_accepts_crlf_and_lf_and_strips_only_http_whitespace():
    headers = HTTPHeaders.parse("A:  1 \t\r\nB:\u00a02\nC:\r\n\r\n")
    assert list(headers.get_all()) == [("A", "1"), ("B", "\u00a02"), ("C", "")]


@pytest.mark.parametrize(
    "text",
    [
        "A: 1\r\n folded",
        " A: 1",
        "A 1",
        "A : 1",
        "A: b\rc",
        "A: b\x00c",
        "A: b\x7fc",
        "\u00e9: 1",
        "A: \u6d4b",
    ],
)
def test_parse_rejects_bad_lines(text):
    with pytest.raises(HTTPInputError):
        HTTPHeaders.parse(text)


@pytest.mark.parametrize("name", ["", "a b", "a\tb", "a\nb", "a:", "\u00e9", " a"])
def test_add_rejects_invalid_names(name):
    with pytest.raises(HTTPInputError):
        HTTPHeaders().add(name, "v")


def test_add_rejects_values_with_line_breaks():
    with pytest.raises(HTTPInputError):
        HTTPHeaders().add("X", "a\r\nInjected: 1")


def test_copies_are_independent():
    headers = HTTPHeaders()
    headers.add("A", "1")
    headers.add("A", "2")
    for other in (headers.copy(), copy.copy(headers), copy.deepcopy(headers)):
        other.add("A", "3")
        assert headers.get_list("A") == ["1", "2"]
        assert other.get_list("A") == ["1", "2", "3"]


def test_pickle_and_str_round_trip():
    headers = HTTPHeaders()
    headers.add("Set-Cookie", "a=b")
    headers.add("Set-Cookie", "c=d")
    headers.add("Content-Type", "text/html")
    assert list(pickle.loads(pickle.dumps(headers)).get_all()) == list(headers.get_all())
    assert HTTPHeaders.parse(str(headers)) == headers


def test_constructor_forms():
    assert dict(HTTPHeaders({"a": "1"})) == {"A": "1"}
    assert dict(HTTPHeaders(a="1")) == {"A": "1"}
    assert dict(HTTPHeaders([("a", "1"), ("b", "2")])) == {"A": "1", "B": "2"}


def test_repeated_header_parse_handles_large_input():
    # Would take minutes if adding a value re-joined the previous ones.
    headers = HTTPHeaders.parse("X: a\r\n" * 200_000)
    assert len(headers.get_list("X")) == 200_000


# Start lines


def test_request_start_line():
    assert parse_request_start_line("GET /a?b HTTP/1.1") == RequestStartLine(
        "GET", "/a?b", "HTTP/1.1"
    )
    for bad in ["GET /a", "GET  / HTTP/1.1", "GET / HTTP/1.1 ", "G,T / HTTP/1.1", "GET / http/1.1"]:
        with pytest.raises(HTTPInputError, match="Malformed"):
            parse_request_start_line(bad)
    with pytest.raises(HTTPInputError, match="Unexpected HTTP version"):
        parse_request_start_line("GET / HTTP/2.0")


def test_response_start_line():
    assert parse_response_start_line("HTTP/1.1 200 OK") == ResponseStartLine("HTTP/1.1", 200, "OK")
    assert parse_response_start_line("HTTP/1.0 404 ").reason is None
    for bad in ["HTTP/1.1 200", "HTTP/1.1 20 OK", "HTTP/1.1  200 OK", "HTTP/1.1 200 a\x00"]:
        with pytest.raises(HTTPInputError):
            parse_response_start_line(bad)


# Cookies


def test_parse_cookie_like_browsers():
    assert parse_cookie("a=b; c=d") == {"a": "b", "c": "d"}
    assert parse_cookie("a=b; a=c") == {"a": "c"}
    assert parse_cookie("unnamed; x=1") == {"": "unnamed", "x": "1"}
    assert parse_cookie('a="b\\"c\\134"') == {"a": 'b"c\\'}
    assert parse_cookie("a=b]_xsrf=injected") == {"a": "b]_xsrf=injected"}


def _reference_parse_cookie(cookie):
    # The rules spelled out one regex run at a time, as the fast version must behave.
    cookies = {}
    for match in re.finditer(r"[^;]+", cookie):
        chunk = match.group()
        name, value = chunk.split("=", 1) if "=" in chunk else ("", chunk)
        name, value = name.strip(), value.strip()
        if name or value:
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = re.sub(
                    r"\\(?:([0-3][0-7][0-7])|(.))",
                    lambda m: chr(int(m.group(1), 8)) if m.group(1) else m.group(2),
                    value[1:-1],
                    flags=re.DOTALL,
                )
            cookies[name] = value
    return cookies


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "b", "=", ";", " ", "\t", '"', "\\", "\\101", "\xa0", "x=1"]),
        max_size=14,
    ).map("".join)
)
def test_parse_cookie_matches_the_reference_rules(cookie):
    assert parse_cookie(cookie) == _reference_parse_cookie(cookie)


def test_request_cookies_are_the_stdlib_morsels():
    request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
        headers=HTTPHeaders({"Cookie": 'a=1; expires=x; b="q\\"r"; bad,name=2'}),
    )
    cookies = request.cookies
    # A reserved name and one the stdlib calls illegal are skipped.
    assert list(cookies) == ["a", "b"]
    expected = http.cookies.Morsel()
    expected.set("b", 'q"r', 'q"r')
    assert cookies["b"] == expected and vars(cookies["b"]) == vars(expected)
    cookies["a"]["path"] = "/x"
    assert cookies["b"]["path"] == "" and http.cookies.Morsel()["path"] == ""


def test_cookie_with_many_backslashes_is_handled():
    value = parse_cookie('a="' + "\\\\" * 200_000 + '"')["a"]
    assert value == "\\" * 200_000


# Form bodies


def test_urlencoded_body_and_argument_limit():
    args: dict = {}
    parse_body_arguments("application/x-www-form-urlencoded", b"a=1&b=&a=2", args, {})
    assert args == {"a": [b"1", b"2"], "b": [b""]}
    config = ParseBodyConfig(urlencoded=ParseUrlEncodedConfig(max_arguments=2))
    with pytest.raises(HTTPInputError, match="Max number of fields exceeded"):
        parse_body_arguments(
            "application/x-www-form-urlencoded", b"a=1&b=2&c=3", {}, {}, config=config
        )


def _stdlib_query_arguments(query, max_arguments):
    try:
        parsed = urllib.parse.parse_qs(
            query,
            keep_blank_values=True,
            encoding="latin1",
            errors="strict",
            max_num_fields=max_arguments,
        )
        return {
            name: [value.encode("latin1") for value in values] for name, values in parsed.items()
        }
    except ValueError as e:
        return ("error", str(e))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["a", "b", "=", "&", "+", " ", "\xe9", "%41", "%", "%zz", "a=1", "%e9", "%C3%A9", "%2B"]
        ),
        max_size=12,
    ).map("".join),
    st.sampled_from([1, 2, 3, 1000]),
)
def test_query_arguments_match_the_stdlib_parse_qs(query, max_arguments):
    # The fast path must split and unquote exactly as urllib.parse.parse_qs does.
    expected = _stdlib_query_arguments(query, max_arguments)
    try:
        parsed = httputil._parse_qs_bytes(query, max_arguments)
    except HTTPInputError as e:
        parsed = ("error", str(e))
    assert parsed == expected
    if isinstance(expected, dict):
        assert list(parsed) == list(expected)


def test_query_beyond_latin1_raises_as_the_stdlib_path_does():
    with pytest.raises(UnicodeEncodeError):
        httputil._parse_qs_bytes("a=\u1234&b=1", 1000)


def test_request_query_arguments_and_arguments_are_separate_lists():
    request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/p?a=1&a=2&b+c=d+e&f", "HTTP/1.1")
    )
    assert request.query_arguments == {"a": [b"1", b"2"], "b c": [b"d e"], "f": [b""]}
    assert request.arguments == request.query_arguments
    request.arguments["a"].append(b"3")
    assert request.query_arguments["a"] == [b"1", b"2"]


def test_content_encoding_is_refused():
    with pytest.raises(HTTPInputError, match="Unsupported Content-Encoding"):
        parse_body_arguments("text/plain", b"", {}, {}, HTTPHeaders({"Content-Encoding": "gzip"}))


def multipart(*parts: bytes) -> bytes:
    return b"".join(b"--B\r\n" + p + b"\r\n" for p in parts) + b"--B--\r\n"


def test_multipart_fields_and_files():
    args: dict = {}
    files: dict = {}
    body = multipart(
        b'Content-Disposition: form-data; name="a"\r\n\r\n1',
        b'Content-Disposition: form-data; name="f"; filename="x;\\"y.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nfile body",
        b"Content-Disposition: form-data; name=f; filename=\"a\"; filename*=UTF-8''%C3%A9\r\n\r\n",
    )
    parse_body_arguments("multipart/form-data; boundary=B", body, args, files)
    assert args == {"a": [b"1"]}
    assert [(f.filename, f.body, f.content_type) for f in files["f"]] == [
        ('x;"y.txt', b"file body", "text/plain"),
        ("\u00e9", b"", "application/unknown"),
    ]
    assert isinstance(files["f"][0], HTTPFile) and files["f"][0]["body"] == b"file body"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"--B\r\nno headers\r\n--B--", "missing headers"),
        (multipart(b"Content-Disposition: attachment; name=a\r\n\r\nb"), "Invalid multipart"),
        (multipart(b"Content-Disposition: form-data\r\n\r\nb"), "missing name"),
        (
            multipart(b'Content-Disposition: form-data; name="a\rb"\r\n\r\nb'),
            "Invalid header value",
        ),
        (b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\nb--B--", "Invalid multipart"),
        (b"no final boundary", "no final boundary"),
    ],
)
def test_multipart_errors_leave_results_untouched(body, message):
    args: dict = {}
    files: dict = {}
    with pytest.raises(HTTPInputError, match=message):
        parse_multipart_form_data(b"B", body, args, files)
    assert args == {} and files == {}


def test_multipart_limits():
    body = multipart(*[b"Content-Disposition: form-data; name=a\r\n\r\nb"] * 3)
    with pytest.raises(HTTPInputError, match="too many parts"):
        parse_multipart_form_data(b"B", body, {}, {}, config=ParseMultipartConfig(max_parts=2))
    with pytest.raises(HTTPInputError, match="header too large"):
        parse_multipart_form_data(
            b"B", body, {}, {}, config=ParseMultipartConfig(max_part_header_size=5)
        )
    with pytest.raises(HTTPInputError, match="disabled"):
        parse_multipart_form_data(b"B", body, {}, {}, config=ParseMultipartConfig(enabled=False))


def test_set_parse_body_config_changes_defaults():
    try:
        httputil.set_parse_body_config(ParseBodyConfig(urlencoded=ParseUrlEncodedConfig(1)))
        with pytest.raises(HTTPInputError):
            parse_body_arguments("application/x-www-form-urlencoded", b"a=1&b=2", {}, {})
    finally:
        httputil.set_parse_body_config(httputil._DEFAULT_PARSE_BODY_CONFIG)


def test_parse_header_quoted_params_with_semicolons_at_scale():
    key, params = _parse_header('form-data; x="' + ";" * 100_000 + '"; name="files"')
    assert key == "form-data"
    assert params["name"] == "files" and len(params["x"]) == 100_000


# Small helpers


def test_url_concat():
    assert url_concat("http://a/b?x=1#f", {"y": "2"}) == "http://a/b?x=1&y=2#f"
    assert url_concat("http://a/b?x", [("y", "/")]) == "http://a/b?x=&y=%2F"
    assert url_concat("http://a/b", None) == "http://a/b"
    with pytest.raises(TypeError):
        url_concat("http://a/b", 5)  # type: ignore[arg-type]


def test_format_timestamp_accepts_all_time_types():
    expected = "Sun, 27 Jan 2013 18:43:20 GMT"
    ts = 1359312200.5
    utc = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    for value in (ts, int(ts), utc, utc.replace(tzinfo=None), utc.timetuple()):
        assert format_timestamp(value) == expected


def test_cached_date_is_current_http_date():
    value = httputil._http_date_now()
    assert email.utils.parsedate_to_datetime(value).tzinfo is not None
    assert httputil._http_date_now() is value or httputil._http_date_now().endswith("GMT")


def test_split_host_and_port_and_credentials():
    assert split_host_and_port("a.com:8080") == ("a.com", 8080)
    assert split_host_and_port("[::1]:80") == ("[::1]", 80)
    assert split_host_and_port("a.com") == ("a.com", None)
    assert encode_username_password("u", "p\u00e9") == b"u:p\xc3\xa9"
    assert sorted(qs_to_qsl({"a": ["1", "2"]})) == [("a", "1"), ("a", "2")]


# HTTPServerRequest


def test_request_parses_uri_and_host():
    request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/p?a=1&a=2&b=", "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "Example.com:8080", "Cookie": "c=d"}),
    )
    assert (request.path, request.query) == ("/p", "a=1&a=2&b=")
    assert request.arguments == {"a": [b"1", b"2"], "b": [b""]}
    assert request.host_name == "example.com"
    assert request.full_url() == "http://Example.com:8080/p?a=1&a=2&b="
    assert request.cookies["c"].value == "d"
    assert request.request_time() >= 0
    assert "Cookie" not in repr(request)


def test_request_query_argument_limit():
    uri = "/?" + "&".join("a=%d" % i for i in range(1001))
    with pytest.raises(HTTPInputError, match="Max number of fields exceeded"):
        HTTPServerRequest(start_line=RequestStartLine("GET", uri, "HTTP/1.1"))


def test_request_parse_body_merges_arguments():
    request = HTTPServerRequest(
        start_line=RequestStartLine("POST", "/?a=1", "HTTP/1.1"),
        headers=HTTPHeaders({"Content-Type": "application/x-www-form-urlencoded"}),
        body=b"a=2&b=3",
    )
    request._parse_body()
    assert request.body_arguments == {"a": [b"2"], "b": [b"3"]}
    assert request.arguments == {"a": [b"1", b"2"], "b": [b"3"]}


def test_parse_line_ignores_trailing_line_break():
    headers = HTTPHeaders()
    for line in ("A: 1\r\n", "B: 2\n", "C: 3", "\r\n"):
        headers.parse_line(line)
    assert list(headers.get_all()) == [("A", "1"), ("B", "2"), ("C", "3")]


def test_header_line_patterns_follow_the_field_value_grammar():
    assert httputil._ABNF._field_value == "(?:" + httputil._VALUE + ")?"
    assert httputil._FIELD_VALUE_TEXT.pattern == "(?:" + httputil._VALUE_TEXT + ")?"


def test_header_parse_empty_and_blank_values():
    headers = HTTPHeaders.parse("A:\r\nB:   \r\nC: x  y \r\n")
    assert list(headers.get_all()) == [("A", ""), ("B", ""), ("C", "x  y")]


def test_long_whitespace_run_before_a_control_character_is_rejected():
    # A shape that makes a naive "spaces, optional value, spaces" pattern backtrack
    # quadratically; it must simply be refused.
    for block in ("X:" + " " * 60000 + "\x01\r\n", "Y: a\r\nX:" + "\t" * 60000 + "\x00\r\n"):
        with pytest.raises(HTTPInputError):
            HTTPHeaders.parse(block)


def test_the_old_request_signature_defaults_to_get_slash_and_warns() -> None:
    import warnings

    from squall.httputil import HTTPHeaders, HTTPServerRequest

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        request = HTTPServerRequest("GET", headers=HTTPHeaders({"Host": "h:1"}))
        bare = HTTPServerRequest()
    assert (request.method, request.uri, request.path, request.host) == ("GET", "/", "/", "h:1")
    assert (bare.method, bare.uri, bare.version) == ("GET", "/", "HTTP/1.0")
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
