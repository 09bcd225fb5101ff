"""Fast paths, and which implementation of squall's request path is running.

Tornado ships ``speedups`` as a C extension with ``websocket_mask``; squall's is pure
Python but avoids per-byte loops, so code that looks for it (as Tornado's does) gets the
fast implementation. :func:`speedups_enabled` tells whether the request path runs compiled
(see ``squall._compiled``).
"""

import importlib
import importlib.machinery

from squall._compiled import MODULES
from squall._websocket_frames import mask_payload as websocket_mask

__all__ = ["websocket_mask", "speedups_enabled"]

_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def speedups_enabled() -> bool:
    """True when every module of the compiled request path was loaded from its extension."""
    for name in MODULES:
        module = importlib.import_module(name)
        if not str(getattr(module, "__file__", "")).endswith(_EXTENSION_SUFFIXES):
            return False
    return True
