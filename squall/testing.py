"""unittest support for asynchronous code: a fresh loop per test, ``gen_test``, HTTP fixtures."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import os
import re
import signal
import socket
import sys
import types
import unittest
import warnings
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar, overload

from squall import gen
from squall.ioloop import IOLoop
from squall.platform.asyncio import AsyncIOMainLoop
from squall.util import TimeoutError

__all__ = [
    "AsyncHTTPSTestCase",
    "AsyncHTTPTestCase",
    "AsyncTestCase",
    "ExpectLog",
    "bind_unused_port",
    "gen_test",
    "get_async_test_timeout",
    "main",
    "setup_with_context_manager",
]

_T = TypeVar("_T")

_app_log = logging.getLogger("squall.application")

_DEFAULT_ASYNC_TEST_TIMEOUT = 5.0


def bind_unused_port(
    reuse_port: bool = False, address: str = "127.0.0.1"
) -> tuple[socket.socket, int]:
    """Bind a listening, non-blocking socket to a free port on ``address``; return it and the port."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ValueError("the platform doesn't support SO_REUSEPORT")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind(sockaddr[:2])
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock, sock.getsockname()[1]


def get_async_test_timeout() -> float:
    """Seconds an async test may take: ``$ASYNC_TEST_TIMEOUT`` or 5."""
    value = os.environ.get("ASYNC_TEST_TIMEOUT")
    if value:
        try:
            return float(value)
        except ValueError:
            pass
    return _DEFAULT_ASYNC_TEST_TIMEOUT


def setup_with_context_manager(testcase: unittest.TestCase, cm: Any) -> Any:
    """Enter ``cm`` now and exit it when the test is cleaned up; returns what it yields."""
    value = cm.__enter__()
    testcase.addCleanup(cm.__exit__, None, None, None)
    return value


