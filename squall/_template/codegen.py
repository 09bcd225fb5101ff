"""Node tree to Python source (private part of ``squall.template``).

The generated function appends ``str`` pieces to a list and returns it. Every line ends
with ``# file:line`` (plus ``(via outer:line, ...)`` for included or inherited parts) so
tracebacks through a template point at the template position.
"""

from __future__ import annotations

import keyword
import re
from typing import Dict, List, Optional, Protocol, Tuple

from squall._template.parse import (
    MAX_NESTING,
    ParseError,
    _Apply,
    _Block,
    _Compound,
    _Expression,
    _Include,
    _Node,
    _Owner,
    _SourceFile,
    _Statement,
    _Text,
)


class _Parsed(_Owner, Protocol):
    """A template as code generation sees it: its name, autoescape and parsed file."""

    file: _SourceFile


class _Loader(Protocol):
    """The loader calls code generation makes for ``{% include %}`` and ``{% extends %}``.

    A ``_loading`` list of the names being compiled, if the loader keeps one, bounds the
    nesting and catches cycles before they recurse.
    """

    def resolve_path(self, name: str, parent_path: Optional[str] = None) -> str: ...

    def load(self, name: str, parent_path: Optional[str] = None) -> _Parsed: ...

_Origin = Tuple[str, int, str]


