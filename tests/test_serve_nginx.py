"""``squall serve`` behind Debian's nginx: a rolling reload through the proxy loses nothing.

The nginx site is the one README.md shows (docs/nginx-site.conf), wrapped in a minimal
top-level configuration that runs nginx in the foreground on a free port. In CI (the CI
environment variable set) a missing nginx fails; elsewhere these tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from test_serve import READY, LoadClient, Served, free_port, serve, stop_load

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "nginx-site.conf"
)

if not os.path.exists(NGINX) and os.environ.get("CI"):
    raise RuntimeError(f"nginx tests must run in CI: no nginx at {NGINX} (apt-get install nginx)")
pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")


def nginx_config(directory: str, listen_port: int, upstream_port: int) -> str:
    with open(SITE) as f:
        site = f.read()
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    site = site.replace("server_name example.com;", "server_name localhost;")
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\ndaemon off;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log off;\n{temp}\n{site}\n}}\n"
    )


@pytest.fixture
def nginx_in_front(tmp_path: object) -> Iterator[tuple[Served, int]]:
    directory = str(tmp_path)
    upstream_port, port = free_port(), free_port()
    started: list[Served] = []
    server = serve(started, "serve_apps:app", port=upstream_port, workers=2)
    config = os.path.join(directory, "nginx.conf")
    with open(config, "w") as f:
        f.write(nginx_config(directory, port, upstream_port))
    nginx = subprocess.Popen(
        [NGINX, "-c", config, "-p", directory, "-e", os.path.join(directory, "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            probe = LoadClient(port)._connect()
            try:
                probe.connect()
                break
            except OSError:
                assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
            finally:
                probe.close()
        yield server, port
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(5)
        if nginx.stderr is not None:
            nginx.stderr.close()
        server.stop()


def test_hup_through_nginx_loses_nothing(nginx_in_front: tuple[Served, int]) -> None:
    server, port = nginx_in_front
    old = set(server.ready_pids())
    load = [LoadClient(port) for _ in range(4)]
    for client in load:
        client.start()
    deadline = time.monotonic() + 30
    while sum(c.count for c in load) < 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.signal(signal.SIGHUP)
    server.wait_for(r"reload complete")
    new = {str(int(m.group(2))) for m in map(READY.search, server.lines) if m} - {
        str(p) for p in old
    }
    deadline = time.monotonic() + 20
    while not new & set().union(*(c.pids for c in load)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    count, statuses, errors, pids = stop_load(load)
    assert errors == []
    assert set(statuses) == {200}
    # nginx retries a request whose upstream connection closed under it: clients see nothing
    assert sum(c.retried for c in load) == 0
    assert new & pids


def test_websockets_and_long_polls_through_nginx_survive_a_reload(
    nginx_in_front: tuple[Served, int],
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server, port = nginx_in_front
    client = connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)
    first_pid = client.recv(timeout=10)
    poll: list[tuple[int, str]] = []
    poller = threading.Thread(target=lambda: poll.append(_get(port, "/poll")))
    poller.start()
    time.sleep(0.5)
    server.signal(signal.SIGHUP)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    poller.join(30)
    assert poll == [(200, "drained reload")]
    server.wait_for(r"reload complete")
    again = connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)
    assert again.recv(timeout=10) != first_pid
    again.send("through nginx")
    assert again.recv(timeout=10) == "through nginx"
    again.close()


def _get(port: int, path: str) -> tuple[int, str]:
    connection = LoadClient(port)._connect()
    connection.timeout = 60
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()
