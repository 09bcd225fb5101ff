"""What generated template code calls at run time (private part of ``squall.template``).

Printing a value goes through ``escape_html`` (the default autoescape), ``raw_text``
(``{% raw %}`` and autoescape off) or an application escape function; the generated
function gets them, with the names every template sees, from ``render_namespace``.
"""

from __future__ import annotations

import builtins
import datetime
import functools
import re
from typing import Any, Callable, Dict, List, Mapping, Tuple

from squall import escape

_NEEDS_ESCAPE = re.compile("[&<>\"']").search


def escape_html(value: Any) -> str:
    """The same text as ``xhtml_escape`` gives, for any value a template prints."""
    kind = value.__class__
    if kind is str:
        # isalnum() answers at once for word-like values. Otherwise five substring
        # tests (each a fast scan) and only the replacements needed cost less than a
        # regex search followed by all five replacements. "&" goes first so that the
        # entities added after it are not escaped again.
        if value.isalnum():
            return value  # type: ignore[no-any-return]
        if "&" in value:
            value = value.replace("&", "&amp;")
        if "<" in value:
            value = value.replace("<", "&lt;")
        if ">" in value:
            value = value.replace(">", "&gt;")
        if '"' in value:
            value = value.replace('"', "&quot;")
        if "'" in value:
            value = value.replace("'", "&#x27;")
        return value  # type: ignore[no-any-return]
    if kind is int or kind is float:
        # Their text never holds a character that needs escaping.
        return str(value)
    if isinstance(value, str):
        value = str.__str__(value)
    elif isinstance(value, bytes):
        value = value.decode("utf-8")
    else:
        value = str(value)
    if _NEEDS_ESCAPE(value) is None:
        return value  # type: ignore[no-any-return]
    return _replace_specials(value)


def _replace_specials(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def raw_text(value: Any) -> str:
    """A value printed without escaping; bytes survive the final encode unchanged."""
    if value.__class__ is str:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def text_from_filter(result: Any) -> str:
    """The output of an ``{% apply %}`` function or custom escape function, as text."""
    if isinstance(result, str):
        return str.__str__(result)
    if isinstance(result, bytes):
        return result.decode("utf-8", "surrogateescape")
    if result is None:
        raise TypeError("template filter function returned None; expected str or bytes")
    raise TypeError(f"Expected bytes, unicode, or None; got {type(result)!r}")


def escape_with(function: Callable[[bytes], Any], value: Any) -> str:
    """Run an application escape function: it gets UTF-8 bytes, as in Tornado."""
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes):
        data = value
    else:
        data = str(value).encode("utf-8")
    return text_from_filter(function(data))


def make_custom_escaper(function: Callable[[bytes], Any]) -> Callable[[Any], str]:
    """``escape_with`` bound to ``function``."""
    return functools.partial(escape_with, function)


def missing_escaper(name: str) -> Callable[[Any], str]:
    """Stands for an undefined autoescape function; fails only if a value is printed."""

    def run(value: Any) -> str:
        raise NameError(f"name {name!r} is not defined (the template's autoescape function)")

    return run


def _to_bytes(parts: List[str]) -> bytes:
    return "".join(parts).encode("utf-8", "surrogateescape")


def _custom_escape(function: Any, value: Any) -> str:
    # Used when the escape function is only known at run time (a name bound by the
    # template itself, or an arbitrary expression): look it up on every use.
    if function is escape.xhtml_escape:
        return escape_html(value)
    return escape_with(function, value)


# The names Tornado documents as visible in every template: five functions of the escape
# module under their own names, xhtml_escape once more as "escape", and datetime.
_BASE_NAMESPACE: Dict[str, Any] = {
    name: getattr(escape, name)
    for name in ("xhtml_escape", "url_escape", "json_encode", "squeeze", "linkify")
}
_BASE_NAMESPACE.update(escape=escape.xhtml_escape, datetime=datetime)
# What generated code calls; "_tt_" keeps it out of the way of the template's own names.
_BASE_NAMESPACE.update(
    _tt_utf8=escape.utf8,
    _tt_string_types=(str, bytes),
    _tt_raw_text=raw_text,
    _tt_filtered=text_from_filter,
    _tt_to_bytes=_to_bytes,
    _tt_custom_escape=_custom_escape,
)

_MISSING = object()


def _resolve_escaper(namespace: Dict[str, Any], name: str) -> Callable[[Any], str]:
    function = namespace.get(name, _MISSING)
    if function is _MISSING:
        function = builtins.__dict__.get(name, _MISSING)
    if function is escape.xhtml_escape:
        return escape_html
    if function is _MISSING:
        return missing_escaper(name)
    return make_custom_escaper(function)


def render_namespace(
    fixed: Mapping[str, Any],
    own: Mapping[str, Any],
    arguments: Mapping[str, Any],
    escape_slots: Tuple[Tuple[str, str], ...],
) -> Dict[str, Any]:
    """The globals of one render: the base names, then ``fixed`` (module name and source
    provider), the loader's namespace (``own``), the caller's ``arguments``, and last the
    escape functions the generated code takes from named slots."""
    namespace = {**_BASE_NAMESPACE, **fixed, **own, **arguments}
    for slot, escape_name in escape_slots:
        namespace[slot] = _resolve_escaper(namespace, escape_name)
    return namespace
