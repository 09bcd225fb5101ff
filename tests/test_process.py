import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from squall import process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix process model")


def run_script(source, timeout=60):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cpu_count_and_task_id_outside_workers():
    assert process.cpu_count() >= 1
    assert process.task_id() is None
    assert process.CalledProcessError is subprocess.CalledProcessError


def test_fork_processes_gives_each_worker_an_id_and_parent_exits_cleanly():
    result = run_script(
        """
        import os, signal, sys
        from squall.process import fork_processes, task_id
        signal.alarm(20)
        try:
            worker = fork_processes(3)
        except SystemExit as exit:
            print("parent exit", exit.code, task_id(), flush=True)
            raise
        assert worker == task_id()
        os.write(1, ("worker %d\\n" % worker).encode())
        os._exit(0)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines[:-1]) == ["worker 0", "worker 1", "worker 2"]
    assert lines[-1] == "parent exit 0 None"


def test_fork_processes_restarts_failed_workers_up_to_the_limit(tmp_path):
    marker = tmp_path / "crashed"
    result = run_script(
        f"""
        import os, signal
        from squall.process import fork_processes
        signal.alarm(20)
        worker = fork_processes(2, max_restarts=5)
        marker = {str(marker)!r} + str(worker)
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)  # the first run of each worker fails; the restart succeeds
        os.write(1, ("restarted %d\\n" % worker).encode())
        os._exit(0)
        """
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["restarted 0", "restarted 1"]

    result = run_script(
        """
        import os, signal
        from squall.process import fork_processes
        signal.alarm(20)
        try:
            fork_processes(1, max_restarts=2)
        except RuntimeError as error:
            print("parent:", error, flush=True)
            raise SystemExit(0)
        os._exit(1)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "parent: Too many child restarts" in result.stdout


def run_on_ioloop(coro_fn):
    from squall.ioloop import IOLoop

    async def main():
        try:
            return await asyncio.wait_for(coro_fn(), timeout=20)
        finally:
            process.Subprocess.uninitialize()

    loop = IOLoop(make_current=False)
    try:
        return loop.run_sync(main)
    finally:
        loop.close()


def test_exit_callback_reports_return_code():
    async def main():
        done = asyncio.get_running_loop().create_future()
        child = process.Subprocess([sys.executable, "-c", "raise SystemExit(3)"])
        child.set_exit_callback(done.set_result)
        assert await done == 3
        assert child.returncode == 3

    run_on_ioloop(main)


def test_wait_for_exit_raises_or_returns():
    async def main():
        failing = process.Subprocess([sys.executable, "-c", "raise SystemExit(1)"])
        with pytest.raises(subprocess.CalledProcessError) as info:
            await failing.wait_for_exit()
        assert info.value.returncode == 1
        failing_again = process.Subprocess([sys.executable, "-c", "raise SystemExit(1)"])
        assert await failing_again.wait_for_exit(raise_error=False) == 1
        fine = process.Subprocess([sys.executable, "-c", "pass"])
        assert await fine.wait_for_exit() == 0

    run_on_ioloop(main)


def test_killed_child_reports_negative_signal():
    async def main():
        child = process.Subprocess([sys.executable, "-c", "import time; time.sleep(30)"])
        exited = child.wait_for_exit(raise_error=False)
        os.kill(child.pid, signal.SIGTERM)
        assert await exited == -signal.SIGTERM

    run_on_ioloop(main)


def test_popen_errors_propagate_without_leaking_pipes():
    async def main():
        before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        with pytest.raises(OSError):
            process.Subprocess(
                ["/nonexistent/program"],
                stdin=process.Subprocess.STREAM,
                stdout=process.Subprocess.STREAM,
            )
        if before is not None:
            assert len(os.listdir("/proc/self/fd")) == before

    run_on_ioloop(main)


def test_stream_pipes_talk_to_the_child():
    pytest.importorskip("squall.iostream")

    async def main():
        child = process.Subprocess(
            [
                sys.executable,
                "-u",
                "-c",
                "import sys; sys.stdout.write(sys.stdin.readline().upper())",
            ],
            stdin=process.Subprocess.STREAM,
            stdout=process.Subprocess.STREAM,
            stderr=subprocess.DEVNULL,
        )
        await child.stdin.write(b"hello\n")
        child.stdin.close()
        assert await child.stdout.read_until_close() == b"HELLO\n"
        child.stdout.close()
        assert await child.wait_for_exit() == 0

    run_on_ioloop(main)


def test_stderr_stream():
    pytest.importorskip("squall.iostream")

    async def main():
        child = process.Subprocess(
            [sys.executable, "-u", "-c", "import sys; sys.stderr.write('oops\\n')"],
            stderr=process.Subprocess.STREAM,
        )
        assert await child.stderr.read_until(b"\n") == b"oops\n"
        child.stderr.close()
        assert await child.wait_for_exit() == 0

    run_on_ioloop(main)


def test_exit_is_noticed_without_pidfd_support(monkeypatch):
    # Where pidfds are unavailable (macOS, old kernels) a waiting thread reports the exit.
    monkeypatch.setattr(process, "_open_pidfd", lambda pid: None)

    async def main():
        child = process.Subprocess([sys.executable, "-c", "raise SystemExit(4)"])
        assert await child.wait_for_exit(raise_error=False) == 4
        assert child.returncode == 4

    run_on_ioloop(main)


def test_exit_callback_after_the_child_already_exited():
    async def main():
        child = process.Subprocess([sys.executable, "-c", "pass"])
        child.proc.wait()
        done = asyncio.get_running_loop().create_future()
        child.set_exit_callback(done.set_result)
        assert await done == 0

    run_on_ioloop(main)
