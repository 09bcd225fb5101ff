"""``python -m squall COMMAND``: the squall command line (also the ``squall`` script)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

_USAGE = """usage: squall COMMAND [ARGS...]

commands:
  serve MODULE:ATTR [options]   serve an application with workers (squall serve --help)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from squall.serve import main as serve_main

        return serve_main(rest)
    if command in ("--version", "version"):
        import squall

        sys.stdout.write(f"squall {squall.version}\n")
        return 0
    sys.stderr.write(f"squall: unknown command {command!r}\n{_USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
