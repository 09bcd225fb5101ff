"""Real servers for the tests: redis-server and nginx, started on free loopback ports.

In CI (the CI environment variable set) a missing server program is a failure; elsewhere
the tests that need it skip with the reason (as tests/test_chat_browser.py does for
Chromium).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

from examples.chat.cluster import nginx_config

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def missing_reason(program: str, package: str) -> str | None:
    if os.path.exists(program):
        return None
    reason = f"no {os.path.basename(program)} at {program} (apt-get install {package})"
    if os.environ.get("CI"):
        raise RuntimeError(f"these tests must run in CI: {reason}")
    return reason


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, seconds: float = 20.0, process: subprocess.Popen | None = None) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


class RedisServer:
    """A non-persistent redis-server on 127.0.0.1 that a test can kill, stop and restart."""

    def __init__(self, directory: str, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"redis+stream://127.0.0.1:{self.port}"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.directory,
                "--loglevel", "warning", "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until it answers, not just accepts
            with contextlib.suppress(OSError, redis.RedisError):
                if self.command("PING") is True:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def command(self, *args: str) -> object:
        """Runs one command with redis-py's blocking client; returns its answer."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                             socket_connect_timeout=2)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def kill(self) -> None:
        """kill -9, then wait until it is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


class Nginx:
    """Debian's nginx in the foreground, as the current user, in front of ``backends``
    (ports), configured as ``python -m examples.chat.cluster`` does it: the cookie
    ``backend=<index>`` pins a client to one of them."""

    def __init__(self, directory: str, backends: list[int]) -> None:
        self.directory = directory
        self.port = free_port()
        self.config = os.path.join(directory, "nginx.conf")
        with open(self.config, "w") as out:
            out.write(nginx_config(directory, self.port, backends))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:

        self.process = subprocess.Popen(
            [NGINX, "-p", self.directory, "-c", self.config, "-e", os.path.join(self.directory, "error.log")],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
