import asyncio
import logging
import os
import socket
import traceback
import unittest
from unittest import mock

import pytest

from squall import gen
from squall.ioloop import IOLoop
from squall.testing import (
    AsyncHTTPSTestCase,
    AsyncTestCase,
    ExpectLog,
    bind_unused_port,
    gen_test,
    get_async_test_timeout,
    setup_with_context_manager,
)


def run_case(case_class, name):
    result = unittest.TestResult()
    case_class(name).run(result)
    return result


def test_wait_and_stop_pass_values_and_time_out():
    class Case(AsyncTestCase):
        def test_value(self):
            self.io_loop.add_callback(self.stop, 5)
            assert self.wait() == 5
            self.io_loop.add_callback(lambda: self.stop(a=1))
            assert self.wait() == {"a": 1}

        def test_timeout(self):
            self.io_loop.call_later(1, self.stop)
            self.wait(timeout=0.01)

    assert run_case(Case, "test_value").wasSuccessful()
    result = run_case(Case, "test_timeout")
    assert len(result.failures) == 1
    assert "timed out after 0.01 seconds" in result.failures[0][1]


def test_each_test_gets_a_fresh_loop_closed_with_its_fds():
    loops = []
    sockets = []

    class Case(AsyncTestCase):
        def test_one(self):
            loops.append(self.io_loop)
            assert IOLoop.current() is self.io_loop
            left, right = socket.socketpair()
            sockets.append((left, right))
            self.io_loop.add_handler(left, lambda fd, events: None, IOLoop.READ)

    assert run_case(Case, "test_one").wasSuccessful()
    assert run_case(Case, "test_one").wasSuccessful()
    assert loops[0] is not loops[1]
    assert loops[0].asyncio_loop.is_closed()
    for left, right in sockets:
        assert left.fileno() == -1
        right.close()


def test_leftover_tasks_are_cancelled_in_teardown():
    cancelled = []

    class Case(AsyncTestCase):
        def test_leak(self):
            async def forever():
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(True)
                    raise

            self.io_loop.add_callback(forever)
            # Give the task time to start before the test ends.
            self.io_loop.call_later(0.01, self.stop)
            self.wait()

    assert run_case(Case, "test_leak").wasSuccessful()
    assert cancelled == [True]


def test_undecorated_generators_and_return_values_are_errors():
    class Case(AsyncTestCase):
        def test_generator(self):
            yield

        def test_value(self):
            return 3

    assert "should be decorated" in run_case(Case, "test_generator").errors[0][1]
    assert "Return value from test method ignored" in run_case(Case, "test_value").errors[0][1]


def test_gen_test_runs_generator_and_native_tests():
    class Case(AsyncTestCase):
        @gen_test
        def test_generator(self):
            yield gen.moment

        @gen_test(timeout=5)
        async def test_native(self):
            await asyncio.sleep(0)

    assert run_case(Case, "test_generator").wasSuccessful()
    assert run_case(Case, "test_native").wasSuccessful()


def test_gen_test_timeout_points_at_the_waiting_line():
    class Case(AsyncTestCase):
        @gen_test(timeout=0.05)
        def test_slow(self):
            yield gen.sleep(5)

        @gen_test(timeout=0.05)
        async def test_slow_native(self):
            await gen.sleep(5)

    result = run_case(Case, "test_slow")
    assert "TimeoutError" in result.errors[0][1]
    assert "gen.sleep(5)" in result.errors[0][1]
    result = run_case(Case, "test_slow_native")
    assert "the test was waiting at" in result.errors[0][1]


def test_async_test_timeout_environment_variable():
    with mock.patch.dict(os.environ, {"ASYNC_TEST_TIMEOUT": "0.25"}):
        assert get_async_test_timeout() == 0.25
    with mock.patch.dict(os.environ, {"ASYNC_TEST_TIMEOUT": ""}):
        assert get_async_test_timeout() == 5


def test_expect_log_swallows_matches_and_requires_them():
    logger = logging.getLogger("squall.test_expect_log")
    with ExpectLog(logger, "expected") as expectation:
        logger.error("expected message", exc_info=(ValueError, ValueError(), None))
    assert expectation.matched and expectation.logged_stack
    with pytest.raises(Exception, match="did not get expected log message"):
        with ExpectLog(logger, "never"):
            pass
    with ExpectLog(logger, "never", required=False):
        pass


def test_expect_log_level_opens_logger_temporarily():
    logger = logging.getLogger("squall.test_expect_log_level")
    logger.setLevel(logging.WARNING)
    with ExpectLog(logger, "debug detail", level=logging.DEBUG):
        logger.debug("debug detail")
    assert logger.level == logging.WARNING


def test_bind_unused_port_returns_listening_socket():
    sock, port = bind_unused_port()
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.close()
    finally:
        sock.close()


def test_setup_with_context_manager_exits_on_cleanup():
    events = []

    class Manager:
        def __enter__(self):
            events.append("enter")
            return "value"

        def __exit__(self, *exc_info):
            events.append("exit")

    class Case(unittest.TestCase):
        def test(self):
            assert setup_with_context_manager(self, Manager()) == "value"

    assert run_case(Case, "test").wasSuccessful()
    assert events == ["enter", "exit"]


def test_https_default_certificate_exists():
    options = AsyncHTTPSTestCase.default_ssl_options()
    assert os.path.exists(options["certfile"]) and os.path.exists(options["keyfile"])


def test_timeout_traceback_formats():
    # The traceback of a gen_test timeout can be formatted (no broken frames).
    class Case(AsyncTestCase):
        @gen_test(timeout=0.01)
        def test_slow(self):
            yield gen.sleep(1)

    case = Case("test_slow")
    case.setUp()
    try:
        with pytest.raises(TimeoutError):
            try:
                case.test_slow()
            except TimeoutError:
                assert traceback.format_exc()
                raise
    finally:
        case.tearDown()


def test_task_ignoring_cancellation_fails_teardown_without_leaking_the_loop():
    loops = []

    class Case(AsyncTestCase):
        def test_stubborn(self):
            loops.append(self.io_loop)

            async def stubborn():
                for _ in range(1000):
                    try:
                        await asyncio.sleep(1)
                    except asyncio.CancelledError:
                        continue

            self.io_loop.add_callback(stubborn)
            self.io_loop.call_later(0.01, self.stop)
            self.wait()

    with mock.patch.dict(os.environ, {"ASYNC_TEST_TIMEOUT": "0.05"}):
        result = run_case(Case, "test_stubborn")
    assert not result.wasSuccessful()
    assert loops[0].asyncio_loop.is_closed()
