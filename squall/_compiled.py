"""Which modules the optional compiled build covers, and the switch that turns it off.

``setup.py`` compiles these modules with Cython (from the very same ``.py`` sources, typed
by the ``.pxd`` files beside them) when a C compiler and Cython are there. The compiled
module sits next to its source and shadows it on import, unless ``SQUALL_NO_EXTENSIONS``
is set: then ``squall/__init__.py`` installs :class:`SourceFinder`, which loads these
modules from their ``.py`` files. This file is read by ``setup.py`` without importing
squall, so it imports nothing but the standard library.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Optional

# The request path, in the order a request meets them.
MODULES = (
    "squall._iostream_transport",
    "squall._iostream_buffer",
    "squall.iostream",
    "squall._http1parser",
    "squall.httputil",
    "squall.http1connection",
    "squall.httpserver",
    "squall.routing",
    "squall._web.application",
    "squall._web.handler",
    "squall.escape",
)


def extensions_disabled() -> bool:
    """True when ``SQUALL_NO_EXTENSIONS`` is set to anything but empty/0/false/no/off."""
    value = os.environ.get("SQUALL_NO_EXTENSIONS", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


class SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` sources, so that the extensions are not used."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in MODULES or not path:
            return None
        filename = fullname.rpartition(".")[2] + ".py"
        for directory in path:
            source = os.path.join(directory, filename)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install_source_finder() -> None:
    """Puts :class:`SourceFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourceFinder())
