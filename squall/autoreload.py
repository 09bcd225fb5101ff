"""Restart the process when one of its source files changes.

In code, :func:`start` polls the files of every loaded module (plus those passed to
:func:`watch`) from the running IOLoop and re-executes the process with its original
command line when one changes; ``Application(debug=True)`` does this for you.

From the command line, ``python -m squall.autoreload`` wraps a program that does not use
squall's IOLoop (or that may fail at start-up, e.g. on a syntax error)::

    python -m squall.autoreload -m module.to.run [args...]
    python -m squall.autoreload path/to/script.py [args...]

The program runs in-process; when it exits, the wrapper waits for a source change and then
runs it again (``--until-success`` stops after a clean exit instead).

Reloading replaces the process with ``exec``, so state is lost; it is meant for development,
not production. It is disabled in workers created by
:func:`squall.process.fork_processes`.
"""

from __future__ import annotations

import os
import sys

# Run as ``python squall/autoreload.py``, this file's directory would head sys.path and its
# siblings (squall/locale.py, squall/platform, ...) would shadow standard modules.
if (
    __name__ == "__main__"
    and __spec__ is None
    and sys.path
    and sys.path[0] == os.path.dirname(os.path.abspath(__file__))
):
    del sys.path[0]

import asyncio  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import runpy  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402
import weakref  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["add_reload_hook", "main", "start", "wait", "watch"]

_USAGE = """\
Usage:
  python -m squall.autoreload [--until-success] -m module.to.run [args...]
  python -m squall.autoreload [--until-success] path/to/script.py [args...]
"""

_watched_files: set[str] = set()
_reload_hooks: list[Callable[[], None]] = []
_reload_attempted = False
# The poller autoreload runs on each event loop it was started on; weak so closed test
# loops do not pile up.
_started_loops: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_warned_about_workers = False


def start(check_time: int = 500) -> None:
    """Check for changed source files every ``check_time`` milliseconds on the current IOLoop.

    Calling it again for the same loop does nothing.
    """
    from squall.ioloop import IOLoop, PeriodicCallback

    io_loop = IOLoop.current()
    assert io_loop is not None
    if _started_loops.get(io_loop) is not None:
        return
    if _started_loops:
        from squall.log import gen_log

        gen_log.warning("squall.autoreload started on more than one IOLoop in this process")
    # Each loop's poller remembers the times it first saw, so a change is one that
    # happened after it started.
    first_seen: dict[str, float] = {}
    poller = PeriodicCallback(lambda: _check_for_changes(first_seen), check_time)
    _started_loops[io_loop] = poller
    poller.start()


def wait() -> None:
    """Block until a watched file changes, then restart the process.

    For the end of scripts that do not otherwise run an event loop, such as test runners.
    """

    async def wait_forever() -> None:
        start()
        await asyncio.get_running_loop().create_future()

    asyncio.run(wait_forever())


def watch(filename: str) -> None:
    """Also restart when ``filename`` changes (loaded modules are watched already)."""
    _watched_files.add(filename)


def add_reload_hook(fn: Callable[[], None]) -> None:
    """Call ``fn()`` just before reloading (e.g. to flush or close resources).

    File descriptors opened by Python are closed on exec anyway (they are not inheritable).
    """
    _reload_hooks.append(fn)


def _check_for_changes(modify_times: dict[str, float]) -> None:
    global _warned_about_workers
    if _reload_attempted:
        # A reload failed (exec error); do not retry on every tick.
        return
    from squall import process

    if process.task_id() is not None:
        # In a fork_processes worker a reload would replace just this worker, which the
        # parent would not understand; only the parent should reload.
        if not _warned_about_workers:
            _warned_about_workers = True
            from squall.log import gen_log

            gen_log.warning("autoreload is disabled in processes started by fork_processes")
        return
    for path in _source_files():
        _check_file(modify_times, path)


def _source_files() -> Iterator[str]:
    """The source of every loaded module (``.py`` for a ``.pyc``), then the watched files."""
    # A snapshot: imports made by a reload hook or another thread must not break the walk.
    # Some objects in sys.modules are not modules (lazy proxies); they are skipped.
    modules = [m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)]
    for module in modules:
        path = getattr(module, "__file__", None)
        if path:
            yield path[:-1] if path.endswith((".pyc", ".pyo")) else path
    yield from list(_watched_files)