class _Emitter:
    __slots__ = (
        "loader",
        "lines",
        "origins",
        "indent",
        "owner",
        "via",
        "named_blocks",
        "escape_locals",
        "uses_raw_text",
        "statements",
        "apply_count",
        "pieces",
    )

    def __init__(self, owner: _Owner, loader: Optional[_Loader]) -> None:
        self.loader = loader
        self.lines: List[str] = []
        self.origins: List[_Origin] = []
        self.indent = 1
        self.owner: _Owner = owner
        self.via: List[Tuple[str, int]] = []
        self.named_blocks: Dict[str, _Block] = {}
        self.escape_locals: Dict[str, str] = {}
        self.uses_raw_text = False
        self.statements: List[str] = []
        self.apply_count = 0
        # Output pieces not yet written: (code, line comment, origin).
        self.pieces: List[Tuple[str, str, _Origin]] = []

    def origin(self, line: int) -> _Origin:
        via = ""
        if self.via:
            via = "via " + ", ".join(f"{name}:{lineno}" for name, lineno in reversed(self.via))
        return (self.owner.name, line, via)

    def comment(self, origin: _Origin) -> str:
        if origin[2]:
            return f"{origin[0]}:{origin[1]} ({origin[2]})"
        return f"{origin[0]}:{origin[1]}"

    def piece(self, code: str, line: int) -> None:
        """Queue one single-line value for the output buffer (see ``flush``)."""
        origin = self.origin(line)
        self.pieces.append((code, self.comment(origin), origin))

    def flush(self) -> None:
        # Consecutive pieces go out as one ``_tt_buffer += (...)``: a single in-place
        # extend instead of an append call per piece. Each piece keeps a line of its
        # own so tracebacks still point at its template line.
        pieces = self.pieces
        if not pieces:
            return
        self.pieces = []
        indent = "    " * self.indent
        if len(pieces) == 1:
            code, comment, origin = pieces[0]
            self.lines.append(f"{indent}_tt_append({code})  # {comment}")
            self.origins.append(origin)
            return
        first_comment, first_origin = pieces[0][1], pieces[0][2]
        self.lines.append(f"{indent}_tt_buffer += (  # {first_comment}")
        self.origins.append(first_origin)
        for code, comment, origin in pieces:
            self.lines.append(f"{indent}    {code},  # {comment}")
            self.origins.append(origin)
        self.lines.append(f"{indent})  # {pieces[-1][1]}")
        self.origins.append(pieces[-1][2])

    def write(self, code: str, line: int) -> None:
        if self.pieces:
            self.flush()
        origin = self.origin(line)
        self.lines.append(f"{'    ' * self.indent}{code}  # {self.comment(origin)}")
        # A statement spanning several lines still maps each of them to its tag.
        self.origins.extend([origin] * (code.count("\n") + 1))

    # Loading other templates

    def load(self, path: str, line: int, verb: str) -> _Parsed:
        loader = self.loader
        if loader is None:
            raise ParseError(
                f"{{% {verb} %}} block found, but the template has no loader",
                self.owner.name,
                line,
            )
        resolved = loader.resolve_path(path, parent_path=self.owner.name)
        loading = getattr(loader, "_loading", ())
        if len(loading) >= MAX_NESTING:
            raise ParseError(
                f"{verb} {path!r}: templates nested more than {MAX_NESTING} deep",
                self.owner.name,
                line,
            )
        if resolved in loading:
            raise ParseError(
                f"{verb} {path!r} leads back to a template being compiled", self.owner.name, line
            )
        try:
            return loader.load(path, parent_path=self.owner.name)
        except ParseError:
            raise
        except Exception as exc:
            detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise ParseError(f"cannot {verb} {path!r}: {detail}", self.owner.name, line) from exc

    def collect_blocks(self, body: List[_Node]) -> None:
        for node in body:
            if isinstance(node, _Block):
                self.named_blocks[node.name] = node
                self.collect_blocks(node.body)
            elif isinstance(node, _Compound):
                for clause in node.clauses:
                    self.collect_blocks(clause.body)
            elif isinstance(node, _Apply):
                self.collect_blocks(node.body)
            elif isinstance(node, _Include) and self.loader is not None:
                saved = self.owner
                self.owner = node.owner
                try:
                    included = self.load(node.path, node.line, "include")
                finally:
                    self.owner = saved
                self.collect_blocks(included.file.body)

    # Emitting nodes

    def body(self, nodes: List[_Node], line: int) -> None:
        """Emit a suite; an empty one gets ``pass``."""
        before = len(self.lines)
        self.nodes(nodes)
        self.flush()
        if len(self.lines) == before:
            self.write("pass", line)

    def nodes(self, nodes: List[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.piece(repr(node.value), node.line)
            elif isinstance(node, _Expression):
                self.expression(node)
            elif isinstance(node, _Statement):
                self.statements.append(node.code)
                self.write(node.code, node.line)
            elif isinstance(node, _Compound):
                self.compound(node)
            elif isinstance(node, _Block):
                self.block(node)
            elif isinstance(node, _Include):
                self.include(node)
            else:
                self.apply(node)

    def expression(self, node: _Expression) -> None:
        escape_name = None if node.raw else self.owner.autoescape
        if escape_name is None:
            self.uses_raw_text = True
            wrapper = "_tt_text"
        else:
            wrapper = self.escape_locals.get(escape_name) or self.escape_locals.setdefault(
                escape_name, f"_tt_e{len(self.escape_locals)}"
            )
        code = node.code
        if "\n" in code or "#" in code:
            # A comment or line break inside the expression would swallow the closing
            # parenthesis, so evaluate it on a line of its own.
            self.write(f"_tt_tmp = {code}", node.line)
            self.write(f"_tt_append({wrapper}(_tt_tmp))", node.line)
        else:
            self.piece(f"{wrapper}(({code}))", node.line)

    def compound(self, node: _Compound) -> None:
        for clause in node.clauses:
            if clause.keyword in ("for", "except"):
                self.statements.append(clause.header)
            self.write(clause.header + ":", clause.line)
            self.indent += 1
            self.body(clause.body, clause.line)
            self.indent -= 1

    def block(self, node: _Block) -> None:
        chosen = self.named_blocks.get(node.name, node)
        if chosen.owner is self.owner:
            self.nodes(chosen.body)
            return
        self.via.append((self.owner.name, node.line))
        saved = self.owner
        self.owner = chosen.owner
        try:
            self.nodes(chosen.body)
        finally:
            self.owner = saved
            self.via.pop()

    def include(self, node: _Include) -> None:
        included = self.load(node.path, node.line, "include")
        self.via.append((self.owner.name, node.line))
        saved = self.owner
        self.owner = included
        try:
            self.nodes(included.file.body)
        finally:
            self.owner = saved
            self.via.pop()

    def apply(self, node: _Apply) -> None:
        name = f"_tt_apply{self.apply_count}"
        self.apply_count += 1
        self.write(f"def {name}():", node.line)
        self.indent += 1
        self.write("_tt_buffer = []", node.line)
        self.write("_tt_append = _tt_buffer.append", node.line)
        self.nodes(node.body)
        self.write("return _tt_to_bytes(_tt_buffer)", node.line)
        self.indent -= 1
        self.write(f"_tt_append(_tt_filtered({node.function}({name}())))", node.line)


def _is_rebound(name: str, statements: List[str]) -> bool:
    pattern = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)")
    return any(pattern.search(statement) for statement in statements)


def generate_function_source(
    template: _Parsed, loader: Optional[_Loader]
) -> Tuple[str, Tuple[Tuple[str, str], ...], List[_Origin]]:
    """Python source of ``_tt_execute`` for ``template``.

    Returns the source, the escape slots ``(global name, escape function name)`` that
    ``generate`` must fill, and the template position of every source line.
    """
    emitter = _Emitter(template, loader)
    chain = [template]
    current = template
    while current.file.extends is not None:
        path, line = current.file.extends
        emitter.owner = current
        parent = emitter.load(path, line, "extends")
        chain.append(parent)
        current = parent
    root = chain[-1]
    # The most derived template's blocks win: collect from the root down.
    for ancestor in reversed(chain):
        emitter.owner = ancestor
        emitter.collect_blocks(ancestor.file.body)
    emitter.owner = root
    emitter.nodes(root.file.body)
    emitter.flush()
    body_lines = emitter.lines
    body_origins = emitter.origins

    emitter.lines = []
    emitter.origins = []
    emitter.indent = 0
    emitter.via = []
    emitter.owner = root
    emitter.write("def _tt_execute():", 0)
    emitter.indent = 1
    emitter.write("_tt_buffer = []", 0)
    emitter.write("_tt_append = _tt_buffer.append", 0)
    if emitter.uses_raw_text:
        emitter.write("_tt_text = _tt_raw_text", 0)
    slots: List[Tuple[str, str]] = []
    for escape_name, local_name in emitter.escape_locals.items():
        simple = escape_name.isidentifier() and not keyword.iskeyword(escape_name)
        if simple and not _is_rebound(escape_name, emitter.statements):
            global_name = f"_tt_escape_slot{len(slots)}"
            slots.append((global_name, escape_name))
            emitter.write(f"{local_name} = {global_name}", 0)
        else:
            # Looked up at each use, so names the template binds itself still work.
            emitter.write(
                f"{local_name} = lambda _tt_value: _tt_custom_escape({escape_name}, _tt_value)",
                0,
            )
    prologue_lines = emitter.lines
    prologue_origins = emitter.origins

    emitter.lines = []
    emitter.origins = []
    emitter.write("return _tt_buffer", 0)
    source = "\n".join(prologue_lines + body_lines + emitter.lines) + "\n"
    origins = prologue_origins + body_origins + emitter.origins
    return source, tuple(slots), origins
