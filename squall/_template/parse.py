"""Template source to node tree (private part of ``squall.template``)."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Protocol, Tuple, Union


class _Owner(Protocol):
    """What the parser needs of the template it parses (a ``Template``, in practice).

    Nodes keep their owner so that code generation knows, for a block or include taken
    from another file, which file's name and autoescape setting apply.
    """

    name: str
    # {% autoescape %} changes it for the whole file.
    autoescape: Optional[str]


class ParseError(Exception):
    """A template could not be parsed or compiled; names the file and line."""

    def __init__(self, message: str, filename: Optional[str] = None, lineno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.lineno = lineno

    def __str__(self) -> str:
        return "%s at %s:%d" % (self.message, self.filename, self.lineno)


_BLANK_RUN = re.compile(r"[ \t]+")
_RUN_WITH_NEWLINE = re.compile(r"\s*\n\s*")
_ANY_WHITESPACE_RUN = re.compile(r"\s+")


def filter_whitespace(mode: str, text: str) -> str:
    """Compress whitespace in ``text``: mode ``all`` keeps it, ``single`` keeps one
    space or newline per run, ``oneline`` turns every run into one space."""
    if mode == "all":
        return text
    if mode == "single":
        return _RUN_WITH_NEWLINE.sub("\n", _BLANK_RUN.sub(" ", text))
    if mode == "oneline":
        return _ANY_WHITESPACE_RUN.sub(" ", text)
    raise ValueError(f"invalid whitespace mode {mode}")



# Nodes. Lines are 1-based positions of the tag (or text start) in the template.


class _Text:
    __slots__ = ("value", "line")

    def __init__(self, value: str, line: int) -> None:
        self.value = value
        self.line = line


class _Expression:
    """``{{ code }}`` (escaped) or ``{% raw code %}`` / ``{% module %}`` (raw)."""

    __slots__ = ("code", "line", "raw")

    def __init__(self, code: str, line: int, raw: bool) -> None:
        self.code = code
        self.line = line
        self.raw = raw


class _Statement:
    """A Python statement run in place: set, import, from, break, continue."""

    __slots__ = ("code", "line")

    def __init__(self, code: str, line: int) -> None:
        self.code = code
        self.line = line


class _Clause:
    __slots__ = ("keyword", "header", "line", "body")

    def __init__(self, keyword: str, header: str, line: int) -> None:
        self.keyword = keyword
        self.header = header
        self.line = line
        self.body: List[_Node] = []


class _Compound:
    """if/for/while/try with their clauses (elif, else, except, finally)."""

    __slots__ = ("kind", "clauses")

    def __init__(self, kind: str, first: _Clause) -> None:
        self.kind = kind
        self.clauses = [first]


class _Block:
    __slots__ = ("name", "line", "body", "owner")

    def __init__(self, name: str, line: int, owner: _Owner) -> None:
        self.name = name
        self.line = line
        self.body: List[_Node] = []
        self.owner = owner


class _Include:
    __slots__ = ("path", "line", "owner")

    def __init__(self, path: str, line: int, owner: _Owner) -> None:
        self.path = path
        self.line = line
        self.owner = owner


class _Apply:
    __slots__ = ("function", "line", "body")

    def __init__(self, function: str, line: int) -> None:
        self.function = function
        self.line = line
        self.body: List[_Node] = []


_Node = Union[_Text, _Expression, _Statement, _Compound, _Block, _Include, _Apply]


class _SourceFile:
    """The parsed body of one template plus its ``{% extends %}`` target, if any."""

    __slots__ = ("template", "body", "extends")

    def __init__(
        self, template: _Owner, body: List[_Node], extends: Optional[Tuple[str, int]]
    ) -> None:
        self.template = template
        self.body = body
        self.extends = extends


_TAG_START = re.compile(r"\{[{%#]")
_TAG_END = {"{{": "}}", "{%": "%}", "{#": "#}"}
_MISSING_END = {
    "{{": "Missing end expression }}",
    "{%": "Missing end block %}",
    "{#": "Missing end comment #}",
}
_CLAUSE_OWNERS: Dict[str, Tuple[str, ...]] = {
    "else": ("if", "for", "while", "try"),
    "elif": ("if",),
    "except": ("try",),
    "finally": ("try",),
}
_LOOPS = ("for", "while")
# Deeper nesting than this is almost surely a mistake, and the code generator recurses
# once per level.
MAX_NESTING = 100


class _Open:
    """A construct whose ``{% end %}`` has not been seen yet."""

    __slots__ = ("kind", "node", "body", "line")

    def __init__(
        self, kind: str, node: Union[_Compound, _Block, _Apply], body: List[_Node], line: int
    ) -> None:
        self.kind = kind
        self.node = node
        self.body = body
        self.line = line


def _strip_quotes(value: str) -> str:
    return value.strip().strip("\"'")


class _Parser:
    __slots__ = ("template", "name", "whitespace", "root", "stack", "extends")

    def __init__(self, template: _Owner, whitespace: str) -> None:
        self.template = template
        self.name = template.name
        self.whitespace = whitespace
        self.root: List[_Node] = []
        self.stack: List[_Open] = []
        self.extends: Optional[Tuple[str, int]] = None

    def error(self, message: str, line: int) -> ParseError:
        return ParseError(message, self.name, line)

    def push(self, frame: _Open) -> None:
        if len(self.stack) >= MAX_NESTING:
            raise self.error(f"directives nested more than {MAX_NESTING} deep", frame.line)
        self.stack.append(frame)

    @property
    def body(self) -> List[_Node]:
        return self.stack[-1].body if self.stack else self.root

    def add_text(self, text: str, line: int, filtered: bool = True) -> None:
        if filtered and "<pre>" not in text:
            text = filter_whitespace(self.whitespace, text)
        if not text:
            return
        body = self.body
        if body and isinstance(body[-1], _Text):
            body[-1].value += text
        else:
            body.append(_Text(text, line))

    def parse(self, source: str) -> _SourceFile:
        position = 0
        line = 1
        length = len(source)
        while position < length:
            match = _TAG_START.search(source, position)
            if match is None:
                self.add_text(source[position:], line)
                break
            start = match.start()
            if start > position:
                text = source[position:start]
                self.add_text(text, line)
                line += text.count("\n")
            opener = match.group()
            if source.startswith("!", start + 2):
                # "{{!", "{%!" and "{#!" stand for the literal opener.
                self.add_text(opener, line, filtered=False)
                position = start + 3
                continue
            end = source.find(_TAG_END[opener], start + 2)
            if end < 0:
                raise self.error(_MISSING_END[opener], line)
            content = source[start + 2 : end]
            position = end + 2
            tag_line = line
            line += content.count("\n")
            if opener == "{#":
                continue
            if opener == "{{":
                code = content.strip()
                if not code:
                    raise self.error("Empty expression", tag_line)
                self.body.append(_Expression(code, tag_line, raw=False))
            else:
                self.directive(content.strip(), tag_line)
        if self.stack:
            unclosed = self.stack[-1]
            raise self.error(f"Missing {{% end %}} block for {unclosed.kind}", unclosed.line)
        return _SourceFile(self.template, self.root, self.extends)

    def directive(self, content: str, line: int) -> None:
        if not content:
            raise self.error("Empty block tag ({% %})", line)
        parts = content.split(None, 1)
        operator = parts[0]
        argument = parts[1].strip() if len(parts) > 1 else ""

        if operator == "end":
            self.close(line)
        elif operator in _CLAUSE_OWNERS:
            self.clause(operator, argument, line)
        elif operator in ("if", "for", "while"):
            if not argument:
                raise self.error(f"{operator} missing expression", line)
            self.open_compound(operator, f"{operator} {argument}", line)
        elif operator == "try":
            if argument:
                raise self.error("try takes no argument", line)
            self.open_compound(operator, "try", line)
        elif operator == "block":
            if not argument:
                raise self.error("block missing name", line)
            block = _Block(argument, line, self.template)
            self.body.append(block)
            self.push(_Open("block", block, block.body, line))
        elif operator == "apply":
            if not argument:
                raise self.error("apply missing method name", line)
            apply = _Apply(argument, line)
            self.body.append(apply)
            self.push(_Open("apply", apply, apply.body, line))
        elif operator == "comment":
            pass
        elif operator == "set":
            if not argument:
                raise self.error("set missing statement", line)
            self.body.append(_Statement(argument, line))
        elif operator in ("import", "from"):
            if not argument:
                raise self.error("import missing statement", line)
            self.body.append(_Statement(f"{operator} {argument}", line))
        elif operator in ("break", "continue"):
            if argument:
                raise self.error(f"{operator} takes no argument", line)
            self.check_in_loop(operator, line)
            self.body.append(_Statement(operator, line))
        elif operator == "raw":
            if not argument:
                raise self.error("raw missing expression", line)
            self.body.append(_Expression(argument, line, raw=True))
        elif operator == "module":
            if not argument:
                raise self.error("module missing expression", line)
            self.body.append(_Expression("_tt_modules." + argument, line, raw=True))
        elif operator == "include":
            path = _strip_quotes(argument)
            if not path:
                raise self.error("include missing file path", line)
            self.body.append(_Include(path, line, self.template))
        elif operator == "extends":
            path = _strip_quotes(argument)
            if not path:
                raise self.error("extends missing file path", line)
            if self.stack:
                raise self.error("extends must be at the top level of a template", line)
            if self.extends is not None:
                raise self.error("a template can extend only one template", line)
            self.extends = (path, line)
        elif operator == "autoescape":
            # Applies to the whole file, as in Tornado (the last directive wins).
            self.template.autoescape = None if argument in ("", "None") else argument
        elif operator == "whitespace":
            try:
                filter_whitespace(argument, "")
            except ValueError:
                raise self.error(f"invalid whitespace mode {argument!r}", line) from None
            self.whitespace = argument
        else:
            raise self.error(f"unknown operator: {operator!r}", line)

    def open_compound(self, kind: str, header: str, line: int) -> None:
        first = _Clause(kind, header, line)
        compound = _Compound(kind, first)
        self.body.append(compound)
        self.push(_Open(kind, compound, first.body, line))

    def clause(self, keyword: str, argument: str, line: int) -> None:
        owners = _CLAUSE_OWNERS[keyword]
        frame = self.stack[-1] if self.stack else None
        if frame is None or not isinstance(frame.node, _Compound):
            raise self.error(f"{keyword} outside {'/'.join(owners)} block", line)
        if frame.kind not in owners:
            raise self.error(f"{keyword} block cannot be attached to {frame.kind} block", line)
        compound = frame.node
        seen = [clause.keyword for clause in compound.clauses]
        if keyword in ("else", "finally") and argument:
            raise self.error(f"{keyword} takes no argument", line)
        if keyword == "elif" and not argument:
            raise self.error("elif missing expression", line)
        previous = seen[-1]
        try_else_then_finally = frame.kind == "try" and previous == "else" and keyword == "finally"
        if (previous in ("else", "finally") and not try_else_then_finally) or (
            keyword == "else" and "else" in seen
        ):
            raise self.error(f"{keyword} cannot follow {previous} in {frame.kind} block", line)
        if frame.kind == "try" and keyword == "else" and "except" not in seen:
            raise self.error("else in a try block needs an except before it", line)
        header = f"{keyword} {argument}" if argument else keyword
        clause = _Clause(keyword, header, line)
        compound.clauses.append(clause)
        frame.body = clause.body

    def close(self, line: int) -> None:
        if not self.stack:
            raise self.error("Extra {% end %} block", line)
        frame = self.stack.pop()
        node = frame.node
        if isinstance(node, _Compound) and node.kind == "try":
            if len(node.clauses) == 1:
                raise self.error("try block needs an except or finally clause", frame.line)

    def check_in_loop(self, operator: str, line: int) -> None:
        for frame in reversed(self.stack):
            if frame.kind in _LOOPS:
                # Inside a for/while's else clause a break would leave the loop's parent.
                clause_keyword = frame.node.clauses[-1].keyword  # type: ignore[union-attr]
                if clause_keyword != "else":
                    return
            if frame.kind == "apply":
                # {% apply %} bodies become a nested function, which ends the loop scope.
                break
        raise self.error(f"{operator} outside for or while loop", line)


def parse_template(template: _Owner, source: str, whitespace: str) -> _SourceFile:
    """Parse ``source`` for ``template`` (whose ``autoescape`` directives may change)."""
    return _Parser(template, whitespace).parse(source)
