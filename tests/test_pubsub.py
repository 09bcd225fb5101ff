"""squall.pubsub against a real redis-server (started per test on a free port), and memory://.

Faults are real: the server is killed with SIGKILL and restarted, stopped with SIGSTOP
(half-open), its subscriber connections are killed with CLIENT KILL. Every wait is
bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _servers import REDIS_SERVER, RedisServer, missing_reason

import squall.pubsub
from squall.pubsub import Gap, Hub, Message, PublishError, PubSubError, SubscriberOverflow, id_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_MISSING = missing_reason(REDIS_SERVER, "redis-server")
needs_redis = pytest.mark.skipif(REDIS_MISSING is not None, reason=REDIS_MISSING or "")

# quick health checks and back-off so that faults are noticed within a second or two
FAST: dict[str, Any] = dict(
    health_interval=0.3, health_timeout=0.5, backoff_base=0.05, backoff_max=0.4, timeout=1.0
)
ALL = ["memory", "redis", "stream"]
SERVERS = ["redis", "stream"]


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[RedisServer]:
    if REDIS_MISSING:
        pytest.skip(REDIS_MISSING)
    server = RedisServer(str(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.close()


def _url(kind: str, server: RedisServer | None) -> str:
    if kind == "memory":
        return "memory://"
    assert server is not None
    return server.url if kind == "redis" else server.stream_url


@pytest.fixture
def make_hub(request: Any, io_loop: Any) -> Iterator[Callable[..., Hub]]:
    """make_hub(kind, **options): a hub for the backend (memory:// hubs are shared, as
    two processes would share a Redis); all are closed after the test."""
    hubs: list[Hub] = []
    memory: list[Hub] = []

    def make(kind: str, **options: Any) -> Hub:
        if kind == "memory":
            if not memory:
                memory.append(squall.pubsub.connect("memory://"))
                hubs.append(memory[0])
            return memory[0]
        server = request.getfixturevalue("redis_server")
        hub = squall.pubsub.connect(_url(kind, server), **{**FAST, **options})
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        io_loop.run_sync(hub.close, timeout=10)


async def take(sub: squall.pubsub.Subscription, count: int, seconds: float = 10.0) -> list[Any]:
    """The next ``count`` events (fewer if ``seconds`` pass first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    events: list[Any] = []
    while len(events) < count:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        event = await sub.get(remaining)
        if event is None:
            break
        events.append(event)
    return events


async def wait_until(predicate: Callable[[], bool], seconds: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def publish_retrying(hub: Hub, channel: str, data: str, tries: int = 5) -> str:
    """What an application does with PublishError: try again (a message that was not sent
    cannot arrive twice)."""
    for _ in range(tries - 1):
        try:
            return await hub.publish(channel, data)
        except PublishError:
            await asyncio.sleep(0.1)
    return await hub.publish(channel, data)


def logged(caplog: Any, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records
               if record.name == "squall.pubsub")


def bodies(events: list[Any]) -> list[Any]:
    return [event.data for event in events if isinstance(event, Message)]


# ---------------------------------------------------------------------------- every backend


@pytest.mark.parametrize("kind", ALL)
async def test_data_comes_back_as_its_type_in_order(kind: str, make_hub: Any) -> None:
    publisher, subscriber = make_hub(kind), make_hub(kind)
    async with subscriber.subscribe("room") as sub:
        sent = ["hello", b"\x00\xffbytes", "ünïcødé\nline", b"", ""]
        ids = [await publisher.publish("room", data) for data in sent]
        events = await take(sub, len(sent))
    assert [event.data for event in events] == sent
    assert [type(event.data) for event in events] == [type(data) for data in sent]
    assert [event.id for event in events] == ids
    assert [id_key(i) for i in ids] == sorted(id_key(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(event.channel == "room" for event in events)


@pytest.mark.parametrize("kind", ALL)
async def test_channels_are_separate_and_fan_out_to_every_subscriber(
    kind: str, make_hub: Any
) -> None:
    publisher, subscriber = make_hub(kind), make_hub(kind)
    async with subscriber.subscribe("a") as a1, subscriber.subscribe("a") as a2, \
            subscriber.subscribe("b") as b:
        for number in range(5):
            await publisher.publish("a", f"a{number}")
            await publisher.publish("b", f"b{number}")
        assert bodies(await take(a1, 5)) == [f"a{n}" for n in range(5)]
        assert bodies(await take(a2, 5)) == [f"a{n}" for n in range(5)]
        assert bodies(await take(b, 5)) == [f"b{n}" for n in range(5)]
        assert a1.pending == a2.pending == b.pending == 0


@pytest.mark.parametrize("kind", ALL)
async def test_slow_consumer_drops_oldest_and_reports_the_gap(kind: str, make_hub: Any) -> None:
    publisher, subscriber = make_hub(kind), make_hub(kind)
    async with subscriber.subscribe("room", max_queue=10) as sub:
        first = await publisher.publish("room", "first")
        assert bodies(await take(sub, 1)) == ["first"]
        for number in range(100):
            await publisher.publish("room", str(number))
        last = await publisher.publish("room", "last")
        await wait_until(lambda: sub.last_id == last or sub._queue and
                         sub._queue[-1].id == last)  # type: ignore[union-attr]
        assert sub.pending <= 11  # bounded: ten messages and the gap marker
        events = await take(sub, 11)
    assert events[0] == Gap("room", first, "overflow")
    assert bodies(events[1:]) == [str(n) for n in range(91, 100)] + ["last"]


@pytest.mark.parametrize("kind", ALL)
async def test_slow_consumer_can_be_disconnected_instead(kind: str, make_hub: Any) -> None:
    publisher, subscriber = make_hub(kind), make_hub(kind)
    async with subscriber.subscribe("room", max_queue=5, overflow="disconnect") as sub:
        for number in range(6):
            await publisher.publish("room", str(number))
        await wait_until(lambda: sub.closed)
        with pytest.raises(SubscriberOverflow):
            async for _ in sub:
                pass
        assert subscriber._subscribers("room") == set()


async def test_memory_history_and_late_joiner() -> None:
    hub = squall.pubsub.connect("memory://?maxlen=50")
    ids = [await hub.publish("room", str(n)) for n in range(60)]
    assert [m.data for m in await hub.history("room", limit=3)] == ["57", "58", "59"]
    assert [m.data for m in await hub.history("room", since=ids[20], limit=2)] == ["21", "22"]
    async with hub.subscribe("room", since=ids[55]) as sub:
        assert bodies(await take(sub, 4)) == ["56", "57", "58", "59"]
    async with hub.subscribe("room", since=ids[0]) as sub:  # older than what is held
        events = await take(sub, 2)
        assert events[0] == Gap("room", ids[0], "trimmed")
        assert events[1].data == "10"
    await hub.close()
    with pytest.raises(PubSubError):
        await hub.publish("room", "after close")


def test_bad_urls_and_options() -> None:
    with pytest.raises(ValueError, match="unknown squall.pubsub URL"):
        squall.pubsub.connect("amqp://localhost")
    with pytest.raises(ValueError, match="unknown squall.pubsub option"):
        squall.pubsub.connect("redis://localhost?bogus=1")
    with pytest.raises(ValueError):
        squall.pubsub.connect("redis://localhost", health_timeout="soon")
    hub = squall.pubsub.connect("memory://")
    with pytest.raises(ValueError):
        hub.subscribe("room", max_queue=0)
    with pytest.raises(ValueError):
        hub.subscribe("room", overflow="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hub.subscribe("")
    assert id_key("17") == (17, 0) and id_key("1700-3") == (1700, 3)
    with pytest.raises(ValueError):
        id_key("yesterday")


def test_squall_imports_without_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import squall.web, squall.pubsub\n"
        "hub = squall.pubsub.connect('memory://')\n"
        "try:\n"
        "    squall.pubsub.connect('redis://127.0.0.1')\n"
        "except squall.pubsub.PubSubError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "pip install 'squall[redis]'" in out


# ------------------------------------------------------------------------------ Redis backends


@needs_redis
@pytest.mark.squall_timeout(20)
async def test_stream_history_and_late_joiner_during_publishing(make_hub: Any) -> None:
    publisher, subscriber = make_hub("stream"), make_hub("stream")
    ids = [await publisher.publish("room", str(n)) for n in range(10)]
    assert [m.data for m in await publisher.history("room", limit=3)] == ["7", "8", "9"]
    assert [m.data for m in await publisher.history("room", since=ids[2], limit=2)] == ["3", "4"]
    assert await publisher.history("nothing-here") == []

    async def more() -> None:
        for n in range(10, 60):
            await publisher.publish("room", str(n))

    busy = asyncio.ensure_future(more())  # the replay overlaps the live feed
    async with subscriber.subscribe("room", since=ids[4]) as sub:
        events = await take(sub, 55)
    await busy
    assert bodies(events) == [str(n) for n in range(5, 60)]  # nothing lost, nothing twice


@needs_redis
async def test_redis_history_is_empty_and_since_reports_missed(make_hub: Any) -> None:
    publisher, subscriber = make_hub("redis"), make_hub("redis")
    ids = [await publisher.publish("room", str(n)) for n in range(3)]
    assert ids == [f"{ids[0].split('-')[0]}-{n}" for n in (1, 2, 3)]
    assert await publisher.history("room") == []
    async with subscriber.subscribe("room", since=ids[0]) as sub:
        assert await take(sub, 1) == [Gap("room", ids[0], "missed")]
        live = await publisher.publish("room", "live")
        assert bodies(await take(sub, 1)) == ["live"]
    async with subscriber.subscribe("room", since=live) as sub:  # up to date: no gap
        await publisher.publish("room", "next")
        assert bodies(await take(sub, 1)) == ["next"]


@needs_redis
@pytest.mark.parametrize("kind", SERVERS)
async def test_one_connection_for_all_subscriptions(
    kind: str, make_hub: Any, redis_server: RedisServer
) -> None:
    import redis.asyncio

    publisher, subscriber = make_hub(kind), make_hub(kind)
    subs = [subscriber.subscribe(f"channel{n % 5}") for n in range(20)]
    for sub in subs:
        await sub.start()
    for n in range(5):
        await publisher.publish(f"channel{n}", f"to {n}")
    for number, sub in enumerate(subs):
        assert bodies(await take(sub, 1)) == [f"to {number % 5}"]
    admin = redis.asyncio.Redis(port=redis_server.port)
    try:
        clients = await admin.client_list()
    finally:
        await admin.aclose()
    listeners = [c for c in clients if c.get("name") == "squall-pubsub-listener"]
    assert len(listeners) == 1, clients  # the publishing hub subscribes to nothing
    if kind == "stream":
        assert listeners[0]["cmd"] in ("xread", "client|id"), listeners
    for sub in subs:
        sub.close()


@needs_redis
@pytest.mark.parametrize("kind", SERVERS)
async def test_concurrent_publishes_are_pipelined_on_one_connection_in_order(
    kind: str, make_hub: Any, redis_server: RedisServer
) -> None:
    publisher, subscriber = make_hub(kind), make_hub(kind)
    async with subscriber.subscribe("room", max_queue=1000) as sub:
        ids = await asyncio.gather(*(publisher.publish("room", str(n)) for n in range(500)))
        assert [id_key(i) for i in ids] == sorted(id_key(i) for i in ids)  # as queued
        events = await take(sub, 500)
    assert bodies(events) == [str(n) for n in range(500)]
    assert [event.id for event in events] == list(ids)
    clients = redis_server.command("CLIENT", "LIST")
    text = clients.decode() if isinstance(clients, bytes) else str(clients)
    assert text.count("name=squall-pubsub ") == 2  # one command connection per hub


@needs_redis
@pytest.mark.squall_timeout(20)
async def test_stream_reader_is_woken_when_a_channel_is_added(make_hub: Any) -> None:
    # the reader blocks for up to 30 s: only CLIENT UNBLOCK gets the new stream read sooner
    publisher, subscriber = make_hub("stream"), make_hub("stream", health_interval=30)
    async with subscriber.subscribe("first") as first:
        await publisher.publish("first", "one")
        assert bodies(await take(first, 1)) == ["one"]
        await asyncio.sleep(0.2)  # the reader is blocked in XREAD now
        async with subscriber.subscribe("second") as second:
            await publisher.publish("second", "two")
            assert bodies(await take(second, 1, seconds=8)) == ["two"]


@needs_redis
@pytest.mark.parametrize("kind", SERVERS)
async def test_publish_while_redis_is_down_raises(
    kind: str, make_hub: Any, redis_server: RedisServer
) -> None:
    hub = make_hub(kind)
    await hub.publish("room", "while up")
    redis_server.kill()
    with pytest.raises(PublishError, match="not sent") as refused:
        await hub.publish("room", "while down")
    assert not refused.value.maybe_sent
    assert issubclass(PublishError, PubSubError)
    redis_server.start()
    await publish_retrying(hub, "room", "back")


async def _broadcast_through_restart(
    kind: str, make_hub: Any, redis_server: RedisServer, caplog: Any
) -> tuple[list[Any], list[tuple[int, str]], int]:
    """Publishes 0, 1, 2, ... every few ms while Redis is killed and restarted; returns
    the events received, the (number, id) of every publish that succeeded, and the
    first number published after the subscriber was back."""
    caplog.set_level(logging.INFO, logger="squall.pubsub")
    publisher, subscriber = make_hub(kind), make_hub(kind)
    sent: list[tuple[int, str]] = []
    events: list[Any] = []
    counter = 0
    stop = asyncio.Event()

    async def publish_forever() -> None:
        nonlocal counter
        while not stop.is_set() and counter < 5000:
            try:
                sent.append((counter, await publisher.publish("room", str(counter))))
            except PublishError:
                pass
            counter += 1
            await asyncio.sleep(0.005)

    async with subscriber.subscribe("room") as sub:
        async def receive() -> None:
            async for event in sub:
                events.append(event)

        receiving = asyncio.ensure_future(receive())
        publishing = asyncio.ensure_future(publish_forever())
        await wait_until(lambda: len(events) >= 20)
        redis_server.kill()
        await asyncio.sleep(0.3)
        redis_server.start()
        await wait_until(lambda: logged(caplog, "reconnected") >= 1)
        back = counter
        await wait_until(lambda: any(n >= back + 20 for n, _ in sent))
        stop.set()
        await publishing
        last_number = sent[-1][0]
        await wait_until(lambda: bool(bodies(events)) and bodies(events)[-1] == str(last_number))
        receiving.cancel()
    assert logged(caplog, "lost the connection") >= 1
    return events, sent, back


@needs_redis
@pytest.mark.squall_timeout(40)
async def test_redis_killed_and_restarted_mid_broadcast(
    make_hub: Any, redis_server: RedisServer, caplog: Any
) -> None:
    events, sent, back = await _broadcast_through_restart("redis", make_hub, redis_server, caplog)
    numbers = [int(data) for data in bodies(events)]
    assert numbers == sorted(set(numbers))  # in order, nothing twice
    gaps = [event for event in events if isinstance(event, Gap)]
    assert gaps and gaps[0].reason == "reset"  # the restarted server lost the counter
    before_gap = events.index(gaps[0])
    assert gaps[0].last_id == events[before_gap - 1].id
    # at most once: what was published once the subscriber was back all arrived
    assert {n for n, _ in sent if n >= back} <= set(numbers)


@needs_redis
@pytest.mark.squall_timeout(40)
async def test_stream_killed_and_restarted_mid_broadcast_replays_from_cursor(
    make_hub: Any, redis_server: RedisServer, caplog: Any
) -> None:
    events, sent, _ = await _broadcast_through_restart("stream", make_hub, redis_server, caplog)
    numbers = [int(data) for data in bodies(events)]
    assert numbers == sorted(set(numbers))
    gaps = [event for event in events if isinstance(event, Gap)]
    # the server restarted without persistence: the stream it had is gone, and said so
    assert [gap.reason for gap in gaps] == ["reset"]
    at = events.index(gaps[0])
    after_reset = [int(e.data) for e in events[at + 1:] if isinstance(e, Message)]
    # everything the new server accepted arrived, also what was published before the
    # subscriber was back (replayed from the cursor)
    first_after = after_reset[0]
    assert [n for n, _ in sent if n >= first_after] == after_reset
    assert {n for n, _ in sent if n < first_after} - set(numbers) <= set(
        range(numbers[at - 1] + 1 if at else 0, first_after)
    )


@needs_redis
@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.squall_timeout(40)
async def test_half_open_server_is_detected_by_the_health_check(
    kind: str, make_hub: Any, redis_server: RedisServer, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="squall.pubsub")
    publisher, subscriber = make_hub(kind), make_hub(kind)
    async with subscriber.subscribe("room") as sub:
        first = await publisher.publish("room", "before")
        assert bodies(await take(sub, 1)) == ["before"]
        redis_server.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            await wait_until(lambda: logged(caplog, "lost the connection") >= 1)
            with pytest.raises(PublishError) as refused:
                await publisher.publish("room", "while stopped")
            assert refused.value.maybe_sent  # a stopped server can still deliver it later
        finally:
            redis_server.resume()
        await wait_until(lambda: logged(caplog, "reconnected") >= 1)
        await publish_retrying(publisher, "room", "after")
        # the message sent while stopped may have reached the server when it woke: Pub/Sub
        # may have lost it (a gap), the stream hands it over
        events: list[Any] = []
        for _ in range(5):
            if "after" in bodies(events):
                break
            events += await take(sub, 1)
        assert bodies(events)[-1] == "after"
        if kind == "stream":
            assert bodies(events) in (["after"], ["while stopped", "after"])
            assert not any(isinstance(e, Gap) for e in events)
        assert sub.last_id is not None and id_key(sub.last_id) > id_key(first)


@needs_redis
@pytest.mark.squall_timeout(30)
async def test_client_kill_type_pubsub(
    make_hub: Any, redis_server: RedisServer, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="squall.pubsub")
    publisher, subscriber = make_hub("redis"), make_hub("redis")
    async with subscriber.subscribe("room") as sub:
        await publisher.publish("room", "before")
        assert bodies(await take(sub, 1)) == ["before"]
        assert redis_server.command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        await wait_until(lambda: logged(caplog, "reconnected") >= 1)
        await publisher.publish("room", "after")
        events = await take(sub, 1)
        assert bodies(events) == ["after"], (events, caplog.text)  # nothing published meanwhile


@needs_redis
@pytest.mark.squall_timeout(30)
async def test_stream_reader_killed_replays_what_it_missed(
    make_hub: Any, redis_server: RedisServer, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="squall.pubsub")
    publisher, subscriber = make_hub("stream"), make_hub("stream")
    async with subscriber.subscribe("room") as sub:
        await publisher.publish("room", "before")
        assert bodies(await take(sub, 1)) == ["before"]
        # every normal client, the reader and both command connections included
        assert redis_server.command("CLIENT", "KILL", "TYPE", "normal") >= 1  # type: ignore[operator]
        for number in range(5):  # while the reader is away
            await publish_retrying(publisher, "room", str(number))
        events = await take(sub, 5)
        assert bodies(events) == [str(n) for n in range(5)]
        await wait_until(lambda: logged(caplog, "lost the connection") >= 1)


@needs_redis
@pytest.mark.squall_timeout(30)
async def test_stream_reset_and_trim_are_reported_to_a_late_joiner(
    make_hub: Any, redis_server: RedisServer
) -> None:
    hub = make_hub("stream", maxlen=5)
    ids = [await hub.publish("room", str(n)) for n in range(400)]
    held = await hub.history("room", limit=1000)
    assert 5 <= len(held) < 400  # MAXLEN ~ trims whole nodes
    async with hub.subscribe("room", since=ids[0]) as sub:
        events = await take(sub, 2)
        assert events[0] == Gap("room", ids[0], "trimmed")
        assert events[1] == held[0]
    cursor = ids[-1]
    redis_server.restart()  # no persistence: the stream is gone
    late = make_hub("stream")
    async with late.subscribe("room", since=cursor) as sub:
        assert await take(sub, 1) == [Gap("room", cursor, "reset")]
        new = await late.publish("room", "fresh")
        assert await take(sub, 1) == [Message("room", new, "fresh")]


@needs_redis
@pytest.mark.squall_timeout(60)
async def test_two_processes_through_a_stream(redis_server: RedisServer) -> None:
    code = (
        "import asyncio, sys, squall.pubsub\n"
        "async def main():\n"
        "    hub = squall.pubsub.connect(sys.argv[1])\n"
        "    for n in range(200):\n"
        "        await hub.publish('room', str(n))\n"
        "    await hub.close()\n"
        "asyncio.run(main())\n"
    )
    hub = squall.pubsub.connect(redis_server.stream_url, **FAST)
    try:
        async with hub.subscribe("room") as sub:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, redis_server.stream_url, cwd=ROOT
            )
            events = await take(sub, 200, seconds=40)
            assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await hub.close()
    assert bodies(events) == [str(n) for n in range(200)]
