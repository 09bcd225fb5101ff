"""Tornado-compatible templates, compiled once to a Python function.

A template mixes text with ``{{ expression }}``, ``{% directive %}`` and ``{# comment #}``.
Each template is parsed into a small node tree (see ``squall._template_parse``), turned into
the source of one Python function whose lines carry ``# file:line`` comments (so a traceback
shows the template position), and compiled once. Loaders cache compiled templates by name.

The generated function collects ``str`` pieces and the result is encoded once; bytes values
pass through untouched thanks to the ``surrogateescape`` round trip.
"""

from __future__ import annotations

import builtins
import datetime
import linecache
import os
import posixpath
import threading
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from squall import escape
from squall._template_codegen import (
    escape_html,
    escape_with,
    generate_function_source,
    make_custom_escaper,
    missing_escaper,
    raw_text,
    text_from_filter,
)
from squall._template_parse import (
    ParseError,
    _SourceFile,
    filter_whitespace,
    parse_template,
)

__all__ = [
    "BaseLoader",
    "DictLoader",
    "Loader",
    "ParseError",
    "Template",
    "filter_whitespace",
]

_DEFAULT_AUTOESCAPE = "xhtml_escape"


class _UnsetMarker:
    """Default for parameters where ``None`` is a meaningful value."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _UnsetMarker()
_MISSING = object()


def _to_bytes(parts: List[str]) -> bytes:
    return "".join(parts).encode("utf-8", "surrogateescape")


def _custom_escape(function: Any, value: Any) -> str:
    # Used when the escape function is only known at run time (a name bound by the
    # template itself, or an arbitrary expression): look it up on every use.
    if function is escape.xhtml_escape:
        return escape_html(value)
    return escape_with(function, value)


# Names every template sees; the same ones as Tornado's, plus squall's private helpers.
_BASE_NAMESPACE: Dict[str, Any] = {
    "escape": escape.xhtml_escape,
    "xhtml_escape": escape.xhtml_escape,
    "url_escape": escape.url_escape,
    "json_encode": escape.json_encode,
    "squeeze": escape.squeeze,
    "linkify": escape.linkify,
    "datetime": datetime,
    "_tt_utf8": escape.utf8,
    "_tt_string_types": (str, bytes),
    "_tt_raw_text": raw_text,
    "_tt_filtered": text_from_filter,
    "_tt_to_bytes": _to_bytes,
    "_tt_custom_escape": _custom_escape,
}


def _resolve_escaper(namespace: Dict[str, Any], name: str) -> Callable[[Any], str]:
    function = namespace.get(name, _MISSING)
    if function is _MISSING:
        function = builtins.__dict__.get(name, _MISSING)
    if function is escape.xhtml_escape:
        return escape_html
    if function is _MISSING:
        return missing_escaper(name)
    return make_custom_escaper(function)


class _SourceProvider:
    """Stands in for a module loader so ``linecache`` can show generated lines."""

    __slots__ = ("_code",)

    def __init__(self, code: str) -> None:
        self._code = code

    def get_source(self, name: str) -> str:
        return self._code


class Template:
    """A compiled template; ``generate(**kwargs)`` renders it to bytes."""

    def __init__(
        self,
        template_string: Union[str, bytes],
        name: str = "<string>",
        loader: Optional["BaseLoader"] = None,
        compress_whitespace: Union[bool, _UnsetMarker] = _UNSET,
        autoescape: Optional[Union[str, _UnsetMarker]] = _UNSET,
        whitespace: Optional[str] = None,
    ) -> None:
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        self.name: str = name
        if compress_whitespace is not _UNSET:
            if whitespace is not None:
                raise ValueError("cannot set both whitespace and compress_whitespace")
            whitespace = "single" if compress_whitespace else "all"
        if whitespace is None:
            if loader is not None and loader.whitespace:
                whitespace = loader.whitespace
            elif name.endswith(".html") or name.endswith(".js"):
                whitespace = "single"
            else:
                whitespace = "all"
        # Rejects an unknown mode before any parsing.
        filter_whitespace(whitespace, "")

        if not isinstance(autoescape, _UnsetMarker):
            self.autoescape: Optional[str] = autoescape
        elif loader is not None:
            self.autoescape = loader.autoescape
        else:
            self.autoescape = _DEFAULT_AUTOESCAPE
        self.namespace: Dict[str, Any] = loader.namespace if loader is not None else {}
        self.loader = loader

        if isinstance(template_string, bytes):
            try:
                template_string = template_string.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ParseError(f"template is not valid UTF-8 ({exc.reason})", name, 0) from exc
        # Parsing may change self.autoescape ({% autoescape %} applies to the whole file).
        self.file: _SourceFile = parse_template(self, template_string, whitespace)

        function_source, escape_slots, origins = generate_function_source(self, loader)
        self.code: str = function_source
        self._escape_slots: Tuple[Tuple[str, str], ...] = escape_slots
        self._filename = "%s.generated.py" % self.name.replace(".", "_")
        self._module_name = self.name.replace(".", "_")
        try:
            self.compiled: types.CodeType = compile(
                self.code, self._filename, "exec", dont_inherit=True
            )
        except SyntaxError as exc:
            raise _syntax_error(exc, origins) from exc
        self._function_code = next(
            const
            for const in self.compiled.co_consts
            if isinstance(const, types.CodeType) and const.co_name == "_tt_execute"
        )
        self._source_provider = _SourceProvider(self.code)

    def generate(self, **kwargs: Any) -> bytes:
        """Render the template with ``kwargs`` as extra names."""
        namespace = dict(_BASE_NAMESPACE)
        namespace["__name__"] = self._module_name
        namespace["__loader__"] = self._source_provider
        namespace.update(self.namespace)
        namespace.update(kwargs)
        for slot, escape_name in self._escape_slots:
            namespace[slot] = _resolve_escaper(namespace, escape_name)
        # Another template with the same name may have left its source in the cache.
        linecache.cache.pop(self._filename, None)
        parts = types.FunctionType(self._function_code, namespace)()
        return "".join(parts).encode("utf-8", "surrogateescape")


class _TemplateSyntaxError(ParseError, SyntaxError):  # type: ignore[misc]
    """Python syntax error inside a template; both a ParseError and a SyntaxError."""


def _syntax_error(exc: SyntaxError, origins: List[Tuple[str, int, str]]) -> _TemplateSyntaxError:
    line_index = (exc.lineno or 1) - 1
    if 0 <= line_index < len(origins):
        filename, lineno, via = origins[line_index]
    else:
        filename, lineno, via = "<unknown>", 0, ""
    message = f"invalid Python in template: {exc.msg}"
    if via:
        message += f" ({via})"
    return _TemplateSyntaxError(message, filename, lineno)


def _relative_name(name: str, parent_path: Optional[str]) -> Optional[str]:
    # Names are relative to the including template unless either is absolute or the
    # parent is a pseudo-name such as "<string>".
    if (
        parent_path
        and not parent_path.startswith("<")
        and not parent_path.startswith("/")
        and not name.startswith("/")
    ):
        return posixpath.join(posixpath.dirname(parent_path), name)
    return None


class BaseLoader:
    """Loads templates by name and caches them; subclasses implement ``_create_template``."""

    def __init__(
        self,
        autoescape: Optional[str] = _DEFAULT_AUTOESCAPE,
        namespace: Optional[Dict[str, Any]] = None,
        whitespace: Optional[str] = None,
    ) -> None:
        self.autoescape = autoescape
        self.namespace: Dict[str, Any] = namespace or {}
        self.whitespace = whitespace
        self.templates: Dict[str, Template] = {}
        # Reentrant: a template being compiled loads the templates it includes or extends.
        self.lock = threading.RLock()
        self._loading: List[str] = []

    def reset(self) -> None:
        """Forget every compiled template (they are reloaded on next use)."""
        with self.lock:
            self.templates = {}

    def resolve_path(self, name: str, parent_path: Optional[str] = None) -> str:
        """Turn ``name``, as written in ``parent_path``, into the loader's key."""
        joined = _relative_name(name, parent_path)
        return posixpath.normpath(joined) if joined is not None else name

    def load(self, name: str, parent_path: Optional[str] = None) -> Template:
        """Return the compiled template ``name`` (relative to ``parent_path``)."""
        name = self.resolve_path(name, parent_path=parent_path)
        with self.lock:
            template = self.templates.get(name)
            if template is not None:
                return template
            loading = self.__dict__.setdefault("_loading", [])
            if name in loading:
                chain = " -> ".join(loading[loading.index(name) :] + [name])
                raise ParseError(f"template includes or extends itself: {chain}", name, 0)
            loading.append(name)
            try:
                template = self._create_template(name)
            finally:
                loading.pop()
            self.templates[name] = template
            return template

    def _create_template(self, name: str) -> Template:
        raise TypeError(
            f"{type(self).__name__} cannot load {name!r}: loaders must define _create_template"
        )


