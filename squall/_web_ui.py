"""UI modules: reusable page pieces that templates call with ``{% module Name(...) %}``.

A module may ask for CSS and JavaScript (files or inline) and extra ``<head>``/``<body>``
markup; :meth:`RequestHandler.render` collects those from every module used on the page
and inserts them once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Union

from squall import escape

if TYPE_CHECKING:
    from squall.web import RequestHandler


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


class _UIModuleNamespace:
    """``modules.Name(...)`` in templates: renders the module for this handler."""

    def __init__(self, handler: "RequestHandler", ui_modules: Dict[str, type]) -> None:
        self.handler = handler
        self.ui_modules = ui_modules

    def __getitem__(self, key: str) -> Callable[..., Any]:
        return self.handler._ui_module(key, self.ui_modules[key])

    def __getattr__(self, key: str) -> Callable[..., Any]:
        try:
            return self[key]
        except KeyError as error:
            raise AttributeError(str(error))


def _as_file_list(part: Any) -> List[str]:
    if isinstance(part, (str, bytes)):
        return [escape.to_unicode(part)]  # type: ignore[list-item]
    return list(part)


def _insert_before(html: bytes, marker: bytes, insert: bytes, last: bool) -> bytes:
    position = html.rindex(marker) if last else html.index(marker)
    return html[:position] + insert + b"\n" + html[position:]


def collect_module_resources(handler: "RequestHandler", html: bytes) -> bytes:
    """Insert the CSS, JavaScript and head/body markup the page's UI modules asked for."""
    modules = handler._active_modules
    if not modules:
        return html
    js_embed: List[bytes] = []
    js_files: List[str] = []
    css_embed: List[bytes] = []
    css_files: List[str] = []
    html_heads: List[bytes] = []
    html_bodies: List[bytes] = []
    for module in modules.values():
        part: Any = module.embedded_javascript()
        if part:
            js_embed.append(escape.utf8(part))
        part = module.javascript_files()
        if part:
            js_files.extend(_as_file_list(part))
        part = module.embedded_css()
        if part:
            css_embed.append(escape.utf8(part))
        part = module.css_files()
        if part:
            css_files.extend(_as_file_list(part))
        part = module.html_head()
        if part:
            html_heads.append(escape.utf8(part))
        part = module.html_body()
        if part:
            html_bodies.append(escape.utf8(part))
    if js_files:
        html = _insert_before(
            html, b"</body>", escape.utf8(handler.render_linked_js(js_files)), True
        )
    if js_embed:
        html = _insert_before(
            html, b"</body>", escape.utf8(handler.render_embed_js(js_embed)), True
        )
    if css_files:
        html = _insert_before(
            html, b"</head>", escape.utf8(handler.render_linked_css(css_files)), False
        )
    if css_embed:
        html = _insert_before(
            html, b"</head>", escape.utf8(handler.render_embed_css(css_embed)), False
        )
    if html_heads:
        html = _insert_before(html, b"</head>", b"".join(html_heads), False)
    if html_bodies:
        html = _insert_before(html, b"</body>", b"".join(html_bodies), False)
    return html
