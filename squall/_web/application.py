"""Application: the rule table of a web app, and the delegate that runs one handler."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import types
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Tuple,
    Type,
    Union,
)

from squall import httputil
from squall._web.handler import _STOCK_GET_STATUS, RequestHandler, _has_stream_request_body
from squall._web.handlers import ErrorHandler
from squall._web.static import StaticFileHandler
from squall._web.transforms import GZipContentEncoding, OutputTransform
from squall._web.ui import TemplateModule, UIModule, _linkify, _xsrf_form_html
from squall.log import access_log
from squall.routing import (
    AnyMatches,
    DefaultHostMatches,
    HostMatches,
    PathMatches,
    ReversibleRouter,
    ReversibleRuleRouter,
    Rule,
    _parse_request_body,
    _RuleList,
)

if TYPE_CHECKING:
    from squall.httpserver import HTTPServer


# Shared, never modified: what a group-less path match passes on.
_NO_PARAMS: Dict[str, Any] = {}


class _ApplicationRouter(ReversibleRuleRouter):
    """The application's rule router: handler classes become handler delegates and nested
    rule lists become routers of their own."""

    def __init__(self, application: "Application", rules: Optional[_RuleList] = None) -> None:
        self.application = application
        super().__init__(rules)

    def process_rule(self, rule: Rule) -> Rule:
        rule = super().process_rule(rule)
        if isinstance(rule.target, (list, tuple)):
            rule.target = _ApplicationRouter(self.application, rule.target)
        return rule

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> Optional[httputil.HTTPMessageDelegate]:
        # The generic walk, with handler classes (the usual target) taken straight to
        # the application without packing the match into keyword arguments.
        application = self.application
        path = request.path
        for rule in self.rules:
            matcher = rule.matcher
            if type(matcher) is PathMatches and not matcher.regex.groups:
                # The common rule, a plain path: one regex call, no parameter dict.
                if matcher.regex.match(path) is None:
                    continue
                params = _NO_PARAMS
            else:
                matched = matcher.match(request)
                if matched is None:
                    continue
                params = matched
            target = rule.target
            if isinstance(target, type) and issubclass(target, RequestHandler):
                if type(application).get_handler_delegate is _STOCK_GET_HANDLER_DELEGATE:
                    return _HandlerDelegate(
                        application,
                        request,
                        target,
                        rule.target_kwargs,
                        params.get("path_args"),
                        params.get("path_kwargs"),
                    )
                return application.get_handler_delegate(
                    request,
                    target,
                    rule.target_kwargs,
                    params.get("path_args"),
                    params.get("path_kwargs"),
                )
            if params is _NO_PARAMS:
                params = {}
            if rule.target_kwargs:
                params["target_kwargs"] = rule.target_kwargs
            delegate = self.get_target_delegate(target, request, **params)
            if delegate is not None:
                return delegate
        return None

    def get_target_delegate(
        self, target: Any, request: httputil.HTTPServerRequest, **target_params: Any
    ) -> Optional[httputil.HTTPMessageDelegate]:
        if isinstance(target, type) and issubclass(target, RequestHandler):
            return self.application.get_handler_delegate(request, target, **target_params)
        return super().get_target_delegate(target, request, **target_params)


# Debug mode turns these on (or off) unless the application chose otherwise.
_DEBUG_DEFAULTS = (
    ("autoreload", True),
    ("compiled_template_cache", False),
    ("static_hash_cache", False),
    ("serve_traceback", True),
)

# Besides everything under static_url_prefix, the static handler answers for these two
# files at the root of the site (most specific first, as rules are tried in order).
_ROOT_STATIC_FILES = (r"/(robots\.txt)", r"/(favicon\.ico)")


def _named_entries(source: Any) -> Iterator[Tuple[str, Any]]:
    """(name, value) pairs from a module, a dict, or a list of those (nested freely)."""
    if isinstance(source, types.ModuleType):
        for name in dir(source):
            yield name, getattr(source, name)
    elif isinstance(source, list):
        for part in source:
            yield from _named_entries(part)
    else:
        yield from source.items()


class Application(ReversibleRouter):
    """A collection of request handlers forming a web application; an
    :class:`~squall.httputil.HTTPServerConnectionDelegate` to give to an HTTPServer."""

    def __init__(
        self,
        handlers: Optional[_RuleList] = None,
        default_host: Optional[str] = None,
        transforms: Optional[List[Type["OutputTransform"]]] = None,
        **settings: Any,
    ) -> None:
        self.settings = settings
        self.default_host = default_host
        if transforms is None:
            compress = settings.get("compress_response") or settings.get("gzip")
            transforms = [GZipContentEncoding] if compress else []
        self.transforms: List[Type[OutputTransform]] = transforms
        self.ui_modules: Dict[str, Type[UIModule]] = {
            "linkify": _linkify,
            "xsrf_form_html": _xsrf_form_html,
            "Template": TemplateModule,
        }
        self.ui_methods: Dict[str, Callable[..., str]] = {}
        self._load_ui_modules(settings.get("ui_modules", {}))
        self._load_ui_methods(settings.get("ui_methods", {}))
        rules = list(handlers or [])
        if settings.get("static_path"):
            rules[:0] = self._static_rules()
        if settings.get("debug"):
            for name, value in _DEBUG_DEFAULTS:
                settings.setdefault(name, value)
        self.wildcard_router = _ApplicationRouter(self, rules)
        self.default_router = _ApplicationRouter(self, [Rule(AnyMatches(), self.wildcard_router)])
        if settings.get("autoreload"):
            from squall import autoreload

            autoreload.start()

    def _static_rules(self) -> List[Any]:
        settings = self.settings
        # The static_handler_args setting itself is completed with the directory, so an
        # application that reads it later sees what the handler got.
        arguments = settings.get("static_handler_args", {})
        arguments["path"] = settings["static_path"]
        handler_class = self._static_handler_class()
        under_prefix = re.escape(settings.get("static_url_prefix", "/static/")) + "(.*)"
        return [
            (pattern, handler_class, arguments) for pattern in (*_ROOT_STATIC_FILES, under_prefix)
        ]

    def _static_handler_class(self) -> Type[StaticFileHandler]:
        # Read at each use: settings may change after the application is built.
        return self.settings.get("static_handler_class", StaticFileHandler)

    def listen(
        self,
        port: int,
        address: Optional[str] = None,
        *,
        family: socket.AddressFamily = socket.AF_UNSPEC,
        backlog: int = 128,
        flags: Optional[int] = None,
        reuse_port: bool = False,
        **kwargs: Any,
    ) -> "HTTPServer":
        """Start an HTTPServer for this application on ``port`` and return it (keyword
        arguments ``listen`` does not take go to the server)."""
        from squall.httpserver import HTTPServer

        server = HTTPServer(self, **kwargs)
        server.listen(
            port, address, family=family, backlog=backlog, flags=flags, reuse_port=reuse_port
        )
        return server

    def add_handlers(self, host_pattern: str, host_handlers: _RuleList) -> None:
        """Add handlers for hosts matching ``host_pattern``; host rules are tried in the
        order added, before the wildcard rules."""
        matcher = HostMatches(host_pattern)
        # The last rule is the catch-all leading to wildcard_router: host rules go before.
        rules = self.default_router.rules
        rules.insert(len(rules) - 1, Rule(matcher, _ApplicationRouter(self, host_handlers)))
        if self.default_host is not None:
            # A request for an unknown host reaches them too when default_host matches.
            via_default = DefaultHostMatches(self, matcher.host_pattern)
            self.wildcard_router.add_rules([(via_default, host_handlers)])

    def add_transform(self, transform_class: Type["OutputTransform"]) -> None:
        self.transforms.append(transform_class)

    def _load_ui_methods(self, methods: Any) -> None:
        for name, function in _named_entries(methods):
            # A module brings its imports and classes along: only public functions with
            # a lower-case name count.
            if callable(function) and not name.startswith("_") and name[0].lower() == name[0]:
                self.ui_methods[name] = function

    def _load_ui_modules(self, modules: Any) -> None:
        for name, cls in _named_entries(modules):
            if isinstance(cls, type) and issubclass(cls, UIModule):
                self.ui_modules[name] = cls

    def __call__(self, request: httputil.HTTPServerRequest) -> Optional[Awaitable[None]]:
        """Handle a whole request (the older callback interface of HTTPServer)."""
        return self.find_handler(request).execute()

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> "_HandlerDelegate":
        router = self.default_router
        rules = router.rules
        if (
            len(rules) == 1
            and rules[0].target is self.wildcard_router
            and type(router) is _ApplicationRouter
        ):
            # No host-specific handlers: skip the catch-all level.
            route = self.wildcard_router.find_handler(request)
        else:
            route = router.find_handler(request)
        if route is not None:
            return route  # type: ignore[return-value]
        settings = self.settings
        handler_class = settings.get("default_handler_class")
        if handler_class:
            handler_kwargs = settings.get("default_handler_args", {})
        else:
            handler_class, handler_kwargs = ErrorHandler, {"status_code": 404}
        return self.get_handler_delegate(request, handler_class, handler_kwargs)

    def get_handler_delegate(
        self,
        request: httputil.HTTPServerRequest,
        target_class: Type[RequestHandler],
        target_kwargs: Optional[Dict[str, Any]] = None,
        path_args: Optional[List[bytes]] = None,
        path_kwargs: Optional[Dict[str, bytes]] = None,
    ) -> "_HandlerDelegate":
        """The message delegate that runs ``target_class`` for ``request``."""
        return _HandlerDelegate(self, request, target_class, target_kwargs, path_args, path_kwargs)

    def reverse_url(self, name: str, *args: Any) -> str:
        """The URL path of the handler named ``name``; KeyError if there is none."""
        url = self.default_router.reverse_url(name, *args)
        if url is None:
            raise KeyError("%s not found in named urls" % name)
        return url

    def log_request(self, handler: RequestHandler) -> None:
        """Log a finished request (the ``log_function`` setting replaces this)."""
        log_function = self.settings.get("log_function")
        if log_function is not None:
            log_function(handler)
            return
        if type(handler).get_status is _STOCK_GET_STATUS:
            status = handler._status_code
        else:
            status = handler.get_status()
        level = _INFO if status < 400 else _ACCESS_LOG_LEVELS[min(status // 100, 5)]
        if access_log.isEnabledFor(level):
            elapsed = 1000.0 * handler.request.request_time()
            access_log.log(level, "%d %s %.2fms", status, handler._request_summary(), elapsed)


# Access log level by status class: client errors warn, server errors are errors.
_INFO = logging.INFO
_ACCESS_LOG_LEVELS = {4: logging.WARNING, 5: logging.ERROR}


# find_handler builds the delegate itself unless an application overrides this.
_STOCK_GET_HANDLER_DELEGATE = Application.get_handler_delegate


class _HandlerDelegate(httputil.HTTPMessageDelegate):
    """Receives one request for a handler class and runs the handler."""

    __slots__ = (
        "application",
        "request",
        "handler_class",
        "handler_kwargs",
        "path_args",
        "path_kwargs",
        "chunks",
        "stream_request_body",
        "handler",
    )

    def __init__(
        self,
        application: Application,
        request: httputil.HTTPServerRequest,
        handler_class: Type[RequestHandler],
        handler_kwargs: Optional[Dict[str, Any]],
        path_args: Optional[List[bytes]],
        path_kwargs: Optional[Dict[str, bytes]],
    ) -> None:
        self.application = application
        self.request: Optional[httputil.HTTPServerRequest] = request
        self.handler_class = handler_class
        self.handler_kwargs = handler_kwargs or {}
        self.path_args = path_args or []
        self.path_kwargs = path_kwargs or {}
        self.chunks: Optional[List[bytes]] = []
        streaming = getattr(handler_class, "_stream_request_body", None)
        self.stream_request_body = (
            streaming if streaming is not None else _has_stream_request_body(handler_class)
        )
        self.handler: Optional[RequestHandler] = None

    def headers_received(
        self,
        start_line: Union[httputil.RequestStartLine, httputil.ResponseStartLine],
        headers: httputil.HTTPHeaders,
    ) -> Optional[Awaitable[None]]:
        if self.stream_request_body:
            # Reading the body waits until prepare() is done.
            return self.execute()
        return None

    def data_received(self, data: bytes) -> Optional[Awaitable[None]]:
        if self.stream_request_body:
            assert self.handler is not None
            if self.handler._finished:
                return None
            return self.handler.data_received(data)
        if self.chunks is not None:
            self.chunks.append(data)
        return None

    def finish(self) -> None:
        if self.stream_request_body:
            assert self.handler is not None
            body_future = self.handler._body_future
            if body_future is not None and not body_future.done():
                body_future.set_result(None)
        else:
            chunks = self.chunks
            if chunks:
                request = self.request
                assert request is not None
                request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                _parse_request_body(request)
            self.chunks = None
            self.execute()
        # The request is the handler's now; references from here would only keep it
        # alive longer.
        self.handler = None
        self.request = None

    def on_connection_close(self) -> None:
        if self.stream_request_body:
            if self.handler is not None:
                self.handler._notify_connection_close()
        else:
            self.chunks = None

    def execute(self) -> Optional[Awaitable[None]]:
        application = self.application
        settings = application.settings
        # With these caches off (debug mode), templates and static versions are read
        # afresh for every request, so edits show without a restart.
        if not settings.get("compiled_template_cache", True):
            RequestHandler._reset_template_loaders()
        if not settings.get("static_hash_cache", True):
            application._static_handler_class().reset()
        request = self.request
        assert request is not None
        handler = self.handler_class(application, request, **self.handler_kwargs)
        self.handler = handler
        transform_classes = application.transforms
        transforms = [t(request) for t in transform_classes] if transform_classes else []
        if self.stream_request_body:
            loop = asyncio.get_event_loop()
            handler._prepared_future = loop.create_future()
            handler._body_future = loop.create_future()
            running = handler._execute(transforms, *self.path_args, **self.path_kwargs)
            prepared = handler._prepared_future
            if running is None:
                handler._release_prepared()
            return prepared
        path_args, path_kwargs = self.path_args, self.path_kwargs
        if path_args or path_kwargs:
            handler._execute(transforms, *path_args, **path_kwargs)
        else:
            handler._execute(transforms)
        # The request has been handed over; keep no reference to it.
        return None
