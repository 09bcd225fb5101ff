"""squall.web over real sockets: handlers, arguments, cookies, errors, XSRF, redirects."""

import asyncio
import json
import logging
import re
import urllib.parse

import pytest

from squall import gen
from squall.httputil import HTTPHeaders
from squall.web import (
    Application,
    ErrorHandler,
    Finish,
    GZipContentEncoding,
    HTTPError,
    MissingArgumentError,
    RedirectHandler,
    RequestHandler,
    addslash,
    authenticated,
    create_signed_value,
    removeslash,
    stream_request_body,
    url,
)

SECRET = "test-cookie-secret"


class HelloHandler(RequestHandler):
    def get(self):
        self.write("Hello, world")


class AsyncHandler(RequestHandler):
    async def get(self):
        await asyncio.sleep(0)
        self.write("async")


class GenHandler(RequestHandler):
    @gen.coroutine
    def get(self):
        yield gen.moment
        self.write("gen")


class ArgsHandler(RequestHandler):
    def get(self, path_arg):
        self.write(
            {
                "path": path_arg,
                "a": self.get_argument("a", None),
                "all": self.get_arguments("a"),
                "stripped": self.get_argument("s", None),
                "raw": self.get_argument("s", None, strip=False),
            }
        )

    def post(self, path_arg):
        self.write(
            {
                "body": self.get_body_arguments("a"),
                "query": self.get_query_arguments("a"),
                "merged": self.get_arguments("a"),
                "last": self.get_argument("a"),
            }
        )


class RequiredArgHandler(RequestHandler):
    def get(self):
        self.write(self.get_argument("needed"))


class CookieHandler(RequestHandler):
    def get(self):
        action = self.get_argument("action")
        if action == "read":
            self.write(self.get_cookie("name", "absent"))
        elif action == "set":
            self.set_cookie("plain", "value")
            self.set_cookie("spaced", "a;b", domain="example.com", path="/p", samesite="Lax")
            self.set_cookie("aged", "v", max_age=10, httponly=True, secure=True)
        elif action == "clear":
            self.clear_cookie("gone")
        elif action == "bad":
            results = []
            for attempt in (
                lambda: self.set_cookie("bad\r\nname", "v"),
                lambda: self.set_cookie("name", "v", domain="a;b"),
                lambda: self.set_cookie("name", "v", path="/\n"),
                lambda: self.set_cookie("name", "v", samesite="Lax; Secure"),
                lambda: self.set_cookie("name", "v\r\nX-Injected: 1"),
                lambda: self.set_cookie("name", "v", max_age="1; Path=/x"),
                lambda: self.set_cookie("name", "v", unknown="x"),
            ):
                try:
                    attempt()
                    results.append("accepted")
                except (ValueError, Exception) as error:
                    results.append(type(error).__name__)
            self.write({"results": results})


class SignedCookieHandler(RequestHandler):
    def get(self):
        if self.get_argument("set", None):
            self.set_signed_cookie("user", "alice")
            self.write("set")
        else:
            value = self.get_signed_cookie("user")
            self.write("none" if value is None else value.decode())


class ErrorRaisingHandler(RequestHandler):
    def get(self):
        kind = self.get_argument("kind")
        if kind == "zero":
            raise ZeroDivisionError("division by zero")
        if kind == "http":
            raise HTTPError(418, "teapot %s", "log only")
        if kind == "reason":
            raise HTTPError(400, reason=self.get_argument("reason"))
        if kind == "finish":
            self.set_status(401)
            raise Finish("stop here")
        if kind == "missing":
            self.get_argument("nope")


class StatusHandler(RequestHandler):
    def get(self):
        self.set_status(int(self.get_argument("code")), self.get_argument("reason", None))
        self.write("body")


class HeaderHandler(RequestHandler):
    def get(self):
        self.set_header("X-Single", "1")
        self.set_header("X-Single", 2)
        self.add_header("X-Multi", "a")
        self.add_header("X-Multi", "b")
        self.set_header("X-Gone", "x")
        self.clear_header("X-Gone")
        try:
            self.set_header("X-Bad", "a\r\nInjected: yes")
        except ValueError:
            self.set_header("X-Refused", "yes")


class FormHandler(RequestHandler):
    def get(self):
        self.write(self.xsrf_form_html())

    def post(self):
        self.write("posted")


