"""``%%chat --schema NAME``: a pydantic model or JSON schema dict from the notebook as
OpenAI's ``response_format``, and the answer parsed back into Python."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


class SchemaError(ValueError):
    """The schema cannot be used, or the answer does not match it."""


@dataclass
class OutputSchema:
    name: str
    schema: dict
    model_class: type[BaseModel] | None = None  # a pydantic model to validate into

    def response_format(self) -> dict:
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": True},
        }

    def parse(self, text: str) -> Any:
        """The answer as a pydantic instance (model schemas) or plain JSON data."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(
                f"The answer is not valid JSON ({exc.msg} at character "
                f"{exc.pos}); it may have been cut off by --max-tokens."
            ) from None
        if self.model_class is None:
            return data
        try:
            return self.model_class.model_validate(data)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, one line
            first = str(exc).splitlines()
            detail = "; ".join(line.strip() for line in first[1:3]) or str(exc)
            raise SchemaError(f"The answer does not match {self.name}: {detail}") from None


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "schema"


def output_schema(obj: Any, name: str = "schema") -> OutputSchema:
    """Accept a pydantic model class, a bare JSON schema, or OpenAI's
    ``{"name": ..., "schema": {...}}`` wrapper."""
    if (
        isinstance(obj, type)
        and hasattr(obj, "model_json_schema")
        and hasattr(obj, "model_validate")
    ):
        return OutputSchema(_safe_name(obj.__name__), obj.model_json_schema(), obj)
    if isinstance(obj, dict):
        if isinstance(obj.get("schema"), dict) and "name" in obj:
            return OutputSchema(_safe_name(str(obj["name"])), obj["schema"])
        if isinstance(obj.get("json_schema"), dict):  # a whole response_format
            return output_schema(obj["json_schema"], name)
        if any(key in obj for key in ("type", "properties", "$ref", "anyOf", "enum")):
            return OutputSchema(_safe_name(name), obj)
        raise SchemaError(f"{name} does not look like a JSON schema (no 'type' or 'properties').")
    raise SchemaError(
        f"{name} must be a pydantic model class or a JSON schema dict (got {type(obj).__name__})."
    )


def schema_from_namespace(name: str, namespace: dict) -> OutputSchema:
    if name not in namespace:
        raise SchemaError(f"No variable named {name!r} in the notebook namespace.")
    return output_schema(namespace[name], name)
