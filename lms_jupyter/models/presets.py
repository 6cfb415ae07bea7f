"""Named presets: a system prompt, sampling settings, structured output and context
settings saved under a name and applied to a request with ``"preset": "<name>"``.

Presets are JSON files in LM Studio's own format, in LM Studio's folder
(``~/.lmstudio/config-presets``, or ``$LMS_JUPYTER_PRESETS_DIR``), so presets saved by
the LM Studio app work here and ours work there::

    {"identifier": "@local:terse", "name": "terse",
     "operation": {"fields": [{"key": "llm.prediction.systemPrompt", "value": "Be terse."},
                              {"key": "llm.prediction.temperature", "value": 0.2}]},
     "load": {"fields": [{"key": "llm.load.contextLength", "value": 4096}]}}

This module knows the file format and the folder; checking the settings and applying
them to a request (explicit request fields win) is ``lms_jupyter.api.openai.requests``'s job.
Of the load settings, ``context_length`` applies when the request JIT-loads its model;
``flash_attention`` is kept so files round-trip with LM Studio but is not applied.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lms_jupyter.errors import APIError, bad_request

PRESET_SUFFIX = ".preset.json"

# request field -> (LM Studio config key, section, wrapped as {"checked", "value"})
_FIELDS = {
    "system_prompt": ("llm.prediction.systemPrompt", "operation", False),
    "temperature": ("llm.prediction.temperature", "operation", False),
    "top_k": ("llm.prediction.topKSampling", "operation", False),
    "top_p": ("llm.prediction.topPSampling", "operation", True),
    "min_p": ("llm.prediction.minPSampling", "operation", True),
    "repeat_penalty": ("llm.prediction.repeatPenalty", "operation", True),
    "max_tokens": ("llm.prediction.maxPredictedTokens", "operation", True),
    "stop": ("llm.prediction.stopStrings", "operation", False),
    "response_format": ("llm.prediction.structured", "operation", False),
    "seed": ("llm.prediction.seed", "operation", True),
    "presence_penalty": ("llm.prediction.presencePenalty", "operation", True),
    "frequency_penalty": ("llm.prediction.frequencyPenalty", "operation", True),
    "context_length": ("llm.load.contextLength", "load", False),
    "flash_attention": ("llm.load.llama.flashAttention", "load", False),
}
_BY_KEY = {key: (name, wrapped) for name, (key, _section, wrapped) in _FIELDS.items()}
SETTINGS = tuple(_FIELDS)  # the request fields a preset can hold


def default_presets_dir() -> Path:
    env = os.environ.get("LMS_JUPYTER_PRESETS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".lmstudio" / "config-presets"


def slug(name: str) -> str:
    """The file stem for a preset name: word characters and dashes only (no dots,
    slashes or NULs, so it cannot leave the presets folder), at most 150 bytes of UTF-8."""
    text = re.sub(r"[^\w\s-]", "", name.strip().lower())
    text = re.sub(r"[\s_]+", "-", text).strip("-")
    while len(text.encode("utf-8")) > 150:
        text = text[:-1]
    return text.strip("-") or "preset"


def _structured_to_openai(value) -> dict | None:
    """LM Studio's ``{"type": "json", "jsonSchema": ...}`` as an OpenAI response_format."""
    if not isinstance(value, dict) or value.get("type") in (None, "none"):
        return None
    if value.get("type") == "json" and isinstance(value.get("jsonSchema"), dict):
        return {
            "type": "json_schema",
            "json_schema": {"name": "preset_schema", "schema": value["jsonSchema"], "strict": True},
        }
    if value.get("type") in ("json_schema", "json_object", "text"):
        return value  # already OpenAI-shaped
    return None


def _openai_to_structured(value) -> dict:
    if value is None or value == {"type": "text"}:
        return {"type": "none"}
    if isinstance(value, dict) and value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return {"type": "json", "jsonSchema": schema}
    if isinstance(value, dict) and value.get("type") == "json":
        return value
    raise bad_request(
        'response_format in a preset must be {"type": "json_schema", '
        '"json_schema": {"schema": {...}}} or {"type": "text"}.',
        "response_format",
    )