class LoginHandler(RequestHandler):
    def get_current_user(self):
        return self.get_argument("user", None)

    @authenticated
    def get(self):
        self.write("hello " + self.current_user)

    @authenticated
    def post(self):
        self.write("posted")


class SlashHandler(RequestHandler):
    @removeslash
    def get(self):
        self.write("no slash")


class AddSlashHandler(RequestHandler):
    @addslash
    def get(self):
        self.write("slash")


class FlushHandler(RequestHandler):
    async def get(self):
        self.write("first,")
        await self.flush()
        self.write("second")


class JsonHandler(RequestHandler):
    def get(self):
        self.write({"key": "</script>"})


class ListWriteHandler(RequestHandler):
    def get(self):
        try:
            self.write([1, 2])  # type: ignore[arg-type]
        except TypeError:
            self.write("refused")


@stream_request_body
class StreamingHandler(RequestHandler):
    def prepare(self):
        self.received = []

    def data_received(self, chunk):
        self.received.append(chunk)

    def put(self):
        self.write({"size": sum(map(len, self.received))})


class PrepareFinishHandler(RequestHandler):
    def prepare(self):
        self.finish("from prepare")

    def get(self):
        raise AssertionError("never reached")


class EtagHandler(RequestHandler):
    def get(self):
        self.write("stable content")


class LocaleHandler(RequestHandler):
    def get(self):
        self.write(self.locale.code)


class ReverseHandler(RequestHandler):
    def get(self, value):
        self.write(self.reverse_url("reverse", "x y"))


def make_app(**settings):
    return Application(
        [
            ("/", HelloHandler),
            ("/async", AsyncHandler),
            ("/gen", GenHandler),
            (r"/args/(.*)", ArgsHandler),
            ("/required", RequiredArgHandler),
            ("/cookie", CookieHandler),
            ("/signed", SignedCookieHandler),
            ("/error", ErrorRaisingHandler),
            ("/status", StatusHandler),
            ("/headers", HeaderHandler),
            ("/form", FormHandler),
            ("/login", LoginHandler),
            ("/slash/?", SlashHandler),
            ("/addslash/?", AddSlashHandler),
            ("/flush", FlushHandler),
            ("/json", JsonHandler),
            ("/list", ListWriteHandler),
            ("/stream", StreamingHandler),
            ("/prepare", PrepareFinishHandler),
            ("/etag", EtagHandler),
            ("/locale", LocaleHandler),
            url(r"/reverse/(.*)", ReverseHandler, name="reverse"),
            (r"/redirect/(.*)", RedirectHandler, {"url": "/target/{0}"}),
            ("/teapot", ErrorHandler, {"status_code": 418}),
        ],
        cookie_secret=SECRET,
        login_url="/login-page",
        **settings,
    )


@pytest.fixture
def app():
    return make_app()


async def test_hello_sync_handler(fetch):
    response = await fetch("/")
    assert response.code == 200
    assert response.body == b"Hello, world"
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert response.headers["Content-Length"] == "12"
    assert "Date" in response.headers
    assert "Server" in response.headers


async def test_coroutine_and_gen_handlers(fetch):
    assert (await fetch("/async")).body == b"async"
    assert (await fetch("/gen")).body == b"gen"


async def test_path_and_query_arguments(fetch):
    response = await fetch("/args/caf%C3%A9?a=1&a=2&s=%20padded%20")
    data = json.loads(response.body)
    assert data == {
        "path": "café",
        "a": "2",
        "all": ["1", "2"],
        "stripped": "padded",
        "raw": " padded ",
    }


async def test_body_arguments_merge_with_query(fetch):
    response = await fetch("/args/x?a=q", method="POST", body="a=b1&a=b2")
    data = json.loads(response.body)
    assert data == {"body": ["b1", "b2"], "query": ["q"], "merged": ["q", "b1", "b2"], "last": "b2"}


async def test_missing_argument_is_400(fetch, caplog):
    with caplog.at_level(logging.WARNING):
        response = await fetch("/required")
    assert response.code == 400
    assert b"Missing argument" not in response.body or b"400" in response.body
    assert any("Missing argument needed" in record.getMessage() for record in caplog.records)


async def test_invalid_utf8_argument_is_400(fetch):
    assert (await fetch("/args/x?a=%FF")).code == 400
    assert (await fetch("/args/%FF")).code == 400


