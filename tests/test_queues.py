import asyncio
from datetime import timedelta

import pytest

from squall import queues


def run(coro_fn):
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=10))


def test_maxsize_validation():
    with pytest.raises(TypeError):
        queues.Queue(maxsize=None)
    with pytest.raises(ValueError):
        queues.Queue(maxsize=-1)


def test_fifo_order_and_nowait_errors():
    async def main():
        queue = queues.Queue(maxsize=2)
        assert queue.empty() and not queue.full() and queue.maxsize == 2
        with pytest.raises(queues.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(1)
        queue.put_nowait(3)
        assert queue.full() and queue.qsize() == 2
        with pytest.raises(queues.QueueFull):
            queue.put_nowait(2)
        assert [queue.get_nowait(), queue.get_nowait()] == [1, 3]

    run(main)


def test_put_waits_for_room_and_get_waits_for_item():
    async def main():
        queue = queues.Queue(maxsize=1)
        assert queue.put(0).done()
        blocked_put = queue.put(1)
        assert not blocked_put.done()
        assert await queue.get() == 0
        assert blocked_put.done()
        assert await queue.get() == 1
        pending_get = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        assert not pending_get.done()
        await queue.put(7)
        assert await pending_get == 7

    run(main)


def test_timeouts_raise_and_expired_waiters_are_swept():
    async def main():
        queue = queues.Queue(maxsize=1)
        queue.put_nowait(0)
        timed_puts = [queue.put(i, timedelta(seconds=0.01)) for i in range(5)]
        final_put = queue.put(99)
        await asyncio.sleep(0.05)
        for put in timed_puts:
            with pytest.raises(TimeoutError):
                put.result()
        assert len(queue._putters) == 6
        assert queue.get_nowait() == 0
        # The expired putters were dropped; the live one got in.
        assert final_put.done() and len(queue._putters) == 0
        assert queue.get_nowait() == 99
        with pytest.raises(TimeoutError):
            await queue.get(timeout=timedelta(seconds=0))
        with pytest.raises(TimeoutError):
            await queue.get(timeout=0)

    run(main)


def test_cancelled_getter_does_not_swallow_an_item():
    async def main():
        queue = queues.Queue()
        cancelled = asyncio.ensure_future(queue.get())
        live = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        queue.put_nowait("item")
        assert await live == "item"

    run(main)


def test_join_waits_for_task_done():
    async def main():
        queue = queues.Queue()
        await queue.join()
        with pytest.raises(ValueError):
            queue.task_done()
        queue.put_nowait(1)
        joined = asyncio.ensure_future(queue.join())
        await queue.get()
        await asyncio.sleep(0)
        assert not joined.done()
        queue.task_done()
        await joined
        queue.put_nowait(2)
        with pytest.raises(TimeoutError):
            await queue.join(timeout=timedelta(seconds=0.01))

    run(main)


def test_producer_consumer_with_async_for():
    async def main():
        queue = queues.Queue(maxsize=3)
        seen = []

        async def consumer():
            async for item in queue:
                seen.append(item)
                queue.task_done()

        task = asyncio.ensure_future(consumer())
        for item in range(10):
            await queue.put(item)
        await queue.join()
        task.cancel()
        assert seen == list(range(10))

    run(main)


def test_priority_and_lifo_ordering_with_blocked_putters():
    async def main():
        priority = queues.PriorityQueue(maxsize=2)
        priority.put_nowait((1, "a"))
        priority.put_nowait((0, "b"))
        priority.put((3, "c"))
        priority.put((2, "d"))
        got = [
            priority.get_nowait(),
            await priority.get(),
            priority.get_nowait(),
            await priority.get(),
        ]
        assert got == [(0, "b"), (1, "a"), (2, "d"), (3, "c")]

        lifo = queues.LifoQueue(maxsize=2)
        lifo.put_nowait(1)
        lifo.put_nowait(0)
        lifo.put(3)
        lifo.put(2)
        got = [lifo.get_nowait(), await lifo.get(), lifo.get_nowait(), await lifo.get()]
        assert got == [3, 2, 0, 1]

    run(main)


def test_float_maxsize_is_a_real_limit():
    async def main():
        queue = queues.Queue(maxsize=1.3)
        queue.put_nowait(0)
        queue.put_nowait(1)
        assert queue.full()
        with pytest.raises(queues.QueueFull):
            queue.put_nowait(2)

    run(main)


def test_repr_and_str_describe_state():
    async def main():
        queue = queues.Queue(maxsize=1)
        assert hex(id(queue)) in repr(queue) and hex(id(queue)) not in str(queue)
        queue.get()
        assert "getters[1]" in str(queue) and str(queue).startswith("<Queue maxsize=1")
        queue.put(None)
        queue.put(None)
        queue.put(None)
        text = repr(queue)
        assert "getters" not in text and "putters[1]" in text and "tasks=2" in text

    run(main)
