"""The ``Template`` class: parse, generate, compile once, render many times.

(Private part of ``squall.template``.)
"""

from __future__ import annotations

import linecache
import types
from typing import Any, Dict, List, Optional, Protocol, Tuple, Union

from squall._template.codegen import _Loader, generate_function_source
from squall._template.parse import ParseError, _SourceFile, filter_whitespace, parse_template
from squall._template.runtime import render_namespace

_DEFAULT_AUTOESCAPE = "xhtml_escape"


class _UnsetMarker:
    """Default for parameters where ``None`` is a meaningful value."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _UnsetMarker()
class _SourceProvider:
    """Stands in for a module loader so ``linecache`` can show generated lines."""

    __slots__ = ("_code",)

    def __init__(self, code: str) -> None:
        self._code = code

    def get_source(self, name: str) -> str:
        return self._code


class _TemplateLoader(_Loader, Protocol):
    """What a ``Template`` reads from its loader (a ``BaseLoader``, in practice)."""

    autoescape: Optional[str]
    namespace: Dict[str, Any]
    whitespace: Optional[str]


class Template:
    """A compiled template; ``generate(**kwargs)`` renders it to bytes."""

    def __init__(
        self,
        template_string: Union[str, bytes],
        name: str = "<string>",
        loader: Optional[_TemplateLoader] = None,
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
        # __name__ and __loader__ let linecache (and so tracebacks) find the generated lines.
        self._fixed_names = {
            "__name__": self._module_name,
            "__loader__": _SourceProvider(self.code),
        }

    def generate(self, **kwargs: Any) -> bytes:
        """Render the template with ``kwargs`` as extra names."""
        namespace = render_namespace(self._fixed_names, self.namespace, kwargs, self._escape_slots)
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


