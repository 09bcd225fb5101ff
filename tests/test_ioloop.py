import asyncio
import datetime
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest

from squall import gen
from squall.ioloop import IOLoop, PeriodicCallback


def test_one_ioloop_per_asyncio_loop():
    async def main():
        return IOLoop.current(), IOLoop.current()

    first, second = asyncio.run(main())
    assert first is second
    assert type(first).__name__ == "AsyncIOMainLoop"


def test_explicit_asyncio_loop_cannot_be_wrapped_twice():
    asyncio_loop = asyncio.new_event_loop()
    loop = IOLoop(asyncio_loop=asyncio_loop, make_current=False)
    try:
        assert loop.asyncio_loop is asyncio_loop
        with pytest.raises(RuntimeError):
            IOLoop(asyncio_loop=asyncio_loop, make_current=False)
    finally:
        loop.close()


def test_current_is_the_running_loop_only_while_running(new_ioloop):
    seen = []
    new_ioloop.add_callback(lambda: seen.append(IOLoop.current()))
    new_ioloop.add_callback(new_ioloop.stop)
    new_ioloop.start()
    assert seen == [new_ioloop]


def test_add_callback_from_another_thread_wakes_the_loop(new_ioloop):
    def worker():
        new_ioloop.add_callback(new_ioloop.stop)

    new_ioloop.add_callback(lambda: threading.Thread(target=worker).start())
    new_ioloop.start()


def test_add_callback_after_close_is_dropped():
    loop = IOLoop(make_current=False)
    loop.close()
    loop.add_callback(lambda: None)


def test_callback_exceptions_are_logged_not_raised(new_ioloop, caplog):
    async def failing_coroutine():
        raise ValueError("from coroutine")

    new_ioloop.add_callback(lambda: 1 / 0)
    new_ioloop.spawn_callback(failing_coroutine)
    deadline = new_ioloop.time() + 10

    def stop_once_both_logged() -> None:
        # (no fixed delay: a loaded machine may take a while to run both)
        if caplog.text.count("Exception in callback") >= 2 or new_ioloop.time() > deadline:
            new_ioloop.stop()
        else:
            new_ioloop.call_later(0.01, stop_once_both_logged)

    new_ioloop.add_callback(stop_once_both_logged)
    new_ioloop.start()
    assert caplog.text.count("Exception in callback") == 2


def test_timeouts_run_with_arguments_and_can_be_removed(new_ioloop):
    results = []
    new_ioloop.add_timeout(new_ioloop.time(), results.append, 1)
    new_ioloop.add_timeout(datetime.timedelta(seconds=0), results.append, 2)
    new_ioloop.call_at(new_ioloop.time(), results.append, 3)
    new_ioloop.call_later(0, results.append, 4)
    removed = new_ioloop.call_later(0, results.append, 5)
    new_ioloop.remove_timeout(removed)
    new_ioloop.call_later(0.01, new_ioloop.stop)
    new_ioloop.start()
    assert sorted(results) == [1, 2, 3, 4]
    new_ioloop.remove_timeout(removed)  # removing twice is harmless
    with pytest.raises(TypeError):
        new_ioloop.add_timeout("soon", lambda: None)  # type: ignore[arg-type]


def test_handlers_report_events_and_accept_file_objects(new_ioloop):
    left, right = socket.socketpair()
    received = []

    def on_readable(fd, events):
        received.append((fd, events))
        fd.recv(16)
        new_ioloop.stop()

    try:
        new_ioloop.add_handler(left, on_readable, IOLoop.READ)
        with pytest.raises(ValueError):
            new_ioloop.add_handler(left.fileno(), on_readable, IOLoop.READ)
        right.send(b"x")
        new_ioloop.start()
        assert received == [(left, IOLoop.READ)]
        new_ioloop.update_handler(left, IOLoop.WRITE)
        written = []

        def on_writable(fd, events):
            written.append(events)
            new_ioloop.remove_handler(fd)
            new_ioloop.stop()

        new_ioloop.remove_handler(left)
        new_ioloop.add_handler(left, on_writable, IOLoop.WRITE)
        new_ioloop.start()
        assert written == [IOLoop.WRITE]
        new_ioloop.remove_handler(left)  # unknown fd: no error
    finally:
        left.close()
        right.close()


def test_close_all_fds_closes_registered_objects():
    loop = IOLoop(make_current=False)
    left, right = socket.socketpair()
    loop.add_handler(left, lambda fd, events: None, IOLoop.READ)
    loop.close(all_fds=True)
    right.close()
    assert left.fileno() == -1


