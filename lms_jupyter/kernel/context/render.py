"""Values as text for a model: what a person would paste into a chat, at a bounded size.

``repr`` of a 1,000,000-row DataFrame or a 50 MB string would fill any context and say
little, so each kind gets a summary a model can use:

* a pandas DataFrame: its shape, its dtypes and the first rows as a markdown table;
  a Series the same way; a NumPy array its shape, dtype and a clipped print;
* a long string, list, tuple, set or dict: cut, with a note saying how much was left out;
* an image or a figure (PIL, matplotlib, IPython ``Image``, anything with only an image
  repr): named with its size, never inlined;
* anything else: its ``str``, bounded.

Every result fits ``Limits.tokens`` (measured with a :class:`.tokens.TokenCounter`);
``tokens=None`` lifts the cap. Shared by ``%%chat``, ``lms_jupyter.chat(...)`` and
``lms_jupyter.batch`` templates. pandas, numpy and matplotlib are never imported here:
values are recognised by their type's module and name.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field

from lms_jupyter.kernel.context.tokens import EstimateCounter, TokenCounter

DEFAULT_CONTEXT_TOKENS = 2000
NOTE_RESERVE = 40  # tokens kept free for the "... cut" note


@dataclass
class Limits:
    tokens: int | None = DEFAULT_CONTEXT_TOKENS  # per interpolation; None: no cap
    rows: int = 5  # DataFrame / Series rows shown
    columns: int = 20  # DataFrame columns shown
    items: int = 50  # list / dict items tried first (fewer when they do not fit)
    cell_chars: int = 80  # one table cell
    counter: TokenCounter = field(default_factory=EstimateCounter)


def _type_name(value) -> tuple[str, str]:
    kind = type(value)
    return kind.__module__.split(".")[0], kind.__name__


def _is(value, module: str, *names: str) -> bool:
    root, name = _type_name(value)
    return root == module and name in names


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


# -- the cap --------------------------------------------------------------------------------
def fit(text: str, limits: Limits, what: str = "text") -> str:
    """``text`` cut to the cap, with a note saying how much was left out."""
    if limits.tokens is None:
        return text
    counter = limits.counter
    total = counter.count(text)
    if total <= limits.tokens:
        return text
    kept = counter.truncate(text, max(1, limits.tokens - NOTE_RESERVE))
    return (
        f"{kept}\n[... {what} cut to its first {len(kept):,} of {len(text):,} "
        f"characters (about {total:,} tokens; the cap is {limits.tokens:,})]"
    )


def _fits(text: str, limits: Limits) -> bool:
    return limits.tokens is None or limits.counter.count(text) <= limits.tokens


# -- tables ---------------------------------------------------------------------------------
def _cell(value, chars: int) -> str:
    text = str(value).replace("\n", " ").replace("|", "\\|")
    if len(text) > chars:
        text = text[: chars - 1] + "…"
    return text


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _shrinking(rows: int, columns: int, chars: int):
    """Table sizes to try, largest first: fewer rows, then narrower cells, then fewer
    columns, until one fits the cap."""
    tried = set()
    for r, c, w in [
        (rows, columns, chars),
        (min(rows, 3), columns, chars),
        (min(rows, 3), columns, 30),
        (min(rows, 2), min(columns, 10), 30),
        (min(rows, 2), min(columns, 5), 20),
        (1, min(columns, 3), 20),
        (1, 1, 20),
        (0, 0, 0),
    ]:
        if (r, c, w) not in tried:
            tried.add((r, c, w))
            yield r, c, w


def _frame(df, limits: Limits) -> str:
    n_rows, n_cols = df.shape
    columns = list(df.columns)
    listed = columns[: limits.columns]
    dtypes = ", ".join(f"{c}: {df.dtypes[c]}" for c in listed)
    if n_cols > len(listed):
        dtypes += f", ... ({n_cols - len(listed):,} more columns)"
    head = (
        f"pandas DataFrame: {_count(n_rows, 'row')} × {_count(n_cols, 'column')}\ndtypes: {dtypes}"
    )
    text = head
    for rows, cols, chars in _shrinking(min(limits.rows, n_rows), len(listed), limits.cell_chars):
        if rows == 0 or cols == 0:
            return head
        shown = columns[:cols]
        sample = df.iloc[:rows][shown]
        body = [
            [_cell(label, chars)] + [_cell(v, chars) for v in record]
            for label, record in zip(sample.index, sample.itertuples(index=False), strict=False)
        ]
        table = _markdown_table([""] + [_cell(c, chars) for c in shown], body)
        what = f"first {_count(rows, 'row')}" if rows < n_rows else "all rows"
        if cols < n_cols:
            what += f", first {_count(cols, 'column')}"
        text = f"{head}\n{what}:\n{table}"
        if _fits(text, limits):
            return text
    return text


def _series(series, limits: Limits) -> str:
    name = f" {series.name!r}" if series.name is not None else ""
    head = f"pandas Series{name}: {_count(len(series), 'value')}, dtype {series.dtype}"
    rows = min(limits.rows, len(series))
    while True:
        chars = limits.cell_chars
        body = [
            [_cell(label, chars), _cell(value, chars)]
            for label, value in series.iloc[:rows].items()
        ]
        what = f"first {_count(rows, 'value')}" if rows < len(series) else "all values"
        name = series.name if series.name is not None else "value"
        text = f"{head}\n{what}:\n" + _markdown_table(["", _cell(name, chars)], body)
        if rows <= 1 or _fits(text, limits):
            return text
        rows //= 2


def _ndarray(array, limits: Limits) -> str:
    import numpy  # an ndarray exists, so numpy is imported already

    printed = numpy.array2string(array, threshold=100, edgeitems=3, max_line_width=100)
    return f"numpy array: shape {tuple(array.shape)}, dtype {array.dtype}\n{printed}"


# -- images ---------------------------------------------------------------------------------
def image_name(value) -> str | None:
    """A one-line name for an image or figure, or None if ``value`` is not one."""
    root, name = _type_name(value)
    if root == "matplotlib" and name in ("Figure", "SubFigure"):
        width, height = (value.get_size_inches() * value.dpi).round().astype(int)
        titles = [ax.get_title() for ax in value.axes if ax.get_title()]
        about = f", titled {', '.join(repr(t) for t in titles[:3])}" if titles else ""
        return (
            f"[matplotlib figure, {width}×{height} px, "
            f"{_count(len(value.axes), 'axes')}{about}; the image is not included]"
        )
    if root == "matplotlib" and hasattr(value, "get_figure") and hasattr(value, "get_title"):
        title = value.get_title()
        return (
            f"[matplotlib {name}{f' titled {title!r}' if title else ''}; the image is not included]"
        )
    if root == "PIL" and hasattr(value, "size") and hasattr(value, "mode"):
        width, height = value.size
        return f"[image: {width}×{height} {value.mode}; the image is not included]"
    if root == "IPython" and name in ("Image", "SVG"):
        data = getattr(value, "data", None) or b""
        kind = getattr(value, "format", None) or name.lower()
        return f"[image: {kind}, {len(data):,} bytes; the image is not included]"
    has_image = any(callable(getattr(value, f"_repr_{m}_", None)) for m in ("png", "jpeg", "svg"))
    if has_image and not callable(getattr(value, "_repr_markdown_", None)):
        return f"[{type(value).__name__} image; the image is not included]"
    return None


# -- containers and the rest ----------------------------------------------------------------
class _OrderedRepr(reprlib.Repr):
    """reprlib for nested values, but a dict keeps its own order (reprlib sorts keys)."""

    def repr_dict(self, x, level):
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in list(x.items())[: self.maxdict]
        ]
        if len(x) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"


def _nested_repr() -> reprlib.Repr:
    short = _OrderedRepr()
    short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = 20
    short.maxdict = short.maxdeque = 20
    short.maxlevel = 3
    short.maxstring = short.maxother = 300
    short.maxlong = 100
    return short


def _first_items(value, items: int) -> str:
    """The container's first ``items`` entries (each value itself bounded)."""
    short = _nested_repr()
    level = short.maxlevel
    if isinstance(value, dict):
        pieces = [
            f"{short.repr1(k, level)}: {short.repr1(v, level)}"
            for k, v in list(value.items())[:items]
        ]
        opening, closing = "{", "}"
    else:
        pieces = [short.repr1(v, level) for v in list(value)[:items]]
        brackets: dict[type, tuple[str, str]] = {list: ("[", "]"), tuple: ("(", ")")}
        opening, closing = brackets.get(type(value), ("{", "}"))
        if isinstance(value, tuple) and len(pieces) == 1 and len(value) == 1:
            closing = ",)"
        if isinstance(value, (set, frozenset)) and not value:
            return repr(value)
    if len(value) > items:
        pieces.append("...")
    return opening + ", ".join(pieces) + closing


