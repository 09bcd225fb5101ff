"""Squall's loggers and a compact, optionally coloured log format.

Three loggers carry squall's own output:

* ``squall.access``: one line per HTTP request served.
* ``squall.application``: errors raised by application code (handler exceptions, ...).
* ``squall.general``: everything else squall has to say (I/O errors, warnings).

:func:`enable_pretty_logging` wires :class:`LogFormatter` onto the root logger (or a file);
:func:`define_logging_options` adds the matching ``--logging``/``--log-file-prefix``
command-line options to an :class:`~squall.options.OptionParser`.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from squall.options import OptionParser

# Colour support is optional: curses is missing on Windows and some minimal builds, and
# colorama (for Windows consoles) is only used when the user has it installed.
try:
    import curses
except ImportError:  # pragma: no cover - platform dependent
    curses = None  # type: ignore[assignment]

try:
    import colorama  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    colorama = None

access_log = logging.getLogger("squall.access")
app_log = logging.getLogger("squall.application")
gen_log = logging.getLogger("squall.general")

__all__ = [
    "LogFormatter",
    "access_log",
    "app_log",
    "define_logging_options",
    "enable_pretty_logging",
    "gen_log",
]

# ANSI "set foreground colour" sequence, used when curses cannot describe the terminal.
_ANSI_COLOR = "\033[2;3%dm"
_ANSI_RESET = "\033[0m"


def _stderr_supports_color() -> bool:
    """True when stderr is a terminal that understands colour escapes."""
    try:
        if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
            return False
        if curses is not None:
            curses.setupterm()
            if curses.tigetnum("colors") > 0:
                return True
        # On Windows, colorama translates escapes only on the stderr it wrapped.
        wrapped_stderr = getattr(getattr(colorama, "initialise", None), "wrapped_stderr", None)
        if wrapped_stderr is not None and sys.stderr is wrapped_stderr:
            return True
    except Exception:
        # A terminal curses cannot describe (TERM unset, unknown terminfo) gets no colour.
        return False
    return False


def _describe_failed_record(record: logging.LogRecord, error: Exception) -> str:
    # A log call with bad arguments must not take the program down; say what went wrong.
    return f"Bad message ({error!r}): {record.__dict__!r}"


class LogFormatter(logging.Formatter):
    """Formatter for squall's log lines: ``[L yymmdd hh:mm:ss module:line] message``.

    On a colour terminal the bracketed prefix is coloured by level. Continuation lines
    (multi-line messages, tracebacks) are indented so each record reads as one block.
    The ``fmt`` string may use ``%(color)s`` and ``%(end_color)s`` around what should
    be coloured.
    """

    DEFAULT_FORMAT = (
        "%(color)s[%(levelname)1.1s %(asctime)s %(module)s:%(lineno)d]%(end_color)s %(message)s"
    )
    DEFAULT_DATE_FORMAT = "%y%m%d %H:%M:%S"
    # Tornado's default level colours, as curses colour numbers: debug blue (4), info
    # green (2), warning yellow (3), error red (1), critical magenta (5).
    DEFAULT_COLORS = dict(
        zip(
            (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL),
            (4, 2, 3, 1, 5),
            strict=True,
        )
    )

    def __init__(
        self,
        fmt: str = DEFAULT_FORMAT,
        datefmt: str = DEFAULT_DATE_FORMAT,
        style: Literal["%", "{", "$"] = "%",
        color: bool = True,
        colors: Mapping[int, int] = DEFAULT_COLORS,
    ) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)
        self._fmt = fmt
        self._colors: dict[int, str] = {}
        self._normal = ""
        if color and _stderr_supports_color():
            self._colors, self._normal = self._terminal_colors(colors)

    @staticmethod
    def _terminal_colors(colors: Mapping[int, int]) -> tuple[dict[int, str], str]:
        if curses is not None:
            try:
                set_foreground = curses.tigetstr("setaf") or curses.tigetstr("setf") or b""
                reset = curses.tigetstr("sgr0") or b""
                if set_foreground:
                    by_level = {
                        level: curses.tparm(set_foreground, code).decode("ascii")
                        for level, code in colors.items()
                    }
                    return by_level, reset.decode("ascii")
            except curses.error:
                pass
        return {level: _ANSI_COLOR % code for level, code in colors.items()}, _ANSI_RESET

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as error:
            message = _describe_failed_record(record, error)
        record.message = message
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        color = self._colors.get(record.levelno)
        record.color = color or ""
        record.end_color = self._normal if color else ""
        formatted = self.formatMessage(record)

        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        extra = []
        if record.exc_text:
            extra.append(record.exc_text)
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        if extra:
            formatted = "\n".join([formatted.rstrip(), *extra])
        return formatted.replace("\n", "\n    ")


def enable_pretty_logging(options: Any = None, logger: logging.Logger | None = None) -> None:
    """Configure ``logger`` (the root logger by default) from the logging options.

    ``options`` defaults to :data:`squall.options.options`; it must carry the options
    that :func:`define_logging_options` defines.
    """
    if options is None:
        import squall.options

        options = squall.options.options
    level_name = str(options.logging)
    if options.logging is None or level_name.lower() == "none":
        return
    target = logging.getLogger() if logger is None else logger
    target.setLevel(getattr(logging, level_name.upper()))
    if options.log_file_prefix:
        to_file = _rotating_file_handler(options)
        to_file.setFormatter(LogFormatter(color=False))
        target.addHandler(to_file)
    # Unset (None), stderr is the fallback for a logger that has nowhere else to write.
    wants_stderr = options.log_to_stderr
    if wants_stderr is None:
        wants_stderr = not target.handlers
    if wants_stderr:
        to_stderr = logging.StreamHandler()
        to_stderr.setFormatter(LogFormatter())
        target.addHandler(to_stderr)


def _rotating_file_handler(options: Any) -> logging.Handler:
    """The handler for ``--log-file-prefix``, rotating by size or by time."""
    mode = options.log_rotate_mode
    common = {
        "filename": options.log_file_prefix,
        "backupCount": options.log_file_num_backups,
        "encoding": "utf-8",
    }
    if mode == "time":
        return logging.handlers.TimedRotatingFileHandler(
            when=options.log_rotate_when, interval=options.log_rotate_interval, **common
        )
    if mode == "size":
        return logging.handlers.RotatingFileHandler(maxBytes=options.log_file_max_size, **common)
    raise ValueError(f"log_rotate_mode must be 'size' or 'time', not {mode!r}")


# Tornado's documented logging options: (name, type, default, metavar, help).
_LOGGING_OPTIONS: tuple[tuple[str, type, Any, str | None, str], ...] = (
    ("logging", str, "info", "debug|info|warning|error|none",
     "Set the Python log level. 'none' leaves logging unconfigured."),
    ("log_to_stderr", bool, None, None,
     "Send log output to stderr (colorized when possible). By default logs go to "
     "stderr unless --log-file-prefix is set."),
    ("log_file_prefix", str, None, "PATH",
     "Path prefix for log files; rotation follows --log-rotate-mode."),
    ("log_file_max_size", int, 100 * 1000 * 1000, None,
     "Maximum size of a log file in bytes before it is rotated."),
    ("log_file_num_backups", int, 10, None, "Number of rotated log files to keep."),
    ("log_rotate_when", str, "midnight", None,
     "Unit of the time-based rotation interval: 'S', 'M', 'H', 'D', 'W0'-'W6' or "
     "'midnight' (see logging.handlers.TimedRotatingFileHandler)."),
    ("log_rotate_interval", int, 1, None,
     "Interval of time-based rotation, in --log-rotate-when units."),
    ("log_rotate_mode", str, "size", None, "How log files rotate: 'size' or 'time'."),
)  # fmt: skip


def define_logging_options(options: OptionParser | None = None) -> None:
    """Define the logging command-line options on ``options`` (the global parser by default).

    Logging is configured by :func:`enable_pretty_logging` after each final parse.
    """
    if options is None:
        import squall.options

        options = squall.options.options
    for name, kind, default, metavar, help_text in _LOGGING_OPTIONS:
        options.define(name, default=default, type=kind, help=help_text, metavar=metavar)
    parser = options
    parser.add_parse_callback(lambda: enable_pretty_logging(parser))
