"""Find the placeholders in a prompt: ``{name}``, ``{expr}``, ``{In[n]}``, ``{Out[n]}``,
``{Err[n]}``, ``{Err}``.

Prompts are full of braces that are not placeholders (JSON, dict literals, code), so the
rule is narrow and predictable:

* a placeholder is ``{`` immediately followed by a letter or ``_``, up to the next ``}`` on
  the same line with no other brace in between, whose text parses as ONE Python
  expression that uses at least one name (``{df}``, ``{df.head()}``, ``{len(rows)}``,
  ``{d["k"]}``) and is not a tuple;
* everything else is plain text: ``{"a": 1}``, ``{a: 1}``, ``{ x }``, ``{}``, ``{1}``,
  ``{a, b}``, ``{x!r}``;
* ``\\{`` (and ``\\}``) give a literal brace; ``{{name}}`` gives a literal ``{name}`` too
  (the older spelling).

Pure Python: no IPython, no evaluation here (see :mod:`.interpolate`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# {In[3]} {Out[3]} {Err[3]} {Err}: the notebook's own history
_HISTORY = re.compile(r"^(In|Out|Err)\[\s*(-?\d+)\s*\]$|^(Err)$")
_DOUBLED = re.compile(r"\{\{([A-Za-z_][^{}\n]*)\}\}")
_CANDIDATE = re.compile(r"\{([A-Za-z_][^{}\n]*)\}")


@dataclass(frozen=True)
class Placeholder:
    """One ``{...}`` to fill in. ``kind``: "expr" (evaluate ``text`` in the namespace),
    "In", "Out" or "Err" (``index`` is the execution count; None for the last error)."""

    text: str  # what was between the braces
    kind: str
    index: int | None = None
    tree: ast.Expression | None = None  # the parsed expression (kind "expr")

    @property
    def label(self) -> str:
        return "{" + self.text + "}"


Part = str | Placeholder


def _expression(text: str) -> ast.Expression | None:
    """The parsed expression if ``text`` is a placeholder's, else None (plain text)."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None
    if isinstance(tree.body, ast.Tuple):
        return None  # {a, b}: a set literal in code, not a placeholder
    if not any(isinstance(node, ast.Name) for node in ast.walk(tree)):
        return None  # {True}, {1}: constants only
    return tree


def placeholder(text: str) -> Placeholder | None:
    """What ``{text}`` means, or None when it is plain text."""
    history = _HISTORY.match(text.strip())
    if history:
        if history.group(3):
            return Placeholder(text, "Err")
        return Placeholder(text, history.group(1), int(history.group(2)))
    tree = _expression(text)
    return Placeholder(text, "expr", tree=tree) if tree is not None else None


def parse(text: str) -> list[Part]:
    """The prompt as literal strings and placeholders, in order (adjacent strings merged)."""
    parts: list[Part] = []
    buffer: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in ("{", "}"):
            buffer.append(text[i + 1])
            i += 2
            continue
        if char == "{":
            doubled = _DOUBLED.match(text, i)
            if doubled:
                buffer.append("{" + doubled.group(1) + "}")
                i = doubled.end()
                continue
            candidate = _CANDIDATE.match(text, i)
            found = placeholder(candidate.group(1)) if candidate else None
            if candidate is not None and found is not None:
                if buffer:
                    parts.append("".join(buffer))
                    buffer = []
                parts.append(found)
                i = candidate.end()
                continue
        buffer.append(char)
        i += 1
    if buffer:
        parts.append("".join(buffer))
    return parts


def placeholders(text: str) -> list[Placeholder]:
    return [p for p in parse(text) if isinstance(p, Placeholder)]


def free_names(tree: ast.Expression) -> list[str]:
    """Names the expression reads from outside (comprehension and lambda variables are
    its own), in order of appearance."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            bound.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Lambda):
            args = node.args
            bound.update(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
            if args.vararg:
                bound.add(args.vararg.arg)
            if args.kwarg:
                bound.add(args.kwarg.arg)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            bound.add(node.target.id)
    seen: list[str] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id not in bound
            and node.id not in seen
        ):
            seen.append(node.id)
    return seen
