"""Running real ASGI servers (uvicorn, hypercorn, granian) as subprocesses for the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(server: str, target: str, port: int, *extra: str) -> list[str]:
    python = sys.executable
    if server == "uvicorn":
        return [
            python, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning",
            "--lifespan", "on", *extra,
        ]  # fmt: skip
    if server == "hypercorn":
        return [python, "-m", "hypercorn", target, "--bind", f"127.0.0.1:{port}", *extra]
    if server == "granian":
        return [
            python, "-m", "granian", "--interface", "asgi", "--port", str(port),
            "--workers", "1", "--log-level", "warning", *extra, target,
        ]  # fmt: skip
    raise ValueError(server)


@contextlib.contextmanager
def running(
    server: str, target: str, *extra: str, env: dict[str, str] | None = None
) -> Iterator[int]:
    """``server`` serving ``target`` (MODULE:ATTR from tests/) on a free port."""
    port = free_port()
    # (a file, not a pipe: a pipe nobody reads would stall a server that logs a lot)
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command(server, target, port, *extra),
        cwd=TESTS,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([TESTS, ROOT, os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"{server} did not start: {log.read().decode(errors='replace')}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
