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

import collections
import dataclasses
import datetime
import functools
import inspect
import itertools
import numbers
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Concatenate, ParamSpec, TextIO, TypeVar

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

# Spellings a datetime option accepts: ctime()'s, then a date (ISO or compact) with an
# optional time after a space or a "T", then a bare time. strptime wants the whole text
# to match, so the order only sets which format is tried first.
_DATES = ("%Y-%m-%d", "%Y%m%d")
_TIMES = ("%H:%M:%S", "%H:%M")
_DATETIME_FORMATS = (
    "%a %b %d %H:%M:%S %Y",
    *(date + sep + time for date in _DATES for sep in (" ", "T") for time in _TIMES),
    *_DATES,
    *_TIMES,
)

# timedelta keyword -> the other words a time span may use for that unit.
_UNIT_WORDS = {
    "weeks": "w week",
    "days": "d day",
    "hours": "h hr hour",
    "minutes": "m min minute",
    "seconds": "s sec second",
    "milliseconds": "ms millisecond",
    "microseconds": "us microsecond",
}
# Every accepted unit spelling -> timedelta keyword; a bare number means seconds.
_TIMEDELTA_UNITS = {"": "seconds"} | {
    word: unit for unit, words in _UNIT_WORDS.items() for word in (unit, *words.split())
}
# One "<number><unit>" piece of a span such as "1h 30m"; the number is in float syntax.
_TIMEDELTA_PART = re.compile(
    r"""\s*
    ( [-+]? (?: \d+ (?:\.\d*)? | \.\d+ ) (?: [eE][-+]?\d+ )? )
    \s* ([a-zA-Z]*) \s*""",
    re.VERBOSE,
)

# An integer range like 1:1000000000 would otherwise expand into an enormous list.
_MAX_MULTIPLE_ITEMS = 100_000

# Help layout: option names padded to this width, descriptions wrapped to fit 79 columns.
_HELP_NAME_WIDTH = 30
_HELP_TEXT_WIDTH = 79 - _HELP_NAME_WIDTH - 5


def _normalize_name(name: str) -> str:
    return name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    return text.strip().lower() not in ("false", "0", "f", "no", "n", "off")


def _parse_datetime(text: str) -> datetime.datetime:
    text = text.strip()
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise Error(f"Unrecognized date/time format: {text!r}")


def _parse_timedelta(text: str) -> datetime.timedelta:
    text = text.strip()
    if not text:
        raise Error("Empty time span")
    total = datetime.timedelta()
    position = 0
    while position < len(text):
        match = _TIMEDELTA_PART.match(text, position)
        if match is None or match.end() == position:
            raise Error(f"Unrecognized time span: {text!r}")
        number, unit = match.groups()
        keyword = _TIMEDELTA_UNITS.get(unit.lower())
        if keyword is None:
            raise Error(f"Unrecognized time unit {unit!r} in {text!r}")
        total += datetime.timedelta(**{keyword: float(number)})
        position = match.end()
    return total


# How a command-line string becomes a value, for the types that are not just called
# with the string.
_PARSERS: dict[Any, Callable[[str], Any]] = {
    bool: _parse_bool,
    datetime.datetime: _parse_datetime,
    datetime.timedelta: _parse_timedelta,
}


