"""Flexible request routing: rules made of a matcher and a target.

A :class:`Router` is an :class:`~squall.httputil.HTTPServerConnectionDelegate`: give one to
:class:`~squall.httpserver.HTTPServer` and it picks, for every request, the
:class:`~squall.httputil.HTTPMessageDelegate` that handles it. :class:`RuleRouter` walks a
list of :class:`Rule` objects; a rule's target may be another router, a connection delegate,
a plain callable taking the request, or (inside :class:`~squall.web.Application`) a
:class:`~squall.web.RequestHandler` subclass.
"""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING, Any, Optional, Pattern, Sequence, Union
from urllib.parse import quote as _url_quote
from urllib.parse import unquote_to_bytes

from squall import httputil
from squall.log import app_log
from squall.util import import_object

__all__ = [
    "Router",
    "ReversibleRouter",
    "RuleRouter",
    "ReversibleRuleRouter",
    "Rule",
    "Matcher",
    "AnyMatches",
    "HostMatches",
    "DefaultHostMatches",
    "PathMatches",
    "URLSpec",
]


class Router(httputil.HTTPServerConnectionDelegate):
    """Abstract router: maps a request to the delegate that handles it."""

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> httputil.HTTPMessageDelegate | None:
        """Return a message delegate for ``request``, or None when nothing matches."""
        raise NotImplementedError(f"{type(self).__name__} must implement find_handler")

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # Which delegate serves the request is known once its head has arrived.
        return _RoutingDelegate(self, server_conn, request_conn)


class ReversibleRouter(Router):
    """A router that can also build the URL of a named rule."""

    def reverse_url(self, name: str, *args: Any) -> str | None:
        """Return the URL for the rule called ``name``, or None."""
        raise NotImplementedError()


class _RoutingDelegate(httputil.HTTPMessageDelegate):
    """Waits for the request head, asks the router for a delegate, then forwards to it."""

    __slots__ = ("server_conn", "request_conn", "delegate", "router")

    def __init__(
        self, router: Router, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> None:
        self.server_conn: object = server_conn
        self.request_conn: Optional[httputil.HTTPConnection] = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.router = router

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        if TYPE_CHECKING:  # (no isinstance call per request at run time)
            assert isinstance(start_line, httputil.RequestStartLine)
        request_conn = self.request_conn
        assert request_conn is not None
        request = httputil.HTTPServerRequest(
            connection=request_conn,
            server_connection=self.server_conn,
            start_line=start_line,
            headers=headers,
        )
        # The connection holds this delegate; holding the connection back would make a
        # reference cycle that outlives the request.
        self.request_conn = None
        self.server_conn = None
        delegate = self.router.find_handler(request)
        if delegate is None:
            app_log.debug(
                "Delegate for %s %s request not found", start_line.method, start_line.path
            )
            delegate = _DefaultMessageDelegate(request_conn)
        self.delegate = delegate
        return delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        assert self.delegate is not None
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        delegate = self.delegate
        assert delegate is not None
        # After finish the connection tells the handler of a close through its close
        # callback, not through this delegate; let go of it.
        self.delegate = None
        delegate.finish()

    def on_connection_close(self) -> None:
        if self.delegate is not None:
            self.delegate.on_connection_close()


class _DefaultMessageDelegate(httputil.HTTPMessageDelegate):
    """Answers 404 when no rule matched."""

    __slots__ = ("connection",)

    def __init__(self, connection: httputil.HTTPConnection) -> None:
        self.connection = connection

    def finish(self) -> None:
        self.connection.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", 404, "Not Found"),
            httputil.HTTPHeaders({"Content-Length": "0"}),
        )
        self.connection.finish()


# What a rule may be given as in a rules list.
_RuleList = Sequence[
    Union[
        "Rule",
        list[Any],
        tuple[Union[str, "Matcher"], Any],
        tuple[Union[str, "Matcher"], Any, dict[str, Any]],
        tuple[Union[str, "Matcher"], Any, dict[str, Any], str],
    ]
]


def _as_rule(spec: Any) -> "Rule":
    """A Rule from an entry of a rules list: a Rule already, or a tuple
    ``(pattern_or_matcher, target[, kwargs[, name]])``."""
    if not isinstance(spec, (tuple, list)):
        return spec
    if not 2 <= len(spec) <= 4:
        raise ValueError(f"a rule tuple needs 2 to 4 items, got {spec!r}")
    matcher, *rest = spec
    return Rule(PathMatches(matcher) if isinstance(matcher, str) else matcher, *rest)


def _connection_of(request: httputil.HTTPServerRequest) -> httputil.HTTPConnection:
    connection = request.connection
    assert connection is not None, "a routed request always has its connection"
    return connection


