"""The web framework: request handlers, the application that routes to them, and helpers.

Write a :class:`RequestHandler` subclass per resource, with a method per HTTP verb, and give
:class:`Application` a list of ``(pattern, handler_class[, kwargs[, name]])`` rules::

    class MainHandler(RequestHandler):
        def get(self):
            self.write("Hello, world")

    app = Application([(r"/", MainHandler)])
    app.listen(8888)

Handler methods may be plain functions or coroutines. A synchronous handler runs start to
finish inside the call that received the request, without a task or future of its own; a
coroutine handler is moved onto a task the first time it has to wait.

This module only gathers the names; the code lives in the private package
``squall._web``, one concern per module.
"""

# ruff: noqa: F401  (this module re-exports: every import is used by its importers)

from __future__ import annotations

from squall import escape, httputil
from squall._web.application import Application, _ApplicationRouter, _HandlerDelegate
from squall._web.cookies import _format_timestamp, format_set_cookie
from squall._web.errors import _RESPONSES, Finish, HTTPError, MissingArgumentError
from squall._web.handler import (
    _ARG_DEFAULT,
    _METHOD_ATTRIBUTES,
    _OK_START_LINE,
    _SAFE_METHODS,
    _SERVER_HEADER,
    _STOCK_CHECK_ETAG_HEADER,
    _STOCK_COMPUTE_ETAG,
    _STOCK_SET_ETAG_HEADER,
    _STOCK_SET_HEADER,
    _T,
    _UNSAFE_HEADER_CHARS,
    _UNSAFE_REASON_CHARS,
    _UNSET,
    RequestHandler,
    _ArgDefaultMarker,
    _as_awaitable,
    _background_tasks,
    _date_cache,
    _DateCache,
    _default_headers,
    _default_headers_fast,
    _default_headers_slow,
    _has_stream_request_body,
    _HeaderTypes,
    _new_headers,
    _pick_default_headers,
    _RequestHandlerType,
    _spawn,
    _UIModuleNamespace,
    _unicode,
    is_absolute,
    stream_request_body,
)
from squall._web.handlers import (
    ErrorHandler,
    FallbackHandler,
    RedirectHandler,
    _normalize_url_like_browser,
    _scheme_and_netloc,
    addslash,
    authenticated,
    removeslash,
)
from squall._web.signing import (
    DEFAULT_SIGNED_VALUE_MIN_VERSION,
    DEFAULT_SIGNED_VALUE_VERSION,
    MAX_SUPPORTED_SIGNED_VALUE_VERSION,
    MIN_SUPPORTED_SIGNED_VALUE_VERSION,
    _CookieSecretTypes,
    _create_signature_v1,
    _create_signature_v2,
    _decode_fields_v2,
    _decode_signed_value_v1,
    _decode_signed_value_v2,
    _get_version,
    create_signed_value,
    decode_signed_value,
    decode_xsrf_token,
    encode_xsrf_token,
    get_signature_key_version,
    new_xsrf_secret,
)
from squall._web.sse import EventSourceHandler, format_event
from squall._web.static import StaticFileHandler
from squall._web.transforms import GZipContentEncoding, OutputTransform
from squall._web.ui import TemplateModule, UIModule, _linkify, _xsrf_form_html
from squall.log import app_log, gen_log
from squall.routing import URLSpec
from squall.util import ObjectDict

__all__ = [
    "Application",
    "RequestHandler",
    "HTTPError",
    "Finish",
    "MissingArgumentError",
    "ErrorHandler",
    "RedirectHandler",
    "StaticFileHandler",
    "FallbackHandler",
    "OutputTransform",
    "GZipContentEncoding",
    "UIModule",
    "TemplateModule",
    "URLSpec",
    "url",
    "authenticated",
    "addslash",
    "removeslash",
    "stream_request_body",
    "create_signed_value",
    "decode_signed_value",
    "get_signature_key_version",
    "is_absolute",
    "DEFAULT_SIGNED_VALUE_VERSION",
    "DEFAULT_SIGNED_VALUE_MIN_VERSION",
    "MIN_SUPPORTED_SIGNED_VALUE_VERSION",
    "MAX_SUPPORTED_SIGNED_VALUE_VERSION",
    "EventSourceHandler",
]

url = URLSpec

# The public names report this module as their home, so reprs, pickles, tracebacks and
# documentation point at squall.web rather than at the private module.
for _public in (
    Application,
    ErrorHandler,
    EventSourceHandler,
    FallbackHandler,
    Finish,
    GZipContentEncoding,
    HTTPError,
    MissingArgumentError,
    OutputTransform,
    RedirectHandler,
    RequestHandler,
    StaticFileHandler,
    TemplateModule,
    UIModule,
    addslash,
    authenticated,
    is_absolute,
    removeslash,
    stream_request_body,
):
    _public.__module__ = __name__
del _public
