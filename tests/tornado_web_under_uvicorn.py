"""Tornado's own web_test.py cases, their requests served by uvicorn through ASGIAdapter.

``python tests/tornado_web_under_uvicorn.py [--exclude] CLASS[.test_name]...`` (run by
tests/test_asgi_tornado_web.py in a process of its own, since it aliases ``tornado`` to
squall): ``tornado.test.*`` are the files of the real Tornado installed beside squall (the
dev extra pins it), every other ``tornado.*`` is squall's module. Each test case builds its
squall Application as usual; its URLs point at a uvicorn server, in a thread, serving
``ASGIAdapter(app)``, so every fetch crosses a real socket into uvicorn and through the
adapter. Prints unittest's report; exits non-zero when a test fails.
"""
import importlib.abc
import importlib.util
import os
import socket
import sys
import threading
import unittest

_tornado = importlib.util.find_spec("tornado")
assert _tornado is not None and _tornado.submodule_search_locations
TESTS = os.path.join(list(_tornado.submodule_search_locations)[0], "test")

from squall import tornado_compat  # noqa: E402

tornado_compat.install()


class TornadoTestsFinder(importlib.abc.MetaPathFinder):
    """tornado.test.* from Tornado's own files; everything else under tornado is squall."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "tornado.test":
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(TESTS, "__init__.py"), submodule_search_locations=[TESTS]
            )
        if fullname.startswith("tornado.test."):
            name = fullname.rpartition(".")[2]
            return importlib.util.spec_from_file_location(fullname, os.path.join(TESTS, name + ".py"))
        return None


sys.meta_path.insert(0, TornadoTestsFinder())

import uvicorn  # noqa: E402
from tornado.test import web_test  # noqa: E402

from squall.asgi import ASGIAdapter  # noqa: E402


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UnderUvicorn:
    _uv = None

    def _start_uvicorn(self):
        # started on the first URL asked for: some setUp methods fetch before returning
        self._uv_port = free_port()
        config = uvicorn.Config(
            ASGIAdapter(self._app), host="127.0.0.1", port=self._uv_port,
            lifespan="off", log_level="warning", loop="asyncio", http="h11", ws="none",
        )
        self._uv = uvicorn.Server(config)
        self._uv_thread = threading.Thread(target=self._uv.run, daemon=True)
        self._uv_thread.start()
        while not self._uv.started:
            if not self._uv_thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            self._uv_thread.join(0.01)

    def get_url(self, path):
        if self._uv is None:
            self._start_uvicorn()
        return f"http://127.0.0.1:{self._uv_port}{path}"

    def tearDown(self):
        if self._uv is not None:
            self._uv.should_exit = True
            self._uv_thread.join(10)
        super().tearDown()


def test_case_classes():
    """The names of web_test's test case classes that serve an application."""
    return sorted(
        name
        for name, value in vars(web_test).items()
        if isinstance(value, type)
        and issubclass(value, web_test.AsyncHTTPTestCase)
        and value.__module__ == web_test.__name__
        and any(name.startswith("test") for name in dir(value))
    )


def suite(names, excluded=()):
    """The named classes' tests, less those named ``Class.test_name`` in ``excluded``."""
    loader = unittest.TestLoader()
    tests = unittest.TestSuite()
    for name in names:
        base = getattr(web_test, name)
        cls = type(name + "UnderUvicorn", (UnderUvicorn, base), {})
        for method in loader.getTestCaseNames(cls):
            if f"{name}.{method}" not in excluded:
                tests.addTest(cls(method))
    return tests


if __name__ == "__main__":
    # as Tornado's own test runner does with its access log
    import logging

    logging.getLogger("squall.access").setLevel(logging.CRITICAL)
    args = sys.argv[1:]
    excluded = set(args[1:]) if args[:1] == ["--exclude"] else set()
    if excluded:
        names = [name for name in test_case_classes() if name not in excluded]
    else:
        names = args or test_case_classes()
    result = unittest.TextTestRunner(verbosity=2).run(suite(names, excluded))
    print(f"ran {result.testsRun} failures {len(result.failures)} errors {len(result.errors)}")
    sys.exit(0 if result.wasSuccessful() else 1)
