"""pytest plugin shipped with squall (registered through the ``pytest11`` entry point).

It runs ``async def`` test functions on a fresh :class:`~squall.ioloop.IOLoop` and offers
fixtures for testing a web application over real sockets::

    import pytest
    from squall.web import Application, RequestHandler

    class Hello(RequestHandler):
        def get(self):
            self.write("hi")

    @pytest.fixture
    def app():
        return Application([("/", Hello)])

    async def test_hello(fetch):
        response = await fetch("/")
        assert response.body == b"hi"

Fixtures:

* ``io_loop``: a new IOLoop for the test, current while the test runs, closed afterwards.
* ``http_server``: an :class:`~squall.httpserver.HTTPServer` for your ``app`` fixture,
  listening on an unused port of 127.0.0.1.
* ``http_client``: an :class:`~squall.httpclient.AsyncHTTPClient` of the test's own.
* ``base_url``: ``"http://127.0.0.1:<port>"`` of ``http_server``.
* ``fetch``: ``await fetch("/path", **kwargs)`` requests ``base_url + path`` and returns
  the response; like ``AsyncHTTPTestCase.fetch``, ``raise_error`` defaults to False.

An ``async def`` test gets a time limit: ``@pytest.mark.squall_timeout(seconds)``, else the
``ASYNC_TEST_TIMEOUT`` environment variable, else 5 seconds.

Tests marked for another async plugin (``asyncio``, ``anyio``, ``trio``) are left to it,
as are tests that pytest-asyncio takes over (all of them in its ``auto`` mode: use its
default ``strict`` mode alongside squall's fixtures; a warning flags the conflict). Nothing
is imported from squall until a test uses a fixture or an ``async def`` test runs, so
other test suites are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import socket
import unittest
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from squall.httpclient import AsyncHTTPClient, HTTPResponse
    from squall.httpserver import HTTPServer
    from squall.ioloop import IOLoop

_DEFAULT_TIMEOUT = 5.0
_TIMEOUT_MARKER = "squall_timeout"
# Markers of other plugins that run coroutine tests on their own loop.
_FOREIGN_ASYNC_MARKERS = ("asyncio", "anyio", "trio")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_TIMEOUT_MARKER}(seconds): time limit of an async def test run by squall "
        "(default: $ASYNC_TEST_TIMEOUT or 5 seconds)",
    )


def _default_timeout() -> float:
    value = os.environ.get("ASYNC_TEST_TIMEOUT")
    if not value:
        return _DEFAULT_TIMEOUT
    try:
        return float(value)
    except ValueError:
        raise pytest.UsageError(f"ASYNC_TEST_TIMEOUT must be a number of seconds, not {value!r}")


def _timeout_for(item: pytest.Function) -> float:
    marker = item.get_closest_marker(_TIMEOUT_MARKER)
    if marker is None:
        return _default_timeout()
    seconds: Any = marker.args[0] if marker.args else marker.kwargs.get("seconds")
    try:
        return float(seconds)
    except (TypeError, ValueError):
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.{_TIMEOUT_MARKER} takes a number of seconds"
        )


def _runs_on_squall(item: pytest.Item) -> bool:
    """True for a coroutine test that no other async plugin claims."""
    if not isinstance(item, pytest.Function):
        return False
    if item.cls is not None and issubclass(item.cls, unittest.TestCase):
        # unittest runs its own test methods (IsolatedAsyncioTestCase has its own loop).
        return False
    if not inspect.iscoroutinefunction(item.obj):
        # Also false once pytest-asyncio has wrapped the test in a synchronous runner.
        return False
    return not any(item.get_closest_marker(name) for name in _FOREIGN_ASYNC_MARKERS)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if _runs_on_squall(item):
            # Coroutine tests need a loop even when they ask for no fixture.
            if "io_loop" not in item.fixturenames:
                item.fixturenames.append("io_loop")
        elif (
            "io_loop" in item.fixturenames
            and inspect.iscoroutinefunction(item.obj)
            and item.get_closest_marker("asyncio") is not None
        ):
            item.warn(
                pytest.PytestWarning(
                    "this async test is run by pytest-asyncio on its own event loop, not on "
                    "squall's io_loop, so squall's fixtures (io_loop, http_server, fetch, ...) "
                    "will not be served while it runs; drop the asyncio marker or use "
                    "pytest-asyncio's strict mode for squall tests"
                )
            )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _runs_on_squall(pyfuncitem):
        return None
    test_function = pyfuncitem.obj
    parameters = inspect.signature(test_function).parameters
    arguments = {
        name: pyfuncitem.funcargs[name] for name in parameters if name in pyfuncitem.funcargs
    }
    run = functools.partial(test_function, **arguments)
    timeout = _timeout_for(pyfuncitem)
    io_loop: Any = pyfuncitem.funcargs.get("io_loop")
    if io_loop is not None:
        io_loop.run_sync(run, timeout=timeout)
    else:
        # Added after our collection hook ran (e.g. by another plugin): use a loop of its own.
        with contextlib.contextmanager(_io_loop_for_test)() as own_loop:
            own_loop.run_sync(run, timeout=timeout)
    return True


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    # Tasks a test left running would otherwise be destroyed pending when the loop closes.
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()

    async def settle() -> None:
        await asyncio.wait(pending, timeout=_DEFAULT_TIMEOUT)

    loop.run_until_complete(settle())


def _io_loop_for_test() -> Iterator[IOLoop]:
    """Yield a new current IOLoop, then cancel what the test left running and close it."""
    from squall.ioloop import IOLoop

    loop = IOLoop(make_current=False)
    asyncio.set_event_loop(loop.asyncio_loop)
    try:
        yield loop
    finally:
        try:
            if not loop.asyncio_loop.is_closed():
                _cancel_leftover_tasks(loop.asyncio_loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close(all_fds=True)


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """A fresh IOLoop, current for the duration of the test, closed afterwards."""
    yield from _io_loop_for_test()


@pytest.fixture
def _squall_listener() -> Iterator[tuple[socket.socket, int]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    try:
        yield listener, listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def http_server(
    io_loop: IOLoop, app: Any, _squall_listener: tuple[socket.socket, int]
) -> Iterator[HTTPServer]:
    """An HTTPServer serving the ``app`` fixture on an unused port of 127.0.0.1."""
    from squall.httpserver import HTTPServer

    listener, _port = _squall_listener

    async def start() -> HTTPServer:
        server = HTTPServer(app)
        server.add_sockets([listener])
        return server

    server: HTTPServer = io_loop.run_sync(start)
    try:
        yield server
    finally:
        server.stop()
        io_loop.run_sync(server.close_all_connections, timeout=_default_timeout())


@pytest.fixture
def http_client(io_loop: IOLoop) -> Iterator[AsyncHTTPClient]:
    """An AsyncHTTPClient of the test's own, closed afterwards."""
    from squall.httpclient import AsyncHTTPClient

    async def create() -> AsyncHTTPClient:
        return AsyncHTTPClient(force_instance=True)

    client: AsyncHTTPClient = io_loop.run_sync(create)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def base_url(http_server: HTTPServer, _squall_listener: tuple[socket.socket, int]) -> str:
    """The URL of ``http_server``, without a trailing slash."""
    return f"http://127.0.0.1:{_squall_listener[1]}"


@pytest.fixture
def fetch(http_client: AsyncHTTPClient, base_url: str) -> Callable[..., Awaitable[HTTPResponse]]:
    """``await fetch(path, **kwargs)``: request ``base_url + path`` with ``http_client``.

    Absolute URLs are fetched as they are. ``raise_error`` defaults to False, so error
    statuses come back as responses.
    """

    async def fetch(path: str, **kwargs: Any) -> HTTPResponse:
        if path.lower().startswith(("http://", "https://")):
            url = path
        else:
            url = base_url + path
        kwargs.setdefault("raise_error", False)
        return await http_client.fetch(url, **kwargs)

    return fetch
