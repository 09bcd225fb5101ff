"""Per-request Python cost without sockets: ``python -m bench.inproc [PATH] [COUNT] [--profile] [--asgi]``.

Feeds keep-alive requests straight into squall's HTTP/1 server connection with a
stand-in stream whose writes go nowhere, so what is timed is squall's own work per
request (parsing, routing, the handler, framing), free of wrk and kernel noise. It is
CPU time of this process: steadier than wall time on a busy machine. ``--asgi`` serves
the raw ASGI hello-world of ``bench.bench_asgi`` through ``ASGIServer`` instead, one
loop turn per request (the application runs in a task of its own).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from typing import Any


class NullStream:
    """The parts of IOStream the HTTP/1 server uses, writing into the void."""

    max_buffer_size = 100 * 1024 * 1024

    def __init__(self) -> None:
        self.handler: Any = None
        self.written = 0
        self.socket = None
        self._finished: asyncio.Future[None] | None = None

    def set_close_callback(self, callback: Any) -> None:
        pass

    def _set_data_handler(self, handler: Any) -> None:
        self.handler = handler

    def write(self, data: bytes) -> asyncio.Future[None]:
        # Like IOStream when the transport took every byte: one shared finished future.
        self.written += len(data)
        future = self._finished
        if future is None:
            future = self._finished = asyncio.get_running_loop().create_future()
            future.set_result(None)
        return future

    def closed(self) -> bool:
        return False

    def close(self) -> None:
        raise RuntimeError("connection closed unexpectedly")

    def _pause_reading(self) -> None:
        pass

    def _resume_reading(self) -> None:
        pass


async def run(path: str, count: int, profile: bool, asgi: bool) -> None:
    from squall.httpserver import HTTPServer

    if asgi:
        from bench.bench_asgi import app
        from squall.asgi import ASGIServer

        server: HTTPServer = ASGIServer(app, lifespan="off")
    else:
        from bench.servers import _application

        server = HTTPServer(_application("squall", "web"))
    stream = NullStream()
    server.handle_stream(stream, ("127.0.0.1", 40000))
    request = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n\r\n" % path.encode()
    feed = stream.handler

    async def feed_all(n: int) -> None:
        if not asgi:
            for _ in range(n):
                feed(request)
            return
        pause = asyncio.sleep
        for _ in range(n):
            feed(request)
            await pause(0)

    await feed_all(1000)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    start = time.process_time()
    await feed_all(count)
    elapsed = time.process_time() - start
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    print(f"/{path}: {elapsed / count * 1e6:.2f} us per request ({count / elapsed:.0f}/s)")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else "plain"
    count = int(args[1]) if len(args) > 1 else 20000
    import squall.web  # noqa: F401  (installs uvloop's policy first)

    asyncio.run(run(path, count, "--profile" in sys.argv, "--asgi" in sys.argv))


if __name__ == "__main__":
    main()
