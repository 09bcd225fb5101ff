"""RequestHandler: one request's handler, with its arguments, cookies, output and errors.

Handler methods may be plain functions or coroutines. A synchronous handler runs start to
finish inside the call that received the request, without a task or future of its own; a
coroutine handler is moved onto a task the first time it has to wait.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.cookies
import inspect
import numbers
import os
import re
import sys
import threading
import time
import traceback
import types
import urllib.parse
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Protocol,
    Tuple,
    Type,
    TypeVar,
    Union,
)

import squall
from squall import escape, httputil
from squall._web.cookies import _format_timestamp, format_set_cookie
from squall._web.errors import Finish, HTTPError, MissingArgumentError
from squall._web.signing import (
    create_signed_value,
    decode_signed_value,
    decode_xsrf_token,
    encode_xsrf_token,
    get_signature_key_version,
    new_xsrf_secret,
)
from squall._web.transforms import OutputTransform
from squall.log import app_log, gen_log
from squall.util import ObjectDict

if TYPE_CHECKING:
    from squall.locale import Locale
    from squall.template import BaseLoader


class _Application(Protocol):
    """What a handler uses of its application (:class:`squall.web.Application` has it;
    the application module sits above this one, so it is named by its shape)."""

    settings: Dict[str, Any]
    ui_methods: Dict[str, Callable[..., str]]
    ui_modules: Dict[str, type]

    def reverse_url(self, name: str, *args: Any) -> str: ...

    def log_request(self, handler: "RequestHandler") -> None: ...

    def _static_handler_class(self) -> Any: ...


class _PageModule(Protocol):
    """What rendering asks of a UI module instance (see ``squall.web.UIModule``)."""

    def render(self, *args: Any, **kwargs: Any) -> Union[str, bytes]: ...

    def embedded_javascript(self) -> Optional[str]: ...

    def javascript_files(self) -> Optional[Iterable[str]]: ...

    def embedded_css(self) -> Optional[str]: ...

    def css_files(self) -> Optional[Iterable[str]]: ...

    def html_head(self) -> Optional[str]: ...

    def html_body(self) -> Optional[str]: ...


_HeaderTypes = Union[bytes, str, int, numbers.Integral, datetime.datetime]
_RequestHandlerType = TypeVar("_RequestHandlerType", bound="RequestHandler")
_T = TypeVar("_T")


class _ArgDefaultMarker:
    pass


_ARG_DEFAULT: Any = _ArgDefaultMarker()
_UNSET: Any = object()

_SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
_XSRF_HEADER_NAMES = ("X-Xsrftoken", "X-Csrftoken")
# Handler attribute for each standard method (saves a lower() per request).
# The verbs a handler answers unless it says otherwise (Tornado's documented
# SUPPORTED_METHODS, in its order), each with its handler method's name.
_METHOD_ATTRIBUTES = {
    verb: verb.lower() for verb in "GET HEAD POST DELETE PATCH PUT OPTIONS".split()
}
_SERVER_HEADER = "SquallServer/" + squall.version
_RESPONSES = http.client.responses


def _unicode(value: Union[str, bytes, None]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8")


class _DateCache:
    """The ``Date`` header value changes once a second; format it once a second."""

    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.value = email.utils.formatdate(now, usegmt=True)
            self.second = now
        return self.value


_date_cache = _DateCache()


def _default_headers_slow(date: str) -> httputil.HTTPHeaders:
    headers = httputil.HTTPHeaders()
    headers["Server"] = _SERVER_HEADER
    headers["Content-Type"] = "text/html; charset=UTF-8"
    headers["Date"] = date
    return headers


def _default_headers_fast(date: str) -> httputil.HTTPHeaders:
    # Fills HTTPHeaders' storage directly: these names are already normalized and the
    # values known to be safe, so the per-item checks of __setitem__ can be skipped.
    headers = _new_headers(httputil.HTTPHeaders)
    headers._values = {
        "Server": [_SERVER_HEADER],
        "Content-Type": ["text/html; charset=UTF-8"],
        "Date": [date],
    }
    headers._joined = {}
    return headers


_new_headers = httputil.HTTPHeaders.__new__


def _pick_default_headers() -> Callable[[str], httputil.HTTPHeaders]:
    # The fast path depends on how HTTPHeaders stores its fields; use it only when it
    # demonstrably builds the same object as the public interface does.
    try:
        fast = _default_headers_fast("x")
        slow = _default_headers_slow("x")
        if (
            list(fast.get_all()) == list(slow.get_all())
            and fast["content-type"] == slow["Content-Type"]
        ):
            fast["Etag"] = "1"
            fast.add("Set-Cookie", "a=b")
            if fast.get("etag") == "1" and "set-cookie" in fast and len(fast) == 5:
                return _default_headers_fast
    except Exception:
        pass
    return _default_headers_slow


_default_headers = _pick_default_headers()


# Characters never allowed in a header value (tab is fine), nor in a reason phrase, whose
# text is also shown in the default error page.
_UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_UNSAFE_REASON_CHARS = re.compile(r"[\x00-\x1f\x7f<>]")


# Application settings passed on to a template.Loader, with the loader's name for each.
_LOADER_OPTIONS = (("autoescape", "autoescape"), ("template_whitespace", "whitespace"))


def _package_files() -> frozenset:
    """The source files of this package, as code objects name them (their __file__)."""
    directory = os.path.dirname(__file__)
    try:
        names = os.listdir(directory)
    except OSError:  # (imported from a zip file, say)
        names = []
    return frozenset([__file__] + [os.path.join(directory, n) for n in names if n.endswith(".py")])


_PACKAGE_FILES = _package_files()


def _calling_directory() -> str:
    """The directory of the nearest caller outside this package: without a
    ``template_path`` setting, templates live beside the code that renders them."""
    # (From this frame on: compiled, this function and its callers have no frames.)
    frame = sys._getframe(0)
    while frame.f_back is not None and frame.f_code.co_filename in _PACKAGE_FILES:
        frame = frame.f_back
    return os.path.dirname(frame.f_code.co_filename)


class RequestHandler:
    """Base class for HTTP request handlers.

    Subclasses define ``get``, ``post`` and friends (with ``SUPPORTED_METHODS``); the other
    methods here are for them to call or override.
    """

    SUPPORTED_METHODS: Tuple[str, ...] = tuple(_METHOD_ATTRIBUTES)

    _template_loaders: Dict[str, "BaseLoader"] = {}
    _template_loader_lock = threading.Lock()
    _remove_control_chars_regex = re.compile(r"[\x00-\x08\x0e-\x1f]")
    _VALID_HEADER_CHARS = re.compile(r"[\x09\x20-\x7e\x80-\uffff]*")
    _stream_request_body = False

    # Defaults so that a handler built without __init__ (tests do this) still works.
    _prepared_future: Optional["asyncio.Future[None]"] = None
    _body_future: Optional["asyncio.Future[None]"] = None
    _xsrf_token_cache: Optional[bytes] = None
    _raw_xsrf_token: Optional[Tuple[Optional[int], bytes, float]] = None
    _ui_namespace: Optional[ObjectDict] = None
    _active_modules: Optional[Dict[str, _PageModule]] = None
    _close_notified = False
    _new_cookies: Optional[Dict[str, str]] = None
    path_args: List[Any] = []
    path_kwargs: Dict[str, Any] = {}

    def __init__(
        self,
        application: _Application,
        request: httputil.HTTPServerRequest,
        **kwargs: Any,
    ) -> None:
        super().__init__()  # lets mixins such as auth.OpenIdMixin set themselves up
        self.application = application
        self.request = request
        self._headers_written = False
        self._finished = False
        self._auto_finish = True
        self._transforms: List[OutputTransform] = []
        self.path_args = []
        self.path_kwargs = {}
        self.clear()
        connection = request.connection
        if connection is not None:
            set_close_callback = getattr(connection, "set_close_callback", None)
            if set_close_callback is not None:
                set_close_callback(self._notify_connection_close)
        if kwargs or type(self).initialize is not RequestHandler._initialize:
            self.initialize(**kwargs)

    def _initialize(self) -> None:
        pass

    initialize: Callable[..., None] = _initialize
    """Hook for subclass initialization, called with the rule's keyword arguments."""

    @property
    def settings(self) -> Dict[str, Any]:
        """The application's settings."""
        return self.application.settings

    @property
    def ui(self) -> ObjectDict:
        """The template namespace entries for UI methods and modules (built on first use)."""
        namespace = self._ui_namespace
        if namespace is None:
            namespace = ObjectDict(
                (name, self._ui_method(method))
                for name, method in self.application.ui_methods.items()
            )
            modules = _UIModuleNamespace(self, self.application.ui_modules)
            namespace["_tt_modules"] = modules
            namespace["modules"] = modules
            self._ui_namespace = namespace
        return namespace

    @ui.setter
    def ui(self, value: ObjectDict) -> None:
        self._ui_namespace = value

    def _unimplemented_method(self, *args: str, **kwargs: str) -> None:
        raise HTTPError(405)

    head: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method
    get: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method
    post: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method
    delete: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method
    patch: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method
    put: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method
    options: Callable[..., Optional[Awaitable[None]]] = _unimplemented_method

    def prepare(self) -> Optional[Awaitable[None]]:
        """Called before the HTTP method; may be a coroutine. Finishing here skips it."""
        return None

    def on_finish(self) -> None:
        """Called after the response is sent (for cleanup or logging)."""

    def on_connection_close(self) -> None:
        """Called when the client closes the connection before the response is done."""
        if self._stream_request_body:
            body_future = self._body_future
            if body_future is not None and not body_future.done():
                from squall.iostream import StreamClosedError

                body_future.set_exception(StreamClosedError())
                body_future.exception()

    def _notify_connection_close(self) -> None:
        # The connection's close callback and the message delegate may both report the
        # same close; the handler hears it once.
        if self._close_notified:
            return
        self._close_notified = True
        self.on_connection_close()

    def clear(self) -> None:
        """Reset headers and content for this response."""
        self._headers = _default_headers(_date_cache.get())
        if type(self).set_default_headers is not _STOCK_SET_DEFAULT_HEADERS:
            self.set_default_headers()
        self._write_buffer: List[bytes] = []
        self._status_code = 200
        self._reason = "OK"

    def set_default_headers(self) -> None:
        """Hook to set headers on every response (including error pages)."""

    def set_status(self, status_code: int, reason: Optional[str] = None) -> None:
        """Set the response status; a reason with control characters or markup is
        replaced with "Unknown"."""
        self._status_code = status_code
        if reason is None:
            self._reason = _RESPONSES.get(status_code, "Unknown")
        elif _UNSAFE_REASON_CHARS.search(reason) is None:
            self._reason = escape.native_str(reason)
        else:
            # A reason that could split the status line or inject markup is dropped.
            self._reason = "Unknown"

    def get_status(self) -> int:
        return self._status_code

    def set_header(self, name: str, value: _HeaderTypes) -> None:
        """Set a response header, replacing any previous value."""
        self._headers[name] = self._convert_header_value(value)

    def add_header(self, name: str, value: _HeaderTypes) -> None:
        """Add a response header; headers like ``Set-Cookie`` may appear several times."""
        self._headers.add(name, self._convert_header_value(value))

    def clear_header(self, name: str) -> None:
        """Remove a response header (all its values)."""
        if name in self._headers:
            del self._headers[name]

    def _convert_header_value(self, value: _HeaderTypes) -> str:
        if isinstance(value, str):
            text = value
        elif isinstance(value, bytes):
            # Latin-1 maps every byte to one character, so bytes survive the round trip.
            text = value.decode("latin1")
        else:
            return _non_text_header_value(value)
        if _UNSAFE_HEADER_CHARS.search(text) is not None:
            raise ValueError("Unsafe header value %r" % text)
        return text

    # Arguments ------------------------------------------------------------------------

    def get_argument(
        self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True
    ) -> Optional[str]:
        """The last value of the query or body argument ``name``; raises
        :class:`MissingArgumentError` if absent and no default is given."""
        return self._get_argument(name, default, self.request.arguments, strip)

    def get_arguments(self, name: str, strip: bool = True) -> List[str]:
        """Every value of the query and body argument ``name`` (maybe empty)."""
        return self._get_arguments(name, self.request.arguments, strip)

    def get_body_argument(
        self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True
    ) -> Optional[str]:
        return self._get_argument(name, default, self.request.body_arguments, strip)

    def get_body_arguments(self, name: str, strip: bool = True) -> List[str]:
        return self._get_arguments(name, self.request.body_arguments, strip)

    def get_query_argument(
        self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True
    ) -> Optional[str]:
        return self._get_argument(name, default, self.request.query_arguments, strip)

    def get_query_arguments(self, name: str, strip: bool = True) -> List[str]:
        return self._get_arguments(name, self.request.query_arguments, strip)

    def _get_argument(
        self, name: str, default: Any, source: Dict[str, List[bytes]], strip: bool = True
    ) -> Optional[str]:
        values = self._get_arguments(name, source, strip=strip)
        if not values:
            if default is _ARG_DEFAULT:
                raise MissingArgumentError(name)
            return default
        return values[-1]

    def _get_arguments(
        self, name: str, source: Dict[str, List[bytes]], strip: bool = True
    ) -> List[str]:
        decode = self.decode_argument
        values = [decode(raw, name=name) for raw in source.get(name, ())]
        # Control characters other than whitespace have no business in form text (an
        # override that decodes to bytes keeps them).
        control = self._remove_control_chars_regex
        values = [control.sub(" ", v) if isinstance(v, str) else v for v in values]
        return [v.strip() for v in values] if strip else values

    def decode_argument(self, value: bytes, name: Optional[str] = None) -> str:
        """Decode an argument (query, body or path) from bytes; override for another
        encoding. Invalid UTF-8 is a 400 error."""
        try:
            return value.decode("utf-8") if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            raise HTTPError(400, "Invalid unicode in %s: %r", name or "url", value[:40])

    # Cookies --------------------------------------------------------------------------

    @property
    def cookies(self) -> Dict[str, http.cookies.Morsel]:
        """The request's cookies (parsed on first use)."""
        return self.request.cookies

    def get_cookie(self, name: str, default: Optional[str] = None) -> Optional[str]:
        cookies = self.request.cookies
        if name in cookies:
            return cookies[name].value
        return default

    def set_cookie(
        self,
        name: str,
        value: Union[str, bytes],
        domain: Optional[str] = None,
        expires: Optional[Union[float, Tuple, datetime.datetime]] = None,
        path: str = "/",
        expires_days: Optional[float] = None,
        *,
        max_age: Optional[int] = None,
        httponly: bool = False,
        secure: bool = False,
        samesite: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        """Queue a ``Set-Cookie`` header. Names and attributes with control characters,
        spaces or ``;`` raise :class:`http.cookies.CookieError`; values with control
        characters or spaces raise ValueError."""
        header = format_set_cookie(
            name,
            value,
            domain=domain,
            expires=expires,
            path=path,
            expires_days=expires_days,
            max_age=max_age,
            httponly=httponly,
            secure=secure,
            samesite=samesite,
            extra=kwargs,
        )
        if self._new_cookies is None:
            self._new_cookies = {}
        # A second cookie of the same name replaces the first, attributes and all.
        self._new_cookies[escape.native_str(name)] = header

    def clear_cookie(self, name: str, **kwargs: Any) -> None:
        """Delete a cookie in the browser (give the same path and domain it was set with)."""
        for excluded in ("expires", "max_age"):
            if excluded in kwargs:
                raise TypeError(f"clear_cookie() got an unexpected keyword argument '{excluded}'")
        expires = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=365)
        self.set_cookie(name, value="", expires=expires, **kwargs)

    def clear_all_cookies(self, **kwargs: Any) -> None:
        """Delete every cookie the request carried."""
        for name in self.request.cookies:
            self.clear_cookie(name, **kwargs)

    def _cookie_secret(self) -> Any:
        # Every signed-cookie method starts here: without a secret there is nothing to
        # sign or check with, which is a setup mistake worth saying so.
        self.require_setting("cookie_secret", "secure cookies")
        return self.application.settings["cookie_secret"]

    def _incoming_cookie(self, name: str, value: Optional[str]) -> Optional[str]:
        return self.get_cookie(name) if value is None else value

    def set_signed_cookie(
        self,
        name: str,
        value: Union[str, bytes],
        expires_days: Optional[float] = 30,
        version: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        """Set a cookie signed with the ``cookie_secret`` setting (readable, not secret)."""
        signed = self.create_signed_value(name, value, version=version)
        self.set_cookie(name, signed, expires_days=expires_days, **kwargs)

    set_secure_cookie = set_signed_cookie

    def create_signed_value(
        self, name: str, value: Union[str, bytes], version: Optional[int] = None
    ) -> bytes:
        """Sign a value as :meth:`set_signed_cookie` would, for use elsewhere."""
        secret = self._cookie_secret()
        # A dict of secrets is a key ring: new values are signed with the current key.
        key_version = None
        if isinstance(secret, dict):
            key_version = self.application.settings.get("key_version")
            if key_version is None:
                raise Exception("key_version setting must be used for secret_key dicts")
        return create_signed_value(secret, name, value, version=version, key_version=key_version)

    def get_signed_cookie(
        self,
        name: str,
        value: Optional[str] = None,
        max_age_days: float = 31,
        min_version: Optional[int] = None,
    ) -> Optional[bytes]:
        """The value of a signed cookie, or None when absent, forged, truncated or expired."""
        secret = self._cookie_secret()
        signed = self._incoming_cookie(name, value)
        return decode_signed_value(
            secret, name, signed, max_age_days=max_age_days, min_version=min_version
        )

    get_secure_cookie = get_signed_cookie

    def get_signed_cookie_key_version(
        self, name: str, value: Optional[str] = None
    ) -> Optional[int]:
        """The key version a signed cookie was made with."""
        self._cookie_secret()
        signed = self._incoming_cookie(name, value)
        return None if signed is None else get_signature_key_version(signed)

    get_secure_cookie_key_version = get_signed_cookie_key_version

    # Output ---------------------------------------------------------------------------

    def redirect(self, url: str, permanent: bool = False, status: Optional[int] = None) -> None:
        """Send a redirect to ``url`` (301 if permanent, else 302, or ``status``)."""
        if self._headers_written:
            raise Exception("Cannot redirect after headers have been written")
        if status is None:
            status = 301 if permanent else 302
        elif not (isinstance(status, int) and 300 <= status <= 399):
            raise ValueError(f"redirect status must be 3xx, got {status!r}")
        self.set_status(status)
        self.set_header("Location", escape.utf8(url))
        self.finish()

    def write(self, chunk: Union[str, bytes, dict]) -> None:
        """Buffer output; a dict is sent as JSON with the JSON content type."""
        if self._finished:
            raise RuntimeError("Cannot write() after finish()")
        kind = type(chunk)
        if kind is str:
            self._write_buffer.append(chunk.encode("utf-8"))  # type: ignore[union-attr]
            return
        if kind is bytes or isinstance(chunk, bytes):
            self._write_buffer.append(chunk)  # type: ignore[arg-type]
            return
        if isinstance(chunk, str):
            self._write_buffer.append(chunk.encode("utf-8"))
            return
        if isinstance(chunk, dict):
            if type(self).set_header is _STOCK_SET_HEADER:
                # A constant known to be safe: set_header's checks would find nothing.
                self._headers["Content-Type"] = _JSON_CONTENT_TYPE
            else:
                self.set_header("Content-Type", _JSON_CONTENT_TYPE)
            self._write_buffer.append(escape.json_encode(chunk).encode("utf-8"))
            return
        message = "write() only accepts bytes, unicode, and dict objects"
        if isinstance(chunk, list):
            message += (
                ". Lists not accepted for security reasons (a JSON array at the top level"
                " can be read cross-site); wrap it in a dict"
            )
        raise TypeError(message)

    def render(self, template_name: str, **kwargs: Any) -> "asyncio.Future[None]":
        """Render a template and finish the response with it, adding the CSS/JS that
        UI modules asked for."""
        if self._finished:
            raise RuntimeError("Cannot render() after finish()")
        html = self.render_string(template_name, **kwargs)
        html = collect_module_resources(self, html)
        return self.finish(html)

    def render_linked_js(self, js_files: Iterable[str]) -> str:
        """HTML for ``<script src>`` tags (relative paths go through :meth:`static_url`)."""
        paths = self._unique_static_paths(js_files)
        return "".join(
            '<script src="' + escape.xhtml_escape(p) + '" type="text/javascript"></script>'
            for p in paths
        )

    def render_embed_js(self, js_embed: Iterable[bytes]) -> bytes:
        return (
            b'<script type="text/javascript">\n//<![CDATA[\n'
            + b"\n".join(js_embed)
            + b"\n//]]>\n</script>"
        )

    def render_linked_css(self, css_files: Iterable[str]) -> str:
        paths = self._unique_static_paths(css_files)
        return "".join(
            '<link href="' + escape.xhtml_escape(p) + '" type="text/css" rel="stylesheet"/>'
            for p in paths
        )

    def render_embed_css(self, css_embed: Iterable[bytes]) -> bytes:
        return b'<style type="text/css">\n' + b"\n".join(css_embed) + b"\n</style>"

    def _unique_static_paths(self, files: Iterable[str]) -> List[str]:
        paths: List[str] = []
        seen = set()
        for path in files:
            if not is_absolute(path):
                path = self.static_url(path)
            if path not in seen:
                paths.append(path)
                seen.add(path)
        return paths

    def render_string(self, template_name: str, **kwargs: Any) -> bytes:
        """Render a template to bytes with the handler's namespace plus ``kwargs``."""
        loader = self._loader_for(self.get_template_path() or _calling_directory())
        template = loader.load(template_name)
        namespace = self.get_template_namespace()
        namespace.update(kwargs)
        return template.generate(**namespace)

    @staticmethod
    def _reset_template_loaders() -> None:
        with RequestHandler._template_loader_lock:
            for loader in RequestHandler._template_loaders.values():
                loader.reset()

    def _loader_for(self, template_path: str) -> "BaseLoader":
        # Loaders are shared by every handler class, one per directory, so that compiled
        # templates outlive the request that first needed them.
        loaders = RequestHandler._template_loaders
        with RequestHandler._template_loader_lock:
            loader = loaders.get(template_path)
            if loader is None:
                loader = loaders[template_path] = self.create_template_loader(template_path)
        return loader

    def get_template_namespace(self) -> Dict[str, Any]:
        """The names every template sees (override to add more)."""
        locale = self.locale
        namespace: Dict[str, Any] = {
            "handler": self,
            "request": self.request,
            "current_user": self.current_user,
            "locale": locale,
            "_": locale.translate,
            "pgettext": locale.pgettext,
            "static_url": self.static_url,
            "xsrf_form_html": self.xsrf_form_html,
            "reverse_url": self.reverse_url,
        }
        namespace.update(self.ui)
        return namespace

    def create_template_loader(self, template_path: str) -> "BaseLoader":
        """The loader for ``template_path``; the ``template_loader`` setting wins."""
        settings = self.application.settings
        if "template_loader" in settings:
            return settings["template_loader"]
        from squall import template

        # Only options the application gave: an explicit autoescape=None (no escaping)
        # is not the same as the loader's default.
        options = {option: settings[name] for name, option in _LOADER_OPTIONS if name in settings}
        return template.Loader(template_path, **options)

    def get_template_path(self) -> Optional[str]:
        return self.application.settings.get("template_path")

    def flush(self, include_footers: bool = False) -> "asyncio.Future[None]":
        """Send what has been written so far; the returned future resolves once sent."""
        connection = self.request.connection
        assert connection is not None
        body = b"".join(self._write_buffer)
        self._write_buffer = []
        transforms = self._transforms
        if self._headers_written:
            for transform in transforms:
                body = transform.transform_chunk(body, include_footers)
            if self.request.method != "HEAD":
                return connection.write(body)
            # A HEAD response ended with its head; there is nothing to wait for.
            done: asyncio.Future[None] = asyncio.get_event_loop().create_future()
            done.set_result(None)
            return done
        self._headers_written = True
        if transforms:
            status, headers = self._status_code, self._headers
            for transform in transforms:
                status, headers, body = transform.transform_first_chunk(
                    status, headers, body, include_footers
                )
            self._status_code, self._headers = status, headers
        cookies = self._new_cookies
        if cookies:
            # Kept aside until now so that setting a cookie twice sends only the last one.
            for header in cookies.values():
                self.add_header("Set-Cookie", header)
        if self.request.method == "HEAD":
            # The head GET would have sent, Content-Length included, and no body.
            body = b""
        status, reason = self._status_code, self._reason
        if status == 200 and reason == "OK":
            head = _OK_START_LINE  # (immutable: one shared tuple will do)
        else:
            head = httputil.ResponseStartLine("HTTP/1.1", status, reason)
        return connection.write_headers(head, self._headers, body)

    def finish(self, chunk: Optional[Union[str, bytes, dict]] = None) -> "asyncio.Future[None]":
        """Complete the response (optionally writing ``chunk`` first)."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            self.write(chunk)
        self._describe_body()
        sent = self.flush(include_footers=True)
        connection = self.request.connection
        assert connection is not None
        connection.finish()
        set_close_callback = getattr(connection, "set_close_callback", None)
        if set_close_callback is not None:
            # The connection would otherwise keep this handler alive through the callback.
            set_close_callback(None)
        self._log()
        self._finished = True
        if type(self).on_finish is not _STOCK_ON_FINISH:
            self.on_finish()
        # UI modules hold the handler; dropping them lets reference counting free both.
        self._ui_namespace = None
        self._active_modules = None
        return sent

    def _describe_body(self) -> None:
        """While the head is still unsent, settle the headers that describe the whole
        body: ETag (or a 304) and Content-Length."""
        if self._headers_written:
            return
        stored = self._headers._values  # (normalized names: membership is a dict lookup)
        cls = type(self)
        status = self._status_code
        if status == 200 and "Etag" not in stored:
            request = self.request
            if request.method == "GET" or request.method == "HEAD":
                if (
                    "If-None-Match" not in request.headers._values
                    and cls.compute_etag is _STOCK_COMPUTE_ETAG
                    and cls.set_etag_header is _STOCK_SET_ETAG_HEADER
                    and cls.check_etag_header is _STOCK_CHECK_ETAG_HEADER
                    and cls.set_header is _STOCK_SET_HEADER
                ):
                    # Stock methods and no condition to test: store the quoted digest
                    # directly (it needs none of set_header's checks).
                    stored["Etag"] = [self.compute_etag()]  # type: ignore[list-item]
                else:
                    self.set_etag_header()
                    if self.check_etag_header():
                        self._write_buffer = []
                        self.set_status(304)
                        status = self._status_code
        if status != 200 and _has_no_body(status):
            if self._write_buffer:
                raise RuntimeError("Cannot send body with %s" % status)
            self._clear_representation_headers()
        elif "Content-Length" not in stored:
            pieces = self._write_buffer
            length = str(len(pieces[0]) if len(pieces) == 1 else sum(map(len, pieces)))
            if cls.set_header is _STOCK_SET_HEADER:
                stored["Content-Length"] = [length]
            else:
                self.set_header("Content-Length", length)  # (the override wants to see it)

    def _clear_representation_headers(self) -> None:
        for name in _REPRESENTATION_HEADERS:
            self.clear_header(name)

    def detach(self) -> Any:
        """Take over the connection's stream (for protocols like WebSocket); the handler
        writes nothing more."""
        self._finished = True
        return self.request.connection.detach()  # type: ignore[union-attr]

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Send an error page via :meth:`write_error`."""
        if self._headers_written:
            self._end_started_response()
            return
        self.clear()
        self.set_status(status_code, reason=_error_reason(kwargs))
        try:
            self.write_error(status_code, **kwargs)
        except Exception:
            app_log.error("Uncaught exception in write_error", exc_info=True)
        self._finish_if_open()

    def _finish_if_open(self) -> None:
        if not self._finished:
            self.finish()

    def _end_started_response(self) -> None:
        # Once the head is out no error page can follow: close off what was sent.
        gen_log.error("Cannot send error response after headers written")
        if self._finished:
            return
        try:
            self.finish()
        except Exception:
            gen_log.error("Failed to flush partial response", exc_info=True)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the error page; the traceback only with the ``serve_traceback`` setting
        (on with ``debug``)."""
        if _has_no_body(status_code):
            self.finish()
            return
        exc_info = kwargs.get("exc_info")
        if exc_info and self.settings.get("serve_traceback"):
            self.set_header("Content-Type", "text/plain")
            self.finish("".join(traceback.format_exception(*exc_info)))
            return
        text = escape.xhtml_escape(self._reason)
        self.finish(
            "<html><title>%d: %s</title><body>%d: %s</body></html>"
            % (status_code, text, status_code, text)
        )

    # Locale, user, XSRF ---------------------------------------------------------------

    @property
    def locale(self) -> "Locale":
        """The user's locale: :meth:`get_user_locale`, else the browser's."""
        current = self.__dict__.get("_locale")
        if current is None:
            current = self.get_user_locale()
            if current is None:
                current = self.get_browser_locale()
            self._locale = current
        return current

    @locale.setter
    def locale(self, value: "Locale") -> None:
        self._locale = value

    def get_user_locale(self) -> Optional["Locale"]:
        """Override to pick a locale from the user (e.g. a profile setting)."""
        return None

    def get_browser_locale(self, default: str = "en_US") -> "Locale":
        """The best locale from the ``Accept-Language`` header."""
        from squall import locale

        header = self.request.headers.get("Accept-Language")
        if header:
            weighted = []
            for position, entry in enumerate(header.split(",")):
                parts = entry.strip().split(";")
                score = 1.0
                if len(parts) > 1 and parts[1].strip().startswith("q="):
                    try:
                        score = float(parts[1].strip()[2:])
                    except ValueError:
                        score = 0.0
                    if not 0.0 <= score <= 1.0:
                        score = 0.0
                if score > 0 and parts[0]:
                    weighted.append((-score, position, parts[0]))
            if weighted:
                weighted.sort()
                return locale.get(*[code for _, _, code in weighted])
        return locale.get(default)

    @property
    def current_user(self) -> Any:
        """The logged-in user, from :meth:`get_current_user` (asked once per request)."""
        user = self.__dict__.get("_current_user", _UNSET)
        if user is _UNSET:
            user = self.get_current_user()
            self._current_user = user
        return user

    @current_user.setter
    def current_user(self, value: Any) -> None:
        self._current_user = value

    def get_current_user(self) -> Any:
        """Override to find the user (e.g. from a signed cookie)."""
        return None

    def get_login_url(self) -> str:
        """Where :func:`authenticated` sends anonymous users (``login_url`` setting)."""
        self.require_setting("login_url", "@squall.web.authenticated")
        return self.application.settings["login_url"]

    @property
    def xsrf_token(self) -> bytes:
        """This user's XSRF token, masked afresh on every request; sets the XSRF cookie
        when the browser has none."""
        token = self._xsrf_token_cache
        if token is None:
            version, raw, timestamp = self._get_raw_xsrf_token()
            settings = self.settings
            token = encode_xsrf_token(settings.get("xsrf_cookie_version", 2), raw, timestamp)
            if version is None:
                cookie_kwargs = dict(settings.get("xsrf_cookie_kwargs", {}))
                if self.current_user and "expires_days" not in cookie_kwargs:
                    cookie_kwargs["expires_days"] = 30
                cookie_name = settings.get("xsrf_cookie_name", "_xsrf")
                self.set_cookie(cookie_name, token, **cookie_kwargs)
            self._xsrf_token_cache = token
        return token

    def _get_raw_xsrf_token(self) -> Tuple[Optional[int], bytes, float]:
        """(version, raw token, timestamp) from the cookie; a new random token (version
        None) when the cookie is missing or unreadable."""
        raw = self._raw_xsrf_token
        if raw is None:
            cookie = self.get_cookie(self.settings.get("xsrf_cookie_name", "_xsrf"))
            version, token, timestamp = self._decode_xsrf_token(cookie) if cookie else (None,) * 3
            if token is None or timestamp is None:
                version, token, timestamp = None, new_xsrf_secret(), time.time()
            raw = (version, token, timestamp)
            self._raw_xsrf_token = raw
        return raw

    def _decode_xsrf_token(
        self, cookie: str
    ) -> Tuple[Optional[int], Optional[bytes], Optional[float]]:
        return decode_xsrf_token(cookie)

    def check_xsrf_cookie(self) -> None:
        """Refuse (403) a request whose ``_xsrf`` argument or ``X-Xsrftoken`` /
        ``X-Csrftoken`` header does not match the XSRF cookie."""
        # The form field first, then the headers JavaScript clients send it in.
        fields = map(self.request.headers.get, _XSRF_HEADER_NAMES)
        token = self.get_argument("_xsrf", None) or next(filter(None, fields), None)
        if not token:
            raise HTTPError(403, "'_xsrf' argument missing from POST")
        _, submitted, _ = self._decode_xsrf_token(token)
        if not submitted:
            raise HTTPError(403, "'_xsrf' argument has invalid format")
        _, expected, _ = self._get_raw_xsrf_token()
        if not expected or not hmac.compare_digest(submitted, expected):
            raise HTTPError(403, "XSRF cookie does not match POST argument")

    def xsrf_form_html(self) -> str:
        """A hidden ``<input>`` carrying the XSRF token, for forms."""
        return (
            '<input type="hidden" name="_xsrf" value="'
            + escape.xhtml_escape(self.xsrf_token)
            + '"/>'
        )

    def check_trusted_origin(self, origin: str) -> bool:
        """Whether a cross-origin unsafe request from ``origin`` is allowed (the
        ``trusted_origins`` setting, compared exactly)."""
        return origin in self.settings.get("trusted_origins", ())

    def _origin_matches_host(self, origin: str) -> bool:
        try:
            parsed = urllib.parse.urlsplit(origin)
        except ValueError:
            return False
        if not parsed.scheme or not parsed.netloc:
            return False
        own = f"{self.request.protocol}://{self.request.host}".lower()
        return f"{parsed.scheme}://{parsed.netloc}".lower() == own

    def _check_cross_origin(self) -> None:
        headers = self.request.headers
        origin = headers.get("Origin")
        fetch_site = headers.get("Sec-Fetch-Site")
        if fetch_site is not None:
            # Browsers that send Sec-Fetch-Site say exactly where the request came from.
            if fetch_site in ("same-origin", "none"):
                return
            if origin is not None and self.check_trusted_origin(origin):
                return
            raise HTTPError(
                403,
                "Cross-origin request refused: Sec-Fetch-Site %s from origin %r not allowed",
                fetch_site,
                origin,
            )
        if origin is None:
            # Not a browser, or a browser old enough to send neither header.
            return
        if self._origin_matches_host(origin) or self.check_trusted_origin(origin):
            return
        raise HTTPError(403, "Cross-origin request refused: Origin %r not allowed", origin)

    # URLs, etags, misc ----------------------------------------------------------------

    def static_url(self, path: str, include_host: Optional[bool] = None, **kwargs: Any) -> str:
        """The URL of a static file, with a content hash so it can be cached forever."""
        self.require_setting("static_path", "static_url")
        make_url = self.application._static_handler_class().make_static_url
        if include_host is None:
            include_host = getattr(self, "include_host", False)
        base = self.request.protocol + "://" + self.request.host if include_host else ""
        return base + make_url(self.settings, path, **kwargs)

    def require_setting(self, name: str, feature: str = "this feature") -> None:
        if not self.application.settings.get(name):
            raise Exception(
                f"You must define the '{name}' setting in your application to use {feature}"
            )

    def reverse_url(self, name: str, *args: Any) -> str:
        return self.application.reverse_url(name, *args)

    def compute_etag(self) -> Optional[str]:
        """The ETag for the response (a hash of the body); None for no ETag."""
        buffer = self._write_buffer
        if len(buffer) == 1:
            return '"' + hashlib.sha1(buffer[0]).hexdigest() + '"'
        hasher = hashlib.sha1()
        for part in buffer:
            hasher.update(part)
        return '"' + hasher.hexdigest() + '"'

    def set_etag_header(self) -> None:
        etag = self.compute_etag()
        if etag is not None:
            self.set_header("Etag", etag)

    _ETAG_LIST = re.compile(rb'\*|(?:W/)?"[^"]*"')

    def check_etag_header(self) -> bool:
        """Whether the request's ``If-None-Match`` matches the response's ETag (weakly)."""
        if_none_match = self.request.headers.get("If-None-Match")
        if not if_none_match:
            return False
        computed = escape.utf8(self._headers.get("Etag", ""))
        if not computed:
            return False
        etags = self._ETAG_LIST.findall(escape.utf8(if_none_match))
        if not etags:
            return False
        if etags[0] == b"*":
            return True

        def strip_weak(tag: bytes) -> bytes:
            return tag[2:] if tag.startswith(b"W/") else tag

        computed = strip_weak(computed)
        return any(strip_weak(tag) == computed for tag in etags)

    def data_received(self, chunk: bytes) -> Optional[Awaitable[None]]:
        """With :func:`stream_request_body`, called for each chunk of the body."""
        raise NotImplementedError()

    def log_exception(
        self,
        typ: "Optional[Type[BaseException]]",
        value: Optional[BaseException],
        tb: Optional[types.TracebackType],
    ) -> None:
        """Log an exception from a handler: HTTPErrors as one warning line (without
        traceback), anything else as an error with traceback."""
        if not isinstance(value, HTTPError):
            failure: Any = (typ, value, tb)
            where = self._request_summary()
            app_log.error("Uncaught exception %s\n%r", where, self.request, exc_info=failure)
            return
        message = value.get_message()
        if message:
            gen_log.warning("%d %s: %s", value.status_code, self._request_summary(), message)

    def _request_summary(self) -> str:
        request = self.request
        return f"{request.method} {request.uri} ({request.remote_ip})"

    def _log(self) -> None:
        # Kept as a method: Tornado applications override it to replace access logging.
        self.application.log_request(self)

    def _ui_module(
        self, name: str, module: Callable[["RequestHandler"], _PageModule]
    ) -> Callable[..., str]:
        def render(*args: Any, **kwargs: Any) -> str:
            # One instance per module and handler, made on first use: render() collects
            # the page resources of exactly the modules that were used.
            active = self._active_modules
            if active is None:
                active = self._active_modules = {}
            instance = active.get(name)
            if instance is None:
                instance = active[name] = module(self)
            markup = instance.render(*args, **kwargs)
            return markup.decode("utf-8") if isinstance(markup, bytes) else markup

        return render

    def _ui_method(self, method: Callable[..., str]) -> Callable[..., str]:
        return lambda *args, **kwargs: method(self, *args, **kwargs)

    # Running the request --------------------------------------------------------------

    def _execute(
        self, transforms: List[OutputTransform], *args: bytes, **kwargs: bytes
    ) -> Optional["asyncio.Future[None]"]:
        """Run the request; returns a future when part of it had to wait, else None."""
        self._transforms = transforms
        try:
            method = self.request.method
            if method not in self.SUPPORTED_METHODS:
                raise HTTPError(405)
            if method not in _SAFE_METHODS:
                if self.application.settings.get("cross_origin_protection"):
                    self._check_cross_origin()
            if args:
                decode = self.decode_argument
                self.path_args = [None if a is None else decode(a) for a in args]
            if kwargs:
                self.path_kwargs = {
                    k: None if v is None else self.decode_argument(v, name=k)
                    for k, v in kwargs.items()
                }
            if method not in _SAFE_METHODS and self.application.settings.get("xsrf_cookies"):
                self.check_xsrf_cookie()
            result = None if type(self).prepare is _STOCK_PREPARE else self.prepare()
            if result is not None:
                return _spawn(self._execute_rest(result, prepared=False))
            if self._prepared_future is not None:
                self._release_prepared()
            if self._finished:
                return None
            if self._stream_request_body:
                return _spawn(self._execute_rest(None, prepared=True))
            name = _METHOD_ATTRIBUTES.get(method) or method.lower()  # type: ignore[union-attr]
            path_args, path_kwargs = self.path_args, self.path_kwargs
            if path_args or path_kwargs:
                result = getattr(self, name)(*path_args, **path_kwargs)
            else:
                result = getattr(self, name)()
            if result is not None:
                return _spawn(self._execute_rest(result, prepared=True, called=True))
            if self._auto_finish and not self._finished:
                self.finish()
        except Exception as error:
            self._fail(error)
        return None

    async def _execute_rest(self, pending: Any, prepared: bool, called: bool = False) -> None:
        try:
            if not prepared:
                await _as_awaitable(pending)
                pending = None
                self._release_prepared()
                if self._finished:
                    return
            if not called:
                if self._stream_request_body:
                    from squall.iostream import StreamClosedError

                    try:
                        assert self._body_future is not None
                        await self._body_future
                    except StreamClosedError:
                        return
                method = self.request.method.lower()  # type: ignore[union-attr]
                pending = getattr(self, method)(*self.path_args, **self.path_kwargs)
            if pending is not None:
                await _as_awaitable(pending)
                pending = None
            if self._auto_finish and not self._finished:
                self.finish()
        except Exception as error:
            self._fail(error)
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", None)
            if cancelling is not None and cancelling():
                # Our own task was cancelled (server shutdown, a timeout): answer without
                # logging, then let the cancellation proceed.
                if not self._finished:
                    try:
                        self.send_error(500)
                    except Exception:
                        app_log.debug("error response after cancellation failed", exc_info=True)
                self._release_prepared()
                raise
            # Something the handler awaited was cancelled: an ordinary failure.
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        try:
            self._handle_request_exception(error)
        except Exception:
            app_log.error("Exception in exception handler", exc_info=True)
        self._release_prepared()

    def _release_prepared(self) -> None:
        prepared = self._prepared_future
        if prepared is not None and not prepared.done():
            prepared.set_result(None)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, Finish):
            # Finish ends a request early on purpose: no log line, no error page.
            if not self._finished:
                self.finish(*e.args)
            return
        failure = (type(e), e, e.__traceback__)
        try:
            self.log_exception(*failure)
        except Exception:
            # The application's logger must not stop the error response.
            app_log.error("Error in exception logger", exc_info=True)
        if not self._finished:
            status = e.status_code if isinstance(e, HTTPError) else 500
            self.send_error(status, exc_info=failure)


_OK_START_LINE = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")

# Headers about the body, which a response without one (304 above all) leaves out.
_REPRESENTATION_HEADERS = ("Content-Encoding", "Content-Language", "Content-Type")


def _error_reason(error_kwargs: Dict[str, Any]) -> Optional[str]:
    # The reason phrase an HTTPError carries wins over one given to send_error.
    exc_info = error_kwargs.get("exc_info")
    error = exc_info[1] if exc_info else None
    if isinstance(error, HTTPError) and error.reason:
        return error.reason
    return error_kwargs.get("reason")


def _non_text_header_value(value: Any) -> str:
    # Numbers and dates format to text that needs no checking.
    if isinstance(value, datetime.datetime):
        return _format_timestamp(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    raise TypeError("Unsupported header value %r" % value)


def _has_no_body(status: int) -> bool:
    # 1xx, 204 and 304 responses end with their head (RFC 9110, section 6.4.1).
    return status == 204 or status == 304 or 100 <= status < 200


# Per-request steps are skipped or shortened while a handler class keeps the stock
# method: finish() with the ETag methods and set_header, and the hooks that do nothing
# (set_default_headers, prepare, on_finish) are not called at all.
_STOCK_SET_ETAG_HEADER = RequestHandler.set_etag_header
_STOCK_COMPUTE_ETAG = RequestHandler.compute_etag
_STOCK_CHECK_ETAG_HEADER = RequestHandler.check_etag_header
_STOCK_SET_HEADER = RequestHandler.set_header
_STOCK_SET_DEFAULT_HEADERS = RequestHandler.set_default_headers
_STOCK_PREPARE = RequestHandler.prepare
_STOCK_ON_FINISH = RequestHandler.on_finish
_STOCK_GET_STATUS = RequestHandler.get_status


_background_tasks: set = set()


def _spawn(coroutine: Any) -> "asyncio.Future[None]":
    task = asyncio.ensure_future(coroutine)
    # The loop only keeps weak references to tasks; hold one until the task is done.
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)
    return task


def _as_awaitable(value: Any) -> Any:
    if inspect.isawaitable(value):
        return value
    from squall import gen

    return gen.convert_yielded(value)


def stream_request_body(cls: Type[_RequestHandlerType]) -> Type[_RequestHandlerType]:
    """Class decorator: the handler's :meth:`~RequestHandler.data_received` gets the body
    chunk by chunk as it arrives, after ``prepare`` and before the HTTP method."""
    if not (isinstance(cls, type) and issubclass(cls, RequestHandler)):
        raise TypeError(f"expected subclass of RequestHandler, got {cls!r}")
    cls._stream_request_body = True
    return cls


def _has_stream_request_body(cls: Type[RequestHandler]) -> bool:
    if not (isinstance(cls, type) and issubclass(cls, RequestHandler)):
        raise TypeError(f"expected subclass of RequestHandler, got {cls!r}")
    return cls._stream_request_body


def is_absolute(path: str) -> bool:
    """Whether a resource path is already a URL path (not relative to ``static_path``)."""
    return path.startswith(("/", "http:", "https:"))


class _UIModuleNamespace:
    """``modules.Name(...)`` or ``modules["Name"](...)`` in templates: renders the UI
    module of that name for this handler."""

    def __init__(self, handler: RequestHandler, ui_modules: Dict[str, type]) -> None:
        self.handler = handler
        self.ui_modules = ui_modules

    def __getitem__(self, key: str) -> Callable[..., Any]:
        module = self.ui_modules[key]  # (a KeyError names the unknown module)
        return self.handler._ui_module(key, module)

    def __getattr__(self, key: str) -> Callable[..., Any]:
        # Only reached for names that are not attributes: look the module up instead.
        modules = self.__dict__.get("ui_modules", {})
        if key not in modules:
            raise AttributeError(repr(key))
        return self.handler._ui_module(key, modules[key])


def _as_file_list(part: Any) -> List[str]:
    if isinstance(part, (str, bytes)):
        return [escape.to_unicode(part)]  # type: ignore[list-item]
    return list(part)


def _insert_before(html: bytes, marker: bytes, insert: bytes, last: bool) -> bytes:
    position = html.rindex(marker) if last else html.index(marker)
    return html[:position] + insert + b"\n" + html[position:]


def collect_module_resources(handler: RequestHandler, html: bytes) -> bytes:
    """Insert the CSS, JavaScript and head/body markup the page's UI modules asked for."""
    modules = handler._active_modules
    if not modules:
        return html
    js_embed: List[bytes] = []
    js_files: List[str] = []
    css_embed: List[bytes] = []
    css_files: List[str] = []
    html_heads: List[bytes] = []
    html_bodies: List[bytes] = []
    for module in modules.values():
        part: Any = module.embedded_javascript()
        if part:
            js_embed.append(escape.utf8(part))
        part = module.javascript_files()
        if part:
            js_files.extend(_as_file_list(part))
        part = module.embedded_css()
        if part:
            css_embed.append(escape.utf8(part))
        part = module.css_files()
        if part:
            css_files.extend(_as_file_list(part))
        part = module.html_head()
        if part:
            html_heads.append(escape.utf8(part))
        part = module.html_body()
        if part:
            html_bodies.append(escape.utf8(part))
    if js_files:
        html = _insert_before(
            html, b"</body>", escape.utf8(handler.render_linked_js(js_files)), True
        )
    if js_embed:
        html = _insert_before(
            html, b"</body>", escape.utf8(handler.render_embed_js(js_embed)), True
        )
    if css_files:
        html = _insert_before(
            html, b"</head>", escape.utf8(handler.render_linked_css(css_files)), False
        )
    if css_embed:
        html = _insert_before(
            html, b"</head>", escape.utf8(handler.render_embed_css(css_embed)), False
        )
    if html_heads:
        html = _insert_before(html, b"</head>", b"".join(html_heads), False)
    if html_bodies:
        html = _insert_before(html, b"</body>", b"".join(html_bodies), False)
    return html
