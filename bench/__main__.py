"""Squall against Tornado, side by side in one run: ``python -m bench`` (or ``make bench``).

Each server is pinned to one core, with the load generator on the other; only one is under
load at a time, and the contenders take turns run by run. Every figure is the median of
``--runs`` runs; ratios compare figures from this same run only.
Writes ``bench/results/latest.md`` (and ``latest.png`` when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench._harness import (
    LOAD_CORE,
    ROOT,
    WrkResult,
    median_result,
    pinned,
    rss_kib,
    run_wrk,
    server,
)

RESULTS_DIR = os.path.join(ROOT, "bench", "results")


@dataclass
class Row:
    """One benchmark line: a figure per contender, higher is better unless ``lower_is_better``."""

    name: str
    unit: str
    figures: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    lower_is_better: bool = False

    def ratio(self, against: str = "tornado") -> float:
        squall, tornado = self.figures.get("squall"), self.figures.get(against)
        if not squall or not tornado:
            return float("nan")
        return tornado / squall if self.lower_is_better else squall / tornado


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# Servers of a bare ASGI callable, when installed (the ``bench`` extra has them).
_ASGI_SERVERS = ("uvicorn", "granian")


def http_rows(runs: int, seconds: float) -> list[Row]:
    rows = []
    kinds = ["ceiling", "tornado-web", "tornado+uvloop-web", "squall-web", "squall+pure-web"]
    kinds += [f"{name}-asgi" for name in _ASGI_SERVERS if _installed(name)]
    # The pure-Python run of the same squall: its modules, not the compiled ones beside them.
    envs = {
        kind: {"SQUALL_NO_EXTENSIONS": "1"} if kind == "squall+pure-web" else {} for kind in kinds
    }
    with contextlib.ExitStack() as stack:
        # Every server is up for the whole section (an idle one costs nothing) and the
        # runs take turns, so a slow spell of a shared machine hits each server alike
        # instead of whichever happened to be measured then.
        ports = {kind: stack.enter_context(server(kind, env=envs[kind]))[0] for kind in kinds}
        for path, label in (
            ("/plain", "plain text"),
            ("/json", "JSON"),
            ("/page", "template page"),
        ):
            row = Row(f"HTTP {label} (RequestHandler, 64 conns)", "req/s")
            latency = Row(f"HTTP {label} p99 latency", "ms", lower_is_better=True)
            contenders = [
                kind
                for kind in kinds
                if (kind != "ceiling" or path == "/plain")
                and (not kind.endswith("-asgi") or path != "/page")
            ]
            urls = {kind: f"http://127.0.0.1:{ports[kind]}{path}" for kind in contenders}
            for kind in contenders:
                run_wrk(urls[kind], 1)  # warm-up
            results: dict[str, list[WrkResult]] = {kind: [] for kind in contenders}
            for _ in range(runs):
                for kind in contenders:
                    results[kind].append(run_wrk(urls[kind], seconds))
            for kind in contenders:
                result: WrkResult = median_result(results[kind])
                who = kind.partition("-")[0]
                row.figures[who] = result.requests_per_second
                latency.figures[who] = result.p99_ms
                row.extra[who] = f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms" + (
                    f", {result.errors} errors" if result.errors else ""
                )
                print(
                    f"  {label:14} {who:14} {result.requests_per_second:10.0f} req/s  "
                    f"{row.extra[who]}"
                )
            rows += [row, latency]
            rows += [
                _pure_variant(row, f"HTTP {label}, squall pure Python (SQUALL_NO_EXTENSIONS)"),
                _pure_variant(latency, f"HTTP {label} p99 latency, pure Python"),
            ]
    return rows


def _pure_variant(row: Row, name: str) -> Row:
    # The pure-Python figure in squall's place, against the same other figures.
    figures = dict(row.figures)
    figures["squall"] = figures.pop("squall+pure")
    del row.figures["squall+pure"]
    return Row(name, row.unit, figures, lower_is_better=row.lower_is_better)


def idle_memory_rows(connections: int) -> list[Row]:
    row = Row(
        f"memory per idle keep-alive connection ({connections} held)", "KiB", lower_is_better=True
    )
    def hold(port: int, count: int) -> subprocess.Popen[str]:
        load = subprocess.Popen(
            pinned(LOAD_CORE, [sys.executable, "-m", "bench.loads", "idle", str(port), str(count)]),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert load.stdout is not None and load.stdout.readline().strip() == "held"
        return load

    for kind in ("tornado-web", "squall-web"):
        with server(kind) as (port, process):
            # A first, small round pages in the code and caches every connection uses
            # (a compiled module's pages, lazily imported modules): what is measured is
            # what one more connection costs, not the server's first use.
            hold(port, min(200, connections)).communicate("", timeout=60)
            time.sleep(0.5)
            before = rss_kib(process.pid)
            load = hold(port, connections)
            try:
                after = rss_kib(process.pid)
            finally:
                load.communicate("", timeout=60)
        who = kind.partition("-")[0]
        row.figures[who] = (after - before) / connections
        print(f"  idle memory    {who:8} {row.figures[who]:10.2f} KiB/conn")
    return [row]


def client_rows(requests: int) -> list[Row]:
    row = Row(f"HTTP client, {requests} sequential GETs", "req/s")
    with server("ceiling") as (port, _):
        for who in ("tornado", "squall"):
            out = subprocess.run(
                pinned(
                    LOAD_CORE,
                    [
                        sys.executable,
                        "-m",
                        "bench.loads",
                        "client",
                        who,
                        f"http://127.0.0.1:{port}/plain",
                        str(requests),
                    ],
                ),
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
            row.figures[who] = requests / float(out.strip().splitlines()[-1])
            print(f"  client         {who:8} {row.figures[who]:10.0f} req/s")
    return [row]


def script_rows(script: str, name: str, unit: str) -> list[Row]:
    """Runs a standalone bench script that prints ``squall N`` and ``tornado N`` lines."""
    path = os.path.join(ROOT, "bench", script)
    if not os.path.exists(path):
        return []
    out = subprocess.run(
        [sys.executable, path], cwd=ROOT, capture_output=True, text=True, check=True, timeout=900
    ).stdout
    # the last figure printed for each wins (scripts print rounds, then their best)
    figures = re.findall(r"^\s*(squall|tornado)\s*:?\s+([\d,.]+)", out, re.M)
    row = Row(name, unit, {who: float(value.replace(",", "")) for who, value in figures})
    print(f"  {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.figures.items()))
    return [row]


def markdown(rows: list[Row], runs: int) -> str:
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; "
        f"median of {runs} runs per figure; server on core 0, load on core 1.",
        "",
        "| benchmark | unit | squall | Tornado | squall/Tornado | Tornado on uvloop "
        "| squall/(Tornado on uvloop) | uvicorn (raw ASGI) | squall/uvicorn "
        "| granian (raw ASGI) | squall/granian | ceiling | squall/ceiling |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        f = row.figures
        # a share of the ceiling only means something for throughput
        ceiling = None if row.lower_is_better else f.get("ceiling")
        cells = [
            row.name,
            row.unit,
            f"{f['squall']:.1f}" if "squall" in f else "-",
            f"{f['tornado']:.1f}" if "tornado" in f else "-",
            f"{row.ratio():.2f}x",
            f"{f['tornado+uvloop']:.1f}" if "tornado+uvloop" in f else "",
            f"{row.ratio('tornado+uvloop'):.2f}x" if "tornado+uvloop" in f else "",
            f"{f['uvicorn']:.1f}" if "uvicorn" in f else "",
            f"{row.ratio('uvicorn'):.2f}x" if "uvicorn" in f else "",
            f"{f['granian']:.1f}" if "granian" in f else "",
            f"{row.ratio('granian'):.2f}x" if "granian" in f else "",
            f"{ceiling:.0f}" if ceiling else "",
            f"{f['squall'] / ceiling:.2f}" if ceiling and "squall" in f else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "For latency and memory rows the ratio is the other's figure over squall's (higher is"
        " better). uvicorn and granian serve a bare ASGI callable, with no framework."
    )
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[Row], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [row.name for row in rows]
    ratios = [row.ratio() for row in rows]
    figure, axes = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    axes.barh(names, ratios, color="#3b7dd8")
    axes.axvline(1.0, color="#888", linestyle="--")
    axes.set_xlabel("squall / Tornado (higher is better)")
    axes.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--idle", type=int, default=5000, help="idle connections to hold")
    parser.add_argument("--client-requests", type=int, default=10000)
    parser.add_argument("--only", default="http,template,websocket,memory,client")
    args = parser.parse_args()
    only = set(args.only.split(","))
    rows: list[Row] = []
    if "http" in only:
        print("HTTP hello world (wrk)")
        rows += http_rows(args.runs, args.seconds)
    if "template" in only:
        print("template engine")
        rows += script_rows("bench_template.py", "template engine, page renders", "renders/s")
    if "websocket" in only:
        print("WebSocket echo")
        rows += script_rows("bench_websocket.py", "WebSocket echo, 50 conns x 32 B", "msg/s")
    if "memory" in only:
        print("idle connections")
        rows += idle_memory_rows(args.idle)
    if "client" in only:
        print("HTTP client")
        rows += client_rows(args.client_requests)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    table = markdown(rows, args.runs)
    with open(os.path.join(RESULTS_DIR, "latest.md"), "w") as out:
        out.write(table)
    bar_chart(rows, os.path.join(RESULTS_DIR, "latest.png"))
    print()
    print(table)


if __name__ == "__main__":
    main()