async def test_missing_argument_error_attributes():
    error = MissingArgumentError("thing")
    assert error.status_code == 400
    assert error.arg_name == "thing"
    assert error.log_message == "Missing argument thing"


async def test_get_cookie(fetch):
    assert (await fetch("/cookie?action=read", headers={"Cookie": "name=v1"})).body == b"v1"
    assert (await fetch("/cookie?action=read")).body == b"absent"


async def test_set_cookie_attributes(fetch):
    response = await fetch("/cookie?action=set")
    cookies = sorted(response.headers.get_list("Set-Cookie"))
    assert cookies == [
        "aged=v; HttpOnly; Max-Age=10; Path=/; Secure",
        "plain=value; Path=/",
        'spaced="a\\073b"; Domain=example.com; Path=/p; SameSite=Lax',
    ]


async def test_clear_cookie_expires_in_the_past(fetch):
    response = await fetch("/cookie?action=clear")
    header = response.headers["Set-Cookie"]
    assert header.startswith('gone=""; expires=')
    assert header.endswith("; Path=/")


async def test_bad_cookie_input_refused(fetch):
    response = await fetch("/cookie?action=bad")
    results = json.loads(response.body)["results"]
    assert results == [
        "CookieError",
        "CookieError",
        "CookieError",
        "CookieError",
        "ValueError",
        "ValueError",
        "CookieError",
    ]
    assert "Injected" not in response.headers


async def test_signed_cookie_round_trip(fetch):
    response = await fetch("/signed?set=1")
    cookie = response.headers["Set-Cookie"].split(";")[0]
    assert (await fetch("/signed", headers={"Cookie": cookie})).body == b"alice"


async def test_forged_truncated_and_expired_signed_cookies_read_as_absent(fetch):
    good = create_signed_value(SECRET, "user", "alice").decode()
    forged = create_signed_value("another secret", "user", "alice").decode()
    truncated = good[:-3]
    swapped = create_signed_value(SECRET, "other", "alice").decode()
    expired = create_signed_value(SECRET, "user", "alice", clock=lambda: 1000000).decode()
    for value in (forged, truncated, swapped, expired, "garbage", "2|1:0|"):
        response = await fetch("/signed", headers={"Cookie": "user=" + value})
        assert response.body == b"none", value
    assert (await fetch("/signed", headers={"Cookie": "user=" + good})).body == b"alice"


async def test_unhandled_exception_is_500_without_traceback(fetch, caplog):
    with caplog.at_level(logging.ERROR):
        response = await fetch("/error?kind=zero")
    assert response.code == 500
    assert b"500: Internal Server Error" in response.body
    assert b"Traceback" not in response.body
    assert b"ZeroDivisionError" not in response.body
    assert any("Uncaught exception" in r.getMessage() for r in caplog.records)


async def test_http_error_logs_message_not_shown(fetch, caplog):
    with caplog.at_level(logging.WARNING):
        response = await fetch("/error?kind=http")
    assert response.code == 418
    assert b"log only" not in response.body
    assert any("teapot log only" in r.getMessage() for r in caplog.records)


async def test_finish_exception(fetch):
    response = await fetch("/error?kind=finish")
    assert response.code == 401
    assert response.body == b"stop here"


@pytest.mark.parametrize(
    "reason", ["OK\r\nX-Injected: yes", "<script>alert(1)</script>", "bad\x7freason"]
)
async def test_unsafe_reason_replaced(fetch, reason):
    response = await fetch("/error?kind=reason&reason=" + urllib.parse.quote(reason))
    assert response.code == 400
    assert response.reason == "Unknown"
    assert "X-Injected" not in response.headers
    assert b"script" not in response.body


async def test_custom_reason_and_unknown_code(fetch):
    response = await fetch("/status?code=299&reason=Fine")
    assert (response.code, response.reason) == (299, "Fine")
    response = await fetch("/status?code=299")
    assert response.reason == "Unknown"


async def test_headers_set_add_clear_and_injection(fetch):
    response = await fetch("/headers")
    assert response.headers["X-Single"] == "2"
    assert response.headers.get_list("X-Multi") == ["a", "b"]
    assert "X-Gone" not in response.headers
    assert response.headers["X-Refused"] == "yes"
    assert "Injected" not in response.headers


