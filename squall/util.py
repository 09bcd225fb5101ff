"""Small helpers shared across squall: configurable classes, imports, gzip, exceptions."""

from __future__ import annotations

import builtins
import doctest
import inspect
import re
import sys
import unittest
import warnings
import weakref
import zlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NamedTuple, NoReturn, TypeVar

__all__ = [
    "ArgReplacer",
    "Configurable",
    "GzipDecompressor",
    "ObjectDict",
    "TimeoutError",
    "basestring_type",
    "bytes_type",
    "doctests",
    "errno_from_exception",
    "exec_in",
    "import_object",
    "raise_exc_info",
    "re_unescape",
    "timedelta_to_seconds",
    "unicode_type",
]

# Aliases kept for code written against Python 2 era Tornado.
bytes_type = bytes
unicode_type = str
basestring_type = str

# Re-exported: squall.util.TimeoutError is the builtin, as other modules expect.
TimeoutError = builtins.TimeoutError

_T = TypeVar("_T")


class ObjectDict(dict[str, Any]):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


_UNBOUNDED_DECOMPRESS = "GzipDecompressor.decompress without max_length is deprecated"


class GzipDecompressor:
    """Streaming gzip decoder with bounded output per call.

    Handles bodies made of several concatenated gzip members (RFC 1952 allows it). With
    ``max_length`` set, input that could not be decoded without exceeding it is kept in
    ``unconsumed_tail`` for the caller to pass back in.
    """

    __slots__ = ("_decoder", "_tail", "_seen_input")

    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""
        # Whether the current member has received any input; an empty stream is valid.
        self._seen_input = False

    def decompress(self, value: bytes, max_length: int = 0) -> bytes:
        """Decode ``value``; return at most ``max_length`` bytes (0 means no limit)."""
        if not max_length:
            # Unbounded output lets a tiny body expand without limit (Tornado 6.6 deprecation).
            warnings.warn(_UNBOUNDED_DECOMPRESS, DeprecationWarning, stacklevel=2)
        pieces = []
        budget = max_length
        data = value
        while True:
            if data:
                self._seen_input = True
            output = (
                self._decoder.decompress(data, budget)
                if max_length
                else self._decoder.decompress(data)
            )
            pieces.append(output)
            if max_length:
                budget -= len(output)
            if not self._decoder.eof:
                self._tail = self._decoder.unconsumed_tail
                break
            # One member ended; whatever follows must be another member.
            rest = self._decoder.unused_data
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._seen_input = False
            if not rest:
                self._tail = b""
                break
            if max_length and budget <= 0:
                self._tail = rest
                break
            data = rest
        return b"".join(pieces)

    @property
    def unconsumed_tail(self) -> bytes:
        """Input not yet decoded because the output limit was reached."""
        return self._tail

    def flush(self) -> bytes:
        """Finish the stream; raise ``zlib.error`` if it was truncated."""
        if self._tail:
            raise ValueError("cannot flush: input is left in unconsumed_tail")
        if not self._seen_input:
            return b""
        output = self._decoder.flush()
        if not self._decoder.eof:
            raise zlib.error("incomplete gzip stream")
        return output


def import_object(name: str) -> Any:
    """Import a dotted name: a module (``"os.path"``) or a member (``"os.path.join"``)."""
    if "." not in name:
        return __import__(name)
    module_name, _, member = name.rpartition(".")
    module = __import__(module_name, fromlist=[member])
    try:
        return getattr(module, member)
    except AttributeError:
        raise ImportError(f"No module named {member}") from None


def exec_in(code: Any, glob: dict[str, Any], loc: dict[str, Any] | None = None) -> None:
    """Run ``code`` in the given namespaces, without the caller's ``__future__`` flags."""
    if isinstance(code, str):
        code = compile(code, "<string>", "exec", dont_inherit=True)
    exec(code, glob, loc)


def raise_exc_info(
    exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None],
) -> NoReturn:
    """Re-raise the exception of a ``sys.exc_info()`` triple with its traceback."""
    try:
        if exc_info[1] is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        raise TypeError("raise_exc_info called with no exception")
    finally:
        # Break the frame <-> traceback reference cycle.
        exc_info = (None, None, None)


def errno_from_exception(e: BaseException) -> int | None:
    """The errno of an exception, from ``e.errno`` or else its first argument."""
    errno = getattr(e, "errno", None)
    if errno is not None:
        return errno  # type: ignore[no-any-return]
    if e.args:
        return e.args[0]  # type: ignore[no-any-return]
    return None


_ESCAPED_CHAR = re.compile(r"\\(.)", re.DOTALL)


def _unescape_one(match: re.Match[str]) -> str:
    char = match.group(1)
    if char.isalnum():
        raise ValueError("cannot unescape '\\\\" + char + "'")
    return char


def re_unescape(s: str) -> str:
    """Undo ``re.escape``; raise ``ValueError`` on class escapes such as ``\\d``."""
    return _ESCAPED_CHAR.sub(_unescape_one, s)


def timedelta_to_seconds(td: Any) -> float:
    """Total seconds of a ``datetime.timedelta`` as a float."""
    return td.total_seconds()  # type: ignore[no-any-return]


