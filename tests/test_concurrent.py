import asyncio
from concurrent import futures

import pytest

from squall.concurrent import (
    DummyExecutor,
    Future,
    chain_future,
    future_add_done_callback,
    future_set_exc_info,
    future_set_exception_unless_cancelled,
    future_set_result_unless_cancelled,
    is_future,
    run_on_executor,
)


def test_future_is_asyncio_future_and_is_future_accepts_both_kinds():
    assert Future is asyncio.Future
    assert is_future(futures.Future())
    assert not is_future(object())


def test_set_result_unless_cancelled_ignores_cancelled(new_ioloop):
    async def main():
        cancelled: Future[int] = Future()
        cancelled.cancel()
        future_set_result_unless_cancelled(cancelled, 1)
        assert cancelled.cancelled()

    new_ioloop.run_sync(main)


def test_set_exception_on_cancelled_future_is_logged(new_ioloop, caplog):
    async def main():
        cancelled: Future[int] = Future()
        cancelled.cancel()
        future_set_exception_unless_cancelled(cancelled, RuntimeError("late"))

    new_ioloop.run_sync(main)
    assert "Exception after Future was cancelled" in caplog.text


def test_future_set_exc_info_requires_an_exception(new_ioloop):
    async def main():
        with pytest.raises(Exception, match="no exception"):
            future_set_exc_info(Future(), (None, None, None))

    new_ioloop.run_sync(main)


def test_chain_future_copies_result_exception_and_cancellation(new_ioloop):
    async def main():
        first: Future[int] = Future()
        second: Future[int] = Future()
        chain_future(first, second)
        first.set_result(7)
        assert await second == 7

        failing: Future[int] = Future()
        target: Future[int] = Future()
        chain_future(failing, target)
        failing.set_exception(KeyError("x"))
        with pytest.raises(KeyError):
            await target

        cancelled: Future[int] = Future()
        target2: Future[int] = Future()
        chain_future(cancelled, target2)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await target2

    new_ioloop.run_sync(main)


def test_chain_future_from_concurrent_future(new_ioloop):
    async def main():
        source: futures.Future[int] = futures.Future()
        target: Future[int] = Future()
        chain_future(source, target)
        source.set_result(3)
        return await target

    assert new_ioloop.run_sync(main) == 3


def test_future_add_done_callback_runs_now_when_done(new_ioloop):
    async def main():
        done: Future[int] = Future()
        done.set_result(1)
        seen = []
        future_add_done_callback(done, seen.append)
        assert seen == [done]

    new_ioloop.run_sync(main)


def test_run_on_executor_forms(new_ioloop):
    class Worker:
        def __init__(self):
            self.executor = futures.ThreadPoolExecutor(1)
            self.other = DummyExecutor()

        @run_on_executor
        def plain(self, x):
            return x * 2

        @run_on_executor(executor="other")
        def named(self, x):
            return x + 1

    worker = Worker()

    async def main():
        return await worker.plain(2), await worker.named(2)

    try:
        assert new_ioloop.run_sync(main) == (4, 3)
    finally:
        worker.executor.shutdown()


def test_dummy_executor_captures_exceptions():
    result = DummyExecutor().submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        result.result()
