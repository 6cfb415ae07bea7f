"""What ``ls`` and ``ps`` show: LM Studio's JSON shapes and plain-text tables.

Plain text with no colours reads the same on light and dark themes, in a terminal and in
a saved notebook.
"""
from __future__ import annotations

import time

from ..api.views import v1_type, variant_id
from ..models.catalog import ModelInfo


def human_size(n_bytes: int | float | None) -> str:
    """Decimal units, as LM Studio prints them (4.92 GB, 84.11 MB)."""
    if n_bytes is None:
        return "-"
    value = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{value:.2f} TB"


def human_duration(seconds: float | None) -> str:
    """Compact durations for TTLs: 45s, 42m, 1h, 1h 5m."""
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m" if not secs or minutes >= 10 else f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h" if not minutes else f"{hours}h {minutes}m"


def table(rows: list[list[str]], headers: list[str]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return lines


def ls_lines(models: list[ModelInfo], loaded: list, *, variants: bool = False,
             kinds: tuple[str, ...] = ("llm", "embedding")) -> list[str]:
    """``lms ls``: a summary line, then one table per model type."""
    titles = {"llm": "LLM", "embedding": "EMBEDDING"}
    if not models and len(kinds) == 1:
        return [f"No {titles[kinds[0]].lower()} models."]
    if not models:
        return ["You have no models. Put GGUF files under the models folder "
                "(<publisher>/<repo>/<file>.gguf)."]
    total = sum(v.size_bytes for m in models for v in m.variants)
    count = len(models)
    lines = [f"You have {count} model{'s' if count != 1 else ''}, taking up "
             f"{human_size(total)} of disk space.", ""]
    by_key: dict[str, list] = {}
    for instance in loaded:
        by_key.setdefault(instance.info.key, []).append(instance)
    for kind in kinds:
        group = [m for m in models if v1_type(m) == kind]
        if not group:
            lines += [f"No {titles[kind].lower()} models.", ""]
            continue
        rows = []
        for info in group:
            variant = info.default_variant
            instances = by_key.get(info.key, [])
            mark = ""
            if instances:
                mark = "✓ LOADED" if len(instances) == 1 else f"✓ LOADED ({len(instances)})"
            name = info.key
            if len(info.variants) > 1 and not variants:
                name += f" ({len(info.variants)} variants)"
            rows.append([name, variant.params_string, variant.arch, variant.quantization,
                         human_size(variant.size_bytes), mark])
            if variants:
                loaded_paths = {i.variant.path for i in instances}
                for v in info.variants:
                    selected = "*" if v is variant else " "
                    state = "✓" if v.path in loaded_paths else ""
                    rows.append([f"  {selected} {variant_id(info, v)}", "", "", v.quantization,
                                 human_size(v.size_bytes), state])
        lines += table(rows, [titles[kind], "PARAMS", "ARCH", "QUANT", "SIZE", "LOADED"])
        lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def ps_lines(loaded: list, load_hint: str, now: float | None = None) -> list[str]:
    """``lms ps``: one row per loaded instance."""
    if not loaded:
        return [f"No models are currently loaded. To load a model, run: {load_hint}"]
    now = time.time() if now is None else now
    rows = []
    for model in loaded:
        snap = model.snapshot()
        ttl = snap["ttlSeconds"]
        if ttl is None:
            ttl_text = "-"
        else:
            left = ttl if snap["queued"] else ttl - (now - snap["lastUsedTime"])
            ttl_text = f"{human_duration(left)} / {human_duration(ttl)}"
        rows.append([snap["identifier"], snap["modelKey"], snap["status"].upper(),
                     str(snap["queued"]), human_size(snap["sizeBytes"]),
                     str(snap["contextLength"]), ttl_text, "JIT" if snap["jit"] else ""])
    return table(rows, ["IDENTIFIER", "MODEL", "STATUS", "QUEUED", "SIZE", "CONTEXT", "TTL", ""])
