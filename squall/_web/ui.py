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
        self.request = handler.request
        self.ui = handler.ui
        self.locale = handler.locale

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
        self._resource_list: List[Dict[str, Any]] = []
        self._resource_dict: Dict[str, Dict[str, Any]] = {}

    def render(self, path: str, **kwargs: Any) -> bytes:  # type: ignore[override]
        def set_resources(**resources: Any) -> str:
            if path not in self._resource_dict:
                self._resource_list.append(resources)
                self._resource_dict[path] = resources
            elif self._resource_dict[path] != resources:
                raise ValueError(
                    "set_resources called with different resources for the same template"
                )
            return ""

        return self.render_string(path, set_resources=set_resources, **kwargs)

    def _get_resources(self, key: str) -> Iterable[Any]:
        return (entry[key] for entry in self._resource_list if key in entry)

    def _file_list(self, key: str) -> List[str]:
        files: List[str] = []
        for entry in self._get_resources(key):
            if isinstance(entry, (str, bytes)):
                files.append(entry)  # type: ignore[arg-type]
            else:
                files.extend(entry)
        return files

    def embedded_javascript(self) -> str:
        return "\n".join(self._get_resources("embedded_javascript"))

    def javascript_files(self) -> Iterable[str]:
        return self._file_list("javascript_files")

    def embedded_css(self) -> str:
        return "\n".join(self._get_resources("embedded_css"))

    def css_files(self) -> Iterable[str]:
        return self._file_list("css_files")

    def html_head(self) -> str:
        return "".join(self._get_resources("html_head"))

    def html_body(self) -> str:
        return "".join(self._get_resources("html_body"))
