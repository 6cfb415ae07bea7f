"""Python functions as OpenAI tools: a JSON schema from type hints and docstrings, and
calls executed in the kernel with their results (or errors) handed back to the model."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any

_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|"
    r"Examples?|Notes?)\s*:?\s*$",
    re.IGNORECASE,
)
_GOOGLE_PARAM = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_NUMPY_PARAM = re.compile(r"^\s*(\w+)\s*:\s*(.*)$")


class ToolError(ValueError):
    """A function that cannot be offered as a tool."""


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from Google, NumPy or Sphinx docstrings."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section, numpy_style, base, current = None, False, None, None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        sphinx = _SPHINX_PARAM.match(line)
        header = _SECTION.match(line)
        if sphinx:
            section, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
        elif stripped.startswith(":"):
            section, current = "other", None
        elif header:
            numpy_style = (
                i + 1 < len(lines)
                and lines[i + 1].strip() != ""
                and set(lines[i + 1].strip()) == {"-"}
            )
            section = "params" if header.group(1).lower().startswith(("arg", "param")) else "other"
            base, current = None, None
            i += 2 if numpy_style else 1
            continue
        elif section is None:
            summary.append(stripped)
        elif not stripped:
            pass
        elif section == "params" and (base is None or indent <= base):
            base = indent if base is None else base
            match = _NUMPY_PARAM.match(line) if numpy_style else _GOOGLE_PARAM.match(line)
            if match:
                current = match.group(1).lstrip("*")
                params[current] = "" if numpy_style else match.group(3).strip()
            else:
                current = None
        elif section in ("params", "sphinx") and current is not None:
            params[current] = (params[current] + " " + stripped).strip()
        i += 1
    description = " ".join(part for part in summary if part)
    return re.sub(r"\s+", " ", description).strip(), params


def type_schema(hint: Any) -> dict:
    """A JSON schema for a type hint (unknown types accept anything)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint is type(None):
        return {"type": "null"}
    simple = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "array",
        tuple: "array",
        set: "array",
        dict: "object",
    }
    if hint in simple:
        return {"type": simple[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if isinstance(hint, type) and hasattr(hint, "model_json_schema"):
        return hint.model_json_schema()
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        fields = dataclasses.fields(hint)
        return {
            "type": "object",
            "properties": {f.name: type_schema(hints.get(f.name, Any)) for f in fields},
            "required": [
                f.name
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ],
        }
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return type_schema(options[0])
        return {"anyOf": [type_schema(a) for a in options]}
    if origin is typing.Annotated:
        return type_schema(args[0])
    if origin in (list, set, frozenset) or origin is typing.Sequence:
        return {"type": "array", **({"items": type_schema(args[0])} if args else {})}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0])}
        return {
            "type": "array",
            **({"prefixItems": [type_schema(a) for a in args]} if args else {}),
        }
    if origin is dict:
        schema: dict = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = type_schema(args[1])
        return schema
    return {}


def function_tool(fn: Callable, name: str | None = None) -> dict:
    """The OpenAI ``tools`` entry for ``fn``."""
    if not callable(fn):
        raise ToolError(f"{name or fn!r} is not callable.")
    name = name or getattr(fn, "__name__", None)
    if not name or not re.fullmatch(r"[A-Za-z_][\w-]*", name):
        raise ToolError(f"{fn!r} has no usable name for a tool.")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"Cannot read the signature of {name}: {exc}") from None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references: use raw annotations
        hints = getattr(fn, "__annotations__", {}) or {}
    description, param_docs = parse_docstring(inspect.getdoc(fn))
    properties: dict[str, dict] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in ("self", "cls"):
            continue
        schema = dict(type_schema(hints.get(param.name, param.annotation)))
        if param.name in param_docs and param_docs[param.name]:
            schema["description"] = param_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        elif _jsonable(param.default):
            schema["default"] = param.default
        properties[param.name] = schema
    parameters = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": description or name, "parameters": parameters},
    }


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass
class ToolResult:
    name: str
    arguments: dict
    result: Any = None
    error: str | None = None

    @property
    def content(self) -> str:
        """What the model reads back."""
        if self.error is not None:
            return f"Error: {self.error}"
        if isinstance(self.result, str):
            return self.result
        try:
            return json.dumps(self.result, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            return repr(self.result)


class Toolbox:
    """Named kernel functions the model may call."""

    def __init__(self, functions: dict[str, Callable]):
        self.functions = dict(functions)
        self.specs = [function_tool(fn, name) for name, fn in self.functions.items()]

    def __bool__(self) -> bool:
        return bool(self.functions)

    @classmethod
    def from_names(cls, names: list[str], namespace: dict) -> Toolbox:
        functions = {}
        for name in names:
            if name not in namespace:
                raise ToolError(f"No function named {name!r} in the notebook namespace.")
            if not callable(namespace[name]):
                raise ToolError(f"{name!r} is not a function.")
            functions[name] = namespace[name]
        return cls(functions)

    def call(self, name: str, arguments: str | dict | None) -> ToolResult:
        """Run one call. Bad arguments and exceptions become an error for the model."""
        if isinstance(arguments, str):
            try:
                args = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return ToolResult(name, {}, error=f"arguments are not valid JSON ({exc})")
        else:
            args = arguments or {}
        if not isinstance(args, dict):
            return ToolResult(name, {}, error="arguments must be a JSON object")
        fn = self.functions.get(name)
        if fn is None:
            return ToolResult(
                name, args, error=f"unknown tool {name!r}; available: {', '.join(self.functions)}"
            )
        try:
            return ToolResult(name, args, result=fn(**args))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the model gets to see what went wrong
            return ToolResult(name, args, error=f"{type(exc).__name__}: {exc}")
