"""``squall.tornado_compat``: programs that import tornado run on squall, unchanged.

Each case runs a real Python process (the aliasing changes an interpreter for good), with
warnings turned into errors: the compat layer must warn nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECKS = textwrap.dedent(
    """
    import asyncio
    import tornado
    assert tornado.version_info >= (6, 6, 1), tornado.version_info
    assert tornado.version == "6.6.1"
    import tornado.web
    import tornado.httpclient
    from tornado import gen, httputil
    from tornado.platform.asyncio import AsyncIOMainLoop
    from tornado.ioloop import IOLoop
    import squall, squall.web, squall.platform.asyncio
    assert squall.version != tornado.version  # squall keeps its own
    assert tornado.web is squall.web and tornado.web.RequestHandler is squall.web.RequestHandler
    assert AsyncIOMainLoop is squall.platform.asyncio.AsyncIOMainLoop
    assert squall.web.__spec__.name == "squall.web"  # aliasing leaves squall's modules alone
    assert tornado.locks is squall.locks  # submodules as attributes, as in tornado

    class Hello(tornado.web.RequestHandler):
        def get(self):
            self.write("hello from " + type(self).__mro__[1].__module__)

    async def main():
        app = tornado.web.Application([("/", Hello)])
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        client = tornado.httpclient.AsyncHTTPClient()
        response = await client.fetch(f"http://127.0.0.1:{port}/")
        print(response.body.decode())
        server.stop()
        await server.close_all_connections()
        client.close()

    asyncio.run(main())
    """
)


def run(args: list[str], tmp_path: object, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", *args],
        cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_runner_runs_a_script(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "uses_tornado.py")
    with open(script, "w") as f:
        f.write(CHECKS)
    assert run(["-m", "squall.tornado_compat", script], tmp_path) == "hello from squall.web\n"


def test_runner_runs_a_module_and_children_inherit_it(tmp_path: object) -> None:
    package = os.path.join(str(tmp_path), "tornado_user.py")
    with open(package, "w") as f:
        f.write(CHECKS)
    launcher = os.path.join(str(tmp_path), "launcher.py")
    with open(launcher, "w") as f:
        f.write(
            "import subprocess, sys\n"
            "sys.exit(subprocess.call([sys.executable, '-W', 'error', '-m', 'tornado_user']))\n"
        )
    out = run(["-m", "squall.tornado_compat", "-m", "launcher"], tmp_path)
    assert out == "hello from squall.web\n"


def test_install_from_code(tmp_path: object) -> None:
    code = "import squall.tornado_compat as c\nc.install()\nc.install()\n" + CHECKS
    assert run(["-c", code], tmp_path) == "hello from squall.web\n"


def test_install_refuses_once_the_real_tornado_is_imported(tmp_path: object) -> None:
    pytest.importorskip("tornado")
    code = (
        "import tornado, squall.tornado_compat as c\n"
        "try:\n    c.install()\nexcept RuntimeError as e:\n    print('refused:', e)\n"
    )
    assert run(["-c", code], tmp_path).startswith("refused: the real tornado package")


def test_unknown_submodules_fail_as_imports_do(tmp_path: object) -> None:
    code = (
        "import squall.tornado_compat as c\nc.install()\n"
        "try:\n    import tornado.no_such_module\nexcept ImportError:\n    print('ImportError')\n"
    )
    assert run(["-c", code], tmp_path) == "ImportError\n"


def test_runner_usage_and_missing_command(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "squall.tornado_compat", "no-such-program-here"],
        cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 127
    assert "command not found: no-such-program-here" in result.stderr
    assert run(["-m", "squall.tornado_compat", "--help"], tmp_path).startswith("usage:")
