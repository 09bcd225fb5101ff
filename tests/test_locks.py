import asyncio
from datetime import timedelta

import pytest

from squall import locks


def run(coro_fn):
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=10))


def test_condition_notify_wakes_waiters_in_order():
    async def main():
        condition = locks.Condition()
        woken = []
        waits = [asyncio.ensure_future(condition.wait()) for _ in range(4)]
        for index, waiter in enumerate(waits):
            waiter.add_done_callback(lambda f, i=index: woken.append(i))
        condition.notify(1)
        await asyncio.sleep(0)
        assert woken == [0]
        condition.notify(2)
        await asyncio.sleep(0)
        assert woken == [0, 1, 2]
        condition.notify_all()
        await asyncio.sleep(0)
        assert woken == [0, 1, 2, 3]
        assert all(w.result() is True for w in waits)

    run(main)


def test_condition_wait_timeout_resolves_false_and_is_not_counted_by_notify():
    async def main():
        condition = locks.Condition()
        first = condition.wait()
        timed = condition.wait(timedelta(seconds=0.01))
        third = condition.wait()
        assert (await timed) is False
        condition.notify(2)
        assert (await first) is True
        assert (await third) is True

    run(main)


def test_condition_repr_mentions_waiters():
    async def main():
        condition = locks.Condition()
        assert "waiters" not in repr(condition)
        condition.wait()
        assert "waiters[1]" in repr(condition)

    run(main)


def test_condition_timed_out_waiters_are_swept():
    async def main():
        condition = locks.Condition()
        for _ in range(101):
            condition.wait(timedelta(seconds=0.001))
        survivor = condition.wait()
        assert len(condition._waiters) == 102
        await asyncio.sleep(0.05)
        assert len(condition._waiters) == 1
        condition.notify()
        assert await survivor is True

    run(main)


def test_condition_absolute_deadline_in_loop_time():
    async def main():
        condition = locks.Condition()
        loop = asyncio.get_running_loop()
        assert (await condition.wait(loop.time() + 0.01)) is False

    run(main)


def test_event_set_wakes_all_and_later_waits_are_immediate():
    async def main():
        event = locks.Event()
        assert "clear" in repr(event)
        before = event.wait()
        event.clear()
        also_before = event.wait()
        event.set()
        event.set()
        assert event.is_set() and "set" in repr(event)
        assert before.done() and also_before.done()
        assert event.wait().done()
        event.clear()
        assert not event.wait().done()

    run(main)


def test_event_wait_timeout_raises_and_leaves_event_usable():
    async def main():
        event = locks.Event()
        with pytest.raises(TimeoutError):
            await event.wait(timedelta(seconds=0.01))
        assert not event._waiters
        asyncio.get_running_loop().call_soon(event.set)
        await event.wait(timedelta(seconds=5))

    run(main)


def test_semaphore_counts_and_serves_waiters_fifo():
    async def main():
        semaphore = locks.Semaphore(2)
        assert "unlocked,value:2" in repr(semaphore)
        assert semaphore.acquire().done()
        assert semaphore.acquire().done()
        assert "locked" in repr(semaphore)
        first = semaphore.acquire()
        second = semaphore.acquire()
        assert "waiters" in repr(semaphore)
        semaphore.release()
        assert first.done() and not second.done()
        semaphore.release()
        assert second.done()

    run(main)


def test_semaphore_rejects_negative_value_and_allows_unbounded_release():
    with pytest.raises(ValueError):
        locks.Semaphore(-1)

    async def main():
        semaphore = locks.Semaphore(0)
        semaphore.release()
        semaphore.release()
        assert semaphore.acquire().done() and semaphore.acquire().done()
        assert not semaphore.acquire().done()

    run(main)


def test_semaphore_acquire_timeout_does_not_consume_value():
    async def main():
        semaphore = locks.Semaphore(0)
        with pytest.raises(TimeoutError):
            await semaphore.acquire(timedelta(seconds=0.01))
        semaphore.release()
        assert semaphore.acquire().done()

    run(main)


def test_semaphore_context_managers_release():
    async def main():
        semaphore = locks.Semaphore()
        async with semaphore as entered:
            assert entered is None
            assert not semaphore.acquire().done()
        # The pending acquire above took the released slot.
        assert "locked" in repr(semaphore)
        semaphore.release()
        with await semaphore.acquire():
            pass
        assert semaphore.acquire().done()

    run(main)


def test_semaphore_plain_with_is_an_error():
    with pytest.raises(RuntimeError):
        with locks.Semaphore():
            pass
    with pytest.raises(RuntimeError):
        with locks.Lock():
            pass


def test_cancelled_async_with_gives_the_slot_back():
    async def main():
        lock = locks.Lock()
        await lock.acquire()

        async def contender():
            async with lock:
                pass

        task = asyncio.ensure_future(contender())
        await asyncio.sleep(0)
        lock.release()  # hands the lock to the contender...
        task.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await task
        assert lock.acquire().done()

    run(main)


def test_bounded_semaphore_refuses_extra_release():
    async def main():
        semaphore = locks.BoundedSemaphore()
        with pytest.raises(ValueError):
            semaphore.release()
        await semaphore.acquire()
        waiter = semaphore.acquire()
        semaphore.release()
        assert waiter.done()
        semaphore.release()
        with pytest.raises(ValueError):
            semaphore.release()

    run(main)


def test_lock_is_fifo_and_release_of_unlocked_lock_fails():
    async def main():
        lock = locks.Lock()
        with pytest.raises(RuntimeError):
            lock.release()
        history = []

        async def worker(index):
            async with lock:
                history.append(index)
                await asyncio.sleep(0)

        await lock.acquire()
        tasks = [asyncio.ensure_future(worker(i)) for i in range(5)]
        await asyncio.sleep(0)
        assert history == []
        assert "locked" in repr(lock)
        lock.release()
        await asyncio.gather(*tasks)
        assert history == [0, 1, 2, 3, 4]

    run(main)


def test_lock_acquire_timeout_leaves_lock_held():
    async def main():
        lock = locks.Lock()
        await lock.acquire()
        with pytest.raises(TimeoutError):
            await lock.acquire(timeout=timedelta(seconds=0.01))
        assert not lock.acquire().done()

    run(main)
