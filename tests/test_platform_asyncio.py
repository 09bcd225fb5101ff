import asyncio
import os
import subprocess
import sys
import warnings

import pytest

from squall.ioloop import IOLoop
from squall.platform.asyncio import (
    AddThreadSelectorEventLoop,
    AsyncIOLoop,
    AsyncIOMainLoop,
    SelectorThread,
    to_asyncio_future,
    to_tornado_future,
)


def loop_class_in_subprocess(env_value):
    env = dict(os.environ)
    env.pop("SQUALL_NO_UVLOOP", None)
    if env_value is not None:
        env["SQUALL_NO_UVLOOP"] = env_value
    code = "import asyncio, squall.ioloop; print(type(asyncio.new_event_loop()).__module__)"
    output = subprocess.check_output([sys.executable, "-c", code], env=env, text=True)
    return output.strip()


def test_uvloop_policy_follows_environment_variable():
    pytest.importorskip("uvloop")
    assert loop_class_in_subprocess(None).startswith("uvloop")
    assert loop_class_in_subprocess("0").startswith("uvloop")
    assert loop_class_in_subprocess("1").startswith("asyncio")


def test_ioloop_classes():
    loop = IOLoop(make_current=False)
    try:
        assert isinstance(loop, AsyncIOLoop)
    finally:
        loop.close()

    async def main():
        return IOLoop.current()

    assert isinstance(asyncio.run(main()), AsyncIOMainLoop)


def test_closed_asyncio_loops_are_forgotten():
    before = len(IOLoop._ioloop_for_asyncio)
    for _ in range(5):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0))
        loop.call_soon(IOLoop.current)
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()
    assert len(IOLoop._ioloop_for_asyncio) - before <= 1
    for _ in range(5):
        AsyncIOLoop(make_current=False).close()
    assert len(IOLoop._ioloop_for_asyncio) - before <= 1


def test_future_adapters(new_ioloop):
    async def value():
        return 3

    async def main():
        converted = to_asyncio_future(value())
        assert isinstance(converted, asyncio.Future)
        assert to_tornado_future(converted) is converted
        return await converted

    assert new_ioloop.run_sync(main) == 3


def test_any_thread_policy_is_deprecated_but_available():
    import squall.platform.asyncio as platform_asyncio

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy_class = platform_asyncio.AnyThreadEventLoopPolicy
    assert caught and caught[0].category is DeprecationWarning
    assert issubclass(policy_class, asyncio.AbstractEventLoopPolicy)


def test_selector_thread_reports_readable_fd_on_loop_thread():
    import socket

    loop = asyncio.new_event_loop()
    selector = SelectorThread(loop)
    left, right = socket.socketpair()
    try:
        got = loop.create_future()
        selector.add_reader(left.fileno(), lambda: got.done() or got.set_result(left.recv(8)))
        right.send(b"ping")
        assert loop.run_until_complete(asyncio.wait_for(got, 5)) == b"ping"
        assert selector.remove_reader(left.fileno())
    finally:
        selector.close()
        selector.close()
        loop.close()
        left.close()
        right.close()
    assert selector._waker_r.fileno() == -1


def test_add_thread_selector_loop_delegates_and_closes_idempotently():
    real = asyncio.new_event_loop()
    wrapped = AddThreadSelectorEventLoop(real)
    assert wrapped.time() == pytest.approx(real.time(), abs=1)
    wrapped.close()
    wrapped.close()
    assert real.is_closed()


def test_importing_any_squall_module_selects_uvloop_unless_disabled() -> None:
    import subprocess
    import sys

    probe = (
        "import squall.web, asyncio\n"
        "async def main():\n"
        "    print(type(asyncio.get_running_loop()).__module__)\n"
        "asyncio.run(main())\n"
    )
    try:
        import uvloop  # noqa: F401
    except ImportError:
        expected_default = "asyncio"
    else:
        expected_default = "uvloop"
    for env, expected in (({}, expected_default), ({"SQUALL_NO_UVLOOP": "1"}, "asyncio")):
        import os

        output = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "SQUALL_NO_UVLOOP": "", **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert output.strip().startswith(expected), (env, output)
