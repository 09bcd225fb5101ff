"""Ready-made handlers (errors, redirects, fallback) and the method decorators."""

from __future__ import annotations

import functools
import re
import urllib.parse
from typing import Any, Awaitable, Callable, List, Optional, Tuple

from squall import httputil
from squall._web.errors import HTTPError
from squall._web.handler import RequestHandler

# A callable serving a whole request, as HTTPServer accepts one (a WSGIContainer, say).
_ServerCallable = Callable[[httputil.HTTPServerRequest], None]


def _is_protocol_relative(path: str) -> bool:
    """Whether a browser would read ``path`` as ``//host/...`` (backslashes count as
    slashes, tabs and newlines are dropped)."""
    cleaned = path.replace("\t", "").replace("\r", "").replace("\n", "").replace("\\", "/")
    return cleaned.startswith("//")


_SLASH_REDIRECT_METHODS = ("GET", "HEAD")


def _redirect_to_path(handler: RequestHandler, path: str) -> None:
    """Redirect permanently to ``path``, keeping the request's query string."""
    if _is_protocol_relative(path):
        # "//host/..." would send the browser to another site.
        raise HTTPError(403, "cannot redirect path with two initial slashes")
    query = handler.request.query
    handler.redirect(path + "?" + query if query else path, permanent=True)


def removeslash(
    method: Callable[..., Optional[Awaitable[None]]],
) -> Callable[..., Optional[Awaitable[None]]]:
    """Method decorator: redirect ``/path/`` to ``/path`` (GET/HEAD), else 404."""

    @functools.wraps(method)
    def wrapper(self: RequestHandler, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        path = self.request.path
        if not path.endswith("/"):
            return method(self, *args, **kwargs)
        if self.request.method not in _SLASH_REDIRECT_METHODS:
            raise HTTPError(404)
        trimmed = path.rstrip("/")
        if not trimmed:
            # "/" has no form without the slash: it is served as it is.
            return method(self, *args, **kwargs)
        _redirect_to_path(self, trimmed)
        return None

    return wrapper


def addslash(
    method: Callable[..., Optional[Awaitable[None]]],
) -> Callable[..., Optional[Awaitable[None]]]:
    """Method decorator: redirect ``/path`` to ``/path/`` (GET/HEAD), else 404."""

    @functools.wraps(method)
    def wrapper(self: RequestHandler, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        path = self.request.path
        if path.endswith("/"):
            return method(self, *args, **kwargs)
        if self.request.method not in _SLASH_REDIRECT_METHODS:
            raise HTTPError(404)
        _redirect_to_path(self, path + "/")
        return None

    return wrapper


def _login_redirect_url(handler: RequestHandler) -> str:
    login_url = handler.get_login_url()
    if "?" in login_url:
        return login_url  # (the application wrote the query itself)
    # A login page on another site needs an absolute way back.
    request = handler.request
    back = request.full_url() if urllib.parse.urlsplit(login_url).scheme else request.uri
    return login_url + "?" + urllib.parse.urlencode({"next": back})


def authenticated(
    method: Callable[..., Optional[Awaitable[None]]],
) -> Callable[..., Optional[Awaitable[None]]]:
    """Method decorator: anonymous users are redirected to the login URL (GET/HEAD) or
    refused with 403."""

    @functools.wraps(method)
    def wrapper(self: RequestHandler, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        if self.current_user:
            return method(self, *args, **kwargs)
        if self.request.method not in _SLASH_REDIRECT_METHODS:
            raise HTTPError(403)
        self.redirect(_login_redirect_url(self))
        return None

    return wrapper


class ErrorHandler(RequestHandler):
    """Answers every request with ``status_code`` (also the default 404 handler)."""

    def initialize(self, status_code: int) -> None:  # type: ignore[override]
        self.set_status(status_code)

    def prepare(self) -> None:
        raise HTTPError(self.get_status())

    # An error page changes nothing, so it needs neither an XSRF token nor a trusted
    # origin: a POST to a missing page gets its 404, not a 403.

    def check_xsrf_cookie(self) -> None:
        return None

    def check_trusted_origin(self, origin: str) -> bool:
        return True


# Characters refused in a redirect target (tab is dropped by browsers, so it is allowed
# here and removed before the target's host is checked).
_INVALID_REDIRECT_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SPECIAL_SCHEMES = frozenset(("http", "https", "ws", "wss", "ftp", "file"))
_SCHEME_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def _normalize_url_like_browser(url: str) -> str:
    """Rewrite ``url`` the way a browser reads it, so its host can be compared: tabs and
    newlines vanish, backslashes are slashes, any run of slashes that starts an authority
    is two slashes, and ``https:host`` means ``https://host``."""
    url = url.replace("\t", "").replace("\r", "").replace("\n", "").replace("\\", "/")
    url = url.lstrip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13"
        "\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )
    scheme_match = _SCHEME_PREFIX.match(url)
    if scheme_match is not None:
        scheme = scheme_match.group(1)
        rest = url[scheme_match.end() :]
        if scheme.lower() in _SPECIAL_SCHEMES:
            return scheme + "://" + rest.lstrip("/")
        return url
    if url.startswith("//"):
        return "//" + url.lstrip("/")
    return url


def _scheme_and_netloc(url: str) -> Tuple[str, str]:
    parsed = urllib.parse.urlsplit(_normalize_url_like_browser(url))
    return parsed.scheme.lower(), parsed.netloc.lower()


class RedirectHandler(RequestHandler):
    """Redirects every GET to ``url``, which may use ``{0}``/``{name}`` placeholders for
    the pattern's groups; the query string is carried over."""

    def initialize(self, url: str, permanent: bool = True) -> None:  # type: ignore[override]
        self._url = url
        self._permanent = permanent

    def get(self, *args: Any, **kwargs: Any) -> None:
        to_url = self._url.format(*args, **kwargs)
        if self.request.query_arguments:
            try:
                query: List[Any] = [
                    (name, value)
                    for name, values in self.request.query_arguments.items()
                    for value in values
                ]
                to_url = httputil.url_concat(to_url, query)
            except ValueError:
                raise HTTPError(400, "Redirect URL cannot be parsed: %r", to_url)
        if args or kwargs:
            self._check_redirect_target(to_url)
        self.redirect(to_url, permanent=self._permanent)

    def _check_redirect_target(self, to_url: str) -> None:
        # Path groups come from the client: they may not move the redirect to another
        # host or scheme (an open redirect), nor break the Location header.
        if _INVALID_REDIRECT_CHARS.search(to_url):
            raise HTTPError(400, "Redirect URL contains invalid characters: %r", to_url)
        fixed_prefix = self._url.split("{", 1)[0]
        try:
            expected = _scheme_and_netloc(fixed_prefix)
            actual = _scheme_and_netloc(to_url)
        except ValueError:
            raise HTTPError(400, "Redirect URL cannot be parsed: %r", to_url)
        if actual != expected:
            raise HTTPError(400, "Redirect URL cannot change the scheme or netloc: %r", to_url)


class FallbackHandler(RequestHandler):
    """Passes requests to another server callable (e.g. a WSGIContainer)."""

    def initialize(self, fallback: _ServerCallable) -> None:  # type: ignore[override]
        self.fallback = fallback

    def prepare(self) -> None:
        self.fallback(self.request)
        self._stand_down()

    def _stand_down(self) -> None:
        # The fallback answered on the connection itself: this handler must write nothing
        # more, though on_finish runs as after any finished request.
        self._finished = True
        self.on_finish()