@dataclasses.dataclass(slots=True, eq=False)
class _Option:
    name: str
    type: type
    default: Any
    help: str | None
    metavar: str | None
    multiple: bool
    file_name: str
    group_name: str
    callback: Callable[[Any], None] | None
    _value: Any = _UNSET

    def value(self) -> Any:
        return self.default if self._value is _UNSET else self._value

    def parse(self, text: str) -> Any:
        """Set the option from its command-line (string) form."""
        convert = _PARSERS.get(self.type, self.type)
        if not self.multiple:
            value = convert(text)
        else:
            value = []
            ranges = issubclass(self.type, numbers.Integral)
            for part in text.split(","):
                low, colon, high = part.partition(":")
                if not (ranges and colon):
                    value.append(convert(part))
                    continue
                # Integer items may be inclusive ranges, "1:3" meaning 1, 2, 3.
                span = range(convert(low), convert(high) + 1)
                if len(value) + len(span) > _MAX_MULTIPLE_ITEMS:
                    raise Error(f"Option {self.name!r}: more than {_MAX_MULTIPLE_ITEMS} values")
                value += span
        self._assign(value)
        return value

    def set(self, value: Any) -> None:
        """Set the option from a Python value of the option's type."""
        wanted = self.type

        def fits(item: Any) -> bool:
            return item is None or isinstance(item, wanted)

        if self.multiple:
            if not (isinstance(value, list) and all(map(fits, value))):
                raise Error(f"Option {self.name!r} is required to be a list of {wanted.__name__}")
        elif not fits(value):
            raise Error(
                f"Option {self.name!r} is required to be a {wanted.__name__} ({type(value)} given)"
            )
        self._assign(value)

    def _assign(self, value: Any) -> None:
        self._value = value
        if self.callback is not None:
            self.callback(value)

    def help_lines(self) -> list[str]:
        """This option's entry in ``--help``: the flag, then its wrapped description."""
        flag = _normalize_name(self.name) + (f"={self.metavar}" if self.metavar else "")
        description = self.help or ""
        if self.default not in (None, ""):
            description += f" (default {self.default})"
        text = textwrap.wrap(description, _HELP_TEXT_WIDTH, break_on_hyphens=False)
        # A flag too long for its column, or no description, puts the text on new lines.
        first = "" if len(flag) > _HELP_NAME_WIDTH or not text else text.pop(0)
        indent = " " * (_HELP_NAME_WIDTH + 5)
        return [f"  --{flag.ljust(_HELP_NAME_WIDTH)} {first}", *(indent + line for line in text)]


def _show_help_and_exit(parser: OptionParser, wanted: bool) -> None:
    # The --help option's callback.
    if wanted:
        parser.print_help()
        sys.exit(0)