class Loader(BaseLoader):
    """Loads templates from files under ``root_directory``."""

    def __init__(self, root_directory: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = os.path.abspath(root_directory)

    def resolve_path(self, name: str, parent_path: Optional[str] = None) -> str:
        joined = _relative_name(name, parent_path)
        if joined is not None:
            candidate = os.path.abspath(os.path.join(self.root, joined))
            if candidate.startswith(self.root + os.sep):
                name = candidate[len(self.root) + 1 :]
        return name

    def _create_template(self, name: str) -> Template:
        if "\x00" in name:
            raise ValueError(f"invalid template name {name!r}")
        path = os.path.abspath(os.path.join(self.root, name))
        # A relative name must stay inside the template root (render(user_input) must not
        # read arbitrary files); absolute names are the application's explicit choice.
        if not os.path.isabs(name) and not path.startswith(self.root + os.sep):
            raise ValueError(f"template name {name!r} points outside {self.root}")
        with open(path, "rb") as source:
            return Template(source.read(), name=name, loader=self)


class DictLoader(BaseLoader):
    """Loads templates from a dict mapping names to template source."""

    def __init__(self, dict: Mapping[str, Union[str, bytes]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dict = dict

    def resolve_path(self, name: str, parent_path: Optional[str] = None) -> str:
        joined = _relative_name(name, parent_path)
        return posixpath.normpath(joined) if joined is not None else name

    def _create_template(self, name: str) -> Template:
        try:
            source = self.dict[name]
        except KeyError:
            raise KeyError(f"template {name!r} not found in DictLoader") from None
        return Template(source, name=name, loader=self)
