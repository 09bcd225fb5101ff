"""WSGIContainer: WSGI applications served by squall's HTTP server."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any
from wsgiref.validate import validator

from squall.routing import RuleRouter
from squall.testing import AsyncHTTPTestCase, ExpectLog, gen_test
from squall.wsgi import WSGIContainer, to_wsgi_str


def echo_environ(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Made Up", [("Content-Type", "text/plain"), ("X-Seen", "yes")])
    lines = [
        f"{key}={environ.get(key)}"
        for key in (
            "REQUEST_METHOD",
            "PATH_INFO",
            "QUERY_STRING",
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "HTTP_X_CUSTOM",
            "SERVER_PROTOCOL",
            "wsgi.url_scheme",
        )
    ]
    return ["\n".join(lines).encode(), b"\nbody=", body]


def failing_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    raise ValueError("secret detail")


class WSGIContainerTest(AsyncHTTPTestCase):
    def get_app(self) -> RuleRouter:
        self.barrier = threading.Barrier(2, timeout=5)
        self.pool = concurrent.futures.ThreadPoolExecutor(4)

        def waiting_app(environ: dict[str, Any], start_response: Any) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"waited "
            yield b"%d" % self.barrier.wait()

        return RuleRouter(
            [
                ("/echo.*", WSGIContainer(validator(echo_environ))),
                ("/fail", WSGIContainer(failing_app)),
                ("/wait", WSGIContainer(waiting_app, executor=self.pool)),
            ]
        )

    def tearDown(self) -> None:
        super().tearDown()
        self.pool.shutdown(wait=False)

    def test_environ_carries_the_request(self) -> None:
        response = self.fetch(
            "/echo%20path?a=1&b=2",
            method="POST",
            body=b"payload",
            headers={"Content-Type": "text/plain", "X-Custom": "value"},
        )
        self.assertEqual(response.code, 201)
        self.assertEqual(response.reason, "Made Up")
        self.assertEqual(response.headers["X-Seen"], "yes")
        self.assertEqual(response.headers["Content-Length"], str(len(response.body)))
        text = response.body.decode()
        self.assertIn("REQUEST_METHOD=POST", text)
        self.assertIn("PATH_INFO=/echo path", text)
        self.assertIn("QUERY_STRING=a=1&b=2", text)
        self.assertIn("CONTENT_TYPE=text/plain", text)
        self.assertIn("CONTENT_LENGTH=7", text)
        self.assertIn("HTTP_X_CUSTOM=value", text)
        self.assertIn("SERVER_PROTOCOL=HTTP/1.1", text)
        self.assertIn("wsgi.url_scheme=http", text)
        self.assertTrue(text.endswith("body=payload"))

    def test_application_error_is_a_plain_500(self) -> None:
        with ExpectLog("squall.application", "Uncaught exception in WSGI"):
            response = self.fetch("/fail")
        self.assertEqual(response.code, 500)
        self.assertNotIn(b"secret detail", response.body)

    @gen_test
    async def test_thread_pool_runs_requests_side_by_side(self) -> None:
        # each response waits on a two-party barrier: both must be running at once
        import asyncio

        responses = await asyncio.gather(
            self.http_client.fetch(self.get_url("/wait")),
            self.http_client.fetch(self.get_url("/wait")),
        )
        self.assertEqual(sorted(r.body for r in responses), [b"waited 0", b"waited 1"])


def test_to_wsgi_str_keeps_every_byte() -> None:
    assert to_wsgi_str(bytes(range(256))).encode("latin1") == bytes(range(256))


def test_environ_has_the_pep3333_keys() -> None:
    import sys

    from squall.httputil import HTTPHeaders, HTTPServerRequest

    request = HTTPServerRequest(
        method="GET", uri="/a%20b?x=1", version="HTTP/1.0",
        headers=HTTPHeaders({"Host": "example.com:8080"}), body=b"in",
    )
    plain = WSGIContainer(echo_environ).environ(request)
    assert plain["SERVER_NAME"] == "example.com" and plain["SERVER_PORT"] == "8080"
    assert plain["SCRIPT_NAME"] == "" and plain["PATH_INFO"] == "/a b"
    assert plain["QUERY_STRING"] == "x=1" and plain["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert plain["HTTP_HOST"] == "example.com:8080"
    assert plain["wsgi.version"] == (1, 0) and plain["wsgi.url_scheme"] == "http"
    assert plain["wsgi.input"].read() == b"in" and plain["wsgi.errors"] is sys.stderr
    assert plain["wsgi.multiprocess"] is True and plain["wsgi.run_once"] is False
    assert plain["wsgi.multithread"] is False
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert WSGIContainer(echo_environ, pool).environ(request)["wsgi.multithread"] is True


def test_access_log_level_follows_the_status() -> None:
    import logging

    from squall.httputil import HTTPServerRequest

    container = WSGIContainer(echo_environ)
    request = HTTPServerRequest(method="GET", uri="/x")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.levelno, record.getMessage().split(" ")[0]))

    logger = logging.getLogger("squall.access")
    handler, old_level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        for code in (200, 304, 399, 400, 404, 499, 500, 503):
            container._log(code, request)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    info, warning, error = logging.INFO, logging.WARNING, logging.ERROR
    assert seen == [
        (info, "200"), (info, "304"), (info, "399"), (warning, "400"),
        (warning, "404"), (warning, "499"), (error, "500"), (error, "503"),
    ]