async def test_json_write_escapes_script_close(fetch):
    response = await fetch("/json")
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert b"<\\/script>" in response.body
    assert json.loads(response.body) == {"key": "</script>"}


async def test_write_list_refused(fetch):
    assert (await fetch("/list")).body == b"refused"


async def test_flush_then_finish_streams_chunks(fetch):
    response = await fetch("/flush")
    assert response.body == b"first,second"


async def test_streaming_request_body(fetch):
    response = await fetch("/stream", method="PUT", body=b"x" * 100000)
    assert json.loads(response.body) == {"size": 100000}


async def test_finish_in_prepare_skips_method(fetch):
    assert (await fetch("/prepare")).body == b"from prepare"


async def test_etag_and_304(fetch):
    first = await fetch("/etag")
    etag = first.headers["Etag"]
    second = await fetch("/etag", headers={"If-None-Match": etag})
    assert second.code == 304
    assert second.body == b""
    weak = await fetch("/etag", headers={"If-None-Match": "W/" + etag})
    assert weak.code == 304
    other = await fetch("/etag", headers={"If-None-Match": '"other"'})
    assert other.code == 200


async def test_unknown_method_and_unimplemented_method_are_405(fetch):
    assert (await fetch("/", method="DELETE")).code == 405
    assert (await fetch("/", method="BREW", allow_nonstandard_methods=True)).code == 405


async def test_default_404_page(fetch):
    response = await fetch("/does-not-exist")
    assert response.code == 404
    assert response.body == (
        b"<html><title>404: Not Found</title><body>404: Not Found</body></html>"
    )


async def test_error_handler(fetch):
    assert (await fetch("/teapot")).code == 418


async def test_authenticated_redirects_or_refuses(fetch):
    response = await fetch("/login", follow_redirects=False)
    assert response.code == 302
    assert response.headers["Location"] == "/login-page?next=%2Flogin"
    assert (await fetch("/login", method="POST", body="")).code == 403
    assert (await fetch("/login?user=bob")).body == b"hello bob"


async def test_slash_decorators(fetch):
    response = await fetch("/slash/?q=1", follow_redirects=False)
    assert (response.code, response.headers["Location"]) == (301, "/slash?q=1")
    response = await fetch("/addslash", follow_redirects=False)
    assert (response.code, response.headers["Location"]) == (301, "/addslash/")


async def test_redirect_handler_with_group(fetch):
    response = await fetch("/redirect/page?x=1", follow_redirects=False)
    assert response.code == 301
    assert response.headers["Location"] == "/target/page?x=1"


async def test_reverse_url(fetch, app):
    assert app.reverse_url("reverse", "a b") == "/reverse/a%20b"
    assert (await fetch("/reverse/z")).body == b"/reverse/x%20y"
    with pytest.raises(KeyError):
        app.reverse_url("no-such-name")