class AsyncTestCase(unittest.TestCase):
    """A ``TestCase`` with its own ``IOLoop`` (``self.io_loop``), set up and closed per test.

    Drive asynchronous code with ``@gen_test`` methods, or with ``self.wait()`` /
    ``self.stop()``. In ``tearDown`` leftover tasks are cancelled and the loop is closed
    together with every fd still registered on it.
    """

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)
        self._wait_state = _WaitState()
        # Set by gen_test: the generator or coroutine of the running test, so a timeout
        # can be raised inside it (its traceback then shows where it was waiting).
        self._test_generator: Generator[Any, Any, Any] | Coroutine[Any, Any, Any] | None = None

    def setUp(self) -> None:
        super().setUp()
        self.io_loop = self.get_new_ioloop()
        asyncio.set_event_loop(self.io_loop.asyncio_loop)

    def tearDown(self) -> None:
        try:
            self._cancel_leftover_tasks()
        finally:
            self._close_loop()
        super().tearDown()
        # A failure recorded outside the test's own stack (e.g. a wait() timeout) is raised
        # here if the test did not already raise it.
        self._raise_recorded_failure()

    def _cancel_leftover_tasks(self) -> None:
        loop = self.io_loop.asyncio_loop
        leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftover:
            task.cancel()
        if not leftover:
            return
        # Bounded: a task that ignores cancellation fails the test instead of hanging it.
        done, pending = self.io_loop.run_sync(
            lambda: asyncio.wait(leftover), timeout=get_async_test_timeout()
        )
        assert not pending
        for task in done:
            try:
                task.result()
            except asyncio.CancelledError:
                pass

    def _close_loop(self) -> None:
        loop = self.io_loop.asyncio_loop
        owned = not isinstance(self.io_loop, AsyncIOMainLoop)
        if owned and not loop.is_closed():
            try:
                # Async generators left suspended would otherwise be finalized later, in
                # whatever test happens to be running then.
                loop.run_until_complete(loop.shutdown_asyncgens())
            except RuntimeError:
                pass
        asyncio.set_event_loop(None)
        if owned:
            # A loop wrapped from elsewhere (get_new_ioloop returning IOLoop.current())
            # belongs to its creator.
            self.io_loop.close(all_fds=True)

    def get_new_ioloop(self) -> IOLoop:
        """The loop for one test; override to customise it (rarely needed)."""
        return IOLoop(make_current=False)

    def _handle_exception(
        self, typ: type[BaseException], value: BaseException, tb: types.TracebackType
    ) -> bool:
        # The first failure is raised from wait() (or tearDown); later ones are only logged.
        state = self._wait_state
        if state.failure is not None:
            _app_log.error("multiple unhandled exceptions in test", exc_info=(typ, value, tb))
        else:
            state.failure = value.with_traceback(tb)
        self.stop()
        return True

    def _raise_recorded_failure(self) -> None:
        state = self._wait_state
        failure, state.failure = state.failure, None
        if failure is not None:
            raise failure

    def _callTestMethod(self, method: Callable[[], Any]) -> None:
        # A test method that returns something was almost surely meant to be waited for:
        # an undecorated coroutine or generator would otherwise pass without running.
        returned = method()
        if returned is None:
            return
        unawaited = inspect.iscoroutine(returned)
        if unawaited:
            returned.close()  # no "never awaited" warning on top of the error
        if unawaited or isinstance(returned, Generator):
            raise TypeError(
                "Generator and coroutine test methods should be decorated with "
                "squall.testing.gen_test"
            )
        raise ValueError(f"Return value from test method ignored: {returned!r}")

    def stop(self, _arg: Any = None, **kwargs: Any) -> None:
        """End the current ``wait()``; it returns ``_arg`` or the keyword arguments."""
        assert _arg is None or not kwargs
        state = self._wait_state
        state.result = kwargs or _arg
        state.stopped = True
        if state.running:
            state.running = False
            self.io_loop.stop()

    def wait(
        self, condition: Callable[..., bool] | None = None, timeout: float | None = None
    ) -> Any:
        """Run the loop until ``stop()`` is called (and ``condition()`` holds, if given).

        Fails the test after ``timeout`` seconds (default ``get_async_test_timeout()``).
        """
        state = self._wait_state
        if not state.stopped:
            limit = get_async_test_timeout() if timeout is None else timeout
            self._run_until_stopped(condition, limit)
        assert state.stopped
        state.stopped = False
        self._raise_recorded_failure()
        result, state.result = state.result, None
        return result

    def _run_until_stopped(self, condition: Callable[..., bool] | None, limit: float) -> None:
        state = self._wait_state
        deadline = self.io_loop.call_later(limit, self._wait_timed_out, limit) if limit else None
        try:
            # stop() ends one run of the loop; with a condition, runs go on until it holds
            # (or something failed, which wait() then raises).
            satisfied = False
            while not satisfied:
                state.running = True
                self.io_loop.start()
                satisfied = state.failure is not None or condition is None or condition()
        finally:
            if deadline is not None:
                self.io_loop.remove_timeout(deadline)

    def _wait_timed_out(self, limit: float) -> None:
        try:
            # Raised, not just built, so that it carries a traceback like any failure.
            raise self.failureException(f"Async operation timed out after {limit} seconds")
        except Exception as error:
            self._wait_state.failure = error
        self.stop()


@dataclasses.dataclass
class _WaitState:
    """Where AsyncTestCase's stop()/wait() pair stands."""

    stopped: bool = False  # stop() was called since the last wait() returned
    running: bool = False  # wait() is running the loop, which stop() must end
    result: Any = None  # what stop() was given, for wait() to return
    failure: BaseException | None = None  # the first failure outside the test's stack


@overload
def gen_test(
    *, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Callable[..., None]]: ...


@overload
def gen_test(func: Callable[..., Any]) -> Callable[..., None]: ...


