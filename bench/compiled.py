"""A compiled copy of squall's HTTP/1 core: ``python -m bench.compiled [--test]``.

The design direction for the per-request cost that pure Python cannot remove: compile the
sans-IO parser (``squall/_http1parser.py``) and the connection layer
(``squall/http1connection.py``) with mypyc, keeping the very same source as the pure-Python
modules. This builds such a copy into ``build/compiled/`` (squall, its tests and the bench,
with the two modules as C extensions next to their sources) so that the benchmark can run
it as a further contender and the test suite can run against it (``--test``). Nothing here
changes the installed package: squall itself stays pure Python. Needs mypy (the ``dev``
extra) and a C compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from bench._harness import ROOT

BUILD_DIR = os.path.join(ROOT, "build", "compiled")
COMPILED_MODULES = ["squall/_http1parser.py", "squall/http1connection.py"]

_SETUP = (
    "import sys\n"
    "from setuptools import setup\n"
    "from mypyc.build import mypycify\n"
    "setup(name='squall-compiled-core', ext_modules=mypycify(sys.argv.pop(1).split(','),"
    " opt_level='3'))\n"
)


def build(target: str = BUILD_DIR) -> str:
    """Copy squall, its tests, the bench and the demo to ``target`` and compile the core there."""
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "results")
    for tree in ("squall", "tests", "bench", "examples"):
        shutil.copytree(os.path.join(ROOT, tree), os.path.join(target, tree), ignore=ignore)
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), target)
    with open(os.path.join(target, "setup_compiled.py"), "w") as setup_file:
        setup_file.write(_SETUP)
    built = subprocess.run(
        [
            sys.executable,
            "setup_compiled.py",
            ",".join(COMPILED_MODULES),
            "build_ext",
            "--inplace",
        ],
        cwd=target,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        # (setuptools' own chatter is only worth showing when the build failed)
        sys.stderr.write(built.stdout + built.stderr)
        built.check_returncode()
    return target


def main() -> None:
    target = build()
    print(f"compiled {', '.join(COMPILED_MODULES)} into {target}")
    if "--test" in sys.argv:
        # Run from the copy, so that its squall (with the extensions) is the one imported.
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-n",
                "2",
                "-p",
                "no:cacheprovider",
                "tests",
                "--deselect",
                "tests/test_chat_browser.py",
            ],
            cwd=target,
        )
        sys.exit(result.returncode)


if __name__ == "__main__":
    main()
