"""``squall serve`` running ASGI applications, through real ``python -m squall serve``
processes (the ``Served`` harness of test_serve.py): detection, ``--interface``,
``--root-path``, ``--lifespan``, the access log, and drain/reload closing WebSockets."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from test_serve import Served, serve, served  # noqa: F401  (served is a fixture)

from squall.serve import parse_args
from squall.serve._target import is_asgi_app, serves_as_asgi


def _json(server: Served, path: str) -> Any:
    status, body = server.get(path)
    assert status == 200, body
    return json.loads(body)


# -- detection and options (no processes) ------------------------------------------------


class _AsyncCallable:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


async def _asgi_function(scope: Any, receive: Any, send: Any) -> None:
    pass


def test_asgi_apps_are_told_apart_from_squall_targets() -> None:
    from squall.web import Application

    assert is_asgi_app(_asgi_function)
    assert is_asgi_app(_AsyncCallable())
    assert not is_asgi_app(_AsyncCallable)  # the class itself: a factory, not an app
    assert not is_asgi_app(Application())
    assert not is_asgi_app(lambda scope, receive, send: None)  # not async
    assert not is_asgi_app(lambda request: None)
    assert serves_as_asgi(_asgi_function)
    assert not serves_as_asgi(Application())
    assert not serves_as_asgi(_asgi_function, "squall")
    assert serves_as_asgi(Application(), "asgi")


def test_asgi_options_parse() -> None:
    config = parse_args(["m:a", "--interface", "asgi", "--root-path", "/api", "--lifespan", "on"])
    assert (config.interface, config.root_path, config.lifespan) == ("asgi", "/api", "on")
    defaults = parse_args(["m:a"])
    assert (defaults.interface, defaults.root_path, defaults.lifespan) == ("auto", "", "auto")


def test_a_root_path_must_be_absolute(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["m:a", "--root-path", "api"])
    assert "--root-path must start with '/'" in capsys.readouterr().err


# -- processes -----------------------------------------------------------------------------


def test_an_asgi_app_is_served_with_its_lifespan(
    served: list[Served],  # noqa: F811
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "shutdown"
    monkeypatch.setenv("ASGI_TEST_SHUTDOWN_MARKER", str(marker))
    server = serve(served, "asgi_apps:raw_app", "--access-log")
    scope = _json(server, "/scope")
    pid = server.ready_pids()[0]
    assert scope["state"] == {"greeting": "hello from lifespan", "pid": pid}
    assert scope["root_path"] == ""
    server.wait_for(r'"GET /scope HTTP/1\.1" 200')
    assert server.stop() == 0
    # the shutdown ran after the drain, before the worker left
    assert marker.read_text() == "shutdown complete"


def test_root_path_and_forced_interface_with_a_factory(served: list[Served]) -> None:  # noqa: F811
    server = serve(
        served,
        "asgi_apps:raw_app_factory",
        "--interface",
        "asgi",
        "--factory",
        "--root-path",
        "/api",
    )
    scope = _json(server, "/scope")
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/api",
        "/api/scope",
        "/api/scope",
    )


def test_lifespan_off_and_an_app_without_lifespan(served: list[Served]) -> None:  # noqa: F811
    off = serve(served, "asgi_apps:raw_app", "--lifespan", "off")
    assert _json(off, "/scope")["state"] is None
    plain = serve(served, "asgi_apps:plain_asgi")  # auto: it raises for lifespan; served anyway
    status, body = plain.get("/")
    assert status == 200 and body.startswith("plain ") and body.endswith("state=True")


def test_a_failing_lifespan_startup_stops_the_boot(
    served: list[Served],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASGI_TEST_STARTUP", "fail")
    server = Served("asgi_apps:raw_app", "--workers", "1")
    served.append(server)
    assert server.process.wait(30) == 3
    server.wait_for(r"no database")


def test_lifespan_on_refuses_an_app_without_it(served: list[Served]) -> None:  # noqa: F811
    server = Served("asgi_apps:plain_asgi", "--lifespan", "on", "--workers", "1")
    served.append(server)
    assert server.process.wait(30) == 3


def test_interface_squall_does_not_take_an_asgi_app(served: list[Served]) -> None:  # noqa: F811
    server = Served("asgi_apps:plain_asgi", "--interface", "squall", "--workers", "1")
    served.append(server)
    assert server.process.wait(30) == 3
    server.wait_for(r"cannot tell how to serve")


def test_starlette_under_squall_serve(served: list[Served]) -> None:  # noqa: F811
    pytest.importorskip("starlette")
    server = serve(served, "asgi_framework_apps:starlette_app")
    assert _json(server, "/state") == {"started": "by lifespan"}
    assert _json(server, "/items/5?q=z") == {"id": 5, "q": "z"}


def test_hup_closes_asgi_websockets_with_1012(served: list[Served]) -> None:  # noqa: F811
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    server = serve(served, "asgi_apps:plain_asgi", workers=2)
    url = f"ws://127.0.0.1:{server.port}/ws"
    clients = [connect(url, open_timeout=10) for _ in range(3)]
    first_pids = {client.recv(timeout=10) for client in clients}
    server.signal(signal.SIGHUP)
    codes = []
    for client in clients:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(1000):
                client.recv(timeout=30)
        codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
    assert codes == [1012] * 3
    server.wait_for(r"reload complete")
    again = connect(url, open_timeout=10)
    assert again.recv(timeout=10) not in first_pids
    again.send("still here")
    assert again.recv(timeout=10) == "still here"
    again.close()