def gen_test(func: Callable[..., Any] | None = None, timeout: float | None = None) -> Any:
    """Run a generator or ``async def`` test method to completion on ``self.io_loop``.

    Usable bare or as ``@gen_test(timeout=seconds)``; the default timeout is
    ``get_async_test_timeout()`` (``$ASYNC_TEST_TIMEOUT``, else 5 seconds).
    """

    def decorate(test_method: Callable[..., Any]) -> Callable[..., None]:
        @functools.wraps(test_method)
        def start_test(self: AsyncTestCase, *args: Any, **kwargs: Any) -> Any:
            returned = test_method(self, *args, **kwargs)
            if isinstance(returned, Generator) or inspect.iscoroutine(returned):
                self._test_generator = returned
            else:
                self._test_generator = None
            return returned

        if inspect.iscoroutinefunction(test_method):
            runnable: Callable[..., Any] = start_test
        else:
            runnable = gen.coroutine(start_test)

        @functools.wraps(runnable)
        def run_test(self: AsyncTestCase, *args: Any, **kwargs: Any) -> None:
            limit = timeout if timeout is not None else get_async_test_timeout()
            # Where a native test was waiting when time ran out, noted just before run_sync
            # cancels it (the loop may finish the cancellation before we can look).
            waiting_at: list[str] = []
            note_handle = self.io_loop.call_later(limit, _note_waiting_line, self, waiting_at)
            try:
                self.io_loop.run_sync(
                    functools.partial(runnable, self, *args, **kwargs), timeout=limit
                )
            except TimeoutError as error:
                # Raise the timeout inside the test itself, so its traceback points at the
                # line that was waiting rather than at the loop's internals.
                suspended = self._test_generator
                if inspect.iscoroutine(suspended):
                    # A task owns the coroutine, so it cannot be resumed from here; name the
                    # line it was waiting at instead.
                    if waiting_at:
                        raise TimeoutError(
                            f"{error} (the test was waiting at {waiting_at[0]})"
                        ) from None
                    raise
                if suspended is not None and _is_suspended(suspended):
                    suspended.throw(error)
                raise
            finally:
                self.io_loop.remove_timeout(note_handle)
                self._test_generator = None

        return run_test

    if func is not None:
        return decorate(func)
    return decorate


def _note_waiting_line(test: AsyncTestCase, waiting_at: list[str]) -> None:
    coroutine = test._test_generator
    if inspect.iscoroutine(coroutine) and coroutine.cr_frame is not None:
        frame = coroutine.cr_frame
        waiting_at.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")


def _is_suspended(runnable: Generator[Any, Any, Any] | Coroutine[Any, Any, Any]) -> bool:
    if inspect.iscoroutine(runnable):
        return inspect.getcoroutinestate(runnable) == inspect.CORO_SUSPENDED
    return inspect.getgeneratorstate(runnable) == inspect.GEN_SUSPENDED  # type: ignore[arg-type]


# Tell nose-style collectors this is not a test.
gen_test.__test__ = False  # type: ignore[attr-defined]


class AsyncHTTPTestCase(AsyncTestCase):
    """An ``AsyncTestCase`` that serves ``get_app()`` on a fresh port over HTTP.

    ``self.fetch(path)`` requests it synchronously; ``self.http_client`` and
    ``self.http_server`` are available to the test.
    """

    def setUp(self) -> None:
        super().setUp()
        listener, self.__port = bind_unused_port()
        self.http_client = self.get_http_client()
        self._app = self.get_app()
        self.http_server = self.get_http_server()
        self.http_server.add_sockets([listener])

    def get_app(self) -> Any:
        """The application to test (``squall.web.Application`` or any HTTP delegate)."""
        raise NotImplementedError("AsyncHTTPTestCase subclasses must define get_app()")

    def get_http_client(self) -> Any:
        """The client used by ``fetch``."""
        from squall.httpclient import AsyncHTTPClient

        return AsyncHTTPClient()

    def get_http_server(self) -> Any:
        """The server for ``get_app()``."""
        from squall.httpserver import HTTPServer

        options = self.get_httpserver_options()
        return HTTPServer(self._app, **options)

    def fetch(self, path: str, raise_error: bool = False, **kwargs: Any) -> Any:
        """Fetch ``path`` (relative to the test server, or an absolute URL) synchronously.

        HTTP error responses are returned, not raised, unless ``raise_error`` is true.
        """
        absolute = path.lower().startswith(("http://", "https://"))
        url = path if absolute else self.get_url(path)
        request = functools.partial(self.http_client.fetch, url, raise_error=raise_error, **kwargs)
        return self.io_loop.run_sync(request, timeout=get_async_test_timeout())

    def get_httpserver_options(self) -> dict[str, Any]:
        """Keyword arguments for the ``HTTPServer``."""
        return {}

    def get_protocol(self) -> str:
        return "http"

    def get_url(self, path: str) -> str:
        """Absolute URL of ``path`` on the test server."""
        return f"{self.get_protocol()}://127.0.0.1:{self.get_http_port()}{path}"

    def get_http_port(self) -> int:
        """The port the test server listens on."""
        return self.__port

    def tearDown(self) -> None:
        server = self.http_server
        server.stop()
        # Open keep-alive connections would otherwise outlive the test (and its loop).
        self.io_loop.run_sync(server.close_all_connections, timeout=get_async_test_timeout())
        self.http_client.close()
        del self.http_server, self._app
        super().tearDown()