class OptionParser:
    """A collection of options, usually used through the module-level :data:`options`.

    Values are read and written as attributes (``options.port``) or items
    (``options["port"]``); writing checks the value's type and runs the option's callback.
    """

    def __init__(self) -> None:
        # Attribute writes are routed to options, so internals go through __dict__.
        self.__dict__.update(_options={}, _parse_callbacks=[])
        show_help = functools.partial(_show_help_and_exit, self)
        self.define("help", type=bool, help="show this help information", callback=show_help)

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
        return list(self.as_dict().items())

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
        return self.group_dict("")

    # (the parameters are Tornado's documented API: names, order and defaults)
    def define(
        self, name: str, default: Any = None, type: type | None = None,
        help: str | None = None, metavar: str | None = None, multiple: bool = False,
        group: str | None = None, callback: Callable[[Any], None] | None = None,
    ) -> None:
        """Define a new option.

        ``type`` defaults to the type of ``default`` (``str`` when there is none);
        ``multiple`` makes the value a list; ``group`` (by default the defining file)
        groups options in the help; ``callback`` is called with each new value.
        """
        key = _normalize_name(name)
        existing = self._options.get(key)
        if existing is not None:
            raise Error(f"Option {key!r} already defined in {existing.file_name}")
        where = _defining_file()
        if type is None:
            # A list default says nothing about the items' type, so multiple falls to str.
            type = str if default is None or multiple else default.__class__
        if multiple and default is None:
            default = []
        self._options[key] = _Option(
            name, type, default, help, metavar, multiple, where, group or where, callback
        )

    def parse_command_line(self, args: list[str] | None = None, final: bool = True) -> list[str]:
        """Set options from ``args`` (``sys.argv`` by default; ``args[0]`` is the program).

        Parsing stops at the first argument that is not an option (or after ``--``); the
        remaining arguments are returned. With ``final`` the parse callbacks run.
        """
        pending = collections.deque((sys.argv if args is None else args)[1:])
        while pending and pending[0].startswith("-"):
            flag = pending.popleft()
            if flag == "--":
                break
            self._apply_flag(flag)
        if final:
            self.run_parse_callbacks()
        return list(pending)

    def _apply_flag(self, flag: str) -> None:
        # "--name=value", or "--name" alone for a bool option (meaning true).
        name, equals, text = flag.lstrip("-").partition("=")
        key = _normalize_name(name)
        option = self._options.get(key)
        if option is None:
            self.print_help()
            raise Error(f"Unrecognized command line option: {key!r}")
        if not equals and option.type is not bool:
            raise Error(f"Option {key!r} requires a value")
        option.parse(text if equals else "true")

    def parse_config_file(self, path: str, final: bool = True) -> None:
        """Set options from a Python file whose global variables are option names.

        The file runs with ``__file__`` set to its absolute path. Variables that are not
        options are ignored. A string value for a non-string (or multiple) option is
        parsed as on the command line.
        """
        with open(path, "rb") as config_file:
            code = compile(config_file.read(), path, "exec")
        namespace: dict[str, Any] = {"__file__": os.path.abspath(path)}
        exec(code, namespace, namespace)
        known = {key: self._options.get(_normalize_name(key)) for key in namespace}
        for key, option in known.items():
            if option is not None:
                _apply_config_value(option, namespace[key])
        if final:
            self.run_parse_callbacks()

    def print_help(self, file: TextIO | None = None) -> None:
        """Write a usage summary of every option to ``file`` (stderr by default)."""
        program = sys.argv[0] if sys.argv else "program"
        lines = [f"Usage: {program} [OPTIONS]", "", "Options:", ""]
        ordered = sorted(self._options.values(), key=lambda o: (o.group_name, o.name))
        for group_name, members in itertools.groupby(ordered, key=lambda o: o.group_name):
            if group_name:
                lines += ["", f"{os.path.normpath(group_name)} options:", ""]
            for option in members:
                lines += option.help_lines()
        print("\n".join(lines), file=sys.stderr if file is None else file)

    def run_parse_callbacks(self) -> None:
        # A copy: a callback may register another one.
        for callback in tuple(self._parse_callbacks):
            callback()

    def add_parse_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` after every final parse."""
        self._parse_callbacks.append(callback)

    def mockable(self) -> _Mockable:
        """An object for ``mock.patch.object(options.mockable(), "name", value)``.

        Patching ``options`` itself fails because mock deletes the attribute on exit;
        this wrapper turns that delete into restoring the previous value.
        """
        return _Mockable(self)


def _apply_config_value(option: _Option, value: Any) -> None:
    if isinstance(value, str) and (option.multiple or option.type is not str):
        # Strings in a config file read as they would on the command line.
        option.parse(value)
    elif option.multiple and not isinstance(value, list):
        raise Error(
            f"Option {option.name!r} is required to be a list of "
            f"{option.type.__name__} or a comma-separated string"
        )
    else:
        option.set(value)


def _defining_file() -> str:
    """The file that called ``define``, or ``""`` for options this module defines itself."""
    frame = sys._getframe(2)
    # The module-level define() is a pass-through: report its caller instead.
    if frame.f_code.co_name == "_forward" and frame.f_code.co_filename == __file__:
        frame = frame.f_back or frame
    file_name = frame.f_code.co_filename
    return "" if file_name == __file__ else file_name


class _Mockable:
    """Attribute view of an :class:`OptionParser` whose ``delattr`` restores a value."""

    __slots__ = ("_target", "_undo")

    def __init__(self, parser: OptionParser) -> None:
        # object.__setattr__: our own __setattr__ forwards to the parser.
        object.__setattr__(self, "_target", parser)
        object.__setattr__(self, "_undo", collections.defaultdict(list))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # A stack per name, so nested patches of one option unwind in order.
        self._undo[name].append(self._target[name])
        self._target[name] = value

    def __delattr__(self, name: str) -> None:
        previous = self._undo.get(name)
        if not previous:
            raise AttributeError(name)
        self._target[name] = previous.pop()
        if not previous:
            del self._undo[name]


options = OptionParser()
"""The global option set that :func:`define` and the parse functions use."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _on_global_options(method: Callable[Concatenate[OptionParser, _P], _R]) -> Callable[_P, _R]:
    """The module-level function for an :class:`OptionParser` method: it calls the method
    on :data:`options` (looked up at call time) and has the method's signature less self."""

    def _forward(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(options, *args, **kwargs)

    signature = inspect.signature(method)
    _forward.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    _forward.__name__ = _forward.__qualname__ = method.__name__
    _forward.__doc__ = f"OptionParser.{method.__name__} on the global :data:`options`."
    _forward.__module__ = __name__
    return _forward


define = _on_global_options(OptionParser.define)
parse_command_line = _on_global_options(OptionParser.parse_command_line)
parse_config_file = _on_global_options(OptionParser.parse_config_file)
print_help = _on_global_options(OptionParser.print_help)
add_parse_callback = _on_global_options(OptionParser.add_parse_callback)

define_logging_options(options)