@dataclass
class Preset:
    """A preset's name and its settings, keyed by request field names."""

    name: str
    settings: dict = field(default_factory=dict)
    identifier: str = ""
    path: Path | None = None

    @classmethod
    def from_lmstudio(cls, data: dict, path: Path | None = None) -> Preset:
        """Read LM Studio's file format (unknown keys are kept out, not fatal)."""
        if not isinstance(data, dict):
            raise ValueError("a preset file must hold a JSON object")
        name = data.get("name") or (path.name[: -len(PRESET_SUFFIX)] if path else "")
        settings: dict = {}
        for section in ("operation", "load"):
            fields = (data.get(section) or {}).get("fields") or []
            for item in fields:
                if not isinstance(item, dict) or item.get("key") not in _BY_KEY:
                    continue
                field_name, wrapped = _BY_KEY[item["key"]]
                value = item.get("value")
                if wrapped and isinstance(value, dict) and "checked" in value:
                    if not value.get("checked"):
                        continue
                    value = value.get("value")
                if field_name == "response_format":
                    value = _structured_to_openai(value)
                    if value is None:
                        continue
                settings[field_name] = value
        identifier = data.get("identifier") or f"@local:{slug(str(name))}"
        return cls(str(name), settings, identifier, path)

    def to_lmstudio(self) -> dict:
        sections: dict[str, list] = {"operation": [], "load": []}
        for name, value in self.settings.items():
            key, section, wrapped = _FIELDS[name]
            if name == "response_format":
                value = _openai_to_structured(value)
            sections[section].append(
                {"key": key, "value": {"checked": True, "value": value} if wrapped else value}
            )
        return {
            "identifier": self.identifier or f"@local:{slug(self.name)}",
            "name": self.name,
            "changed": True,
            "operation": {"fields": sections["operation"]},
            "load": {"fields": sections["load"]},
        }

    def as_dict(self) -> dict:
        return {"name": self.name, "identifier": self.identifier, "settings": dict(self.settings)}


def preset_not_found(name: str, known: list[str]) -> APIError:
    hint = f" Known presets: {', '.join(known)}." if known else " No presets are saved."
    return APIError(
        f'Preset "{name}" not found.{hint}',
        404,
        "invalid_request_error",
        "preset",
        "preset_not_found",
    )


class PresetStore:
    """The presets folder; files are re-read on every lookup so edits apply at once."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory else default_presets_dir()
        self._lock = threading.Lock()

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(
            p for p in self.directory.iterdir() if p.is_file() and p.name.endswith(".json")
        )

    def list(self) -> list[Preset]:
        presets = []
        for path in self._files():
            try:
                presets.append(Preset.from_lmstudio(json.loads(path.read_text("utf-8-sig")), path))
            except (OSError, ValueError):
                continue  # a broken file must not hide the others
        return presets

    def get(self, name: str) -> Preset:
        if not isinstance(name, str) or not name.strip():
            raise bad_request("'preset' must be a non-empty string.", "preset")
        wanted = name.strip()
        presets = self.list()
        for preset in presets:
            stem = (
                preset.path.name[: -len(PRESET_SUFFIX)]
                if preset.path and preset.path.name.endswith(PRESET_SUFFIX)
                else None
            )
            if (
                wanted in (preset.name, preset.identifier, stem)
                or slug(wanted) == slug(preset.name)
                or wanted == f"@local:{slug(preset.name)}"
            ):
                return preset
        raise preset_not_found(wanted, [p.name for p in presets])

    def save(self, name: str, settings: dict, overwrite: bool = True) -> Preset:
        """Write a preset (settings already checked, see ``api.openai.requests.preset_settings``),
        atomically: a crash leaves the old file or the new one, never half of one."""
        if not isinstance(name, str) or not name.strip():
            raise bad_request("'name' must be a non-empty string.", "name")
        preset = Preset(name.strip(), dict(settings), f"@local:{slug(name)}")
        path = self.directory / f"{slug(name)}{PRESET_SUFFIX}"
        with self._lock:
            if path.exists() and not overwrite:
                raise APIError(
                    f'Preset "{name}" already exists.',
                    409,
                    "invalid_request_error",
                    "name",
                    "preset_exists",
                )
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(preset.to_lmstudio(), indent=2), "utf-8")
            tmp.replace(path)
        preset.path = path
        return preset

    def delete(self, name: str) -> Preset:
        preset = self.get(name)
        if preset.path is not None:
            preset.path.unlink(missing_ok=True)
        return preset
