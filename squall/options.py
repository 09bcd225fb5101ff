"""Global, typed command-line and config-file options.

Any module may declare the options it needs with :func:`define`; the program's entry point
then calls :func:`parse_command_line` or :func:`parse_config_file` once, and everyone reads
values as attributes of :data:`options`::

    from squall.options import define, options, parse_command_line

    define("port", default=8888, help="port to listen on")

    if __name__ == "__main__":
        parse_command_line()
        print(options.port)

Options are typed (``int``, ``float``, ``str``, ``bool``, ``datetime.datetime``,
``datetime.timedelta`` or any callable taking a string); ``multiple=True`` takes a
comma-separated list (integer ranges such as ``1:3`` expand). Names may use ``-`` or ``_``
interchangeably. A separate :class:`OptionParser` can be created for sub-commands or tests.
"""

from __future__ import annotations

import datetime
import numbers
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from squall.log import define_logging_options

__all__ = [
    "Error",
    "OptionParser",
    "add_parse_callback",
    "define",
    "options",
    "parse_command_line",
    "parse_config_file",
    "print_help",
]


class Error(Exception):
    """Raised for a bad option definition or an invalid option value."""


class _Unset:
    """Marks an option that was never given a value (``None`` is a legitimate value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()

# Accepted --option=value spellings for datetime options, most specific first.
_DATETIME_FORMATS = (
    "%a %b %d %H:%M:%S %Y",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y%m%d %H:%M:%S",
    "%Y%m%d %H:%M",
    "%Y-%m-%d",
    "%Y%m%d",
    "%H:%M:%S",
    "%H:%M",
)

# Units for timedelta options; a bare number means seconds.
_TIMEDELTA_UNITS = {
    "": "seconds",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "d": "days",
    "day": "days",
    "days": "days",
    "h": "hours",
    "hr": "hours",
    "hour": "hours",
    "hours": "hours",
    "m": "minutes",
    "min": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "s": "seconds",
    "sec": "seconds",
    "second": "seconds",
    "seconds": "seconds",
    "ms": "milliseconds",
    "millisecond": "milliseconds",
    "milliseconds": "milliseconds",
    "us": "microseconds",
    "microsecond": "microseconds",
    "microseconds": "microseconds",
}
_TIMEDELTA_PART = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*")

# An integer range like 1:1000000000 would otherwise expand into an enormous list.
_MAX_MULTIPLE_ITEMS = 100_000

# Help layout: option names padded to this width, descriptions wrapped to fit 79 columns.
_HELP_NAME_WIDTH = 30
_HELP_TEXT_WIDTH = 79 - _HELP_NAME_WIDTH - 5


def _normalize_name(name: str) -> str:
    return name.replace("_", "-")


class _Option:
    __slots__ = (
        "name",
        "type",
        "help",
        "metavar",
        "multiple",
        "file_name",
        "group_name",
        "callback",
        "default",
        "_value",
    )

    def __init__(
        self,
        name: str,
        default: Any,
        type: type,
        help: str | None,
        metavar: str | None,
        multiple: bool,
        file_name: str,
        group_name: str,
        callback: Callable[[Any], None] | None,
    ) -> None:
        if default is None and multiple:
            default = []
        self.name = name
        self.type = type
        self.help = help
        self.metavar = metavar
        self.multiple = multiple
        self.file_name = file_name
        self.group_name = group_name
        self.callback = callback
        self.default = default
        self._value: Any = _UNSET

    def value(self) -> Any:
        return self.default if self._value is _UNSET else self._value

    def parse(self, text: str) -> Any:
        """Set the option from its command-line (string) form."""
        if self.multiple:
            items: list[Any] = []
            for part in text.split(","):
                if issubclass(self.type, numbers.Integral) and ":" in part:
                    low, _, high = part.partition(":")
                    span = range(self._convert(low), self._convert(high) + 1)
                    if len(items) + len(span) > _MAX_MULTIPLE_ITEMS:
                        raise Error(f"Option {self.name!r}: more than {_MAX_MULTIPLE_ITEMS} values")
                    items.extend(span)
                else:
                    items.append(self._convert(part))
            value: Any = items
        else:
            value = self._convert(text)
        self._assign(value)
        return value

    def set(self, value: Any) -> None:
        """Set the option from a Python value of the option's type."""
        if self.multiple:
            if not isinstance(value, list):
                raise Error(
                    f"Option {self.name!r} is required to be a list of {self.type.__name__}"
                )
            for item in value:
                if item is not None and not isinstance(item, self.type):
                    raise Error(
                        f"Option {self.name!r} is required to be a list of {self.type.__name__}"
                    )
        elif value is not None and not isinstance(value, self.type):
            raise Error(
                f"Option {self.name!r} is required to be a {self.type.__name__} "
                f"({type(value)} given)"
            )
        self._assign(value)

    def _assign(self, value: Any) -> None:
        self._value = value
        if self.callback is not None:
            self.callback(value)

    def _convert(self, text: str) -> Any:
        if self.type is str:
            return text
        if self.type is bool:
            return text.strip().lower() not in ("false", "0", "f", "no", "n", "off")
        if self.type is datetime.datetime:
            return _parse_datetime(text)
        if self.type is datetime.timedelta:
            return _parse_timedelta(text)
        return self.type(text)


