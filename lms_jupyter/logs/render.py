"""Which events a reader wants (:class:`LogFilter`) and how they look: LM Studio's text layout
(:func:`render_text`) or one compact JSON object a line (:func:`render_json`)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from lms_jupyter.logs.bus import MODEL_INPUT, MODEL_OUTPUT, SERVER_LOG, SOURCES


class LogOptionsError(ValueError):
    """Bad ``log stream`` options, with LM Studio's wording."""


@dataclass
class LogFilter:
    """Which events a reader wants and whether model events keep their ``stats``."""

    source: str = "model"
    types: tuple[str, ...] = (MODEL_INPUT, MODEL_OUTPUT)
    stats: bool = False

    @classmethod
    def parse(
        cls, source: str | None = "model", filter_text: str | None = None, stats: bool = False
    ) -> LogFilter:
        source = (source or "model").strip().lower()
        if source not in SOURCES:
            raise LogOptionsError(
                f"--source must be one of: {', '.join(SOURCES)} (got {source!r})."
            )
        if source != "model":
            if stats:
                raise LogOptionsError("--stats can only be used with --source model")
            if filter_text is not None:
                raise LogOptionsError("--filter can only be used with --source model")
            return cls(source, (SERVER_LOG,), False)
        if filter_text is None:
            return cls(source, (MODEL_INPUT, MODEL_OUTPUT), bool(stats))
        if not filter_text.strip():
            raise LogOptionsError("--filter cannot be empty")
        wanted = [part.strip() for part in filter_text.split(",") if part.strip()]
        if any(part not in ("input", "output") for part in wanted):
            raise LogOptionsError("--filter values must be 'input', 'output', or 'input,output'")
        types = tuple(t for t in (MODEL_INPUT, MODEL_OUTPUT) if t.rsplit(".", 1)[1] in wanted)
        return cls(source, types, bool(stats))

    def apply(self, event: dict) -> dict | None:
        """The event as this reader sees it, or None when it is filtered out."""
        data = event.get("data") or {}
        if data.get("type") not in self.types:
            return None
        if "stats" in data and not self.stats:
            data = {k: v for k, v in data.items() if k != "stats"}
            return {"timestamp": event.get("timestamp"), "data": data}
        return event

    def query(self) -> dict:
        """The SSE endpoint's query parameters for this filter."""
        params = {"source": self.source}
        if self.source == "model":
            params["filter"] = ",".join(t.rsplit(".", 1)[1] for t in self.types)
            if self.stats:
                params["stats"] = "true"
        return params


def local_time(timestamp_ms: int) -> str:
    """JavaScript's ``toLocaleString()`` in en-US: ``9/15/2025, 3:16:39 PM``."""
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000)
    hour = moment.hour % 12 or 12
    suffix = "AM" if moment.hour < 12 else "PM"
    return (
        f"{moment.month}/{moment.day}/{moment.year}, "
        f"{hour}:{moment.minute:02d}:{moment.second:02d} {suffix}"
    )


def render_text(event: dict, stats: bool = False) -> str:
    """LM Studio's text layout: server lines raw, model events as ``key: value`` blocks
    followed by two blank lines."""
    data = event.get("data") or {}
    kind = data.get("type")
    if kind == SERVER_LOG:
        return str(data.get("content", ""))
    lines = [
        f"timestamp: {local_time(event.get('timestamp') or 0)}",
        f"type: {kind}",
        f"modelIdentifier: {data.get('modelIdentifier')}",
    ]
    if kind == MODEL_INPUT:
        lines += [f"modelPath: {data.get('modelPath')}", "input:", str(data.get("input", ""))]
    elif kind == MODEL_OUTPUT:
        lines += ["output:", str(data.get("output", ""))]
        if stats:
            if data.get("stats"):
                lines += [f"{key}: {_js_value(value)}" for key, value in data["stats"].items()]
            else:
                lines.append("No stats available")
    return "\n".join(lines) + "\n\n"


def _js_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_json(event: dict) -> str:
    """``JSON.stringify(event)``: compact, one line."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))
