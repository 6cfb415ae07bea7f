"""Fill a prompt's placeholders from a namespace and the notebook's history.

Two steps, so that mistakes cost nothing: :func:`resolve` evaluates every placeholder
(an unknown name or a failing expression is a :class:`ContextError` naming it, before
any model is loaded or called); :meth:`Resolved.render` then turns the values into text
with the shared renderer, each capped in tokens, once the model's tokenizer is at hand.
Only the expressions the prompt uses are evaluated.
"""

from __future__ import annotations

import builtins
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lms_jupyter.kernel.context.history import ContextError, NotebookHistory
from lms_jupyter.kernel.context.render import Limits, fit, render_value
from lms_jupyter.kernel.context.template import Placeholder, free_names, parse

log = logging.getLogger(__name__)

_MISSING = object()
_FORMAT_FIELD = string.Formatter()


@dataclass
class Interpolation:
    """One filled placeholder, as sent."""

    label: str  # "{df}"
    kind: str  # "DataFrame", "In[3]", "Err[4]", ...
    text: str = ""
    tokens: int = 0


@dataclass
class Expanded:
    text: str
    interpolations: list[Interpolation] = field(default_factory=list)
    counter: str = "estimate"  # how tokens were measured

    def summary(self) -> str:
        """One line per interpolation: what it was and how many tokens it took."""
        return "\n".join(
            f"{i.label}: {i.kind}, {i.tokens:,} tokens ({self.counter})"
            for i in self.interpolations
        )


@dataclass
class Resolved:
    parts: list[Any]  # str | (Placeholder, value, kind)

    def render(self, limits: Limits | None = None) -> Expanded:
        limits = limits or Limits()
        out: list[str] = []
        pieces: list[Interpolation] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            placeholder, value, kind = part
            if placeholder.kind == "expr":
                text = render_value(value, limits)
            else:  # sources and tracebacks are text already
                text = fit(value, limits, "cell" if placeholder.kind == "In" else "traceback")
            out.append(text)
            pieces.append(Interpolation(placeholder.label, kind, text, limits.counter.count(text)))
        expanded = Expanded("".join(out), pieces, limits.counter.name)
        if pieces:
            log.info(
                "prompt context: %s",
                "; ".join(f"{p.label} {p.kind} {p.tokens} tokens" for p in pieces),
            )
        return expanded

    @property
    def placeholders(self) -> list[Placeholder]:
        return [p[0] for p in self.parts if not isinstance(p, str)]


def _format_field(text: str, namespace: Mapping):
    """``{facts[river]}``: str.format's field syntax, kept from the first %%chat."""
    try:
        value, _ = _FORMAT_FIELD.get_field(text, (), namespace)
        return value
    except (AttributeError, LookupError, TypeError, ValueError):
        return _MISSING


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def evaluate(placeholder: Placeholder, namespace: Mapping, globals_: dict | None = None):
    """The value of an expression placeholder in ``namespace``."""
    tree = placeholder.tree
    if tree is None:
        raise ContextError(f"{placeholder.label} is not an expression.")
    names = free_names(tree)
    unknown = [
        n
        for n in names
        if n not in namespace
        and (globals_ is None or n not in globals_)
        and not hasattr(builtins, n)
    ]
    if unknown:
        value = _format_field(placeholder.text, namespace)
        if value is not _MISSING:
            return value
        raise ContextError(
            f"{placeholder.label}: name {unknown[0]!r} is not defined. "
            "Write \\{ for a literal brace."
        )
    code = compile(tree, placeholder.label, "eval")
    scope = globals_ if globals_ is not None else {"__builtins__": builtins, **namespace}
    try:
        if globals_ is not None and namespace is not globals_:
            return eval(code, scope, dict(namespace))
        return eval(code, scope)
    except Exception as exc:  # noqa: BLE001 - shown as the placeholder's one-line error
        raise ContextError(f"{placeholder.label} failed: {_first_line(exc)}") from None


def _kind(value) -> str:
    kind = type(value)
    module = kind.__module__.split(".")[0]
    return kind.__name__ if module == "builtins" else f"{module}.{kind.__name__}"


def resolve(
    text: str,
    namespace: Mapping,
    history: NotebookHistory | None = None,
    globals_: dict | None = None,
) -> Resolved:
    """Evaluate the placeholders of ``text``; raises ContextError for the first that
    cannot be filled."""
    parts: list[Any] = []
    for part in parse(text):
        if isinstance(part, str):
            parts.append(part)
            continue
        if part.kind == "expr":
            value = evaluate(part, namespace, globals_)
            parts.append((part, value, _kind(value)))
            continue
        if history is None:
            raise ContextError(
                f"{part.label}: cell history is only available in an "
                "IPython kernel with %load_ext lms_jupyter."
            )
        n = part.index if part.index is not None else -1
        try:
            if part.kind == "In":
                parts.append((part, history.source(n), f"In[{history.count(n)}]"))
            elif part.kind == "Out":
                value = history.output(n)
                parts.append(
                    (
                        Placeholder(part.text, "expr", n),
                        value,
                        f"Out[{history.count(n)}] {_kind(value)}",
                    )
                )
            else:
                error = history.error(part.index)
                kind = f"Err[{error.execution_count}] {error.ename}"
                parts.append((part, error.traceback, kind))
        except ContextError as exc:
            raise ContextError(f"{part.label}: {exc}") from None
    return Resolved(parts)


def expand(
    text: str,
    namespace: Mapping,
    history: NotebookHistory | None = None,
    limits: Limits | None = None,
    globals_: dict | None = None,
) -> Expanded:
    """:func:`resolve` and render in one go."""
    return resolve(text, namespace, history, globals_).render(limits)
