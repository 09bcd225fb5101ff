"""UI modules: reusable page pieces that templates call with ``{% module Name(...) %}``.

A module may ask for CSS and JavaScript (files or inline) and extra ``<head>``/``<body>``
markup; :meth:`RequestHandler.render` collects those from every module used on the page
and inserts them once.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Union

from squall import escape
from squall._web.handler import RequestHandler


class UIModule:
    """A reusable, self-contained piece of a page; one instance per handler."""

    def __init__(self, handler: "RequestHandler") -> None:
        self.handler = handler
        # What modules use most, taken from the handler once.
        self.request, self.ui, self.locale = handler.request, handler.ui, handler.locale

    @property
    def current_user(self) -> Any:
        return self.handler.current_user

    def render(self, *args: Any, **kwargs: Any) -> Union[str, bytes]:
        """Return the module's markup."""
        raise NotImplementedError()

    def embedded_javascript(self) -> Optional[str]:
        """JavaScript to put inline at the end of the page."""
        return None

    def javascript_files(self) -> Optional[Iterable[str]]:
        """JavaScript files the page needs (relative paths are static files)."""
        return None

    def embedded_css(self) -> Optional[str]:
        """CSS to put inline in the page's head."""
        return None

    def css_files(self) -> Optional[Iterable[str]]:
        """CSS files the page needs (relative paths are static files)."""
        return None

    def html_head(self) -> Optional[str]:
        """Markup to put at the end of ``<head>``."""
        return None

    def html_body(self) -> Optional[str]:
        """Markup to put at the end of ``<body>``."""
        return None

    def render_string(self, path: str, **kwargs: Any) -> bytes:
        """Render a template through the handler."""
        return self.handler.render_string(path, **kwargs)


class _linkify(UIModule):
    def render(self, text: str, **kwargs: Any) -> str:  # type: ignore[override]
        return escape.linkify(text, **kwargs)


class _xsrf_form_html(UIModule):
    def render(self) -> str:  # type: ignore[override]
        return self.handler.xsrf_form_html()


class TemplateModule(UIModule):
    """Renders a template as a module: ``{% module Template("item.html", item=x) %}``.

    The template may call ``set_resources(css_files=..., embedded_javascript=..., ...)``
    to ask for page resources; each template's resources are counted once however often
    it is rendered.
    """

    def __init__(self, handler: "RequestHandler") -> None:
        super().__init__(handler)
        # The resources each template asked for, in the order the templates were first
        # rendered (a dict keeps it).
        self._resources_by_template: Dict[str, Dict[str, Any]] = {}

    def render(self, path: str, **kwargs: Any) -> bytes:  # type: ignore[override]
        def set_resources(**resources: Any) -> str:
            if self._resources_by_template.setdefault(path, resources) != resources:
                raise ValueError(
                    "set_resources called with different resources for the same template"
                )
            return ""

        return self.render_string(path, set_resources=set_resources, **kwargs)

    def _get_resources(self, key: str) -> Iterable[Any]:
        return (asked[key] for asked in self._resources_by_template.values() if key in asked)

    def _joined(self, key: str, separator: str) -> str:
        return separator.join(self._get_resources(key))

    def _file_list(self, key: str) -> List[str]:
        # Each template may name one file or a list of them.
        files: List[Any] = []
        for named in self._get_resources(key):
            files.extend([named] if isinstance(named, (str, bytes)) else named)
        return files

    def embedded_javascript(self) -> str:
        return self._joined("embedded_javascript", "\n")

    def javascript_files(self) -> Iterable[str]:
        return self._file_list("javascript_files")

    def embedded_css(self) -> str:
        return self._joined("embedded_css", "\n")

    def css_files(self) -> Iterable[str]:
        return self._file_list("css_files")

    def html_head(self) -> str:
        return self._joined("html_head", "")

    def html_body(self) -> str:
        return self._joined("html_body", "")
