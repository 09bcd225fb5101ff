"""``squall serve`` with real processes: workers, signals, drain, reload, recycling.

Each test starts ``python -m squall serve`` on a free loopback port, talks to it with real
clients (http.client, the websockets package, curl) and reads the manager's progress lines.
Nothing here is timed: tests wait for log lines and answers, with generous deadlines.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from squall.serve import ServeConfig, parse_args
from squall.serve._logs import JSONFormatter
from squall.serve._target import TargetError, import_attribute

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready")


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A ``squall serve`` manager process and what it has printed so far."""

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        cwd: str = TESTS,
        pass_fds: tuple[int, ...] = (),
        listen: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        command = [sys.executable, "-m", "squall", "serve", *args]
        if listen:
            command += ["--port", str(self.port)]
        env = dict(
            os.environ,
            PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **(env or {}),
        )
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[re.Match[str]]:
        """Waits until ``pattern`` has matched ``count`` lines; returns the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for m in map(regex.search, self.lines) if m]
                if len(matches) >= count:
                    return matches
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no {count} line(s) matching {pattern!r}; output:\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.5))

    def ready_pids(self) -> list[int]:
        with self._changed:
            return [int(m.group(2)) for m in map(READY.search, self.lines) if m]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)
        finally:
            self._reader.join(5)
            if self.process.stderr is not None:
                self.process.stderr.close()

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.stop()
        # (captured: pytest shows it when the test failed)
        print(f"--- output of squall serve on port {server.port}:\n{server.output()}")


def serve(started: list[Served], *args: str, workers: int = 1, **kwargs: object) -> Served:
    server = Served(*args, "--workers", str(workers), **kwargs)  # type: ignore[arg-type]
    started.append(server)
    server.wait_for(r"ready", count=workers)
    return server


_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class LoadClient(threading.Thread):
    """Keep-alive GETs in a loop, bounded in count, until told to stop.

    Like every HTTP client that reuses connections (RFC 9112 9.3.1), a request sent on a
    kept-alive connection that the server closed at the same moment, before any byte of a
    response, is sent again once on a new connection; that is counted as ``retried``, not
    as an error. Anything else that fails is an error.
    """

    def __init__(self, port: int, path: str = "/", limit: int = 20000) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.limit = limit
        self.halt = threading.Event()
        self.statuses: dict[int, int] = {}
        self.pids: set[str] = set()
        self.errors: list[str] = []
        self.retried = 0
        self.count = 0

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        reused = False
        while not self.halt.is_set() and self.count < self.limit:
            if connection is None:
                connection, reused = self._connect(), False
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read().decode()
            except _STALE as exc:
                connection.close()
                connection = None
                if reused:
                    self.retried += 1
                    continue
                self.errors.append(repr(exc))
                continue
            except OSError as exc:
                connection.close()
                connection = None
                self.errors.append(repr(exc))
                continue
            self.count += 1
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            self.pids.add(body.rsplit(" ", 1)[-1])
            if response.will_close:
                connection.close()
                connection = None
            else:
                reused = True
        if connection is not None:
            connection.close()


def run_load(port: int, clients: int = 4, path: str = "/") -> list[LoadClient]:
    load = [LoadClient(port, path) for _ in range(clients)]
    for client in load:
        client.start()
    return load


def stop_load(load: list[LoadClient]) -> tuple[int, dict[int, int], list[str], set[str]]:
    for client in load:
        client.halt.set()
    for client in load:
        client.join(30)
    statuses: dict[int, int] = {}
    for client in load:
        for status, n in client.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    errors = [e for client in load for e in client.errors]
    pids = set().union(*(client.pids for client in load))
    return sum(c.count for c in load), statuses, errors, pids


def wait_until_served(server: Served, load: list[LoadClient], at_least: int) -> None:
    deadline = time.monotonic() + 30
    while sum(c.count for c in load) < at_least:
        assert time.monotonic() < deadline, "the load made no progress\n" + server.output()
        time.sleep(0.02)


# -- options and loading (no processes) ------------------------------------------------------


def test_parse_args_fills_the_config() -> None:
    config = parse_args(
        ["mod:app", "--workers", "3", "--max-requests", "10", "--access-log", "--xheaders"]
    )
    assert config.app == "mod:app"
    assert config.workers == 3
    assert config.max_requests == 10
    assert config.access_log == "-"
    assert config.xheaders is True
    assert ServeConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nocolon"], "MODULE:ATTR"),
        (["m:a", "--uds", "/tmp/x", "--fd", "3"], "exclude"),
        (["m:a", "--ssl-certfile", "/nonexistent.pem", "--ssl-keyfile", "/x"], "no such file"),
        (["m:a", "--ssl-certfile", __file__], "go together"),
        (["m:a", "--workers", "-1"], "--workers"),
    ],
)
def test_parse_args_refuses_bad_combinations(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_import_attribute_explains_what_is_missing() -> None:
    with pytest.raises(TargetError, match="cannot import module"):
        import_attribute("no_such_module_here:app", TESTS)
    with pytest.raises(TargetError, match="has no attribute"):
        import_attribute("serve_apps:missing", TESTS)
    assert import_attribute("serve_apps:make_app", TESTS).__name__ == "make_app"


def test_json_formatter_puts_extra_fields_at_the_top() -> None:
    import logging

    record = logging.LogRecord("squall.access", logging.INFO, __file__, 1, "GET / %d", (200,), None)
    record.status = 200
    record.method = "GET"
    entry = json.loads(JSONFormatter().format(record))
    assert entry["message"] == "GET / 200"
    assert entry["status"] == 200 and entry["method"] == "GET"
    assert entry["level"] == "info" and entry["logger"] == "squall.access"
    assert entry["time"].endswith("Z")


# -- processes ---------------------------------------------------------------------------------


def test_two_workers_share_one_socket(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", workers=2)
    server.wait_for(rf"serving serve_apps:app on http://127\.0\.0\.1:{server.port} with 2 workers")
    pids = set(map(str, server.ready_pids()))
    seen = set()
    for _ in range(200):
        status, body = server.get("/")
        assert status == 200
        seen.add(body.split()[-1])
        if seen == pids:
            break
    assert seen <= pids and len(seen) >= 1
    assert server.stop() == 0
    server.wait_for(r"squall serve stopped")


@pytest.mark.parametrize(
    "target", ["serve_apps:make_app", "serve_apps:make_app_async", "serve_apps:plain_callback"]
)
def test_targets_factories_and_callbacks(served: list[Served], target: str) -> None:
    server = serve(served, target)
    status, body = server.get("/x")
    assert status in (200, 404)
    if target.endswith("plain_callback"):
        assert body == "callback /x"


def test_an_app_that_cannot_load_stops_the_manager(served: list[Served]) -> None:
    server = Served("serve_apps:not_an_app")
    served.append(server)
    assert server.process.wait(30) == 3
    server.wait_for(r"is neither an Application, an HTTPServerConnectionDelegate nor callable")


def test_hup_replaces_every_worker_and_loses_nothing(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", workers=2)
    old = set(server.ready_pids())
    load = run_load(server.port, clients=4)
    wait_until_served(server, load, 200)
    server.signal(signal.SIGHUP)
    server.wait_for(r"reload complete")
    new = set(server.ready_pids()) - old
    # keep the load on until the new workers have answered some of it
    deadline = time.monotonic() + 20
    while not ({str(p) for p in new} & set().union(*(c.pids for c in load))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    count, statuses, errors, pids = stop_load(load)
    assert errors == []
    assert set(statuses) == {200}
    assert len(new) == 2
    assert {str(p) for p in new} & pids
    server.wait_for(r"worker \d \(pid \d+\) stopped \(exit code 0\)", count=2)


def test_hup_closes_websockets_with_1012_and_clients_reconnect(served: list[Served]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = serve(served, "serve_apps:app", workers=2)
    url = f"ws://127.0.0.1:{server.port}/ws"
    clients = [connect(url, open_timeout=10) for _ in range(4)]
    first_pids = {client.recv(timeout=10) for client in clients}
    server.signal(signal.SIGHUP)
    codes = []
    for client in clients:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.recv(timeout=30)
        codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
    assert codes == [1012] * 4
    server.wait_for(r"reload complete")
    again = connect(url, open_timeout=10)
    assert again.recv(timeout=10) not in first_pids
    again.send("still here")
    assert again.recv(timeout=10) == "still here"
    again.close()


def test_term_lets_slow_requests_finish(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", workers=2)
    results: list[tuple[int, str]] = []

    def slow() -> None:
        results.append(server.get("/slow?s=1.5", timeout=30))

    threads = [threading.Thread(target=slow) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let them reach the workers (the answers are what is checked)
    server.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert [status for status, _ in results] == [200] * 6
    assert server.process.wait(30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_term_answers_pending_long_polls_through_the_drain_hook(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app")
    results: list[tuple[int, str]] = []
    thread = threading.Thread(target=lambda: results.append(server.get("/poll", timeout=30)))
    thread.start()
    time.sleep(0.5)
    server.signal(signal.SIGTERM)
    thread.join(30)
    assert results == [(200, "drained shutdown")]
    assert server.process.wait(30) == 0


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", workers=2)
    victim, survivor = server.ready_pids()
    answers: list[object] = []

    def slow() -> None:
        try:
            answers.append(server.get("/slow?s=1.5", timeout=30))
        except OSError as exc:
            answers.append(exc)

    threads = [threading.Thread(target=slow) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    server.wait_for(rf"pid {victim}\) died \(killed by SIGKILL\)")
    for thread in threads:
        thread.join(30)
    served_ok = [a for a in answers if isinstance(a, tuple)]
    # every request the survivor held was answered; only the victim's connections failed
    assert all(a == (200, f"slow {survivor}") for a in served_ok)
    assert len(answers) == 8
    server.wait_for(r"ready", count=3)
    assert survivor in server.ready_pids()
    for _ in range(20):
        assert server.get("/")[0] == 200


def test_a_worker_whose_loop_is_blocked_is_replaced(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", "--timeout-worker-healthcheck", "1.5")
    (stuck,) = server.ready_pids()
    blocked = threading.Thread(target=lambda: _ignore_errors(server.get, "/block?s=60", 60))
    blocked.start()
    server.wait_for(rf"pid {stuck}\) has not answered for .* blocked\): killing it")
    server.wait_for(r"ready", count=2)
    status, body = server.get("/")
    assert status == 200 and body != f"hello {stuck}"
    blocked.join(30)


def _ignore_errors(func: object, *args: object) -> None:
    try:
        func(*args)  # type: ignore[operator]
    except OSError:
        pass


def test_worker_sent_term_finishes_slow_requests_and_is_replaced(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app")
    (first,) = server.ready_pids()
    results: list[tuple[int, str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(server.get("/slow?s=1.5", timeout=30)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    os.kill(first, signal.SIGTERM)
    server.wait_for(rf"pid {first}\) is draining")
    server.wait_for(r"ready", count=2)
    for thread in threads:
        thread.join(30)
    assert results == [(200, f"slow {first}")] * 4
    server.wait_for(rf"pid {first}\) stopped \(exit code 0\)")
    assert server.get("/")[0] == 200


def test_max_requests_recycles_workers_without_errors(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", "--max-requests", "25", "--max-requests-jitter", "5")
    load = run_load(server.port, clients=2)
    deadline = time.monotonic() + 60
    while len(set().union(*(c.pids for c in load))) < 3:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    count, statuses, errors, pids = stop_load(load)
    assert errors == [] and set(statuses) == {200}
    assert len(pids) >= 3
    server.wait_for(r"asks to be replaced: served \d+ requests")


def test_worker_lifetime_recycles(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", "--worker-lifetime", "2")
    server.wait_for(r"asks to be replaced: reached its lifetime of 2 s")
    server.wait_for(r"ready", count=2)
    assert server.get("/")[0] == 200


def test_worker_over_its_memory_limit_recycles(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", "--worker-max-rss", "200")
    (first,) = server.ready_pids()
    assert server.get("/grow?mb=300") == (200, f"holding 300 MiB in {first}")
    server.wait_for(r"asks to be replaced: uses \d+ MiB, over --worker-max-rss 200")
    server.wait_for(r"ready", count=2)
    server.wait_for(rf"pid {first}\) stopped")
    assert server.get("/")[1] != f"hello {first}"


def test_ttin_and_ttou_change_the_worker_count(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app")
    server.signal(signal.SIGTTIN)
    server.wait_for(r"TTIN: 2 worker\(s\) wanted")
    server.wait_for(r"ready", count=2)
    server.signal(signal.SIGTTOU)
    server.wait_for(r"TTOU: 1 worker\(s\) wanted")
    server.wait_for(r"stopped \(exit code 0\)")
    assert server.get("/")[0] == 200


def test_sigint_stops_fast_and_a_second_one_kills(served: list[Served]) -> None:
    server = serve(served, "serve_apps:app", workers=2)
    threading.Thread(
        target=lambda: _ignore_errors(server.get, "/block?s=20", 30), daemon=True
    ).start()
    time.sleep(0.3)
    server.signal(signal.SIGINT)
    server.wait_for(r"fast stop")
    server.signal(signal.SIGINT)
    assert server.process.wait(30) in (0, 130)
    server.wait_for(r"squall serve stopped")


def test_reload_restarts_on_a_source_edit(served: list[Served], tmp_path: object) -> None:
    app_dir = str(tmp_path)
    source = os.path.join(app_dir, "editable_app.py")

    def write(version: str) -> None:
        with open(source, "w") as f:
            f.write(
                "from squall import web\n"
                "class H(web.RequestHandler):\n"
                f"    def get(self): self.write({version!r})\n"
                "app = web.Application([('/', H)])\n"
            )

    write("v1")
    server = serve(served, "editable_app:app", "--reload", "--app-dir", app_dir)
    assert server.get("/") == (200, "v1")
    time.sleep(1.1)  # a coarse file system clock must see a new modification time
    write("v2")
    deadline = time.monotonic() + 30
    while True:
        try:
            if server.get("/")[1] == "v2":
                break
        except OSError:
            pass  # (development reload: the worker re-executes itself, dropping connections)
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    server.wait_for(r"restarts itself: a source file changed")


def test_access_log_in_json_and_reopened_on_usr1(served: list[Served], tmp_path: object) -> None:
    log_path = os.path.join(str(tmp_path), "access.log")
    server = serve(
        served, "serve_apps:app", "--access-log", log_path, "--log-format", "json", workers=2
    )
    assert server.get("/?a=1")[0] == 200
    deadline = time.monotonic() + 10
    while not read_text(log_path).strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    entry = json.loads(read_text(log_path).splitlines()[0])
    assert entry["method"] == "GET" and entry["path"] == "/" and entry["query"] == "a=1"
    assert entry["status"] == 200 and entry["remote_ip"] == "127.0.0.1"
    assert isinstance(entry["duration_ms"], float)
    os.rename(log_path, log_path + ".1")
    server.signal(signal.SIGUSR1)
    server.wait_for(r"USR1: reopened")
    deadline = time.monotonic() + 10
    while not read_text(log_path).strip():
        assert time.monotonic() < deadline, server.output()
        server.get("/again")
        time.sleep(0.1)
    assert any(json.loads(line)["path"] == "/again" for line in read_text(log_path).splitlines())
    # the manager's own lines are JSON too
    assert json.loads(server.lines[0])["logger"] == "squall.serve"


def test_unix_socket_and_inherited_descriptor(served: list[Served], tmp_path: object) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    path = os.path.join(str(tmp_path), "squall.sock")
    server = Served("serve_apps:app", "--uds", path, listen=False)
    served.append(server)
    server.wait_for(rf"on unix:{re.escape(path)}")
    server.wait_for(r"ready")
    answer = subprocess.run(
        [curl, "-s", "--unix-socket", path, "http://localhost/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.stdout.startswith("hello ")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    inherited = Served(
        "serve_apps:app",
        "--fd",
        str(listener.fileno()),
        listen=False,
        pass_fds=(listener.fileno(),),
    )
    served.append(inherited)
    inherited.wait_for(r"ready")
    inherited.port = port
    listener.close()
    assert inherited.get("/")[0] == 200


def test_tls_with_certificate_files(served: list[Served]) -> None:
    import ssl

    certificate = os.path.join(ROOT, "squall", "test", "test.crt")
    key = os.path.join(ROOT, "squall", "test", "test.key")
    server = serve(served, "serve_apps:app", "--ssl-certfile", certificate, "--ssl-keyfile", key)
    server.wait_for(rf"on https://127\.0\.0\.1:{server.port}")
    context = ssl.create_default_context(cafile=certificate)
    context.check_hostname = False
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    connection.request("GET", "/")
    assert connection.getresponse().status == 200
    connection.close()
