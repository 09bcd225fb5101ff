"""``tornado``, answered by squall (installed by ``squall.tornado_compat``).

``import tornado.web`` gives ``squall.web`` itself (the same module object, so classes and
isinstance checks are shared); this package only reports the Tornado release squall keeps
compatible with, so programs that check ``tornado.version_info`` start.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

import squall

# the Tornado release whose public API squall mirrors
version = "6.6.1"
version_info = (6, 6, 1, 0)

__path__ = []  # type: ignore[no-redef]  # a package: the finder below supplies its submodules
__all__ = list(squall.__all__)

_ALIAS = "tornado."
_TARGET = "squall."


class _SquallModuleLoader(importlib.abc.Loader):
    """Hands out the already imported squall module for a ``tornado.*`` name."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        # the import system stamps the alias's spec on the module it gets; keep squall's
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._own_spec


class _SquallFinder(importlib.abc.MetaPathFinder):
    """Resolves ``tornado.X.Y`` to ``squall.X.Y`` wherever squall has that module."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if not fullname.startswith(_ALIAS):
            return None
        squall_name = _TARGET + fullname[len(_ALIAS) :]
        try:
            found = importlib.util.find_spec(squall_name)
        except (ImportError, ValueError):
            return None
        if found is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname,
            _SquallModuleLoader(squall_name),
            is_package=found.submodule_search_locations is not None,
        )


if not any(isinstance(finder, _SquallFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _SquallFinder())


def __getattr__(name: str) -> Any:
    # ``import tornado; tornado.web`` works without importing tornado.web first, as in squall
    if name in __all__:
        return importlib.import_module(_ALIAS + name)
    raise AttributeError(f"module 'tornado' has no attribute {name!r}")
