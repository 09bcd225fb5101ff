"""WebSocket echo throughput: squall.websocket against tornado.websocket, in one run.

    .venv/bin/python bench/bench_websocket.py [--connections 50] [--seconds 3] [--rounds 3]

Each echo server (squall's, then Tornado's) runs in a subprocess of its own, pinned to one
core when the machine has two or more; the load generator runs here, on another core.
Every connection sends a 32-byte masked text frame and waits for its echo before sending
the next. Each round is bounded in time (``--seconds``) and in messages
(``--max-messages``); the best round of each server is reported as messages per second,
followed by the ratio squall / Tornado.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = b"0123456789abcdef0123456789ABCDEF"  # 32 bytes
MASK = b"\x37\xfa\x21\x3d"
# One masked client frame, built once: FIN + text, mask bit + length, key, masked payload.
FRAME = (
    bytes((0x81, 0x80 | len(PAYLOAD)))
    + MASK
    + bytes(byte ^ MASK[index % 4] for index, byte in enumerate(PAYLOAD))
)
ECHO = bytes((0x81, len(PAYLOAD))) + PAYLOAD  # what an unmasked echo looks like
HANDSHAKE = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


# --- servers (run in subprocesses) -----------------------------------------------------------


def serve(kind: str, port: int) -> None:
    # Each library runs on the loop it picks by itself: squall installs uvloop's policy on
    # import when uvloop is there, Tornado uses asyncio's default loop.
    if kind == "squall":
        sys.path.insert(0, ROOT)
        from squall import httpserver, web, websocket
    else:
        from tornado import httpserver, web, websocket  # type: ignore[no-redef]

    class EchoHandler(websocket.WebSocketHandler):  # type: ignore[name-defined,misc]
        def on_message(self, message: str | bytes) -> None:
            self.write_message(message, binary=isinstance(message, bytes))

    async def start() -> None:
        app = web.Application([("/echo", EchoHandler)])
        server = httpserver.HTTPServer(app)
        server.listen(port, "127.0.0.1")
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(start())


# --- load generator --------------------------------------------------------------------------


class EchoClient(asyncio.Protocol):
    """Sends one frame, waits for its echo, repeats; counts echoes while measuring."""

    def __init__(self, state: LoadState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.upgraded = False
        self.pending = 0
        self.checked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence no isinstance check.
        writable: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = writable
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writable.write(HANDSHAKE)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {self.head[:80]!r}")
            data = self.head[end + 4 :]
            self.upgraded = True
            self.state.upgraded += 1
            assert self.transport is not None
            self.transport.write(FRAME)
            if not data:
                return
        if not self.checked and len(data) >= len(ECHO):
            if data[: len(ECHO)] != ECHO:
                raise RuntimeError(f"bad echo {data[:40]!r}")
            self.checked = True
        self.pending += len(data)
        state = self.state
        frame_size = len(ECHO)
        while self.pending >= frame_size:
            self.pending -= frame_size
            if state.measuring:
                state.count += 1
            if state.stopped:
                continue
            assert self.transport is not None
            self.transport.write(FRAME)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.lost += 1


class LoadState:
    def __init__(self) -> None:
        self.count = 0
        self.upgraded = 0
        self.lost = 0
        self.measuring = False
        self.stopped = False


async def run_load(
    port: int, connections: int, seconds: float, warmup: float, max_messages: int
) -> float:
    loop = asyncio.get_running_loop()
    state = LoadState()
    transports = []
    for _ in range(connections):
        transport, _ = await loop.create_connection(lambda: EchoClient(state), "127.0.0.1", port)
        transports.append(transport)
    deadline = time.monotonic() + 10
    while state.upgraded < connections:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {state.upgraded}/{connections} connections upgraded")
        await asyncio.sleep(0.01)
    await asyncio.sleep(warmup)
    state.measuring = True
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end and state.count < max_messages:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    state.measuring = False
    state.stopped = True
    count = state.count
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.05)
    if state.lost > connections:
        raise RuntimeError("connections were lost during the run")
    return count / elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(kind: str, server_core: int | None) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    if server_core is not None:
        os.sched_setaffinity(process.pid, {server_core})
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"{kind} server did not start")
    return process, port


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-messages", type=int, default=5_000_000)
    parser.add_argument("--serve", choices=["squall", "tornado"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[-1] if len(cores) >= 2 else None
    if server_core is not None:
        os.sched_setaffinity(0, set(cores[:-1]))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    results: dict[str, list[float]] = {"squall": [], "tornado": []}
    for _ in range(args.rounds):
        # Alternating rounds spreads background noise over both servers alike.
        for kind in ("squall", "tornado"):
            process, port = start_server(kind, server_core)
            try:
                rate = asyncio.run(
                    run_load(port, args.connections, args.seconds, args.warmup, args.max_messages)
                )
            finally:
                stop_server(process)
            results[kind].append(rate)
            print(f"  {kind:8} {rate:12,.0f} messages/s", flush=True)
    best = {kind: max(rates) for kind, rates in results.items()}
    print(
        f"WebSocket echo, {args.connections} connections, 32-byte text messages "
        f"(best of {args.rounds} rounds of {args.seconds:g} s):"
    )
    for kind, rate in best.items():
        print(f"  {kind:8} {rate:12,.0f} messages/s")
    print(f"  ratio squall/Tornado: {best['squall'] / best['tornado']:.2f}x")


if __name__ == "__main__":
    main()
