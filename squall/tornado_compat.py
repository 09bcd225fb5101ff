"""Run programs written for Tornado on squall, unchanged.

``python -m squall.tornado_compat COMMAND [ARGS...]`` runs COMMAND (a script, ``-m module``,
or any program on ``PATH``, such as a console script) so that every ``import tornado...``
in it, and in the Python processes it starts, resolves to squall. ``install()`` does the same
inside the running interpreter. The ``tornado`` module reports the Tornado version squall is
compatible with (``tornado.version_info``); ``squall.version`` stays squall's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Sequence
from typing import NoReturn, Optional

__all__ = ["ALIAS_PATH", "TORNADO_VERSION_INFO", "install", "main"]

ALIAS_PATH = os.path.dirname(
    os.path.abspath(importlib.import_module("squall._tornado_alias").__file__ or "")
)
"""The directory whose ``tornado`` package is squall (first on ``PYTHONPATH`` for children)."""

TORNADO_VERSION_INFO = (6, 6, 1, 0)


def install() -> None:
    """Makes ``import tornado...`` give squall in this interpreter from now on.

    Raises RuntimeError if the real Tornado was imported already: two copies of the same
    classes would mix badly. Calling it again does nothing.
    """
    current = sys.modules.get("tornado")
    if current is not None:
        if getattr(current, "__file__", "").startswith(ALIAS_PATH):
            return
        raise RuntimeError(
            "the real tornado package is imported already; call "
            "squall.tornado_compat.install() before anything imports tornado"
        )
    location = os.path.join(ALIAS_PATH, "tornado", "__init__.py")
    spec = importlib.util.spec_from_file_location(
        "tornado", location, submodule_search_locations=[]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tornado"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["tornado"]
        raise


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [ALIAS_PATH]
    # children must find squall itself too, wherever this copy was imported from
    paths.append(os.path.dirname(os.path.dirname(ALIAS_PATH)))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


_USAGE = """usage: python -m squall.tornado_compat COMMAND [ARGS...]

Runs COMMAND with `import tornado` resolving to squall. COMMAND is a Python script
(path ending in .py), `-m MODULE`, or a program on PATH (a console script, say).
"""


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_USAGE)
        sys.exit(0 if args else 2)
    env = _child_environment()
    if args[0] == "-m" or args[0].endswith(".py") or args[0] == "-c":
        command = [sys.executable, *args]
    else:
        program = shutil.which(args[0])
        if program is None:
            sys.stderr.write(f"squall.tornado_compat: command not found: {args[0]}\n")
            sys.exit(127)
        command = [program, *args[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
