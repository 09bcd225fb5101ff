"""Broadcast fan-out and pub/sub throughput: squall.pubsub against Tornado and websockets.

    .venv/bin/python bench/bench_pubsub.py [--sizes 1000,10000] [--broadcasts 15]

Fan-out: one server process holds N WebSocket subscribers (clients in other processes,
over loopback) and broadcasts one 64-byte message at a time; each client notes when the
message arrived, and the figure per broadcast is the time until the last subscriber had
it (p50 and p99 over the broadcasts). Contenders:

- ``squall hub, one subscription per socket``: every WebSocketHandler iterates its own
  ``hub.subscribe()`` (memory://); the broadcast is one ``hub.publish``.
- ``squall hub, one subscription + loop``: the chat's way: one subscription per process,
  a loop over ``write_message``.
- ``Tornado``: Tornado 6.6.1's loop over ``write_message``.
- ``websockets``: the websockets package's ``broadcast()``.

Memory per subscriber is the server's resident set after the N sockets opened, minus
before, over N. Throughput: messages per second from one process through Redis to a
subscriber in another (``redis://`` and ``redis+stream://``), publishing one at a time and
with 16 publishes in flight. The server runs on core 0, the clients on core 1. Writes
bench/results/pubsub.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "pubsub.md")
HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
PAYLOAD_SIZE = 64
CONTENDERS = {
    "squall-hub": "squall hub, one subscription per socket",
    "squall-loop": "squall hub, one subscription + loop",
    "tornado": "Tornado 6.6.1, loop over write_message",
    "websockets": "websockets, broadcast()",
}


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def payload(seq: int) -> str:
    text = f"{seq} {time.monotonic():.9f} "
    return text + "x" * (PAYLOAD_SIZE - len(text))


def pin(core: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
            os.sched_setaffinity(0, {core})


# --- servers (subprocesses) -------------------------------------------------------------------


def serve(kind: str, port: int, count: int, broadcasts: int, interval: float) -> None:
    pin(0)
    import gc

    sys.path.insert(0, ROOT)
    report: dict[str, Any] = {}
    if kind == "websockets":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif kind == "tornado":
        # Tornado on uvloop as well, so that the loop is the same for everyone
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def run_broadcasts(send: Any, connected: Any) -> None:
        deadline = time.monotonic() + 120
        while connected() < count:
            if time.monotonic() > deadline:
                print(json.dumps({"error": f"only {connected()} of {count} connected"}),
                      flush=True)
                return
            await asyncio.sleep(0.05)
        gc.collect()
        report["rss_after"] = rss_kib()
        print(json.dumps(report), flush=True)
        await asyncio.sleep(1.0)
        for seq in range(broadcasts):
            started = time.perf_counter()
            await send(payload(seq))
            report.setdefault("server_ms", []).append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(interval)
        print(json.dumps({"server_ms": report["server_ms"]}), flush=True)

    if kind == "websockets":
        from websockets.asyncio.server import broadcast
        from websockets.asyncio.server import serve as ws_serve

        clients: set[Any] = set()

        async def handler(connection: Any) -> None:
            clients.add(connection)
            try:
                await connection.wait_closed()
            finally:
                clients.discard(connection)

        async def main_websockets() -> None:
            gc.collect()
            report["rss_before"] = rss_kib()
            async with ws_serve(handler, "127.0.0.1", port, backlog=4096, compression=None,
                                ping_interval=None):
                print("ready", flush=True)

                async def send(text: str) -> None:
                    broadcast(clients, text)

                await run_broadcasts(send, lambda: len(clients))
                await asyncio.sleep(3600)

        asyncio.run(main_websockets())
        return

    if kind == "tornado":
        from tornado import httpserver, netutil, web, websocket
    else:
        import squall.pubsub
        from squall import httpserver, netutil, web, websocket  # type: ignore[no-redef]

    sockets: set[Any] = set()

    async def main_web() -> None:
        hub = None if kind == "tornado" else squall.pubsub.connect("memory://")

        class Loop(websocket.WebSocketHandler):  # type: ignore[misc,name-defined]
            def open(self) -> None:
                sockets.add(self)

            def on_close(self) -> None:
                sockets.discard(self)

        class PerSocket(websocket.WebSocketHandler):  # type: ignore[misc,name-defined]
            task: Any = None

            def open(self) -> None:
                self.subscription = hub.subscribe("b")  # type: ignore[union-attr]
                self.task = asyncio.ensure_future(self.follow())

            async def follow(self) -> None:
                async with self.subscription as sub:
                    sockets.add(self)
                    async for message in sub:
                        self.write_message(message.data)

            def on_close(self) -> None:
                sockets.discard(self)
                self.subscription.close()

        handler = PerSocket if kind == "squall-hub" else Loop
        app = web.Application([("/ws", handler)])
        server = httpserver.HTTPServer(app)
        server.add_sockets(netutil.bind_sockets(port, "127.0.0.1", backlog=4096))
        gc.collect()
        report["rss_before"] = rss_kib()
        print("ready", flush=True)

        if kind == "squall-loop":
            feed = hub.subscribe("b")  # type: ignore[union-attr]
            await feed.start()

            async def fan_out() -> None:
                async for message in feed:
                    for each in list(sockets):
                        each.write_message(message.data)

            asyncio.ensure_future(fan_out())

        async def send(text: str) -> None:
            if hub is not None:
                await hub.publish("b", text)
                await asyncio.sleep(0)  # lets the subscriptions' tasks run
            else:
                for each in list(sockets):
                    each.write_message(text)

        await run_broadcasts(send, lambda: len(sockets))
        await asyncio.sleep(3600)

    if kind == "tornado":
        asyncio.run(main_web())
    else:
        from squall.ioloop import IOLoop

        IOLoop(make_current=False).run_sync(main_web, None)


# --- clients (subprocesses) -------------------------------------------------------------------


class _Client(asyncio.Protocol):
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.buffer = b""
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        transport.write(HANDSHAKE)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer + data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(buffer[:80].decode("latin-1")))
                return
            self.upgraded = True
            buffer = buffer[end + 4:]
            self.opened.set_result(None)
        latest = self.state["latest"]
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length = int.from_bytes(buffer[2:4], "big")
                start = 4
            if len(buffer) < start + length:
                break
            body = buffer[start:start + length]
            buffer = buffer[start + length:]
            seq_text, sent_text, _ = body.split(b" ", 2)
            seq = int(seq_text)
            latency = now - float(sent_text)
            if latency > latest.get(seq, 0.0):
                latest[seq] = latency
            counts = self.state["counts"]
            counts[seq] = counts.get(seq, 0) + 1
            if seq == self.state["broadcasts"] - 1:
                self.state["finished"] += 1
        self.buffer = buffer


def clients(port: int, count: int, broadcasts: int) -> None:
    pin(1)
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {"latest": {}, "counts": {}, "finished": 0,
                                 "broadcasts": broadcasts}
        gate = asyncio.Semaphore(100)
        transports = []

        async def open_one() -> None:
            async with gate:
                transport, protocol = await loop.create_connection(
                    lambda: _Client(state), "127.0.0.1", port)
                transports.append(transport)
                await asyncio.wait_for(protocol.opened, 60)

        await asyncio.gather(*(open_one() for _ in range(count)))
        print("connected", flush=True)
        deadline = time.monotonic() + 60 + broadcasts * 5
        while state["finished"] < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        print(json.dumps({"latest": state["latest"], "counts": state["counts"]}), flush=True)
        for transport in transports:
            transport.close()

    uvloop.run(main())


# --- Redis throughput (subprocesses) ----------------------------------------------------------


def redis_subscriber(url: str, count: int) -> None:
    pin(1)
    sys.path.insert(0, ROOT)
    import squall.pubsub

    async def main() -> None:
        hub = squall.pubsub.connect(url)
        async with hub.subscribe("rate", max_queue=count + 10) as sub:
            print("ready", flush=True)
            got = 0
            first = last = 0.0
            deadline = time.monotonic() + 60
            while got < count and time.monotonic() < deadline:
                event = await sub.get(max(0.0, deadline - time.monotonic()))
                if event is None:
                    break
                if isinstance(event, squall.pubsub.Message):
                    got += 1
                    last = time.monotonic()
                    if got == 1:
                        first = float(event.data.split(" ", 1)[0])  # type: ignore[union-attr]
        print(json.dumps({"got": got, "seconds": last - first}), flush=True)
        await hub.close()

    from squall.ioloop import IOLoop

    IOLoop(make_current=False).run_sync(main, None)


def redis_publisher(url: str, count: int, in_flight: int) -> None:
    pin(0)
    sys.path.insert(0, ROOT)
    import squall.pubsub

    async def main() -> None:
        hub = squall.pubsub.connect(url)
        filler = "x" * 48

        async def worker(numbers: range) -> None:
            for _ in numbers:
                await hub.publish("rate", f"{time.monotonic():.9f} {filler}")

        shares = [count // in_flight + (n < count % in_flight) for n in range(in_flight)]
        await asyncio.gather(*(worker(range(share)) for share in shares))
        await hub.close()

    from squall.ioloop import IOLoop

    IOLoop(make_current=False).run_sync(main, None)


# --- the coordinator --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )


def read_json(process: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"process {process.args} ended early")
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError("no answer in time")


def expect(process: subprocess.Popen[str], word: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"process {process.args} ended before {word!r}")
        if line.strip() == word:
            return
    raise RuntimeError(f"no {word!r} in time")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def fan_out(kind: str, count: int, broadcasts: int) -> dict[str, Any]:
    port = free_port()
    interval = 0.3 if count <= 1000 else 1.2
    server = spawn("serve", kind, str(port), str(count), str(broadcasts), str(interval))
    client_processes: list[subprocess.Popen[str]] = []
    try:
        expect(server, "ready", 30)
        per_process = 5000
        shares = [per_process] * (count // per_process) + (
            [count % per_process] if count % per_process else [])
        for share in shares:
            client_processes.append(spawn("clients", str(port), str(share), str(broadcasts)))
        for process in client_processes:
            expect(process, "connected", 180)
        opened = read_json(server, 60)
        if "error" in opened:
            raise RuntimeError(opened["error"])
        results = [read_json(process, 60 + broadcasts * 5) for process in client_processes]
        server_side = read_json(server, 30)
    finally:
        for process in client_processes:
            stop(process)
        stop(server)
    latencies = []
    delivered = 0
    for seq in range(broadcasts):
        key = str(seq)
        delivered += sum(result["counts"].get(key, 0) for result in results)
        latencies.append(max(result["latest"].get(key, float("nan")) for result in results))
    latencies_ms = [value * 1000 for value in latencies]
    return {
        "p50": percentile(latencies_ms, 0.5),
        "p99": percentile(latencies_ms, 0.99),
        "server_ms": statistics.median(server_side["server_ms"]),
        "delivered": delivered,
        "expected": count * broadcasts,
        "kib_per_socket": (opened["rss_after"] - opened["rss_before"]) / count,
    }


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", directory], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process, port
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def redis_rate(url: str, count: int, in_flight: int) -> float:
    subscriber = spawn("redis-subscriber", url, str(count))
    try:
        expect(subscriber, "ready", 30)
        publisher = spawn("redis-publisher", url, str(count), str(in_flight))
        try:
            result = read_json(subscriber, 90)
        finally:
            stop(publisher)
    finally:
        stop(subscriber)
    if result["got"] < count:
        raise RuntimeError(f"only {result['got']} of {count} arrived")
    return float(count / result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--broadcasts", type=int, default=15)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--rounds", type=int, default=3,
                        help="the contenders take turns this many times; medians reported")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    kinds = args.contenders.split(",")
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for size in sizes:
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for round_number in range(args.rounds):
            order = kinds[round_number % len(kinds):] + kinds[:round_number % len(kinds)]
            for kind in order:
                print(f"fan-out to {size} sockets, round {round_number + 1}: "
                      f"{CONTENDERS[kind]} ...", flush=True)
                runs[kind].append(fan_out(kind, size, args.broadcasts))
                print("   ", json.dumps(runs[kind][-1]), flush=True)
        for kind in kinds:
            rows[kind, size] = {
                name: statistics.median(run[name] for run in runs[kind])
                for name in ("p50", "p99", "server_ms", "kib_per_socket")
            }
            rows[kind, size]["delivered"] = sum(run["delivered"] for run in runs[kind])
            rows[kind, size]["expected"] = sum(run["expected"] for run in runs[kind])
            rows[kind, size]["spread"] = (min(run["p50"] for run in runs[kind]),
                                          max(run["p50"] for run in runs[kind]))

    rates: dict[tuple[str, int], float] = {}
    redis_missing = not (shutil.which("redis-server") or os.path.exists("/usr/bin/redis-server"))
    if not redis_missing:
        with tempfile.TemporaryDirectory() as directory:
            process, port = start_redis(directory)
            try:
                for scheme in ("redis", "redis+stream"):
                    for in_flight in (1, 16):
                        url = f"{scheme}://127.0.0.1:{port}"
                        print(f"through {scheme}://, {in_flight} in flight ...", flush=True)
                        rates[scheme, in_flight] = statistics.median(
                            redis_rate(url, args.messages, in_flight)
                            for _ in range(args.rounds)
                        )
                        print(f"    {rates[scheme, in_flight]:.0f} msg/s", flush=True)
            finally:
                process.kill()
                process.wait(10)
    write_results(sizes, kinds, rows, rates, args)


def write_results(sizes: list[int], kinds: list[str], rows: dict[tuple[str, int], Any],
                  rates: dict[tuple[str, int], float], args: Any) -> None:
    lines = [
        "# squall.pubsub benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.uname().machine}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}; `python bench/bench_pubsub.py "
        f"--sizes {args.sizes} --broadcasts {args.broadcasts} --messages {args.messages} "
        f"--rounds {args.rounds}`. "
        "Server on core 0, clients (uvloop, raw sockets, in separate processes) on core 1; "
        "every server on uvloop. The contenders take turns, round after round; each figure "
        "is the median over the rounds (a shared machine: compare within one run). "
        f"Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        "## Broadcast fan-out: one 64-byte message to N WebSocket subscribers",
        "",
        "Time until the last subscriber had the message (it includes the clients' own time "
        "to read N sockets on one core, the same for every contender); the server column "
        "is how long the broadcast call itself took in the server.",
        "",
        "| N | contender | p50 ms | p50 range over rounds | p99 ms | server ms | delivered "
        "| KiB per subscriber |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for kind in kinds:
            row = rows[kind, size]
            low, high = row["spread"]
            lines.append(
                f"| {size} | {CONTENDERS[kind]} | {row['p50']:.1f} | {low:.0f}-{high:.0f} | "
                f"{row['p99']:.1f} | {row['server_ms']:.1f} | "
                f"{row['delivered']}/{row['expected']} | {row['kib_per_socket']:.1f} |"
            )
    lines += ["", "Ratios (p50 time of the other / squall's; higher is better for squall):", ""]
    lines += ["| N | squall variant | vs Tornado | vs websockets |", "|---:|---|---:|---:|"]
    for size in sizes:
        for kind in ("squall-hub", "squall-loop"):
            if (kind, size) not in rows:
                continue
            mine = rows[kind, size]["p50"]
            cells = []
            for other in ("tornado", "websockets"):
                cells.append(f"{rows[other, size]['p50'] / mine:.2f}x"
                             if (other, size) in rows else "")
            lines.append(f"| {size} | {CONTENDERS[kind]} | {cells[0]} | {cells[1]} |")
    if rates:
        lines += [
            "",
            "## Through Redis, between two processes",
            "",
            "Messages per second from a publishing process to a subscribing one "
            f"({args.messages} messages of 64 bytes, first publish to last arrival; median of "
            f"{args.rounds}).",
            "",
            "| backend | publishes in flight | msg/s |",
            "|---|---:|---:|",
        ]
        for (scheme, in_flight), rate in rates.items():
            lines.append(f"| {scheme}:// | {in_flight} | {rate:.0f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
              float(sys.argv[6]))
    elif command == "clients":
        clients(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif command == "redis-subscriber":
        redis_subscriber(sys.argv[2], int(sys.argv[3]))
    elif command == "redis-publisher":
        redis_publisher(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
