"""Profile a bench server under wrk load: ``python -m bench.profile_server [PATH] [SECONDS]``.

Runs the squall ``web`` bench application in this process under cProfile (on the loop
squall installs, uvloop when available), drives ``/PATH`` with wrk from another process
and prints the top functions by own time and by cumulative time.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import subprocess
import sys

from bench._harness import LOAD_CORE, free_port, pinned


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "plain"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    import squall.web  # noqa: F401  (installs uvloop's policy first)
    from bench.servers import _application

    port = free_port()
    profiler = cProfile.Profile()

    async def run() -> None:
        app = _application("squall", "web")
        server = app.listen(port, "127.0.0.1", backlog=2048)
        argv = ["wrk", "-t1", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}/{path}"]
        process = await asyncio.create_subprocess_exec(
            *pinned(LOAD_CORE, argv), stdout=subprocess.PIPE
        )
        profiler.enable()
        output, _ = await process.communicate()
        profiler.disable()
        server.stop()
        print(output.decode())

    asyncio.run(run())
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(35)
        print(text.getvalue())
    if len(sys.argv) > 3:
        profiler.dump_stats(sys.argv[3])


if __name__ == "__main__":
    main()