def _websocket_mask_python(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte WebSocket ``mask`` repeated (RFC 6455 section 5.3)."""
    if len(mask) != 4:
        raise ValueError("a WebSocket mask must be exactly 4 bytes")
    length = len(data)
    if not length:
        return b""
    repeats, extra = divmod(length, 4)
    key = mask * repeats + mask[:extra]
    masked = int.from_bytes(data, sys.byteorder) ^ int.from_bytes(key, sys.byteorder)
    return masked.to_bytes(length, sys.byteorder)


class _Choice(NamedTuple):
    """What ``configure()`` recorded for one configurable base."""

    impl: type[Configurable] | None
    kwargs: dict[str, Any]


# Configurable base -> its choice. Kept outside the classes so that a base's choice is
# never inherited by a configurable base below it; weak so test classes can go away.
_choices: weakref.WeakKeyDictionary[type, _Choice] = weakref.WeakKeyDictionary()


class Configurable:
    """Base for classes whose constructor returns an instance of a configured subclass.

    The class returned by ``configurable_base()`` is the "interface"; calling it builds an
    instance of the class chosen with ``configure()`` (or ``configurable_default()``), passing
    keyword arguments bound by ``configure`` plus the constructor's own to ``initialize``.
    Subclasses are always constructible directly.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        base = cls.configurable_base()
        impl: type[Configurable] = cls
        if cls is base:
            impl = cls.configured_class()
            kwargs = {**_choices[base].kwargs, **kwargs}
        if impl.configurable_base() is base:
            # __init__ is not used by configurables: initialize takes its place, so the
            # constructor's arguments reach the chosen subclass.
            instance = super().__new__(impl)
            instance.initialize(*args, **kwargs)
            return instance
        # The chosen class is a configurable base of its own: it picks its own subclass.
        return impl(*args, **kwargs)

    @classmethod
    def configurable_base(cls) -> type[Configurable]:
        """The class whose construction is redirected (usually the class defining this)."""
        raise NotImplementedError("Configurable subclasses must define configurable_base")

    @classmethod
    def configurable_default(cls) -> type[Configurable]:
        """The implementation used when nothing was configured."""
        raise NotImplementedError("Configurable subclasses must define configurable_default")

    def _initialize(self) -> None:
        pass

    initialize: Callable[..., None] = _initialize
    """Set up a new instance (takes the place of ``__init__``)."""

    @classmethod
    def configure(cls, impl: type[Configurable] | str | None, **kwargs: Any) -> None:
        """Choose the class built when the base is called, and keyword arguments for it."""
        chosen = import_object(impl) if isinstance(impl, str) else impl
        if chosen is not None and not (isinstance(chosen, type) and issubclass(chosen, cls)):
            raise ValueError(f"Invalid subclass of {cls}")
        _choices[cls.configurable_base()] = _Choice(chosen, kwargs)

    @classmethod
    def configured_class(cls) -> type[Configurable]:
        """The class currently configured for this base."""
        base = cls.configurable_base()
        choice = _choices.get(base)
        if choice is not None and choice.impl is not None:
            return choice.impl
        # Nothing chosen yet (or configure(None)): settle on the default, keeping any
        # keyword arguments configure() recorded.
        default = cls.configurable_default()
        _choices[base] = _Choice(default, choice.kwargs if choice is not None else {})
        return default

    @classmethod
    def _save_configuration(cls) -> _Choice | None:
        return _choices.get(cls.configurable_base())

    @classmethod
    def _restore_configuration(cls, saved: _Choice | None) -> None:
        base = cls.configurable_base()
        if saved is None:
            _choices.pop(base, None)
        else:
            _choices[base] = saved


class ArgReplacer:
    """Finds and replaces one named argument in ``(args, kwargs)`` for a given function."""

    __slots__ = ("name", "arg_pos")

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.name = name
        self.arg_pos: int | None
        try:
            self.arg_pos = self._positional_names(func).index(name)
        except ValueError:
            self.arg_pos = None

    @staticmethod
    def _positional_names(func: Callable[..., Any]) -> list[str]:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            # Builtins without a signature: fall back to the code object when there is one.
            code = getattr(func, "__code__", None)
            if code is None:
                return []
            return list(code.co_varnames[: code.co_argcount])
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return [p.name for p in signature.parameters.values() if p.kind in kinds]

    def get_old_value(
        self, args: Sequence[Any], kwargs: dict[str, Any], default: Any = None
    ) -> Any:
        """The argument's current value, or ``default`` if it was not passed."""
        if self.arg_pos is not None and len(args) > self.arg_pos:
            return args[self.arg_pos]
        return kwargs.get(self.name, default)

    def replace(
        self, new_value: Any, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[Any, Sequence[Any], dict[str, Any]]:
        """Put ``new_value`` in place; return ``(old_value, args, kwargs)``."""
        if self.arg_pos is not None and len(args) > self.arg_pos:
            old_value = args[self.arg_pos]
            new_args = list(args)
            new_args[self.arg_pos] = new_value
            return old_value, new_args, kwargs
        old_value = kwargs.get(self.name)
        kwargs[self.name] = new_value
        return old_value, args, kwargs


def doctests() -> unittest.TestSuite:
    """The doctests of this module, as a unittest suite."""
    return doctest.DocTestSuite()
