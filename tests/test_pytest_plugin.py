"""Tests of squall's pytest plugin, each running an inner pytest session with pytester."""

import importlib.util
import textwrap

import pytest

pytest_plugins = ["pytester"]


def _importable(module):
    try:
        return importlib.util.find_spec(module) is not None and bool(
            __import__(module, fromlist=["_"])
        )
    except Exception:
        return False


# The HTTP fixtures need the server and client modules; until those import, only the
# tests that use them are skipped.
needs_http = pytest.mark.skipif(
    not (_importable("squall.httpserver") and _importable("squall.web")),
    reason="squall.httpserver / squall.web do not import yet",
)


def run_inner(pytester, source, *args, subprocess=False):
    # The plugin is loaded through its pytest11 entry point, as for any user.
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    run = pytester.runpytest_subprocess if subprocess else pytester.runpytest_inprocess
    # (The inner session has no ini file: pytest-asyncio's loop-scope default is given here
    # so that it does not warn about it being unset.)
    return run(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *args,
    )


def test_async_tests_run_on_a_fresh_current_ioloop(pytester):
    result = run_inner(
        pytester,
        """
        import asyncio
        from squall.ioloop import IOLoop

        seen = []

        async def test_without_fixtures():
            await asyncio.sleep(0)
            seen.append(IOLoop.current())

        async def test_with_io_loop(io_loop):
            assert IOLoop.current() is io_loop
            assert asyncio.get_running_loop() is io_loop.asyncio_loop
            seen.append(io_loop)

        def test_sync_tests_can_use_run_sync(io_loop):
            async def answer():
                return 42
            assert io_loop.run_sync(answer) == 42

        def test_each_test_had_its_own_loop():
            assert len(seen) == 2 and seen[0] is not seen[1]

        class TestInAClass:
            async def test_method(self, io_loop):
                await asyncio.sleep(0)
        """,
    )
    result.assert_outcomes(passed=5)


def test_failures_inside_async_tests_are_reported(pytester):
    result = run_inner(
        pytester,
        """
        async def test_fails():
            assert 1 == 2
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 1 == 2*"])


def test_timeout_from_marker_and_environment(pytester, monkeypatch):
    source = """
        import asyncio
        import pytest

        @pytest.mark.squall_timeout(0.05)
        async def test_marker_timeout():
            await asyncio.sleep(30)

        async def test_env_timeout():
            await asyncio.sleep(30)

        @pytest.mark.squall_timeout(30)
        async def test_marker_wins_over_env():
            await asyncio.sleep(0.2)
        """
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "0.05")
    result = run_inner(pytester, source)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*TimeoutError*"])


def test_marker_is_registered(pytester):
    result = run_inner(pytester, "def test_nothing():\n    pass\n", "--strict-markers", "--markers")
    result.stdout.fnmatch_lines(["*squall_timeout(seconds)*"])


def test_leftover_tasks_are_cancelled_at_teardown(pytester):
    result = run_inner(
        pytester,
        """
        import asyncio

        cancelled = []

        async def test_leaves_a_task():
            async def forever():
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled.append(True)
                    raise
            asyncio.ensure_future(forever())
            await asyncio.sleep(0)

        def test_task_was_cancelled():
            assert cancelled == [True]
        """,
    )
    result.assert_outcomes(passed=2)


def test_plain_test_files_are_unaffected(pytester):
    result = run_inner(
        pytester,
        """
        import sys

        def test_plain():
            assert "squall.ioloop" not in sys.modules
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=1)


def test_tests_marked_for_other_plugins_are_left_alone(pytester):
    # Without the plugin that owns the marker, pytest itself reports the coroutine test
    # as unsupported; squall must not run it.
    result = run_inner(
        pytester,
        """
        import pytest

        ran = []

        @pytest.mark.anyio
        async def test_for_anyio():
            ran.append(True)

        def test_not_run_by_squall():
            assert ran == []
        """,
        "-p",
        "no:anyio",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1
    assert outcomes.get("failed", 0) + outcomes.get("skipped", 0) == 1


def test_unittest_async_cases_are_left_to_unittest(pytester):
    pytester.makeconftest(
        """
        def pytest_runtest_setup(item):
            assert "io_loop" not in item.fixturenames
        """
    )
    result = run_inner(
        pytester,
        """
        import asyncio
        import unittest

        class Case(unittest.IsolatedAsyncioTestCase):
            async def test_runs_on_unittests_loop(self):
                await asyncio.sleep(0)
        """,
    )
    result.assert_outcomes(passed=1)


@pytest.mark.skipif(not _importable("pytest_asyncio"), reason="pytest-asyncio not installed")
def test_coexists_with_pytest_asyncio_strict_mode(pytester):
    result = run_inner(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_marked_for_pytest_asyncio():
            await asyncio.sleep(0)

        async def test_unmarked_runs_on_squall(io_loop):
            assert asyncio.get_running_loop() is io_loop.asyncio_loop
        """,
        "-p",
        "asyncio",
        "--asyncio-mode=strict",
        "-W",
        "ignore::DeprecationWarning",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.skipif(not _importable("pytest_asyncio"), reason="pytest-asyncio not installed")
def test_pytest_asyncio_auto_mode_conflict_is_flagged(pytester):
    result = run_inner(
        pytester,
        """
        import asyncio

        async def test_claimed_by_pytest_asyncio(io_loop):
            await asyncio.sleep(0)

        async def test_without_squall_fixtures():
            await asyncio.sleep(0)
        """,
        "-p",
        "asyncio",
        "--asyncio-mode=auto",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*run by pytest-asyncio*not on squall's io_loop*"])


@needs_http
def test_http_fixtures_serve_the_app(pytester):
    result = run_inner(
        pytester,
        """
        import pytest
        from squall.web import Application, RequestHandler

        class Hello(RequestHandler):
            def get(self):
                self.write("hello " + self.get_argument("name", "world"))

            def post(self):
                self.write(self.request.body)

        @pytest.fixture
        def app():
            return Application([("/", Hello)])

        async def test_get(fetch, base_url):
            assert base_url.startswith("http://127.0.0.1:")
            response = await fetch("/?name=squall")
            assert response.code == 200
            assert response.body == b"hello squall"

        async def test_post_and_errors_are_responses(fetch):
            response = await fetch("/", method="POST", body=b"echo")
            assert response.body == b"echo"
            missing = await fetch("/missing")
            assert missing.code == 404

        async def test_raise_error_can_be_requested(fetch):
            from squall.httpclient import HTTPClientError
            with pytest.raises(HTTPClientError):
                await fetch("/missing", raise_error=True)

        async def test_absolute_urls_and_own_client(http_client, base_url, http_server):
            response = await http_client.fetch(base_url + "/")
            assert response.body == b"hello world"
        """,
    )
    result.assert_outcomes(passed=4)


@needs_http
def test_http_server_without_app_fixture_is_a_clear_error(pytester):
    result = run_inner(
        pytester,
        """
        async def test_needs_app(fetch):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'app' not found*"])
