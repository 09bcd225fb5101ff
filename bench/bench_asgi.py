"""Raw ASGI hello-world: squall's ASGIServer against uvicorn and granian, in one run.

``python -m bench.bench_asgi [--seconds 5] [--runs 3]``. Each server runs the same ASGI
application (``app`` below) on core 0 with its fastest settings (uvicorn: uvloop and
httptools, no access log; granian: one worker if it is installed); wrk drives it from core
1 with 64 keep-alive connections. The contenders take turns, run by run, and the medians
and the best runs (the least disturbed, on a shared machine) are printed with their ratios
to squall. ``--serve NAME PORT`` is how the servers start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench._harness import ROOT, WrkResult, free_port, median_result, pinned, run_wrk, wait_for_port

BODY = b"Hello, world!"
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI hello-world every contender serves."""
    if scope["type"] != "http":
        return  # (lifespan: none)
    await send(_START)
    await send(_BODY)


def _serve_squall(port: int) -> None:
    import asyncio

    from squall.asgi import serve

    asyncio.run(serve(app, port, lifespan="off"))


def _command(name: str, port: int) -> list[str]:
    python = sys.executable
    if name == "squall":
        return [python, "-m", "bench.bench_asgi", "--serve", "squall", str(port)]
    if name == "uvicorn":
        return [
            python, "-m", "uvicorn", "bench.bench_asgi:app", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--lifespan", "off",
        ]  # fmt: skip
    if name == "granian":
        return [
            python, "-m", "granian", "--interface", "asgi", "--port", str(port),
            "--workers", "1", "--no-ws", "--log-level", "warning", "bench.bench_asgi:app",
        ]  # fmt: skip
    raise ValueError(name)


def available() -> list[str]:
    names = ["squall", "uvicorn"]
    for module in ("uvicorn",):
        try:
            __import__(module)
        except ImportError:
            names.remove(module)
    try:
        import granian  # noqa: F401

        names.append("granian")
    except ImportError:
        pass
    return names


@contextmanager
def _running(name: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        pinned("0", _command(name, port)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve_squall(int(args.serve[1]))
        return
    if not shutil.which("wrk"):
        sys.exit("bench_asgi needs wrk (apt-get install wrk)")
    names = available()
    results: dict[str, list[WrkResult]] = {name: [] for name in names}
    for run in range(args.runs):
        for name in names:
            with _running(name) as port:
                run_wrk(f"http://127.0.0.1:{port}/", 1.0)  # warm-up
                result = run_wrk(f"http://127.0.0.1:{port}/", args.seconds)
            results[name].append(result)
            print(
                f"run {run + 1}: {name:8} {result.requests_per_second:10.1f} req/s "
                f"p99 {result.p99_ms:.2f} ms errors {result.errors}",
                flush=True,
            )
    medians = {name: median_result(r) for name, r in results.items()}
    best = {name: max(r.requests_per_second for r in runs) for name, runs in results.items()}
    base, base_best = medians["squall"].requests_per_second, best["squall"]
    print(
        f"\nraw ASGI hello-world, 64 connections, {args.runs} runs x {args.seconds:g} s, "
        f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    )
    print(
        f"{'server':10} {'median/s':>10} {'p99 ms':>8} {'squall/x':>9} {'best/s':>10} {'squall/x':>9}"
    )
    for name, result in medians.items():
        rate = result.requests_per_second
        print(
            f"{name:10} {rate:10.1f} {result.p99_ms:8.2f} {base / rate if rate else 0:8.2f}x "
            f"{best[name]:10.1f} {base_best / best[name] if best[name] else 0:8.2f}x"
        )
    if os.environ.get("SQUALL_NO_UVLOOP"):
        print("(squall ran on plain asyncio: SQUALL_NO_UVLOOP is set)")


if __name__ == "__main__":
    main()
