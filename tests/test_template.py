"""squall.template: the template language, loaders, errors and tracebacks."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Any, Dict, List, Union

import pytest

from squall.template import (
    BaseLoader,
    DictLoader,
    Loader,
    ParseError,
    Template,
    filter_whitespace,
)


def render(source: Union[str, bytes], name: str = "<string>", **kwargs: Any) -> bytes:
    return Template(source, name=name).generate(**kwargs)


def render_dict(templates: Dict[str, str], name: str, **kwargs: Any) -> bytes:
    return DictLoader(templates).load(name).generate(**kwargs)


# Expressions and escaping


def test_expression_values_are_printed_as_text() -> None:
    assert render("{{ a }}|{{ b }}|{{ c }}|{{ d }}", a=1, b=2.5, c=None, d=True) == (
        b"1|2.5|None|True"
    )


def test_expressions_are_escaped_by_default() -> None:
    assert render("{{ x }}", x="<a href=\"x\">'&'</a>") == (
        b"&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
    )


def test_bytes_values_are_decoded_before_escaping() -> None:
    assert render("{{ x }}", x="é<".encode()) == "é&lt;".encode()


def test_non_string_values_are_escaped_through_str() -> None:
    assert render("{{ x }}", x=["<"]) == b"[&#x27;&lt;&#x27;]"


def test_str_subclass_prints_its_text_not_its_str() -> None:
    class Marked(str):
        def __str__(self) -> str:
            return "other"

    assert render("{{ x }}", x=Marked("<v>")) == b"&lt;v&gt;"


def test_raw_directive_skips_escaping_and_keeps_bytes() -> None:
    assert render("{% raw x %}|{% raw y %}", x="<b>", y=b"\xff\x00") == b"<b>|\xff\x00"


def test_unicode_template_and_literals() -> None:
    assert render("é {{ 'ü' }}".encode()) == "é ü".encode()


def test_expression_with_comment_or_newline() -> None:
    assert render("{{ x # a comment\n }}", x=3) == b"3"
    assert render("{{ max(1,\n 2) }}") == b"2"


def test_tuple_expression_prints_the_tuple() -> None:
    assert render("{{ 1, 2 }}") == b"(1, 2)"


def test_autoescape_none_for_the_whole_file() -> None:
    assert render("{{ x }}{% autoescape None %}{{ x }}", x="<") == b"<<"


def test_autoescape_template_argument() -> None:
    assert Template("{{ x }}", autoescape=None).generate(x="<") == b"<"


def test_custom_escape_function_receives_utf8_bytes() -> None:
    seen: List[Any] = []

    def shout(value: bytes) -> str:
        seen.append(value)
        return value.decode().upper()

    assert render("{% autoescape shout %}{{ x }} {{ 5 }}", x="é", shout=shout) == "É 5".encode()
    assert seen == ["é".encode(), b"5"]


def test_custom_escape_function_bound_by_the_template() -> None:
    source = "{% from base64 import b16encode as esc %}{% autoescape esc %}{{ x }}"
    assert render(source, x="<") == b"3C"
    source = "{% from squall.escape import xhtml_escape as esc %}{% autoescape esc %}{{ x }}"
    assert render(source, x="<") == b"&lt;"


def test_custom_escape_function_from_builtins() -> None:
    assert render("{% autoescape repr %}{{ x }}", x="a") == b"b'a'"


def test_missing_escape_function_fails_only_when_used() -> None:
    template = Template("{% autoescape nowhere %}{% if show %}{{ x }}{% end %}")
    assert template.generate(show=False) == b""
    with pytest.raises(NameError, match="nowhere"):
        template.generate(show=True, x=1)


def test_overriding_xhtml_escape_in_the_namespace_is_honoured() -> None:
    def stars(value: bytes) -> bytes:
        return b"*" + value + b"*"

    assert render("{{ x }}", x="<", xhtml_escape=stars) == b"*<*"


def test_namespace_helpers() -> None:
    source = (
        "{{ escape('<') }}|{{ url_escape('a b') }}|{{ json_encode([1]) }}|"
        "{{ squeeze(' a  b ') }}|{% raw linkify('http://x.org') %}|"
        "{{ datetime.date(2000, 1, 2) }}|{{ __name__ }}"
    )
    assert render(source, name="page.html") == (
        b'&amp;lt;|a+b|[1]|a b|<a href="http://x.org">http://x.org</a>|2000-01-02|page_html'
    )


def test_generate_arguments_and_loader_namespace() -> None:
    loader = DictLoader({"t.html": "{{ inc(n) }}"}, namespace={"inc": lambda v: v + 1})
    assert loader.load("t.html").generate(n=5) == b"6"


# Directives


def test_if_elif_else() -> None:
    template = Template("{% if x > 1 %}big{% elif x == 1 %}one{% else %}small{% end %}")
    assert [template.generate(x=value) for value in (2, 1, 0)] == [b"big", b"one", b"small"]


def test_empty_bodies_are_valid() -> None:
    assert render("{% if True %}{% else %}{% end %}{% for i in [] %}{% end %}") == b""


def test_for_else_and_while() -> None:
    assert render("{% for i in [] %}x{% else %}empty{% end %}") == b"empty"
    source = "{% set n = 3 %}{% while n %}{{ n }}{% set n -= 1 %}{% end %}"
    assert render(source) == b"321"


def test_try_except_else_finally() -> None:
    source = (
        "{% try %}{{ 1 // x }}{% except ZeroDivisionError as error %}caught"
        "{% else %}-else{% finally %}-finally{% end %}"
    )
    assert render(source, x=1) == b"1-else-finally"
    assert render(source, x=0) == b"caught-finally"


def test_break_and_continue() -> None:
    source = (
        "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% end %}"
        "{{ i }}{% if i == 5 %}{% break %}{% end %}{% end %}"
    )
    assert render(source) == b"01345"


def test_break_inside_try_inside_loop() -> None:
    source = "{% for i in [1, 2] %}{% try %}{{ i }}{% break %}{% finally %}!{% end %}{% end %}"
    assert render(source) == b"1!"


def test_set_import_and_from() -> None:
    source = (
        "{% set x = 2 %}{% import math %}{% from os import sep %}{{ math.floor(2.5) * x }}{{ sep }}"
    )
    assert render(source) == b"4/"


def test_comments() -> None:
    assert render("a{# hidden {{ x }} #}b{% comment also hidden %}c") == b"abc"


def test_literal_openers() -> None:
    assert render("{{! x }} {%! y %} {#! z #}") == b"{{ x }} {% y %} {# z #}"


def test_apply_filters_the_body_as_bytes() -> None:
    received: List[Any] = []

    def upper(value: bytes) -> str:
        received.append(value)
        return value.decode().upper()

    assert render("{% apply upper %}hé {{ 1 }}{% end %}!", upper=upper) == "HÉ 1!".encode()
    assert received == ["hé 1".encode()]


def test_apply_result_may_be_bytes() -> None:
    assert render("{% apply f %}ab{% end %}", f=lambda value: value[::-1]) == b"ba"


def test_apply_result_none_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="returned None"):
        render("{% apply f %}ab{% end %}", f=lambda value: None)


def test_apply_inside_a_loop() -> None:
    source = "{% for i in [1, 2] %}{% apply f %}{{ i }}{% end %}{% end %}"
    assert render(source, f=lambda value: value + b"!") == b"1!2!"


def test_module_directive_uses_tt_modules() -> None:
    class Modules:
        @staticmethod
        def Widget(label: str) -> str:
            return f"<w>{label}</w>"

    assert render("{% module Widget('a') %}", _tt_modules=Modules) == b"<w>a</w>"


def test_whitespace_inside_tags_is_allowed() -> None:
    source = "{% for i in items\n %}{% if i %}, {% end %}{#\n #}{{i\n }}{% end\n%}"
    assert render(source, name="x.txt", items=range(3)) == b"0, 1, 2"


# Whitespace


def test_filter_whitespace_modes() -> None:
    text = "  a \t b\n\n  c  "
    assert filter_whitespace("all", text) == text
    assert filter_whitespace("single", text) == " a b\nc "
    assert filter_whitespace("oneline", text) == " a b c "
    with pytest.raises(ValueError, match="invalid whitespace mode"):
        filter_whitespace("bogus", text)


def test_whitespace_default_depends_on_file_name() -> None:
    assert render("  a  \n\n b ", name="x.html") == b" a\nb "
    assert render("  a  \n\n b ", name="x.js") == b" a\nb "
    assert render("  a  \n\n b ", name="x.txt") == b"  a  \n\n b "


def test_pre_blocks_keep_their_whitespace() -> None:
    assert render("<pre>  a\n\n  b</pre>", name="x.html") == b"<pre>  a\n\n  b</pre>"


def test_whitespace_directive_and_loader_setting() -> None:
    source = "{% whitespace oneline %}\n  {{ 1 }}\n{% whitespace all %}\n  x\n"
    assert render(source, name="x.html") == b" 1 \n  x\n"
    loader = DictLoader({"a.txt": "\t\ta\n\n"}, whitespace="single")
    assert loader.load("a.txt").generate() == b" a\n"


def test_compress_whitespace_argument() -> None:
    assert Template("  a  ", compress_whitespace=True).generate() == b" a "
    assert Template("  a  ", name="x.html", compress_whitespace=False).generate() == b"  a  "
    with pytest.raises(ValueError):
        Template("", compress_whitespace=True, whitespace="all")


def test_invalid_whitespace_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        Template("x", whitespace="bogus")
    with pytest.raises(ParseError, match="invalid whitespace mode") as info:
        Template("\n{% whitespace bogus %}")
    assert info.value.lineno == 2


# Inheritance and includes


BASE = """\
<title>{% block title %}default title{% end %}</title>
<body>{% block body %}default body{% end %}</body>
"""


def test_extends_replaces_blocks() -> None:
    templates = {
        "base.html": BASE,
        "page.html": '{% extends "base.html" %}\n{% block title %}page{% end %}\nignored text',
    }
    assert render_dict(templates, "page.html") == (
        b"<title>page</title>\n<body>default body</body>\n"
    )


def test_three_levels_and_nested_blocks() -> None:
    templates = {
        "base.html": "[{% block outer %}o{% block inner %}i{% end %}{% end %}]",
        "middle.html": "{% extends 'base.html' %}{% block outer %}M{% block inner %}mi{% end %}{% end %}",
        "leaf.html": "{% extends 'middle.html' %}{% block inner %}LEAF{% end %}",
    }
    assert render_dict(templates, "middle.html") == b"[Mmi]"
    assert render_dict(templates, "leaf.html") == b"[MLEAF]"


def test_blocks_use_their_own_template_autoescape() -> None:
    templates = {
        "base.html": "{% autoescape None %}{% block a %}{{ x }}{% end %}|{% block b %}{{ x }}{% end %}",
        "child.html": "{% extends 'base.html' %}{% block b %}{{ x }}{% end %}",
    }
    assert render_dict(templates, "child.html", x="<") == b"<|&lt;"


def test_include_is_inlined_with_its_own_settings() -> None:
    templates = {
        "page.html": "[{% include 'part.txt' %}]{{ x }}",
        "part.txt": "{% autoescape None %}  {{ x }}  ",
    }
    assert render_dict(templates, "page.html", x="<") == b"[  <  ]&lt;"


def test_include_sees_the_includers_variables() -> None:
    templates = {"a.html": "{% set who = 'ann' %}{% include b.html %}", "b.html": "hi {{ who }}"}
    assert render_dict(templates, "a.html") == b"hi ann"


def test_relative_names() -> None:
    templates = {
        "a/1.html": "{% include '2.html' %}",
        "a/2.html": "{% include '../b/3.html' %}",
        "b/3.html": "ok",
    }
    assert render_dict(templates, "a/1.html") == b"ok"


def test_blocks_defined_in_included_templates_can_be_overridden() -> None:
    templates = {
        "base.html": "<{% include 'nav.html' %}>",
        "nav.html": "{% block nav %}nav{% end %}",
        "page.html": "{% extends 'base.html' %}{% block nav %}NAV{% end %}",
    }
    assert render_dict(templates, "page.html") == b"<NAV>"


def test_missing_include_names_the_template_and_position() -> None:
    loader = DictLoader({"a.html": "x\n{% include 'gone.html' %}"})
    with pytest.raises(ParseError) as info:
        loader.load("a.html")
    assert "gone.html" in info.value.message
    assert (info.value.filename, info.value.lineno) == ("a.html", 2)


def test_missing_parent_names_the_template() -> None:
    loader = DictLoader({"a.html": "{% extends 'gone.html' %}"})
    with pytest.raises(ParseError, match="gone.html"):
        loader.load("a.html")


def test_include_and_extends_need_a_loader() -> None:
    with pytest.raises(ParseError, match="no loader"):
        Template("{% include 'x.html' %}")
    with pytest.raises(ParseError, match="no loader"):
        Template("{% extends 'x.html' %}")


def test_include_cycle_is_reported() -> None:
    loader = DictLoader({"a.html": "{% include 'b.html' %}", "b.html": "{% include 'a.html' %}"})
    with pytest.raises(ParseError, match="a.html"):
        loader.load("a.html")


def test_extends_cycle_is_reported() -> None:
    loader = DictLoader({"a.html": "{% extends 'b.html' %}", "b.html": "{% extends 'a.html' %}"})
    with pytest.raises(ParseError):
        loader.load("a.html")


# Parse errors


@pytest.mark.parametrize(
    ("source", "message", "line"),
    [
        ("\n\n{{", "Missing end expression }}", 3),
        ("a{%", "Missing end block %}", 1),
        ("{#", "Missing end comment #}", 1),
        ("{{ }}", "Empty expression", 1),
        ("{% %}", "Empty block tag ({% %})", 1),
        ("{% frobnicate %}", "unknown operator: 'frobnicate'", 1),
        ("{% end %}", "Extra {% end %} block", 1),
        ("\n{% if x %}\nopen", "Missing {% end %} block for if", 2),
        ("{% else %}", "else outside if/for/while/try block", 1),
        ("{% for x in y %}{% elif z %}{% end %}", "elif block cannot be attached to for block", 1),
        ("{% if a %}{% else %}{% elif b %}{% end %}", "elif cannot follow else in if block", 1),
        ("{% try %}{% else %}{% end %}", "else in a try block needs an except before it", 1),
        ("{% try %}x{% end %}", "try block needs an except or finally clause", 1),
        ("{% break %}", "break outside for or while loop", 1),
        ("{% for i in x %}{% apply f %}{% break %}{% end %}{% end %}", "break outside", 1),
        ("{% for i in x %}{% else %}{% continue %}{% end %}", "continue outside", 1),
        ("{% set %}", "set missing statement", 1),
        ("{% import %}", "import missing statement", 1),
        ("{% include %}", "include missing file path", 1),
        ("{% extends %}", "extends missing file path", 1),
        ("{% block %}{% end %}", "block missing name", 1),
        ("{% apply %}{% end %}", "apply missing method name", 1),
        ("{% raw %}", "raw missing expression", 1),
        ("{% module %}", "module missing expression", 1),
        ("{% if x %}{% extends 'a' %}{% end %}", "extends must be at the top level", 1),
    ],
)
def test_parse_errors(source: str, message: str, line: int) -> None:
    with pytest.raises(ParseError) as info:
        Template(source, name="t.html")
    assert message in info.value.message
    assert info.value.filename == "t.html"
    assert info.value.lineno == line
    assert str(info.value) == f"{info.value.message} at t.html:{line}"


def test_parse_error_keeps_tornado_signature() -> None:
    assert str(ParseError("asdf")) == "asdf at None:0"


def test_python_syntax_error_points_at_template_line() -> None:
    with pytest.raises(ParseError) as info:
        Template("line one\n{{ 1 + }}", name="bad.html")
    assert (info.value.filename, info.value.lineno) == ("bad.html", 2)
    assert isinstance(info.value, SyntaxError)


def test_syntax_error_in_included_template_names_that_file() -> None:
    loader = DictLoader({"a.html": "{% include 'b.html' %}", "b.html": "\n{% if %}{% end %}"})
    with pytest.raises(ParseError) as info:
        loader.load("a.html")
    assert info.value.filename == "b.html"


def test_invalid_utf8_source_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="UTF-8"):
        Template(b"\xff", name="x.html")


# Tracebacks


def formatted_error(loader: DictLoader, name: str) -> str:
    try:
        loader.load(name).generate()
    except ZeroDivisionError:
        return traceback.format_exc()
    raise AssertionError("expected ZeroDivisionError")


def test_traceback_shows_template_line() -> None:
    loader = DictLoader({"t.html": "one\ntwo{{ 1/0 }}\nthree"})
    assert "# t.html:2" in formatted_error(loader, "t.html")


def test_traceback_through_includes_and_blocks() -> None:
    loader = DictLoader(
        {
            "a.html": "{% include 'b.html' %}",
            "b.html": "\n{% include 'c.html' %}",
            "c.html": "{{ 1/0 }}",
            "base.html": "{% block main %}{% end %}",
            "page.html": "{% extends 'base.html' %}\n{% block main %}\n{{ 1/0 }}{% end %}",
        }
    )
    assert "# c.html:1 (via b.html:2, a.html:1)" in formatted_error(loader, "a.html")
    assert "# page.html:3 (via base.html:1)" in formatted_error(loader, "page.html")


def test_traceback_points_at_the_failing_value_among_grouped_output() -> None:
    # Text and values between statements are written out together; an error in one
    # value must still name that value's own template line, not the group's first.
    loader = DictLoader({"t.html": "a{{ 1 }}\nb{{ 2 }}\nc{{ 1/0 }}\nd{{ 3 }}"})
    formatted = formatted_error(loader, "t.html")
    failing_line = [line for line in formatted.splitlines() if "1/0" in line][0]
    assert failing_line.rstrip().endswith("# t.html:3")


def test_escaped_values_of_every_kind_match_xhtml_escape() -> None:
    from squall.escape import xhtml_escape

    values: List[Any] = ["word", "Wörd9", "", "two words", "<&>\"'", "a&b", 7, -2, 1.5, True]
    values += [None, b"by<tes", "\u00e9t\u00e9 <b>", 10**20]
    for value in values:
        expected = xhtml_escape(value if isinstance(value, (str, bytes)) else str(value))
        assert render("{{ v }}", v=value) == expected.encode("utf-8"), value


def test_templates_with_the_same_name_show_their_own_source() -> None:
    Template("{{ 1 }}").generate()
    try:
        Template("{{ 'x' }}\n{{ undefined_name }}").generate()
    except NameError:
        assert "undefined_name" in traceback.format_exc()


# Loaders


def test_dict_loader_caches_and_resets() -> None:
    loader = DictLoader({"a.html": "a"})
    first = loader.load("a.html")
    assert loader.load("a.html") is first
    loader.reset()
    assert loader.load("a.html") is not first


def test_dict_loader_missing_template() -> None:
    with pytest.raises(KeyError, match="nope.html"):
        DictLoader({}).load("nope.html")


def test_loader_settings_reach_templates() -> None:
    loader = DictLoader({"a.html": "{{ x }}"}, autoescape=None)
    template = loader.load("a.html")
    assert template.autoescape is None
    assert template.loader is loader
    assert template.generate(x="<") == b"<"


def test_base_loader_needs_create_template() -> None:
    with pytest.raises(TypeError, match="_create_template"):
        BaseLoader().load("x.html")


def test_custom_loader_subclass() -> None:
    class Upper(BaseLoader):
        def _create_template(self, name: str) -> Template:
            return Template(name.upper(), name=name, loader=self)

    assert Upper().load("abc").generate() == b"ABC"


def test_file_loader(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.html").write_text("<{% block b %}{% end %}>", encoding="utf-8")
    (tmp_path / "sub" / "page.html").write_text(
        "{% extends '../base.html' %}{% block b %}{% include 'part.html' %}{% end %}",
        encoding="utf-8",
    )
    (tmp_path / "sub" / "part.html").write_text("Héllo", encoding="utf-8")
    loader = Loader(str(tmp_path))
    assert loader.root == str(tmp_path)
    assert loader.load("sub/page.html").generate() == "<Héllo>".encode()
    assert loader.resolve_path("part.html", "sub/page.html") == "sub/part.html"
    assert loader.resolve_path("../base.html", "sub/page.html") == "base.html"


def test_file_loader_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    loader = Loader(str(root))
    with pytest.raises(ValueError, match="outside"):
        loader.load("../secret.txt")
    with pytest.raises(FileNotFoundError):
        loader.load("missing.html")


def test_concurrent_loads_share_one_template() -> None:
    loader = DictLoader({"a.html": "{% for i in range(50) %}{{ i }}{% end %}"})
    results: List[Template] = []

    def load() -> None:
        results.append(loader.load("a.html"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 4
    assert all(result is results[0] for result in results)


def test_template_attributes() -> None:
    template = Template("{{ x }}", name="t.html")
    assert template.name == "t.html"
    assert template.autoescape == "xhtml_escape"
    assert template.namespace == {}
    assert template.loader is None
    assert "# t.html:1" in template.code
    assert template.compiled.co_filename == "t_html.generated.py"


def test_nesting_is_limited() -> None:
    with pytest.raises(ParseError, match="nested more than"):
        Template("{% block a %}" * 150 + "{% end %}" * 150)
    chain = {f"t{index}.html": f"{{% include 't{index + 1}.html' %}}" for index in range(150)}
    chain["t150.html"] = "end"
    with pytest.raises(ParseError, match="nested more than"):
        DictLoader(chain).load("t0.html")
    short_chain = {f"t{index}.html": f"{{% include 't{index + 1}.html' %}}" for index in range(20)}
    short_chain["t20.html"] = "end"
    assert DictLoader(short_chain).load("t0.html").generate() == b"end"


# Layering of the private package


def _squall_imports(path: Path) -> List[str]:
    import ast

    names: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [name for name in names if name.startswith("squall")]


def test_private_template_modules_import_one_way_only() -> None:
    import squall._template

    package = Path(squall._template.__file__).parent
    order = ["parse", "runtime", "codegen", "compiled", "loaders"]
    assert sorted(path.stem for path in package.glob("*.py")) == sorted(order + ["__init__"])
    assert _squall_imports(package / "__init__.py") == []
    for position, module in enumerate(order):
        imported = _squall_imports(package / f"{module}.py")
        # Not even under TYPE_CHECKING: ast.walk sees those imports too.
        assert not any(name.startswith("squall.template") for name in imported), module
        private = {
            name.split(".")[2] for name in imported if name.startswith("squall._template.")
        }
        assert private <= set(order[:position]), (module, private)


def test_names_of_the_facade_stay_importable() -> None:
    import squall.template as facade

    for name in (
        "BaseLoader", "DictLoader", "Loader", "ParseError", "Template", "filter_whitespace",
        "parse_template", "generate_function_source", "escape_html", "escape_with",
        "make_custom_escaper", "missing_escaper", "raw_text", "text_from_filter",
        "_SourceFile", "_DEFAULT_AUTOESCAPE", "_UnsetMarker", "_UNSET", "_MISSING",
        "_to_bytes", "_custom_escape", "_BASE_NAMESPACE", "_resolve_escaper",
        "_SourceProvider", "_TemplateSyntaxError", "_syntax_error", "_relative_name", "escape",
    ):
        assert hasattr(facade, name), name
    for public in (BaseLoader, DictLoader, Loader, ParseError, Template, filter_whitespace):
        assert public.__module__ == "squall.template"