class AsyncHTTPSTestCase(AsyncHTTPTestCase):
    """``AsyncHTTPTestCase`` over TLS, with squall's self-signed test certificate by default."""

    def get_http_client(self) -> Any:
        from squall.httpclient import AsyncHTTPClient

        return AsyncHTTPClient(force_instance=True, defaults=dict(validate_cert=False))

    def get_httpserver_options(self) -> dict[str, Any]:
        return dict(ssl_options=self.get_ssl_options())

    def get_ssl_options(self) -> Any:
        """``ssl_options`` for the server; override to use another certificate."""
        return AsyncHTTPSTestCase.default_ssl_options()

    @staticmethod
    def default_ssl_options() -> dict[str, Any]:
        here = os.path.dirname(os.path.abspath(__file__))
        return dict(
            certfile=os.path.join(here, "test", "test.crt"),
            keyfile=os.path.join(here, "test", "test.key"),
        )

    def get_protocol(self) -> str:
        return "https"


class ExpectLog(logging.Filter):
    """Context manager that swallows, and by default requires, a matching log message.

    ``regex`` is matched from the start of the formatted message. With ``level`` only
    records at that level match, and the logger is opened to that level meanwhile.
    ``logged_stack`` tells whether any record seen carried exception info.
    """

    def __init__(
        self,
        logger: logging.Logger | str,
        regex: str,
        required: bool = True,
        level: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        self.logger = logger
        self.regex = re.compile(regex)
        self.required = required
        self.matched = False
        self.logged_stack = False
        self.level = level
        self.orig_level: int | None = None
        # Matches below WARNING when no level was given (a deprecated way of using this).
        self.deprecated_level_matched = 0

    def filter(self, record: logging.LogRecord) -> bool:
        # True lets a record through to the handlers; a match is swallowed.
        self.logged_stack = self.logged_stack or bool(record.exc_info)
        message = record.getMessage()
        if not self.regex.match(message):
            return True
        if self.level is None:
            if record.levelno < logging.WARNING:
                self.deprecated_level_matched += 1
        elif record.levelno != self.level:
            _app_log.warning(
                "Got expected log message %r at unexpected level (%s vs %s)",
                message,
                logging.getLevelName(self.level),
                record.levelname,
            )
            return True
        self.matched = True
        return False

    def __enter__(self) -> ExpectLog:
        # A record below the logger's level would never reach the filter: open the logger
        # up to the expected level while the block runs.
        wanted = self.level
        if wanted is not None and self.logger.getEffectiveLevel() > wanted:
            self.orig_level = self.logger.level
            self.logger.setLevel(wanted)
        self.logger.addFilter(self)
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        level, self.orig_level = self.orig_level, None
        if level is not None:
            self.logger.setLevel(level)
        self.logger.removeFilter(self)
        if typ is not None or not self.required:
            return  # an error in the block says more than a missing log line would
        if not self.matched:
            raise Exception("did not get expected log message")
        if self.deprecated_level_matched:
            warnings.warn(
                "ExpectLog matched a message below WARNING without a level argument",
                DeprecationWarning,
                stacklevel=2,
            )


def main(**kwargs: Any) -> None:
    """Run tests from the command line, like ``unittest.main`` with squall's options.

    Without test names on the command line, runs ``all()`` from ``__main__``. Options from
    ``squall.options`` (such as ``--logging``) are parsed first when that module is present.
    """
    argv = list(sys.argv)
    try:
        from squall import options as options_module
    except ImportError:
        options_module = None  # type: ignore[assignment]
    if options_module is not None:
        try:
            options_module.define(
                "exception_on_interrupt",
                type=bool,
                default=True,
                help="If true (default), ctrl-c raises a KeyboardInterrupt exception.",
            )
        except Exception:
            pass  # defined already (main called twice)
        remaining = options_module.parse_command_line(argv)
        argv = [argv[0]] + list(remaining)
        if not options_module.options.exception_on_interrupt:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    if "testRunner" not in kwargs:
        kwargs["testRunner"] = unittest.TextTestRunner
    if len(argv) > 1:
        unittest.main(module=None, argv=argv, **kwargs)
    else:
        unittest.main(defaultTest="all", argv=argv, **kwargs)