class RuleRouter(Router):
    """A router that tries its rules in order and uses the first one that matches."""

    def __init__(self, rules: _RuleList | None = None) -> None:
        self.rules: list[Rule] = []
        if rules:
            self.add_rules(rules)

    def add_rules(self, rules: _RuleList) -> None:
        """Append rules; a tuple ``(pattern_or_matcher, target[, kwargs[, name]])`` is
        turned into a :class:`Rule` (a string pattern becomes a :class:`PathMatches`)."""
        self.rules.extend(self.process_rule(_as_rule(spec)) for spec in rules)

    def process_rule(self, rule: Rule) -> Rule:
        """Hook to adjust or check each rule as it is added."""
        return rule

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> httputil.HTTPMessageDelegate | None:
        # A matching rule whose target declines (None) lets the search go on.
        candidates = (self._delegate_for(rule, request) for rule in self.rules)
        return next((found for found in candidates if found is not None), None)

    def _delegate_for(
        self, rule: Rule, request: httputil.HTTPServerRequest
    ) -> httputil.HTTPMessageDelegate | None:
        params = rule.matcher.match(request)
        if params is None:
            return None
        if rule.target_kwargs:
            params["target_kwargs"] = rule.target_kwargs
        return self.get_target_delegate(rule.target, request, **params)

    def get_target_delegate(
        self, target: Any, request: httputil.HTTPServerRequest, **target_params: Any
    ) -> httputil.HTTPMessageDelegate | None:
        """Turn a rule's target into a message delegate for ``request``."""
        if isinstance(target, Router):
            return target.find_handler(request, **target_params)
        if isinstance(target, httputil.HTTPServerConnectionDelegate):
            return target.start_request(request.server_connection, _connection_of(request))
        if not callable(target):
            return None
        # A plain callable gets the whole request (body included), plus the match's values.
        callback = partial(target, **target_params) if target_params else target
        return _CallableAdapter(callback, _connection_of(request))


class ReversibleRuleRouter(ReversibleRouter, RuleRouter):
    """A rule router that remembers named rules so their URLs can be rebuilt."""

    def __init__(self, rules: _RuleList | None = None) -> None:
        self.named_rules: dict[str, Rule] = {}
        super().__init__(rules)

    def process_rule(self, rule: Rule) -> Rule:
        rule = super().process_rule(rule)
        name = rule.name
        if name:
            replaced = self.named_rules.get(name)
            self.named_rules[name] = rule
            if replaced is not None:
                app_log.warning("Multiple handlers named %s; replacing previous value", name)
        return rule

    def reverse_url(self, name: str, *args: Any) -> str | None:
        own = self.named_rules.get(name)
        if own is not None:
            return own.matcher.reverse(*args)
        # Otherwise the first nested router that knows the name answers.
        for router in (r.target for r in self.rules if isinstance(r.target, ReversibleRouter)):
            url = router.reverse_url(name, *args)
            if url is not None:
                return url
        return None


class Rule:
    """A routing rule: a :class:`Matcher`, a target, keyword arguments for it and a name."""

    def __init__(
        self,
        matcher: Matcher,
        target: Any,
        target_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.matcher = matcher
        # A dotted name ("package.module.Handler") is imported when the rule is made.
        self.target = import_object(target) if isinstance(target, str) else target
        self.target_kwargs = target_kwargs or {}
        self.name = name

    def reverse(self, *args: Any) -> str | None:
        return self.matcher.reverse(*args)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.matcher!r}, {self.target!r}, "
            f"kwargs={self.target_kwargs!r}, name={self.name!r})"
        )


class Matcher:
    """Decides whether a request matches a rule."""

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        """Return the parameters for the target when ``request`` matches, else None."""
        raise NotImplementedError(f"{type(self).__name__} must implement match")

    def reverse(self, *args: Any) -> str | None:
        """Rebuild a URL from arguments, when the matcher can."""
        return None


def _anchor(pattern: str | Pattern[str]) -> Pattern[str]:
    # A pattern given as text must match the whole value, so it gets its "$".
    if not isinstance(pattern, str):
        return pattern
    return re.compile(pattern if pattern.endswith("$") else pattern + "$")


class AnyMatches(Matcher):
    """Matches every request."""

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        return {}


class HostMatches(Matcher):
    """Matches requests whose host name matches a regular expression."""

    def __init__(self, host_pattern: str | Pattern[str]) -> None:
        self.host_pattern = _anchor(host_pattern)

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        return {} if self.host_pattern.match(request.host_name) else None


class DefaultHostMatches(Matcher):
    """Matches when the application's ``default_host`` matches the pattern.

    Requests that came through a proxy (they carry ``X-Real-Ip``) never match, since their
    host says where they were really going.
    """

    def __init__(self, application: Any, host_pattern: Pattern[str]) -> None:
        self.application = application
        self.host_pattern = host_pattern

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        if "X-Real-Ip" not in request.headers:
            default_host = self.application.default_host
            if default_host is not None and self.host_pattern.match(default_host):
                return {}
        return None


