"""Squall: an asynchronous networking library and web framework.

Squall mirrors the public API of Tornado 6.6 (``squall.web``, ``squall.ioloop``, ...) on top
of asyncio, using uvloop when it is installed.
"""

import importlib
from typing import Any

from squall._loop_policy import install_uvloop_policy

# The version string and a tuple that sorts the way versions do (the last item is 0 for a
# release, negative for a pre-release).
version = "0.1.0"
version_info = (0, 1, 0, 0)

__all__ = [
    "auth",
    "autoreload",
    "concurrent",
    "curl_httpclient",
    "escape",
    "gen",
    "http1connection",
    "httpclient",
    "httpserver",
    "httputil",
    "ioloop",
    "iostream",
    "locale",
    "locks",
    "log",
    "netutil",
    "options",
    "platform",
    "process",
    "queues",
    "routing",
    "simple_httpclient",
    "tcpclient",
    "tcpserver",
    "template",
    "testing",
    "util",
    "web",
    "websocket",
    "wsgi",
]


install_uvloop_policy()


def __getattr__(name: str) -> Any:
    # Submodules load on first attribute access, so ``import squall`` stays cheap and
    # ``squall.web.Application`` works without an explicit ``import squall.web``.
    if name in __all__:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