def _container(value, limits: Limits) -> str:
    size = len(value)
    noun = "key" if isinstance(value, dict) else "item"
    items = min(limits.items, size) or 1
    while True:
        text = _first_items(value, items)
        if items < size:
            text += f"\n[{type(value).__name__} of {_count(size, noun)}; the first {items:,} shown]"
        if items <= 1 or _fits(text, limits):
            return text
        items //= 2


def _string(text: str, limits: Limits) -> str:
    return fit(text, limits, "string")


def render_value(value, limits: Limits | None = None) -> str:
    """``value`` as text for a model, within ``limits.tokens``."""
    limits = limits or Limits()
    if isinstance(value, str):
        return _string(value, limits)
    if isinstance(value, (bytes, bytearray)):
        return fit(_nested_repr().repr(bytes(value)), limits, "bytes") + (
            f"\n[{len(value):,} bytes]" if len(value) > 300 else ""
        )
    if _is(value, "pandas", "DataFrame"):
        return fit(_frame(value, limits), limits, "table")
    if _is(value, "pandas", "Series"):
        return fit(_series(value, limits), limits, "series")
    if _is(value, "numpy", "ndarray"):
        return fit(_ndarray(value, limits), limits, "array")
    named = image_name(value)
    if named is not None:
        return named
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return fit(_container(value, limits), limits, type(value).__name__)
    try:
        text = str(value)
    except Exception as exc:  # noqa: BLE001 - a broken __str__ must not break a prompt
        text = f"<{type(value).__name__} object; str() failed: {exc}>"
    return fit(text, limits, type(value).__name__)