async def test_browser_locale(fetch, tmp_path):
    from squall import locale

    (tmp_path / "fr_FR.csv").write_text('"Hello","Bonjour"\n', encoding="utf-8")
    locale.load_translations(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    try:
        await check_browser_locale(fetch)
    finally:
        locale.load_translations(str(empty))


async def check_browser_locale(fetch):
    response = await fetch("/locale", headers={"Accept-Language": "fr-FR;q=0.9, de;q=0"})
    assert response.body == b"fr_FR"
    response = await fetch("/locale", headers={"Accept-Language": "xx;q=-1"})
    assert response.body == b"en_US"


class TestXSRF:
    @pytest.fixture
    def app(self):
        return make_app(xsrf_cookies=True)

    async def get_token(self, fetch):
        response = await fetch("/form")
        cookie = response.headers["Set-Cookie"].split(";")[0]
        token = re.search(rb'value="([^"]+)"', response.body).group(1).decode()
        return cookie, token

    async def test_missing_token_is_403(self, fetch, caplog):
        with caplog.at_level(logging.WARNING):
            response = await fetch("/form", method="POST", body="")
        assert response.code == 403
        assert any("'_xsrf' argument missing" in r.getMessage() for r in caplog.records)

    async def test_valid_token_in_body_or_header(self, fetch):
        cookie, token = await self.get_token(fetch)
        body = urllib.parse.urlencode({"_xsrf": token})
        response = await fetch("/form", method="POST", body=body, headers={"Cookie": cookie})
        assert response.body == b"posted"
        response = await fetch(
            "/form", method="POST", body="", headers={"Cookie": cookie, "X-Xsrftoken": token}
        )
        assert response.body == b"posted"

    async def test_token_without_cookie_or_with_other_cookie_is_403(self, fetch):
        cookie, token = await self.get_token(fetch)
        other_cookie, _ = await self.get_token(fetch)
        body = urllib.parse.urlencode({"_xsrf": token})
        assert (await fetch("/form", method="POST", body=body)).code == 403
        response = await fetch("/form", method="POST", body=body, headers={"Cookie": other_cookie})
        assert response.code == 403

    async def test_tokens_are_masked_differently_each_time(self, fetch):
        cookie, token = await self.get_token(fetch)
        response = await fetch("/form", headers={"Cookie": cookie})
        second = re.search(rb'value="([^"]+)"', response.body).group(1).decode()
        assert second != token
        assert "Set-Cookie" not in response.headers


class TestDebugTraceback:
    @pytest.fixture
    def app(self):
        return make_app(serve_traceback=True)

    async def test_traceback_served_only_when_enabled(self, fetch):
        response = await fetch("/error?kind=zero")
        assert response.code == 500
        assert b"ZeroDivisionError" in response.body
        assert response.headers["Content-Type"] == "text/plain"


class TestGzip:
    @pytest.fixture
    def app(self):
        class Big(RequestHandler):
            def get(self):
                self.write("x" * (GZipContentEncoding.MIN_LENGTH + 10))

        return Application([("/", Big), ("/small", HelloHandler)], compress_response=True)

    async def test_gzip_when_accepted(self, fetch):
        response = await fetch("/")
        assert response.body == b"x" * (GZipContentEncoding.MIN_LENGTH + 10)
        assert response.headers["Vary"] == "Accept-Encoding"
        encoding = response.headers.get(
            "Content-Encoding", response.headers.get("X-Consumed-Content-Encoding")
        )
        assert encoding == "gzip"

    async def test_small_response_not_compressed(self, fetch):
        response = await fetch("/small")
        assert "Content-Encoding" not in response.headers
        assert "X-Consumed-Content-Encoding" not in response.headers


class TestCrossOrigin:
    @pytest.fixture
    def app(self):
        return make_app(cross_origin_protection=True, trusted_origins=["https://ok.example"])

    async def test_cross_site_post_refused(self, fetch):
        response = await fetch(
            "/form", method="POST", body="", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert response.code == 403
        response = await fetch(
            "/form", method="POST", body="", headers={"Origin": "https://evil.example"}
        )
        assert response.code == 403

    async def test_same_origin_trusted_and_plain_posts_allowed(self, fetch, base_url):
        for headers in (
            {"Sec-Fetch-Site": "same-origin"},
            {"Origin": base_url},
            {"Origin": "https://ok.example", "Sec-Fetch-Site": "cross-site"},
            {},
        ):
            response = await fetch("/form", method="POST", body="", headers=headers)
            assert response.body == b"posted", headers

    async def test_safe_methods_not_checked(self, fetch):
        response = await fetch("/form", headers={"Sec-Fetch-Site": "cross-site"})
        assert response.code == 200


class TestRedirectHandlerOpenRedirect:
    @pytest.fixture
    def app(self):
        return Application(
            [
                (r"/any/(.*)", RedirectHandler, {"url": "{0}"}),
                (r"/host/(.*)", RedirectHandler, {"url": "https://example.com/{0}"}),
            ]
        )

    @pytest.mark.parametrize(
        "path",
        ["/any/https://evil.com/", "/any/%5C%5Cevil.com/", "/any////evil.com", "/any/%0Afoo"],
    )
    async def test_client_cannot_choose_host(self, fetch, path):
        response = await fetch(path, follow_redirects=False)
        assert response.code == 400
        assert "Location" not in response.headers

    async def test_relative_and_same_host_targets_allowed(self, fetch):
        response = await fetch("/any/foo/bar", follow_redirects=False)
        assert (response.code, response.headers["Location"]) == (301, "foo/bar")
        response = await fetch("/host/x", follow_redirects=False)
        assert response.headers["Location"] == "https://example.com/x"


class TestDefaultHandlerAndHosts:
    @pytest.fixture
    def app(self):
        class Reply(RequestHandler):
            def initialize(self, reply):
                self.reply = reply

            def get(self):
                self.write(self.reply)

        application = Application(
            [("/", Reply, {"reply": "wildcard"})],
            default_handler_class=ErrorHandler,
            default_handler_args={"status_code": 410},
        )
        application.add_handlers(r"www\.example\.com", [("/", Reply, {"reply": "host"})])
        return application

    async def test_host_rules_and_default_handler(self, fetch):
        assert (await fetch("/")).body == b"wildcard"
        assert (await fetch("/", headers={"Host": "www.example.com"})).body == b"host"
        assert (await fetch("/missing")).code == 410


def test_http_error_str_and_copy():
    import copy

    error = HTTPError(404, "thing %s", "x", reason="Gone Fishing")
    assert str(error) == "HTTP 404: Gone Fishing (thing x)"
    assert str(HTTPError(799)) == "HTTP 799: Unknown"
    duplicate = copy.copy(error)
    assert (duplicate.status_code, duplicate.reason) == (404, "Gone Fishing")


def test_stream_request_body_requires_handler_class():
    with pytest.raises(TypeError):
        stream_request_body(object)  # type: ignore[type-var]


def test_headers_type_is_httpheaders():
    assert isinstance(HTTPHeaders(), HTTPHeaders)


class FakeConnection:
    """Stands in for HTTP1Connection: records what the handler writes."""

    def __init__(self):
        self.close_callback = None
        self.written = []
        self.finished = False

    def set_close_callback(self, callback):
        self.close_callback = callback

    def write_headers(self, start_line, headers, chunk=None):
        self.start_line = start_line
        self.headers = headers
        if chunk:
            self.written.append(chunk)

    def write(self, chunk):
        self.written.append(chunk)

    def finish(self):
        self.finished = True


async def test_client_close_during_streamed_upload_reaches_handler():
    from squall.httputil import HTTPServerRequest, RequestStartLine

    events = []

    @stream_request_body
    class Upload(RequestHandler):
        def data_received(self, chunk):
            events.append(("data", chunk))

        def on_connection_close(self):
            events.append(("closed",))
            super().on_connection_close()

        def put(self):
            events.append(("put",))

    application = Application([("/up", Upload)])
    connection = FakeConnection()
    start_line = RequestStartLine("PUT", "/up", "HTTP/1.1")
    headers = HTTPHeaders({"Host": "127.0.0.1", "Transfer-Encoding": "chunked"})
    request = HTTPServerRequest(connection=connection, start_line=start_line, headers=headers)
    delegate = application.find_handler(request)
    prepared = delegate.headers_received(start_line, headers)
    await prepared
    delegate.data_received(b"abc")
    delegate.on_connection_close()
    connection.close_callback()  # the connection reports the same close: heard once
    for _ in range(5):
        await asyncio.sleep(0)
    assert events == [("data", b"abc"), ("closed",)]
    assert not connection.finished


async def test_sync_handler_needs_no_task():
    from squall.httputil import HTTPServerRequest, RequestStartLine

    application = Application([("/", HelloHandler)])
    connection = FakeConnection()
    start_line = RequestStartLine("GET", "/", "HTTP/1.1")
    headers = HTTPHeaders({"Host": "127.0.0.1"})
    request = HTTPServerRequest(connection=connection, start_line=start_line, headers=headers)
    delegate = application.find_handler(request)
    assert delegate.headers_received(start_line, headers) is None
    delegate.finish()
    # Finished within the call: no event loop turn was needed.
    assert connection.finished
    assert connection.written == [b"Hello, world"]
    assert connection.start_line.code == 200
    assert connection.close_callback is None


class TestTemplates:
    @pytest.fixture
    def app(self, tmp_path):
        (tmp_path / "page.html").write_text(
            "<html><head></head><body>{{ shout(greeting) }} {{ name }}"
            "{% module Template('item.html', item=name) %}"
            "{% module xsrf_form_html() %}</body></html>",
            encoding="utf-8",
        )
        (tmp_path / "item.html").write_text(
            "{{ set_resources(css_files='item.css', embedded_javascript='go()') }}<i>{{ item }}</i>",
            encoding="utf-8",
        )
        (tmp_path / "static").mkdir()
        (tmp_path / "static" / "item.css").write_text("i {}", encoding="utf-8")

        class Page(RequestHandler):
            def get(self):
                self.render("page.html", name="<b>", greeting="hi")

        def shout(handler, text):
            return text.upper()

        RequestHandler._template_loaders.clear()
        return Application(
            [("/", Page)],
            template_path=str(tmp_path),
            static_path=str(tmp_path / "static"),
            ui_methods={"shout": shout},
        )

    async def test_render_escapes_and_adds_module_resources(self, fetch):
        response = await fetch("/")
        RequestHandler._template_loaders.clear()
        body = response.body.decode()
        assert "HI &lt;b&gt;<i>&lt;b&gt;</i>" in body
        assert '<link href="/static/item.css?v=' in body
        assert body.index("<link") < body.index("</head>")
        assert "go()" in body and body.index("go()") < body.index("</body>")
        assert 'name="_xsrf"' in body


class TestLogFunction:
    @pytest.fixture
    def app(self):
        self.logged = []
        return Application([("/", HelloHandler)], log_function=self.logged.append)

    async def test_log_function_replaces_access_log(self, fetch):
        await fetch("/")
        assert len(self.logged) == 1
        assert self.logged[0].get_status() == 200
        assert self.logged[0]._request_summary().startswith("GET / (")


async def test_listen_returns_a_server():
    from squall.httpserver import HTTPServer

    server = Application([("/", HelloHandler)]).listen(0, address="127.0.0.1")
    try:
        assert isinstance(server, HTTPServer)
    finally:
        server.stop()


class TestFallback:
    @pytest.fixture
    def app(self):
        from squall.web import FallbackHandler
        from squall.wsgi import WSGIContainer

        def wsgi_app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"from wsgi " + environ["PATH_INFO"].encode()]

        return Application(
            [
                ("/native", HelloHandler),
                (r"/.*", FallbackHandler, {"fallback": WSGIContainer(wsgi_app)}),
            ]
        )

    async def test_fallback_serves_other_paths(self, fetch):
        assert (await fetch("/native")).body == b"Hello, world"
        assert (await fetch("/legacy/page")).body == b"from wsgi /legacy/page"


class TestAsyncFailures:
    @pytest.fixture
    def app(self):
        test = self

        class AsyncBoom(RequestHandler):
            async def get(self):
                await asyncio.sleep(0)
                raise ValueError("async failure")

        class FailAfterFlush(RequestHandler):
            async def get(self):
                self.write("partial")
                await self.flush()
                raise ValueError("too late for an error page")

        class CustomError(RequestHandler):
            def get(self):
                raise KeyError("missing")

            def write_error(self, status_code, **kwargs):
                self.write({"status": status_code, "type": kwargs["exc_info"][0].__name__})

        class Cancelled(RequestHandler):
            async def get(self):
                test.task = asyncio.current_task()
                test.started.set()
                await asyncio.Event().wait()

        self.started = asyncio.Event()
        return Application(
            [
                ("/boom", AsyncBoom),
                ("/late", FailAfterFlush),
                ("/custom", CustomError),
                ("/cancel", Cancelled),
            ]
        )

    async def test_async_exception_is_500(self, fetch, caplog):
        with caplog.at_level(logging.ERROR):
            response = await fetch("/boom")
        assert response.code == 500
        assert b"async failure" not in response.body
        assert any("Uncaught exception" in r.getMessage() for r in caplog.records)

    async def test_error_after_headers_sent_ends_response(self, fetch, caplog):
        with caplog.at_level(logging.ERROR):
            response = await fetch("/late")
        assert response.code == 200
        assert response.body == b"partial"
        assert any(
            "Cannot send error response after headers written" in r.getMessage()
            for r in caplog.records
        )

    async def test_custom_write_error(self, fetch, caplog):
        with caplog.at_level(logging.ERROR):
            response = await fetch("/custom")
        assert response.code == 500
        assert json.loads(response.body) == {"status": 500, "type": "KeyError"}

    @pytest.mark.skipif(
        not hasattr(asyncio.Task, "cancelling"), reason="needs Task.cancelling (3.11+)"
    )
    async def test_cancelled_handler_task_answers_500_quietly(
        self, fetch, caplog, http_client, base_url
    ):
        with caplog.at_level(logging.ERROR, logger="squall.application"):
            response_future = asyncio.ensure_future(
                http_client.fetch(base_url + "/cancel", raise_error=False)
            )
            await asyncio.wait_for(self.started.wait(), 5)
            self.task.cancel()
            response = await asyncio.wait_for(response_future, 5)
        assert response.code == 500
        assert self.task.cancelled()
        assert not [r for r in caplog.records if r.name == "squall.application"]


class TestOverriddenResponseHooks:
    """Overrides that Tornado applications rely on keep being called on the fast path."""

    @pytest.fixture
    def app(self):
        self.calls = []
        calls = self.calls

        class Recording(RequestHandler):
            def set_header(self, name, value):
                calls.append(("set_header", name))
                super().set_header(name, value)

            def _log(self):
                calls.append("_log")

            def get(self):
                self.write("recorded")

        return Application([("/", Recording)])

    async def test_overridden_set_header_sees_etag_and_content_length(self, fetch):
        response = await fetch("/")
        assert response.body == b"recorded"
        assert ("set_header", "Etag") in self.calls
        assert ("set_header", "Content-Length") in self.calls
        assert response.headers["Etag"].startswith('"')
        assert response.headers["Content-Length"] == "8"

    async def test_overridden_log_replaces_access_log(self, fetch):
        await fetch("/")
        assert self.calls.count("_log") == 1


class TestHooksHonoured:
    """The per-request shortcuts step aside for overridden hooks (as Tornado calls them)."""

    @pytest.fixture
    def app(self):
        self.calls = []
        calls = self.calls

        class Hooked(RequestHandler):
            def set_default_headers(self):
                calls.append("set_default_headers")
                self.set_header("X-Default", "yes")

            def prepare(self):
                calls.append("prepare")

            def set_header(self, name, value):
                calls.append(("set_header", name))
                super().set_header(name, value)

            def add_header(self, name, value):
                calls.append(("add_header", name))
                super().add_header(name, value)

            def get_status(self):
                calls.append("get_status")
                return super().get_status()

            def on_finish(self):
                calls.append("on_finish")

            def get(self):
                self.set_cookie("a", "1")
                self.write({"json": True})

        return Application([("/", Hooked)])

    async def test_hooks_are_called(self, fetch, caplog):
        with caplog.at_level(logging.INFO, logger="squall.access"):
            response = await fetch("/")
        assert json.loads(response.body) == {"json": True}
        assert response.headers["X-Default"] == "yes"
        assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert response.headers["Set-Cookie"].startswith("a=1")
        calls = self.calls
        assert calls.index("set_default_headers") < calls.index("prepare")
        assert ("set_header", "Content-Type") in calls  # write(dict)
        assert ("add_header", "Set-Cookie") in calls
        assert "get_status" in calls  # (access log)
        assert calls[-1] == "on_finish"


class TestDecodeXsrfTokenOverride:
    @pytest.fixture
    def app(self):
        self.decoded = []
        decoded = self.decoded

        class Form(RequestHandler):
            def _decode_xsrf_token(self, cookie):
                decoded.append(cookie)
                return super()._decode_xsrf_token(cookie)

            def get(self):
                self.write(self.xsrf_token)

            def post(self):
                self.write("ok")

        return Application([("/", Form)], xsrf_cookies=True)

    async def test_cookie_and_submitted_token_go_through_the_hook(self, fetch):
        token = (await fetch("/")).body.decode()
        response = await fetch(
            "/",
            method="POST",
            body=urllib.parse.urlencode({"_xsrf": token}),
            headers={"Cookie": "_xsrf=" + token},
        )
        assert (response.code, response.body) == (200, b"ok")
        assert token in self.decoded and len(self.decoded) == 2


def test_ui_module_call_returns_text():
    from squall.httputil import HTTPServerRequest
    from squall.web import UIModule

    class Bytes(UIModule):
        def render(self):
            return b"caf\xc3\xa9"

    class Connection:
        def set_close_callback(self, callback):
            pass

    app = Application(ui_modules={"Bytes": Bytes})
    handler = RequestHandler(app, HTTPServerRequest(uri="/", connection=Connection()))
    assert handler.ui["modules"].Bytes() == "café"
    assert not hasattr(handler.ui["modules"], "Missing")
    with pytest.raises(KeyError):
        handler.ui["modules"]["Missing"]
