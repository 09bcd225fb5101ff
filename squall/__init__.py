"""Squall: an asynchronous networking library and web framework.

Squall mirrors the public API of Tornado 6.6 (``squall.web``, ``squall.ioloop``, ...) on top
of asyncio, using uvloop when it is installed.
"""

import importlib
from typing import Any

from squall._compiled import extensions_disabled, install_source_finder
from squall._loop_policy import install_uvloop_policy

# The version string and a tuple that sorts the way versions do (the last item is 0 for a
# release, negative for a pre-release).
version = "0.1.0"
version_info = (0, 1, 0, 0)

# The public submodules: Tornado's module names, plus squall's ``websocket`` and ``wsgi``.
_SUBMODULES = frozenset(
    """
    auth autoreload concurrent curl_httpclient escape gen http1connection httpclient
    httpserver httputil ioloop iostream locale locks log netutil options platform process
    queues routing simple_httpclient tcpclient tcpserver template testing util web
    websocket wsgi
    """.split()
)
__all__ = sorted(_SUBMODULES)
# squall's own capabilities beyond Tornado's: loaded the same way, kept out of __all__ (and
# so out of the ``tornado`` alias of squall.tornado_compat)
_SQUALL_SUBMODULES = frozenset({"asgi", "pubsub", "serve", "speedups", "tornado_compat"})

if extensions_disabled():
    # SQUALL_NO_EXTENSIONS: the pure-Python modules, even where compiled ones sit beside them.
    install_source_finder()
install_uvloop_policy()


def speedups_enabled() -> bool:
    """True when squall's request path runs compiled, False for the pure-Python modules."""
    from squall.speedups import speedups_enabled as enabled

    return enabled()


def __getattr__(name: str) -> Any:
    # PEP 562 hook: a submodule is imported the first time it is asked for, which keeps
    # ``import squall`` cheap and lets ``squall.web.Application`` work on its own.
    if name not in _SUBMODULES and name not in _SQUALL_SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | _SQUALL_SUBMODULES)