def _check_file(modify_times: dict[str, float], path: str) -> None:
    try:
        modified = os.stat(path).st_mtime
    except OSError:
        return
    previous = modify_times.setdefault(path, modified)
    if previous != modified:
        from squall.log import gen_log

        gen_log.info("%s modified; restarting server", path)
        _reload()


def _restart_command() -> list[str]:
    """The interpreter and arguments that started this process."""
    original = getattr(sys, "orig_argv", None)
    if original:
        return [sys.executable, *original[1:]]
    # Embedded interpreters may lack orig_argv: rebuild it from __main__'s spec.
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name != "__main__":
        return [sys.executable, "-m", spec.name, *sys.argv[1:]]
    return [sys.executable, *sys.argv]


def _reload() -> None:
    """Re-execute the process with the command line it was started with."""
    global _reload_attempted
    _reload_attempted = True
    for hook in _reload_hooks:
        hook()
    for stream in (sys.stdout, sys.stderr):
        # exec discards anything still sitting in Python's buffers.
        try:
            stream.flush()
        except Exception:
            pass
    if hasattr(signal, "setitimer"):
        # A pending interval timer survives exec and would signal the new program.
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
    command = _restart_command()
    if sys.platform == "win32":
        # Windows has no exec that keeps the process id: start a new process and leave.
        subprocess.Popen(command)
        os._exit(0)
    try:
        os.execv(sys.executable, command)
    except OSError:
        # exec can fail in multi-threaded processes on some systems; fall back to a child
        # process that takes over.
        os.spawnv(os.P_NOWAIT, sys.executable, command)
        os._exit(0)


def _watch_traceback_files(error: BaseException) -> None:
    # After a crash, a fix to any file in the traceback (or the one with the syntax error)
    # should trigger a rerun, even if that module never finished importing.
    for frame in traceback.extract_tb(error.__traceback__):
        watch(frame.filename)
    if isinstance(error, SyntaxError) and error.filename:
        watch(error.filename)


def main() -> None:
    """Command-line entry point: run a module or script, rerunning it when files change.

    See the module documentation for the usage.
    """
    arguments = sys.argv[1:]
    until_success = False
    module: str | None = None
    script: str | None = None
    while arguments:
        argument = arguments[0]
        if argument == "--until-success":
            until_success = True
            arguments.pop(0)
        elif argument == "-m":
            if len(arguments) < 2:
                break
            module = arguments[1]
            arguments = arguments[2:]
            break
        elif argument.startswith("-"):
            sys.stderr.write(f"{_USAGE}\nunknown option: {argument}\n")
            sys.exit(2)
        else:
            script = argument
            arguments = arguments[1:]
            break
    if module is None and script is None:
        sys.stderr.write(f"Either -m or a path must be specified\n{_USAGE}")
        sys.exit(1)

    from squall.log import gen_log

    wrapper_argv = sys.argv
    target = module if module is not None else script
    assert target is not None
    sys.argv = [target, *arguments]
    clean_exit = False
    try:
        if module is not None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exit:
        clean_exit = exit.code in (None, 0)
        gen_log.info("Script exited with status %s", exit.code)
    except Exception as error:
        gen_log.warning("Script exited with uncaught exception", exc_info=True)
        _watch_traceback_files(error)
    else:
        clean_exit = True
        gen_log.info("Script exited normally")
    sys.argv = wrapper_argv

    if module is not None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and os.path.exists(spec.origin):
            watch(spec.origin)
    elif script is not None and os.path.isfile(script):
        watch(script)
    if until_success and clean_exit:
        return
    wait()


if __name__ == "__main__":
    # This copy of the module runs as __main__; the program being wrapped imports the
    # module under its real name and must share its state (reload hooks, watched files),
    # so hand over to that copy.
    _own_name = __spec__.name if __spec__ is not None else "squall.autoreload"
    importlib.import_module(_own_name).main()
