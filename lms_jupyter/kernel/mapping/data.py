"""``lms_jupyter.batch``'s data in and out: lists, pandas Series and DataFrames.

Inputs become :class:`Item` rows (position, index label, the user prompt); results go
back as a DataFrame aligned with the input's index, or as a list of dicts when pandas is
not installed. pandas is imported only when the input is a pandas object or a DataFrame
is built, never with the package.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

# the columns every result has besides the answer or the schema's fields
STATUS_COLUMNS = ("finish_reason", "prompt_tokens", "completion_tokens", "error")


class BatchInputError(ValueError):
    """The inputs or the prompt template cannot be used (shown as one line, before any
    request runs)."""


@dataclass(frozen=True)
class Item:
    position: int  # 0..n-1, the order of the input
    label: Any  # the input's index label (the position for a list)
    prompt: str  # the user message sent to the model


def _is_pandas(obj, name: str) -> bool:
    kind = type(obj)
    return kind.__module__.split(".")[0] == "pandas" and kind.__name__ == name


class _Fields(string.Formatter):
    """``str.format`` over a row, with errors that name the field and the columns."""

    def __init__(self, available: list[str]):
        self.available = available

    def get_value(self, key, args, kwargs):
        if isinstance(key, int):
            raise BatchInputError(
                "The prompt template uses a positional field '{}'; name "
                "a column instead, e.g. '{text}'."
            )
        if key not in kwargs:
            raise BatchInputError(
                f"The prompt template uses {{{key}}}, but there is no such "
                f"field; available: {', '.join(self.available)}. Write "
                "'{{' and '}}' for literal braces."
            )
        return kwargs[key]

    def format_field(self, value, format_spec):
        """A row's text as is; other values (lists, dicts, DataFrames, figures) through
        the notebook-context renderer, the one ``%%chat`` uses, with its cap."""
        if format_spec or isinstance(value, (str, int, float, bool)) or value is None:
            return super().format_field(value, format_spec)
        from lms_jupyter.kernel.context.render import render_value

        return render_value(value)


def render(template: str, fields: dict) -> str:
    formatter = _Fields([f"{{{k}}}" for k in fields])
    try:
        return formatter.format(template, **fields)
    except BatchInputError:
        raise
    except (ValueError, IndexError, AttributeError, KeyError) as exc:
        raise BatchInputError(
            f"Bad prompt template: {exc}. Write '{{{{' and '}}}}' for literal braces."
        ) from None


def read_inputs(inputs, prompt: str | None) -> tuple[list[Item], Any]:
    """(items, pandas index or None). ``prompt`` is a template: ``{column}`` fields for a
    DataFrame; ``{input}`` (or the Series' name) for a list or Series; ``{index}`` always.
    Without a template, each value (or a one-column DataFrame's value) is the prompt."""
    if prompt is not None and not isinstance(prompt, str):
        raise BatchInputError("prompt must be a string template, e.g. 'Classify: {text}'.")
    if isinstance(inputs, (str, bytes)):
        raise BatchInputError(
            "inputs must be a list, a pandas Series or a DataFrame, not a "
            "single string (wrap it in a list)."
        )
    if _is_pandas(inputs, "DataFrame"):
        columns = [str(c) for c in inputs.columns]
        if prompt is None:
            if len(columns) != 1:
                raise BatchInputError(
                    "A DataFrame with several columns needs prompt=, a "
                    "template with {column} fields (columns: "
                    f"{', '.join(columns)})."
                )
            prompt = "{" + columns[0] + "}"
        records = inputs.to_dict("records")
        items = []
        for position, (label, record) in enumerate(zip(inputs.index, records, strict=False)):
            fields = {str(k): v for k, v in record.items()}
            fields.setdefault("index", label)
            items.append(Item(position, label, render(prompt, fields)))
        return items, inputs.index
    if _is_pandas(inputs, "Series"):
        name = str(inputs.name) if inputs.name is not None else None
        items = []
        for position, (label, value) in enumerate(inputs.items()):
            items.append(Item(position, label, _prompt_for(value, prompt, label, name)))
        return items, inputs.index
    try:
        values = list(inputs)
    except TypeError:
        raise BatchInputError(
            f"inputs must be a list, a pandas Series or a DataFrame (got {type(inputs).__name__})."
        ) from None
    items = [Item(i, i, _prompt_for(value, prompt, i, None)) for i, value in enumerate(values)]
    return items, None


def _prompt_for(value, template: str | None, label, name: str | None) -> str:
    if template is None:
        if isinstance(value, dict):
            raise BatchInputError("A list of dicts needs prompt=, a template with {key} fields.")
        return str(value)
    fields = dict(value) if isinstance(value, dict) else {"input": value}
    if name is not None and not isinstance(value, dict):
        fields.setdefault(name, value)
    fields.setdefault("index", label)
    return render(template, {str(k): v for k, v in fields.items()})


def answer_columns(schema) -> list[str]:
    """One column per field of an object schema; ``answer`` otherwise."""
    if schema is None:
        return ["answer"]
    properties = schema.schema.get("properties")
    if (
        schema.schema.get("type", "object") == "object"
        and isinstance(properties, dict)
        and properties
    ):
        return list(properties)
    return ["answer"]


def row_values(parsed, columns: list[str]) -> dict:
    """A parsed answer (pydantic instance, dict or plain value) spread over ``columns``."""
    if hasattr(parsed, "model_dump"):
        parsed = parsed.model_dump(mode="json")
    if columns == ["answer"]:
        return {"answer": parsed}
    if not isinstance(parsed, dict):
        return {c: None for c in columns}
    return {c: parsed.get(c) for c in columns}


def empty_row(columns: list[str]) -> dict:
    return {**{c: None for c in columns}, **{c: None for c in STATUS_COLUMNS}}


class BatchRows(list):
    """The result as a list of dicts (no pandas); ``report`` holds the run's figures."""

    report: dict = {}


def build_result(
    rows: list[dict], columns: list[str], index, report: dict, *, want_frame: bool | None = None
):
    """A DataFrame aligned with ``index`` (pandas installed), else :class:`BatchRows`.

    ``report`` (items/s, tokens/s, counts) goes to ``DataFrame.attrs["lms_batch"]``.
    """
    order = [*columns, *STATUS_COLUMNS]
    rows = [{c: row.get(c) for c in order} for row in rows]
    if want_frame is None:
        want_frame = index is not None or _pandas_available()
    if not want_frame:
        out = BatchRows(rows)
        out.report = report
        return out
    import pandas as pd

    frame = pd.DataFrame(rows, columns=order, index=index)
    for column in ("prompt_tokens", "completion_tokens"):
        frame[column] = frame[column].astype("Int64")
    frame.attrs["lms_batch"] = report
    return frame


def _pandas_available() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True
