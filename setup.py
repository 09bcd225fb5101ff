"""Builds squall's optional compiled request path; everything else is in pyproject.toml.

The modules listed in ``squall/_compiled.py`` are compiled by Cython from their ``.py``
sources (typed by the ``.pxd`` files beside them) into extensions placed next to those
sources. The build is best effort: without Cython or a working C compiler squall installs
as pure Python, with a warning and no error. ``SQUALL_BUILD_EXTENSIONS=0`` skips it on
purpose.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _compiled_modules() -> tuple[str, ...]:
    # Read without importing squall (its __init__ would import the rest of the package).
    namespace: dict[str, Any] = {}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "squall", "_compiled.py")
    with open(path, encoding="utf-8") as source:
        exec(compile(source.read(), path, "exec"), namespace)
    return tuple(namespace["MODULES"])


# Cython settings that keep the compiled modules behaving exactly like their sources:
# annotations are documentation, not type checks (a ``bytes`` hint must not start
# rejecting bytearray), and functions stay introspectable Python-like objects.
_DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,
    "binding": True,
    "embedsignature": False,
    "always_allow_keywords": True,
    "nonecheck": True,
}


def _wanted() -> bool:
    value = os.environ.get("SQUALL_BUILD_EXTENSIONS", "").strip().lower()
    return value not in ("0", "false", "no", "off")


def _extensions() -> list[Any]:
    if not _wanted():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write("squall: Cython is not installed; installing the pure-Python package\n")
        return []
    sources = [name.replace(".", "/") + ".py" for name in _compiled_modules()]
    try:
        return list(cythonize(sources, compiler_directives=_DIRECTIVES, quiet=True))
    except Exception as error:  # a Cython that cannot translate these sources
        sys.stderr.write(f"squall: Cython failed ({error}); installing the pure-Python package\n")
        return []


class _OptionalBuildExt(build_ext):
    """``build_ext`` that falls back to pure Python when compiling fails."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, missing headers, ...
            self._skip(error)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            self._skip(error)

    @staticmethod
    def _skip(error: BaseException) -> None:
        sys.stderr.write(f"squall: not compiling the request path ({error}); pure Python it is\n")


setup(ext_modules=_extensions(), cmdclass={"build_ext": _OptionalBuildExt})
