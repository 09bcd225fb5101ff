"""Building ``Set-Cookie`` header values, refusing anything that could break the header."""

from __future__ import annotations

import calendar
import datetime
import email.utils
import http.cookies
import re
import time
import warnings
from typing import Any, Dict, Optional, Tuple, Union

from squall import escape

# Cookie names and attributes: no controls, separators or spaces.
_UNSAFE_COOKIE_ATTRIBUTE = re.compile(r"[\x00-\x20\x7f;]")
_UNSAFE_COOKIE_VALUE = re.compile(r"[\x00-\x20\x7f]")
_PLAIN_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~:]+$")
_cookie_quoter = http.cookies.SimpleCookie()  # type: ignore[var-annotated]

# Cookie attributes set_cookie accepts, with how each is written in Set-Cookie.
_COOKIE_ATTRIBUTES = {
    "comment": "Comment",
    "domain": "Domain",
    "expires": "expires",
    "httponly": "HttpOnly",
    "max-age": "Max-Age",
    "partitioned": "Partitioned",
    "path": "Path",
    "samesite": "SameSite",
    "secure": "Secure",
    "version": "Version",
}
_COOKIE_FLAGS = frozenset(("httponly", "partitioned", "secure"))


def _format_timestamp(ts: Union[int, float, tuple, time.struct_time, datetime.datetime]) -> str:
    """An HTTP date (``Wed, 25 Nov 2026 21:00:00 GMT``) from a timestamp or datetime."""
    if isinstance(ts, datetime.datetime):
        if ts.tzinfo is None:
            seconds = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
        else:
            seconds = ts.timestamp()
    elif isinstance(ts, (int, float)):
        seconds = ts
    elif isinstance(ts, (tuple, time.struct_time)):
        seconds = calendar.timegm(ts)
    else:
        raise TypeError(f"unknown timestamp type: {ts!r}")
    return email.utils.formatdate(seconds, usegmt=True)


def _quote_cookie_value(value: str) -> str:
    # Plain token characters go as they are; anything else is quoted the way the
    # standard library's cookie module does, which browsers understand.
    if _PLAIN_COOKIE_VALUE.match(value) is not None:
        return value
    return _cookie_quoter.value_encode(value)[1]


def format_set_cookie(
    name: Union[str, bytes],
    value: Union[str, bytes],
    *,
    domain: Optional[str] = None,
    expires: Optional[Union[float, Tuple, datetime.datetime]] = None,
    path: Optional[str] = "/",
    expires_days: Optional[float] = None,
    max_age: Optional[int] = None,
    httponly: bool = False,
    secure: bool = False,
    samesite: Optional[str] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """The value of a ``Set-Cookie`` header; attributes come out in name order.

    Names and attributes with control characters, spaces or ``;`` raise
    :class:`http.cookies.CookieError`; values with control characters or spaces raise
    ValueError, as does a ``max_age`` that is not an integer.
    """
    kwargs = extra or {}
    name = escape.native_str(name)
    value = escape.native_str(value)
    if not name or _UNSAFE_COOKIE_ATTRIBUTE.search(name) or "=" in name:
        raise http.cookies.CookieError(f"Invalid cookie attribute name={name!r}")
    if _UNSAFE_COOKIE_VALUE.search(value):
        raise ValueError(f"Invalid cookie {name!r}: {value!r}")
    attributes: Dict[str, Any] = {}
    if domain:
        attributes["domain"] = ("domain", domain)
    if expires_days is not None and not expires:
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            days=expires_days
        )
    if expires:
        attributes["expires"] = ("expires", _format_timestamp(expires))
    if path:
        attributes["path"] = ("path", path)
    if max_age is not None:
        # int() refuses strings that would smuggle extra attributes into the header.
        attributes["max-age"] = ("max_age", str(int(max_age)))
    if httponly:
        attributes["httponly"] = ("httponly", True)
    if secure:
        attributes["secure"] = ("secure", True)
    if samesite:
        attributes["samesite"] = ("samesite", samesite)
    for given_name, attribute_value in kwargs.items():
        key = given_name.lower()
        if key == "max_age":
            key = "max-age"
        if key not in _COOKIE_ATTRIBUTES:
            raise http.cookies.CookieError(f"Invalid attribute {given_name!r}")
        if given_name != key and given_name != "max_age":
            warnings.warn(
                f"cookie attribute {given_name!r} should be written in lower case",
                DeprecationWarning,
                stacklevel=4,
            )
        if key == "max-age":
            attribute_value = str(int(attribute_value))
        elif key == "expires" and attribute_value:
            attribute_value = _format_timestamp(attribute_value)
        if key in _COOKIE_FLAGS:
            if attribute_value:
                attributes[key] = (given_name, True)
            else:
                attributes.pop(key, None)
        elif attribute_value is None or attribute_value == "":
            attributes.pop(key, None)
        else:
            attributes[key] = (given_name, attribute_value)
    parts = [name + "=" + _quote_cookie_value(value)]
    for key in sorted(attributes):
        given_name, attribute_value = attributes[key]
        label = _COOKIE_ATTRIBUTES[key]
        if attribute_value is True:
            parts.append(label)
            continue
        text = str(attribute_value)
        if _UNSAFE_COOKIE_ATTRIBUTE.search(text) and not (key == "expires" and ";" not in text):
            raise http.cookies.CookieError(
                f"Invalid cookie attribute {given_name}={text!r} for cookie {name!r}"
            )
        parts.append(label + "=" + text)
    return "; ".join(parts)
