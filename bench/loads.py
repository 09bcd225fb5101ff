"""Load clients the benchmark runs in their own process: ``python -m bench.loads KIND ...``.

- ``idle PORT COUNT``: open COUNT keep-alive connections, make one request on each, print
  ``held`` and keep them open until stdin closes.
- ``client FRAMEWORK URL COUNT``: COUNT sequential GETs with FRAMEWORK's AsyncHTTPClient,
  prints the elapsed seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import resource
import sys
import time


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def hold_idle_connections(port: int, count: int) -> None:
    request = b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writers.append(writer)
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for writer in writers:
        writer.close()


async def sequential_fetches(framework: str, url: str, count: int) -> None:
    httpclient = importlib.import_module(f"{framework}.httpclient")
    client = httpclient.AsyncHTTPClient()
    await client.fetch(url)  # warm-up: resolver, first connection
    started = time.perf_counter()
    for _ in range(count):
        response = await client.fetch(url)
        assert response.code == 200
    print(f"{time.perf_counter() - started:.6f}", flush=True)


def main() -> None:
    raise_open_file_limit()
    kind = sys.argv[1]
    if kind == "idle":
        asyncio.run(hold_idle_connections(int(sys.argv[2]), int(sys.argv[3])))
    elif kind == "client":
        framework = sys.argv[2]
        importlib.import_module(f"{framework}.httpclient")  # squall installs its loop first
        asyncio.run(sequential_fetches(framework, sys.argv[3], int(sys.argv[4])))
    else:
        raise SystemExit(f"unknown load {kind!r}")


if __name__ == "__main__":
    main()