_ESCAPED_CHAR = re.compile(r"\\(.)", re.DOTALL)


def _regex_unescape(fragment: str) -> str:
    """Undo backslash escapes in a literal regex fragment; refuse escapes that stand for a
    character class (``\\d``, ``\\w``...), which have no single literal value."""

    def replace(match: re.Match[str]) -> str:
        char = match.group(1)
        if char.isalnum():
            raise ValueError(f"cannot unescape '\\\\{char}'")
        return char

    return _ESCAPED_CHAR.sub(replace, fragment)


def _unquote_or_none(value: str | None) -> bytes | None:
    # Path groups stay bytes here: RequestHandler.decode_argument turns them into text,
    # so an application may choose another encoding.
    if value is None:
        return None
    return unquote_to_bytes(value)


class PathMatches(Matcher):
    """Matches the request path against a regular expression; groups become arguments."""

    def __init__(self, path_pattern: str | Pattern[str]) -> None:
        self.regex = _anchor(path_pattern)
        if self.regex.groupindex and len(self.regex.groupindex) != self.regex.groups:
            raise ValueError(
                "a path pattern may use named groups or positional groups, not both: "
                + self.regex.pattern
            )
        self._path, self._group_count = self._find_groups()

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        found = self.regex.match(request.path)
        if found is None:
            return None
        if not self.regex.groups:
            return {}
        # Named groups become keyword arguments, unnamed ones positional (never both).
        if self.regex.groupindex:
            named = {str(k): _unquote_or_none(v) for k, v in found.groupdict().items()}
            return {"path_args": [], "path_kwargs": named}
        return {"path_args": [_unquote_or_none(v) for v in found.groups()], "path_kwargs": {}}

    def reverse(self, *args: Any) -> str | None:
        if self._path is None:
            raise ValueError("Cannot reverse url regex " + self.regex.pattern)
        if len(args) != self._group_count:
            raise ValueError(
                f"{self.regex.pattern} needs {self._group_count} arguments, got {len(args)}"
            )
        # (The template doubles literal %, so formatting restores it even without args.)
        return self._path % tuple(_url_quote(_url_bytes(arg), safe="") for arg in args)

    def _find_groups(self) -> tuple[str | None, int | None]:
        """Build a ``%s`` template from the pattern, or (None, None) when it is too
        complex to reverse (nested or non-capturing groups, character classes outside
        groups)."""
        body = self.regex.pattern
        body = body[1:] if body.startswith("^") else body
        body = body[:-1] if body.endswith("$") else body
        if body.count("(") != self.regex.groups:
            return None, None
        # Each "(" opens a group; after its ")" comes literal text up to the next "(".
        leading, *groups = body.split("(")
        try:
            pieces = [_template_text(leading)]
            pieces += ["%s" + _template_text(group.partition(")")[2]) for group in groups]
        except ValueError:
            return None, None
        return "".join(pieces), self.regex.groups


def _template_text(fragment: str) -> str:
    return _regex_unescape(fragment).replace("%", "%%")


def _url_bytes(arg: Any) -> bytes:
    return arg if isinstance(arg, bytes) else str(arg).encode()


class URLSpec(Rule):
    """A path rule for :class:`~squall.web.Application`: pattern, handler class, keyword
    arguments for the handler's ``initialize`` and an optional name for ``reverse_url``."""

    matcher: PathMatches

    def __init__(
        self,
        pattern: str | Pattern[str],
        handler: Any,
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(PathMatches(pattern), handler, kwargs, name)
        # URLSpec's own names for what Rule holds, kept for code that uses them.
        self.regex = self.matcher.regex
        self.handler_class = self.target
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.regex.pattern!r}, {self.handler_class!r}, "
            f"kwargs={self.kwargs!r}, name={self.name!r})"
        )


class _CallableAdapter(httputil.HTTPMessageDelegate):
    """Collects a request's body, then hands the whole request to a plain callable."""

    __slots__ = ("request_callback", "request_conn", "request", "_chunks")

    def __init__(self, request_callback: Any, request_conn: httputil.HTTPConnection) -> None:
        self.request_callback = request_callback
        self.request_conn = request_conn
        self.request: httputil.HTTPServerRequest | None = None
        self._chunks: list[bytes] | None = []

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.request = httputil.HTTPServerRequest(
            connection=self.request_conn, start_line=start_line, headers=headers
        )

    def data_received(self, chunk: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(chunk)

    def finish(self) -> None:
        assert self.request is not None
        self.request.body = b"".join(self._chunks or ())
        _parse_request_body(self.request)
        self.request_callback(self.request)

    def on_connection_close(self) -> None:
        self._chunks = None


def _parse_request_body(request: httputil.HTTPServerRequest) -> None:
    """Fill the request's body and file arguments from a form-encoded or multipart body."""
    if request.body:
        request._parse_body()