def _parse_datetime(text: str) -> datetime.datetime:
    text = text.strip()
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise Error(f"Unrecognized date/time format: {text!r}")


def _parse_timedelta(text: str) -> datetime.timedelta:
    total = datetime.timedelta()
    position = 0
    text = text.strip()
    if not text:
        raise Error("Empty time span")
    while position < len(text):
        match = _TIMEDELTA_PART.match(text, position)
        if match is None or match.end() == position:
            raise Error(f"Unrecognized time span: {text!r}")
        number, unit = match.groups()
        field = _TIMEDELTA_UNITS.get(unit.lower())
        if field is None:
            raise Error(f"Unrecognized time unit {unit!r} in {text!r}")
        total += datetime.timedelta(**{field: float(number)})
        position = match.end()
    return total


class OptionParser:
    """A collection of options, usually used through the module-level :data:`options`.

    Values are read and written as attributes (``options.port``) or items
    (``options["port"]``); writing checks the value's type and runs the option's callback.
    """

    def __init__(self) -> None:
        # Attribute writes are routed to options, so internals go through __dict__.
        self.__dict__["_options"] = {}
        self.__dict__["_parse_callbacks"] = []
        self.define(
            "help",
            type=bool,
            help="show this help information",
            callback=self._help_callback,
        )

    def _get_option(self, name: str) -> _Option:
        option = self._options.get(_normalize_name(name))
        if option is None:
            raise AttributeError(f"Unrecognized option {name!r}")
        return option

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            # Keep copy/pickle/introspection probes from being mistaken for options.
            raise AttributeError(name)
        return self._get_option(name).value()

    def __setattr__(self, name: str, value: Any) -> None:
        self._get_option(name).set(value)

    def __iter__(self) -> Iterator[str]:
        return (option.name for option in self._options.values())

    def __contains__(self, name: str) -> bool:
        return _normalize_name(name) in self._options

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.__setattr__(name, value)

    def items(self) -> Iterable[tuple[str, Any]]:
        """``(name, value)`` pairs of every option."""
        return [(option.name, option.value()) for option in self._options.values()]

    def groups(self) -> set[str]:
        """The names of the groups options were defined in."""
        return {option.group_name for option in self._options.values()}

    def group_dict(self, group: str) -> dict[str, Any]:
        """Values of the options in ``group`` (of every option when ``group`` is empty)."""
        return {
            option.name: option.value()
            for option in self._options.values()
            if not group or option.group_name == group
        }

    def as_dict(self) -> dict[str, Any]:
        """Every option's value, by name."""
        return {option.name: option.value() for option in self._options.values()}

    def define(
        self,
        name: str,
        default: Any = None,
        type: type | None = None,
        help: str | None = None,
        metavar: str | None = None,
        multiple: bool = False,
        group: str | None = None,
        callback: Callable[[Any], None] | None = None,
    ) -> None:
        """Define a new option.

        ``type`` defaults to the type of ``default`` (``str`` when there is none);
        ``multiple`` makes the value a list; ``group`` (by default the defining file)
        groups options in the help; ``callback`` is called with each new value.
        """
        key = _normalize_name(name)
        if key in self._options:
            raise Error(f"Option {key!r} already defined in {self._options[key].file_name}")
        file_name = _defining_file()
        if type is None:
            type = default.__class__ if (default is not None and not multiple) else str
        self._options[key] = _Option(
            name,
            default=default,
            type=type,
            help=help,
            metavar=metavar,
            multiple=multiple,
            file_name=file_name,
            group_name=group or file_name,
            callback=callback,
        )

    def parse_command_line(self, args: list[str] | None = None, final: bool = True) -> list[str]:
        """Set options from ``args`` (``sys.argv`` by default; ``args[0]`` is the program).

        Parsing stops at the first argument that is not an option (or after ``--``); the
        remaining arguments are returned. With ``final`` the parse callbacks run.
        """
        if args is None:
            args = sys.argv
        remaining: list[str] = []
        for index in range(1, len(args)):
            argument = args[index]
            if not argument.startswith("-"):
                remaining = list(args[index:])
                break
            if argument == "--":
                remaining = list(args[index + 1 :])
                break
            name, has_value, value = argument.lstrip("-").partition("=")
            key = _normalize_name(name)
            option = self._options.get(key)
            if option is None:
                self.print_help()
                raise Error(f"Unrecognized command line option: {key!r}")
            if not has_value:
                if option.type is not bool:
                    raise Error(f"Option {key!r} requires a value")
                value = "true"
            option.parse(value)
        if final:
            self.run_parse_callbacks()
        return remaining

    def parse_config_file(self, path: str, final: bool = True) -> None:
        """Set options from a Python file whose global variables are option names.

        The file runs with ``__file__`` set to its absolute path. Variables that are not
        options are ignored. A string value for a non-string (or multiple) option is
        parsed as on the command line.
        """
        namespace: dict[str, Any] = {"__file__": os.path.abspath(path)}
        with open(path, "rb") as config_file:
            source = config_file.read()
        exec(compile(source, path, "exec"), namespace, namespace)
        for name, value in namespace.items():
            option = self._options.get(_normalize_name(name))
            if option is None:
                continue
            if option.multiple and not isinstance(value, (list, str)):
                raise Error(
                    f"Option {option.name!r} is required to be a list of "
                    f"{option.type.__name__} or a comma-separated string"
                )
            if isinstance(value, str) and (option.type is not str or option.multiple):
                option.parse(value)
            else:
                option.set(value)
        if final:
            self.run_parse_callbacks()

    def print_help(self, file: TextIO | None = None) -> None:
        """Write a usage summary of every option to ``file`` (stderr by default)."""
        out = sys.stderr if file is None else file
        program = sys.argv[0] if sys.argv else "program"
        lines = [f"Usage: {program} [OPTIONS]", "", "Options:", ""]
        by_group: dict[str, list[_Option]] = {}
        for option in self._options.values():
            by_group.setdefault(option.group_name, []).append(option)
        for group_name in sorted(by_group):
            if group_name:
                lines.extend(["", f"{os.path.normpath(group_name)} options:", ""])
            for option in sorted(by_group[group_name], key=lambda o: o.name):
                lines.extend(_help_lines(option))
        print("\n".join(lines), file=out)

    def _help_callback(self, value: bool) -> None:
        if value:
            self.print_help()
            sys.exit(0)

    def add_parse_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` after every final parse."""
        self._parse_callbacks.append(callback)

    def run_parse_callbacks(self) -> None:
        for callback in list(self._parse_callbacks):
            callback()

    def mockable(self) -> _Mockable:
        """An object for ``mock.patch.object(options.mockable(), "name", value)``.

        Patching ``options`` itself fails because mock deletes the attribute on exit;
        this wrapper turns that delete into restoring the previous value.
        """
        return _Mockable(self)


def _help_lines(option: _Option) -> list[str]:
    flag = _normalize_name(option.name)
    if option.metavar:
        flag += "=" + option.metavar
    description = option.help or ""
    if option.default is not None and option.default != "":
        description += f" (default {option.default})"
    wrapped = textwrap.wrap(description, _HELP_TEXT_WIDTH, break_on_hyphens=False)
    if len(flag) > _HELP_NAME_WIDTH or not wrapped:
        wrapped.insert(0, "")
    lines = [f"  --{flag:<{_HELP_NAME_WIDTH}} {wrapped[0]}"]
    indent = " " * (_HELP_NAME_WIDTH + 5)
    lines.extend(indent + line for line in wrapped[1:])
    return lines


def _defining_file() -> str:
    """The file that called ``define``, or ``""`` for options this module defines itself."""
    frame = sys._getframe(2)
    # The module-level define() is a pass-through: report its caller instead.
    if frame.f_code.co_name == "define" and frame.f_code.co_filename == __file__:
        frame = frame.f_back or frame
    file_name = frame.f_code.co_filename
    return "" if file_name == __file__ else file_name


class _Mockable:
    """Attribute view of an :class:`OptionParser` whose ``delattr`` restores a value."""

    def __init__(self, parser: OptionParser) -> None:
        self.__dict__["_parser"] = parser
        self.__dict__["_saved"] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._saved.setdefault(name, []).append(getattr(self._parser, name))
        setattr(self._parser, name, value)

    def __delattr__(self, name: str) -> None:
        stack = self._saved.get(name)
        if not stack:
            raise AttributeError(name)
        setattr(self._parser, name, stack.pop())
        if not stack:
            del self._saved[name]


options = OptionParser()
"""The global option set that :func:`define` and the parse functions use."""


def define(
    name: str,
    default: Any = None,
    type: type | None = None,
    help: str | None = None,
    metavar: str | None = None,
    multiple: bool = False,
    group: str | None = None,
    callback: Callable[[Any], None] | None = None,
) -> None:
    """Define an option in the global :data:`options`; see :meth:`OptionParser.define`."""
    options.define(
        name,
        default=default,
        type=type,
        help=help,
        metavar=metavar,
        multiple=multiple,
        group=group,
        callback=callback,
    )


def parse_command_line(args: list[str] | None = None, final: bool = True) -> list[str]:
    """Parse the command line into the global :data:`options`."""
    return options.parse_command_line(args, final=final)


def parse_config_file(path: str, final: bool = True) -> None:
    """Parse a config file into the global :data:`options`."""
    options.parse_config_file(path, final=final)


def print_help(file: TextIO | None = None) -> None:
    """Print the help of the global :data:`options`."""
    options.print_help(file)


def add_parse_callback(callback: Callable[[], None]) -> None:
    """Run ``callback()`` after every final parse of the global :data:`options`."""
    options.add_parse_callback(callback)


define_logging_options(options)
