"""squall.routing: matchers, rules, reversing and routers (pure, plus one served app)."""

import re

import pytest

from squall.httputil import (
    HTTPHeaders,
    HTTPMessageDelegate,
    HTTPServerConnectionDelegate,
    HTTPServerRequest,
    RequestStartLine,
    ResponseStartLine,
)
from squall.routing import (
    AnyMatches,
    DefaultHostMatches,
    HostMatches,
    PathMatches,
    ReversibleRuleRouter,
    Rule,
    RuleRouter,
    URLSpec,
)
from squall.web import Application, RequestHandler


def make_request(path="/", host="example.com", headers=None):
    all_headers = HTTPHeaders({"Host": host})
    for name, value in (headers or {}).items():
        all_headers[name] = value
    return HTTPServerRequest(
        start_line=RequestStartLine("GET", path, "HTTP/1.1"), headers=all_headers
    )


def test_path_matches_positional_groups_are_unquoted_bytes():
    matcher = PathMatches(r"/item/([^/]+)/(\d+)")
    assert matcher.regex.pattern.endswith("$")
    params = matcher.match(make_request("/item/a%2Fb/42"))
    assert params == {"path_args": [b"a/b", b"42"], "path_kwargs": {}}
    assert matcher.match(make_request("/item/a/42/extra")) is None


def test_path_matches_named_groups_and_optional_group():
    params = PathMatches(r"/user/(?P<name>\w+)").match(make_request("/user/bob"))
    assert params == {"path_args": [], "path_kwargs": {"name": b"bob"}}
    params = PathMatches(r"/opt/(.+)?").match(make_request("/opt/"))
    assert params == {"path_args": [None], "path_kwargs": {}}


def test_path_matches_without_groups():
    assert PathMatches("/plain").match(make_request("/plain")) == {}


def test_mixed_named_and_positional_groups_refused():
    with pytest.raises(ValueError):
        PathMatches(r"/(?P<a>\w+)/(\w+)")


def test_reverse():
    assert PathMatches(r"/favicon\.ico").reverse() == "/favicon.ico"
    assert PathMatches(r"^/a/(\w+)/b$").reverse("x y") == "/a/x%20y/b"
    assert PathMatches(r"/n/([0-9]+)").reverse(5) == "/n/5"
    assert PathMatches(r"/b/(.*)").reverse(b"\xe9") == "/b/%E9"
    assert PathMatches(r"/p%/(.*)").reverse("v") == "/p%/v"
    with pytest.raises(ValueError):
        PathMatches(r"/v\d+/(\w+)").reverse("x")
    with pytest.raises(ValueError):
        PathMatches(r"/a/(\w+)").reverse()


def test_host_matching():
    assert HostMatches("www.example.com").match(make_request(host="www.example.com:8080")) == {}
    assert HostMatches("www.example.com").match(make_request(host="other.com")) is None
    assert HostMatches(re.compile(r".*\.org$")).match(make_request(host="x.org")) == {}


def test_default_host_matches():
    class App:
        default_host = "www.example.com"

    matcher = DefaultHostMatches(App(), re.compile(r"www\.example\.com$"))
    assert matcher.match(make_request(host="anything")) == {}
    assert matcher.match(make_request(headers={"X-Real-Ip": "1.2.3.4"})) is None


def test_rule_and_urlspec_repr_and_import_by_name():
    rule = Rule(AnyMatches(), "squall.web.RequestHandler", {"a": 1}, "name")
    assert rule.target is RequestHandler
    assert "kwargs={'a': 1}" in repr(rule) and "name='name'" in repr(rule)
    spec = URLSpec(r"/x/(\d+)", RequestHandler, name="x")
    assert spec.handler_class is RequestHandler
    assert spec.regex.pattern == r"/x/(\d+)$"
    assert spec.reverse(3) == "/x/3"
    assert repr(spec).startswith("URLSpec('/x/(\\\\d+)$'")


class RecordingDelegate(HTTPMessageDelegate):
    def __init__(self, label, params):
        self.label = label
        self.params = params


def test_rule_router_picks_first_match_and_passes_params():
    calls = []

    def target(request, **kwargs):
        calls.append(kwargs)

    class Sub(RuleRouter):
        def find_handler(self, request, **kwargs):
            return RecordingDelegate("sub", kwargs)

    router = RuleRouter(
        [
            (r"/sub/(\w+)", Sub(), {"extra": 1}),
            Rule(PathMatches("/call"), target),
        ]
    )
    delegate = router.find_handler(make_request("/sub/abc"))
    assert delegate.label == "sub"
    assert delegate.params == {
        "path_args": [b"abc"],
        "path_kwargs": {},
        "target_kwargs": {"extra": 1},
    }
    assert router.find_handler(make_request("/nothing")) is None


def test_rule_tuple_length_checked():
    with pytest.raises(ValueError):
        RuleRouter([("/a",)])


def test_reversible_rule_router_nested_reverse():
    inner = ReversibleRuleRouter([Rule(PathMatches(r"/inner/(\d+)"), None, name="inner")])
    outer = ReversibleRuleRouter(
        [
            Rule(PathMatches("/top"), None, name="top"),
            Rule(PathMatches("/inner/.*"), inner),
        ]
    )
    assert outer.reverse_url("top") == "/top"
    assert outer.reverse_url("inner", 7) == "/inner/7"
    assert outer.reverse_url("missing") is None


class OK(HTTPServerConnectionDelegate):
    def start_request(self, server_conn, request_conn):
        class Reply(HTTPMessageDelegate):
            def finish(self):
                request_conn.write_headers(
                    ResponseStartLine("HTTP/1.1", 200, "OK"),
                    HTTPHeaders({"Content-Length": "2"}),
                    b"ok",
                )
                request_conn.finish()

        return Reply()


class Named(RequestHandler):
    def get(self):
        self.write(self.reverse_url("named"))


@pytest.fixture
def app():
    def plain_callable(request):
        request.connection.write_headers(
            ResponseStartLine("HTTP/1.1", 200, "OK"),
            HTTPHeaders({"Content-Length": str(len(request.body))}),
            request.body,
        )
        request.connection.finish()

    return RuleRouter(
        [
            (PathMatches("/app.*"), Application([("/app/named", Named, {}, "named")])),
            (PathMatches("/delegate"), OK()),
            (PathMatches("/callable"), plain_callable),
        ]
    )


async def test_router_served_over_http(fetch):
    assert (await fetch("/app/named")).body == b"/app/named"
    assert (await fetch("/delegate")).body == b"ok"
    assert (await fetch("/callable", method="POST", body=b"echo")).body == b"echo"
    assert (await fetch("/app/missing")).code == 404
    assert (await fetch("/elsewhere")).code == 404
