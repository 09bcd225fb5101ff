import asyncio
import contextvars
import datetime
import gc
import weakref

import pytest

from squall import gen
from squall.concurrent import Future

var: contextvars.ContextVar[int] = contextvars.ContextVar("var")


def test_coroutine_returns_future_with_result_and_return(new_ioloop):
    @gen.coroutine
    def early():
        return 1

    @gen.coroutine
    def legacy():
        yield gen.moment
        raise gen.Return(2)

    @gen.coroutine
    def combined():
        a = yield early()
        b = yield legacy()
        c = yield [early(), legacy()]
        d = yield {"x": early()}
        return a, b, c, d

    assert new_ioloop.run_sync(combined) == (1, 2, [1, 2], {"x": 1})
    assert gen.is_coroutine_function(early)


def test_coroutine_exceptions_are_set_on_future(new_ioloop):
    @gen.coroutine
    def failing():
        yield gen.moment
        raise KeyError("boom")

    @gen.coroutine
    def catcher():
        try:
            yield failing()
        except KeyError:
            return "caught"

    assert new_ioloop.run_sync(catcher) == "caught"


def test_cancelled_error_cancels_the_coroutine_future(new_ioloop):
    @gen.coroutine
    def cancelling():
        raise asyncio.CancelledError()

    async def main():
        future = cancelling()
        with pytest.raises(asyncio.CancelledError):
            await future
        return future.cancelled()

    assert new_ioloop.run_sync(main) is True


def test_yielding_unknown_object_raises_bad_yield(new_ioloop):
    @gen.coroutine
    def bad():
        yield 42

    with pytest.raises(gen.BadYieldError):
        new_ioloop.run_sync(bad)


def test_native_coroutines_and_gen_coroutines_interoperate(new_ioloop):
    @gen.coroutine
    def legacy():
        yield gen.moment
        return 5

    async def native():
        return await legacy() + 1

    @gen.coroutine
    def outer():
        value = yield native()
        return value

    assert new_ioloop.run_sync(outer) == 6


def test_context_is_kept_across_yields_and_into_first_task(new_ioloop):
    async def check():
        return var.get()

    @gen.coroutine
    def root():
        var.set(3)
        first = yield check()
        yield gen.moment
        return first, var.get()

    assert new_ioloop.run_sync(root) == (3, 3)


def test_finished_coroutine_frames_are_released_without_gc(new_ioloop):
    refs = []

    class Payload:
        pass

    @gen.coroutine
    def inner():
        payload = Payload()
        refs.append(weakref.ref(payload))
        yield gen.coroutine(lambda: None)()
        raise ValueError()

    @gen.coroutine
    def outer():
        try:
            yield inner()
        except ValueError:
            pass

    gc.disable()
    try:
        new_ioloop.run_sync(outer)
        assert refs[0]() is None
    finally:
        gc.enable()


def test_multi_errors_first_wins_and_quiet_exceptions(new_ioloop, caplog):
    async def fail(message):
        raise RuntimeError(message)

    async def main():
        with pytest.raises(RuntimeError, match="one"):
            await gen.multi([fail("one"), fail("two")])
        caplog.clear()
        with pytest.raises(RuntimeError):
            await gen.multi([fail("one"), fail("two")], quiet_exceptions=RuntimeError)
        assert "Multiple exceptions" not in caplog.text
        assert await gen.multi([]) == []
        assert await gen.multi({}) == {}

    new_ioloop.run_sync(main)


def test_multi_with_cancelled_child_raises_without_cancelling_itself(new_ioloop):
    async def main():
        child: Future[None] = Future()
        child.cancel()
        combined = gen.multi([child])
        with pytest.raises(asyncio.CancelledError):
            await combined
        return combined.cancelled()

    assert new_ioloop.run_sync(main) is False


def test_with_timeout_raises_and_passes_results(new_ioloop):
    async def main():
        with pytest.raises(gen.TimeoutError, match="slow"):
            await gen.with_timeout(datetime.timedelta(seconds=0.01), Future(), message="slow")
        with pytest.raises(TimeoutError, match="lazy"):
            await gen.with_timeout(new_ioloop.time() + 0.01, Future(), message=lambda: "lazy")
        done: Future[str] = Future()
        done.set_result("ok")
        return await gen.with_timeout(datetime.timedelta(seconds=60), done)

    assert new_ioloop.run_sync(main) == "ok"


def test_sleep_and_maybe_future(new_ioloop):
    async def main():
        assert await gen.sleep(0) is None
        wrapped = gen.maybe_future(4)
        assert await wrapped == 4
        return gen.maybe_future(wrapped) is wrapped

    assert new_ioloop.run_sync(main)


def test_wait_iterator_yields_in_completion_order_with_indices(new_ioloop):
    async def main():
        futures = [Future() for _ in range(3)]
        iterator = gen.WaitIterator(*futures)
        futures[2].set_result("c")
        futures[0].set_result("a")
        futures[1].set_exception(KeyError())
        seen = []
        while not iterator.done():
            try:
                seen.append((iterator.current_index, await iterator.next()))
            except KeyError:
                seen.append((iterator.current_index, "error"))
        return seen

    # current_index is read before next() resolves, so shift by one.
    assert [value for _, value in new_ioloop.run_sync(main)] == ["c", "a", "error"]


def test_wait_iterator_async_for_and_duplicates(new_ioloop):
    async def main():
        done: Future[int] = Future()
        done.set_result(1)
        keys = []
        async for result in gen.WaitIterator(a=done, b=done):
            keys.append(result)
        return keys

    assert new_ioloop.run_sync(main) == [1, 1]


def test_wait_iterator_rejects_args_and_kwargs_together():
    with pytest.raises(ValueError):
        gen.WaitIterator(1, a=2)


def test_convert_yielded_registration(new_ioloop):
    class Custom:
        pass

    @gen.convert_yielded.register(Custom)
    def _(value):
        future = Future()
        future.set_result("custom")
        return future

    @gen.coroutine
    def use():
        result = yield Custom()
        return result

    assert new_ioloop.run_sync(use) == "custom"
