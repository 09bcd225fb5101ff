"""Set-Cookie formatting and validation (pure)."""

import datetime
import http.cookies

import pytest

from squall._web.cookies import format_set_cookie


def test_plain_and_quoted_values():
    assert format_set_cookie("a", "b") == "a=b; Path=/"
    assert format_set_cookie(b"a", b"b c".replace(b" ", b"")) == "a=bc; Path=/"
    assert format_set_cookie("a", "x=y") == 'a="x=y"; Path=/'
    assert format_set_cookie("a", 'q"t') == 'a="q\\"t"; Path=/'
    assert format_set_cookie("a", "") == 'a=""; Path=/'


def test_attributes_in_name_order():
    header = format_set_cookie(
        "id",
        "1",
        domain="example.com",
        path="/app",
        max_age=60,
        httponly=True,
        secure=True,
        samesite="Strict",
        extra={"partitioned": True},
    )
    assert header == (
        "id=1; Domain=example.com; HttpOnly; Max-Age=60; Partitioned; Path=/app; "
        "SameSite=Strict; Secure"
    )


def test_expires_days_and_expires():
    header = format_set_cookie("a", "b", expires_days=1)
    expires = header.split("expires=")[1].split(";")[0]
    assert expires.endswith("GMT")
    fixed = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert "expires=Wed, 02 Jan 2030 03:04:05 GMT" in format_set_cookie("a", "b", expires=fixed)


def test_false_flags_and_empty_path_omitted():
    assert format_set_cookie("a", "b", path=None, extra={"secure": False}) == "a=b"


@pytest.mark.parametrize("name", ["", "a b", "a;b", "a\r\nb", "a\x00", "a=b", "a\x7f"])
def test_bad_names_refused(name):
    with pytest.raises(http.cookies.CookieError):
        format_set_cookie(name, "v")


@pytest.mark.parametrize("value", ["a b", "a\r\nSet-Cookie: x=y", "\x00", "a\x7f"])
def test_bad_values_refused(value):
    with pytest.raises(ValueError):
        format_set_cookie("n", value)


@pytest.mark.parametrize(
    "attributes",
    [
        {"domain": "a;b"},
        {"path": "/a b"},
        {"samesite": "Lax; Secure"},
        {"domain": "x\r\n"},
    ],
)
def test_bad_attributes_refused(attributes):
    with pytest.raises(http.cookies.CookieError):
        format_set_cookie("n", "v", **attributes)


def test_max_age_must_be_an_integer():
    with pytest.raises(ValueError):
        format_set_cookie("n", "v", max_age="1; Path=/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        format_set_cookie("n", "v", extra={"max_age": "evil"})


def test_unknown_and_mixed_case_attributes():
    with pytest.raises(http.cookies.CookieError):
        format_set_cookie("n", "v", extra={"bogus": 1})
    with pytest.warns(DeprecationWarning):
        header = format_set_cookie("n", "v", extra={"HttpOnly": True, "pATH": "/p"})
    assert header == "n=v; HttpOnly; Path=/p"
