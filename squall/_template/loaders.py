"""Template loaders: find a template by name, compile it once, keep it.

(Private part of ``squall.template``.)
"""

from __future__ import annotations

import os
import posixpath
import threading
from typing import Any, Dict, List, Mapping, Optional, Union

from squall._template.compiled import _DEFAULT_AUTOESCAPE, Template
from squall._template.parse import ParseError


def _relative_name(name: str, parent_path: Optional[str]) -> Optional[str]:
    """``name`` joined to the directory of the template that names it, or None when it
    stands as written: an absolute name, or a parent that is absolute or a pseudo-name
    such as "<string>"."""
    if not parent_path or name.startswith("/") or parent_path.startswith(("<", "/")):
        return None
    return posixpath.join(posixpath.dirname(parent_path), name)


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
