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
from typing import TYPE_CHECKING, Any

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
    # curses colour numbers: 1 red, 2 green, 3 yellow, 4 blue, 5 magenta.
    DEFAULT_COLORS = {
        logging.DEBUG: 4,
        logging.INFO: 2,
        logging.WARNING: 3,
        logging.ERROR: 1,
        logging.CRITICAL: 5,
    }

    def __init__(
        self,
        fmt: str = DEFAULT_FORMAT,
        datefmt: str = DEFAULT_DATE_FORMAT,
        style: str = "%",
        color: bool = True,
        colors: dict[int, int] = DEFAULT_COLORS,
    ) -> None:
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)  # type: ignore[arg-type]
        self._fmt = fmt
        self._colors: dict[int, str] = {}
        self._normal = ""
        if color and _stderr_supports_color():
            self._colors, self._normal = self._terminal_colors(colors)

    @staticmethod
    def _terminal_colors(colors: dict[int, int]) -> tuple[dict[int, str], str]:
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
    level_name = options.logging
    if level_name is None or str(level_name).lower() == "none":
        return
    if logger is None:
        logger = logging.getLogger()
    logger.setLevel(getattr(logging, str(level_name).upper()))

    if options.log_file_prefix:
        mode = options.log_rotate_mode
        file_handler: logging.Handler
        if mode == "size":
            file_handler = logging.handlers.RotatingFileHandler(
                filename=options.log_file_prefix,
                mode="a",
                maxBytes=options.log_file_max_size,
                backupCount=options.log_file_num_backups,
                encoding="utf-8",
            )
        elif mode == "time":
            file_handler = logging.handlers.TimedRotatingFileHandler(
                filename=options.log_file_prefix,
                when=options.log_rotate_when,
                interval=options.log_rotate_interval,
                backupCount=options.log_file_num_backups,
                encoding="utf-8",
            )
        else:
            raise ValueError(f"log_rotate_mode must be 'size' or 'time', not {mode!r}")
        file_handler.setFormatter(LogFormatter(color=False))
        logger.addHandler(file_handler)

    if options.log_to_stderr or (options.log_to_stderr is None and not logger.handlers):
        stderr_handler = logging.StreamHandler()
        stderr_handler.setFormatter(LogFormatter())
        logger.addHandler(stderr_handler)


def define_logging_options(options: OptionParser | None = None) -> None:
    """Define the logging command-line options on ``options`` (the global parser by default).

    Logging is configured by :func:`enable_pretty_logging` after each final parse.
    """
    if options is None:
        import squall.options

        options = squall.options.options
    options.define(
        "logging",
        default="info",
        help="Set the Python log level. 'none' leaves logging unconfigured.",
        metavar="debug|info|warning|error|none",
    )
    options.define(
        "log_to_stderr",
        type=bool,
        default=None,
        help="Send log output to stderr (colorized when possible). By default logs go to "
        "stderr unless --log-file-prefix is set.",
    )
    options.define(
        "log_file_prefix",
        type=str,
        default=None,
        metavar="PATH",
        help="Path prefix for log files; rotation follows --log-rotate-mode.",
    )
    options.define(
        "log_file_max_size",
        type=int,
        default=100 * 1000 * 1000,
        help="Maximum size of a log file in bytes before it is rotated.",
    )
    options.define(
        "log_file_num_backups",
        type=int,
        default=10,
        help="Number of rotated log files to keep.",
    )
    options.define(
        "log_rotate_when",
        type=str,
        default="midnight",
        help="Unit of the time-based rotation interval: 'S', 'M', 'H', 'D', 'W0'-'W6' or "
        "'midnight' (see logging.handlers.TimedRotatingFileHandler).",
    )
    options.define(
        "log_rotate_interval",
        type=int,
        default=1,
        help="Interval of time-based rotation, in --log-rotate-when units.",
    )
    options.define(
        "log_rotate_mode",
        type=str,
        default="size",
        help="How log files rotate: 'size' or 'time'.",
    )
    parser = options
    parser.add_parse_callback(lambda: enable_pretty_logging(parser))
