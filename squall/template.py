"""Tornado-compatible templates, compiled once to a Python function.

A template mixes text with ``{{ expression }}``, ``{% directive %}`` and ``{# comment #}``.
Each template is parsed into a small node tree, turned into the source of one Python
function whose lines carry ``# file:line`` comments (so a traceback shows the template
position), and compiled once. Loaders cache compiled templates by name.

The generated function collects ``str`` pieces and the result is encoded once; bytes values
pass through untouched thanks to the ``surrogateescape`` round trip.

This module is the public face; the parts live in the private package ``squall._template``
(``parse``, ``codegen``, ``runtime``, ``compiled``, ``loaders``).
"""

from __future__ import annotations

from squall import escape  # noqa: F401  (importable from here, as before the split)
from squall._template.codegen import generate_function_source  # noqa: F401
from squall._template.compiled import (  # noqa: F401
    _DEFAULT_AUTOESCAPE,
    _UNSET,
    Template,
    _SourceProvider,
    _syntax_error,
    _TemplateSyntaxError,
    _UnsetMarker,
)
from squall._template.loaders import BaseLoader, DictLoader, Loader, _relative_name  # noqa: F401
from squall._template.parse import (  # noqa: F401
    ParseError,
    _SourceFile,
    filter_whitespace,
    parse_template,
)
from squall._template.runtime import (  # noqa: F401
    _BASE_NAMESPACE,
    _MISSING,
    _custom_escape,
    _resolve_escaper,
    _to_bytes,
    escape_html,
    escape_with,
    make_custom_escaper,
    missing_escaper,
    raw_text,
    text_from_filter,
)

__all__ = [
    "BaseLoader",
    "DictLoader",
    "Loader",
    "ParseError",
    "Template",
    "filter_whitespace",
]

# Documented, repr'd and pickled under the public module, wherever they are defined.
for _public in (BaseLoader, DictLoader, Loader, ParseError, Template, filter_whitespace):
    _public.__module__ = __name__
del _public
