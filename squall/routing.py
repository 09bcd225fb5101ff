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
        raise NotImplementedError()

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
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


class RuleRouter(Router):
    """A router that tries its rules in order and uses the first one that matches."""

    def __init__(self, rules: _RuleList | None = None) -> None:
        self.rules: list[Rule] = []
        if rules:
            self.add_rules(rules)

    def add_rules(self, rules: _RuleList) -> None:
        """Append rules; a tuple ``(pattern_or_matcher, target[, kwargs[, name]])`` is
        turned into a :class:`Rule` (a string pattern becomes a :class:`PathMatches`)."""
        for rule in rules:
            if isinstance(rule, (tuple, list)):
                if not 2 <= len(rule) <= 4:
                    raise ValueError(f"a rule tuple needs 2 to 4 items, got {rule!r}")
                if isinstance(rule[0], str):
                    rule = Rule(PathMatches(rule[0]), *rule[1:])
                else:
                    rule = Rule(*rule)
            self.rules.append(self.process_rule(rule))

    def process_rule(self, rule: Rule) -> Rule:
        """Hook to adjust or check each rule as it is added."""
        return rule

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> httputil.HTTPMessageDelegate | None:
        for rule in self.rules:
            target_params = rule.matcher.match(request)
            if target_params is not None:
                if rule.target_kwargs:
                    target_params["target_kwargs"] = rule.target_kwargs
                delegate = self.get_target_delegate(rule.target, request, **target_params)
                if delegate is not None:
                    return delegate
        return None

    def get_target_delegate(
        self, target: Any, request: httputil.HTTPServerRequest, **target_params: Any
    ) -> httputil.HTTPMessageDelegate | None:
        """Turn a rule's target into a message delegate for ``request``."""
        if isinstance(target, Router):
            return target.find_handler(request, **target_params)
        if isinstance(target, httputil.HTTPServerConnectionDelegate):
            assert request.connection is not None
            return target.start_request(request.server_connection, request.connection)
        if callable(target):
            assert request.connection is not None
            callback = partial(target, **target_params) if target_params else target
            return _CallableAdapter(callback, request.connection)
        return None


class ReversibleRuleRouter(ReversibleRouter, RuleRouter):
    """A rule router that remembers named rules so their URLs can be rebuilt."""

    def __init__(self, rules: _RuleList | None = None) -> None:
        self.named_rules: dict[str, Rule] = {}
        super().__init__(rules)

    def process_rule(self, rule: Rule) -> Rule:
        rule = super().process_rule(rule)
        if rule.name:
            if rule.name in self.named_rules:
                app_log.warning("Multiple handlers named %s; replacing previous value", rule.name)
            self.named_rules[rule.name] = rule
        return rule

    def reverse_url(self, name: str, *args: Any) -> str | None:
        if name in self.named_rules:
            return self.named_rules[name].matcher.reverse(*args)
        for rule in self.rules:
            if isinstance(rule.target, ReversibleRouter):
                url = rule.target.reverse_url(name, *args)
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
        if isinstance(target, str):
            # Late import by dotted name lets a rule name a handler defined elsewhere.
            target = import_object(target)
        self.matcher = matcher
        self.target = target
        self.target_kwargs = target_kwargs if target_kwargs else {}
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
        raise NotImplementedError()

    def reverse(self, *args: Any) -> str | None:
        """Rebuild a URL from arguments, when the matcher can."""
        return None


class AnyMatches(Matcher):
    """Matches every request."""

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        return {}


def _anchor(pattern: str | Pattern[str]) -> Pattern[str]:
    if isinstance(pattern, str):
        if not pattern.endswith("$"):
            pattern += "$"
        return re.compile(pattern)
    return pattern


class HostMatches(Matcher):
    """Matches requests whose host name matches a regular expression."""

    def __init__(self, host_pattern: str | Pattern[str]) -> None:
        self.host_pattern = _anchor(host_pattern)

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        if self.host_pattern.match(request.host_name):
            return {}
        return None


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
        if self.regex.groupindex:
            return {
                "path_args": [],
                "path_kwargs": {
                    str(key): _unquote_or_none(value) for key, value in found.groupdict().items()
                },
            }
        return {
            "path_args": [_unquote_or_none(value) for value in found.groups()],
            "path_kwargs": {},
        }

    def reverse(self, *args: Any) -> str | None:
        if self._path is None:
            raise ValueError("Cannot reverse url regex " + self.regex.pattern)
        if len(args) != self._group_count:
            raise ValueError(
                f"{self.regex.pattern} needs {self._group_count} arguments, got {len(args)}"
            )
        if not args:
            return self._path.replace("%%", "%")
        converted = []
        for arg in args:
            if not isinstance(arg, (str, bytes)):
                arg = str(arg)
            converted.append(_url_quote(arg if isinstance(arg, bytes) else arg.encode(), safe=""))
        return self._path % tuple(converted)

    def _find_groups(self) -> tuple[str | None, int | None]:
        """Build a ``%s`` template from the pattern, or (None, None) when it is too
        complex to reverse (nested or non-capturing groups, character classes outside
        groups)."""
        pattern = self.regex.pattern
        if pattern.startswith("^"):
            pattern = pattern[1:]
        if pattern.endswith("$"):
            pattern = pattern[:-1]
        if self.regex.groups != pattern.count("("):
            return None, None
        pieces = []
        for fragment in pattern.split("("):
            if ")" in fragment:
                literal = fragment[fragment.index(")") + 1 :]
                prefix = "%s"
            else:
                literal = fragment
                prefix = ""
            try:
                unescaped = _regex_unescape(literal)
            except ValueError:
                return None, None
            pieces.append(prefix + unescaped.replace("%", "%%"))
        return "".join(pieces), self.regex.groups


class URLSpec(Rule):
    """A path rule for :class:`~squall.web.Application`: pattern, handler class, keyword
    arguments for the handler's ``initialize`` and an optional name for ``reverse_url``."""

    def __init__(
        self,
        pattern: str | Pattern[str],
        handler: Any,
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        matcher = PathMatches(pattern)
        super().__init__(matcher, handler, kwargs, name)
        self.regex = matcher.regex
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
    if not request.body:
        return
    parse = getattr(request, "_parse_body", None)
    if parse is not None:
        parse()
        return
    httputil.parse_body_arguments(
        request.headers.get("Content-Type", ""),
        request.body,
        request.body_arguments,
        request.files,
        request.headers,
    )
    for name, values in request.body_arguments.items():
        request.arguments.setdefault(name, []).extend(values)
