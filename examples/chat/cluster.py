"""Runs the chat as a cluster: several chat processes on one Redis, behind nginx.

    python -m examples.chat.cluster [--port=8888] [--workers=2] [--redis=URL]

Without ``--redis`` it starts a redis-server of its own (no persistence, in a temporary
directory) and uses ``redis+stream://``. nginx (Debian's ``/usr/sbin/nginx``) runs in the
foreground as the current user with a generated configuration; a ``backend=<n>`` cookie
pins a browser to process ``n``, otherwise requests take turns. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NGINX_CONF = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{upstreams}
    # a "backend" cookie pins a browser to one process; without it, requests take turns
    map $cookie_backend $chat_backend {{
{routes}
        default every;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" "";
    }}
    server {{
        listen {address}:{port};
        location / {{
            proxy_pass http://$chat_backend;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # WebSocket, long polls and event streams: pass everything on at once
            proxy_buffering off;
            proxy_read_timeout 1h;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def nginx_config(directory: str, port: int, backends: list[int], address: str = "127.0.0.1"
                 ) -> str:
    """nginx's configuration for the chat processes listening on ``backends`` (ports)."""
    upstreams = "".join(
        f"    upstream backend{n} {{ server 127.0.0.1:{backend}; }}\n"
        for n, backend in enumerate(backends)
    )
    upstreams += "    upstream every {\n" + "".join(
        f"        server 127.0.0.1:{backend};\n" for backend in backends
    ) + "    }\n"
    routes = "".join(f"        {n} backend{n};\n" for n in range(len(backends)))
    return NGINX_CONF.format(dir=directory, port=port, address=address, upstreams=upstreams,
                             routes=routes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8888, help="nginx's port")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=2, help="chat processes")
    parser.add_argument("--redis", default="", help="a redis:// or redis+stream:// URL")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="squall-chat-") as directory:
        try:
            url = args.redis
            if not url:
                redis_port = free_port()
                redis = subprocess.Popen(
                    [shutil.which("redis-server") or "/usr/bin/redis-server", "--port",
                     str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                     "no", "--dir", directory], stdout=subprocess.DEVNULL)
                processes.append(redis)
                wait_for_port(redis_port, redis)
                url = f"redis+stream://127.0.0.1:{redis_port}"
            ports = [free_port() for _ in range(args.workers)]
            for port in ports:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "examples.chat", f"--port={port}",
                     f"--pubsub={url}"], cwd=ROOT))
            for port, process in zip(ports, processes[-len(ports):], strict=True):
                wait_for_port(port, process)
            config = os.path.join(directory, "nginx.conf")
            with open(config, "w") as out:
                out.write(nginx_config(directory, args.port, ports, args.address))
            nginx = subprocess.Popen([args.nginx, "-p", directory, "-c", config, "-e",
                                      os.path.join(directory, "error.log")])
            processes.append(nginx)
            wait_for_port(args.port, nginx)
            print(f"chat on http://{args.address}:{args.port}/ : {args.workers} processes "
                  f"(ports {', '.join(map(str, ports))}) through {url}", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while all(process.poll() is None for process in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