def test_run_sync_results_errors_and_timeout(new_ioloop):
    @gen.coroutine
    def later():
        yield gen.moment
        return 42

    assert new_ioloop.run_sync(later) == 42
    with pytest.raises(ZeroDivisionError):
        new_ioloop.run_sync(lambda: 1 / 0)
    with pytest.raises(gen.BadYieldError):
        new_ioloop.run_sync(lambda: 42)
    with pytest.raises(TimeoutError):
        new_ioloop.run_sync(lambda: asyncio.sleep(5), timeout=0.01)
    # A timed-out operation finishing later must not disturb a later run.
    assert new_ioloop.run_sync(later) == 42


def test_run_sync_reports_loop_stopped_early(new_ioloop):
    async def stop_then_wait():
        IOLoop.current().stop()
        await asyncio.sleep(5)

    with pytest.raises(RuntimeError, match="Event loop stopped"):
        new_ioloop.run_sync(stop_then_wait)


def test_start_inside_running_loop_raises(new_ioloop):
    outcome = []

    def nested():
        try:
            new_ioloop.start()
        except RuntimeError:
            outcome.append("raised")
        new_ioloop.stop()

    new_ioloop.add_callback(nested)
    new_ioloop.start()
    assert outcome == ["raised"]


def test_add_future_with_concurrent_future(new_ioloop):
    with ThreadPoolExecutor(1) as pool:
        seen = []

        def done(future):
            seen.append(future.result())
            new_ioloop.stop()

        new_ioloop.add_future(pool.submit(lambda: 7), done)
        new_ioloop.start()
    assert seen == [7]


def test_run_in_executor_and_default_executor(new_ioloop):
    calls = []

    class CountingExecutor(ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            calls.append(fn)
            return super().submit(fn, *args, **kwargs)

    executor = CountingExecutor(1)

    async def main():
        loop = IOLoop.current()
        first = await loop.run_in_executor(None, time.monotonic)
        loop.set_default_executor(executor)
        await loop.run_in_executor(None, lambda: None)
        return first

    try:
        assert isinstance(new_ioloop.run_sync(main), float)
        assert len(calls) == 1
    finally:
        executor.shutdown()


def simulate(callback, durations):
    callback._next_timeout = 1000
    now = 1000
    calls = []
    for duration in durations:
        callback._update_next(now)
        calls.append(callback._next_timeout)
        now = callback._next_timeout + duration
    return calls


def test_periodic_callback_schedule_skips_missed_slots_and_ignores_clock_jumps():
    callback = PeriodicCallback(lambda: None, 10000)
    assert simulate(callback, [0, 0, 10, 25, 0]) == [1010, 1020, 1030, 1050, 1080]
    assert simulate(callback, [-2, -3, 0]) == [1010, 1020, 1030]


def test_periodic_callback_jitter_and_timedelta():
    callback = PeriodicCallback(lambda: None, 10000, jitter=0.5)
    with mock.patch("random.random", side_effect=[1, 0]):
        assert simulate(callback, [0, 0]) == [1012.5, 1020]
    assert PeriodicCallback(lambda: None, datetime.timedelta(seconds=2)).callback_time == 2000
    with pytest.raises(ValueError):
        PeriodicCallback(lambda: None, 0)


def test_periodic_callback_waits_for_async_callbacks(new_ioloop):
    counts = [0, 0]

    async def tick():
        counts[0] += 1
        await asyncio.sleep(0.005)
        counts[1] += 1
        if counts[1] == 3:
            periodic.stop()
            new_ioloop.stop()

    periodic = PeriodicCallback(tick, 1)

    new_ioloop.add_callback(periodic.start)
    new_ioloop.call_later(5, new_ioloop.stop)
    new_ioloop.start()
    assert counts == [3, 3]
    assert not periodic.is_running()


@pytest.mark.parametrize("all_fds", [True, False])
def test_close_all_fds_closes_the_streams_still_open_on_the_loop(all_fds: bool) -> None:
    import socket as socket_module

    from squall.iostream import IOStream
    from squall.tcpserver import TCPServer

    accepted: list[IOStream] = []

    class Keep(TCPServer):
        def handle_stream(self, stream: IOStream, address: object) -> None:
            accepted.append(stream)

    loop = IOLoop(make_current=False)
    listener = socket_module.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    async def connect() -> IOStream:
        server = Keep()
        server.add_socket(listener)
        client = IOStream(socket_module.socket())
        await client.connect(("127.0.0.1", port))
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        server.stop()
        return client

    client = loop.run_sync(connect)
    if all_fds:
        loop.close(all_fds=True)  # Tornado closes every descriptor its streams registered
        assert client.closed() and accepted[0].closed()
    else:
        assert not client.closed()
        loop.run_sync(lambda: (client.close(), accepted[0].close(), asyncio.sleep(0))[-1])
        loop.close()
