"""What ``ls`` and ``ps`` show: LM Studio's JSON shapes and plain-text tables.

Plain text with no colours reads the same on light and dark themes, in a terminal and in
a saved notebook.
"""

from __future__ import annotations

import time

from lms_jupyter.api.views import v1_type, variant_id
from lms_jupyter.models.catalog import ModelInfo
from lms_jupyter.models.hub import human_size


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


def table(rows: list[list[str]], headers: list[str], splitter: str = "  ") -> list[str]:
    """Left-aligned columns separated by ``splitter``."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    lines = []
    for row in [headers, *rows]:
        lines.append(
            splitter.join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
        )
    return lines


_TITLES = {"llm": "LLM", "embedding": "EMBEDDING"}
_LS_COLUMNS = ["PARAMS", "ARCH", "SIZE", "DEVICE", ""]  # LM Studio's, after the title
_LS_SPLITTER = "    "  # columnify's columnSplitter in lms


def _device(info) -> str:
    """LM Studio's DEVICE column: Local, or the remote engine serving the model."""
    return getattr(info, "device", "Local")


def loaded_mark(count: int) -> str:
    if count == 0:
        return ""
    return "✓ LOADED" if count == 1 else f"✓ LOADED ({count})"


def with_variant_count(info: ModelInfo) -> str:
    """``key (N variants)``, as ``lms ls`` names a model."""
    count = len(info.variants)
    return f"{info.key} ({count} {'variant' if count == 1 else 'variants'})"


def _variant_rows(info: ModelInfo, instances: list) -> list[list[str]]:
    """One row per variant: `` * `` marks the one ``load`` picks."""
    default = info.default_variant
    rows = []
    for v in info.variants:
        count = sum(1 for i in instances if i.variant.path == v.path)
        rows.append(
            [
                f"{' * ' if v is default else '   '}{variant_id(info, v)}",
                v.params_string,
                v.arch,
                human_size(v.size_bytes),
                _device(info),
                loaded_mark(count),
            ]
        )
    return rows


def no_models_lines(models_dir=None) -> list[str]:
    """What ``ls`` says with nothing to list: the folder, the exact command, and that
    the server fetches the starter model itself (issue 26)."""
    folder = f" ({models_dir})" if models_dir else ""
    return [
        "You have not downloaded any models yet.",
        f"Put GGUF files under the models folder{folder} as "
        "<publisher>/<repo>/<file>.gguf, or run: lms-jupyter get --starter",
        "(`jupyter lab` / `jupyter server` fetch the starter model by themselves when they start.)",
    ]


def ls_lines(
    models: list[ModelInfo],
    loaded: list,
    *,
    variants: bool = False,
    kinds: tuple[str, ...] = ("llm", "embedding"),
    total_count: int | None = None,
    models_dir=None,
) -> list[str]:
    """``lms ls`` as LM Studio prints it: a summary line, then one table per model type
    (``KEY (N variants)``, PARAMS, ARCH, SIZE, DEVICE, ``✓ LOADED``); ``variants`` adds a
    row per quantization under each model, the default marked `` * ``.

    ``total_count`` is the number of models before a ``--llm``/``--embedding`` filter;
    ``models_dir``, the folder named when there is nothing to list.
    """
    if not models:
        if total_count:
            return [f"You have {total_count} models, but none of them match the filter."]
        return no_models_lines(models_dir)
    total = sum(v.size_bytes for m in models for v in m.variants)
    count = len(models)
    lines = [
        f"You have {count} model{'s' if count != 1 else ''}, taking up "
        f"{human_size(total)} of disk space.",
        "",
    ]
    by_key: dict[str, list] = {}
    for instance in loaded:
        by_key.setdefault(instance.info.key, []).append(instance)
    for kind in kinds:
        group = sorted((m for m in models if v1_type(m) == kind), key=lambda m: m.key)
        if not group:
            continue
        rows = []
        for info in group:
            variant = info.default_variant
            instances = by_key.get(info.key, [])
            if variants:
                rows.append([with_variant_count(info), "", "", "", "", ""])
                rows += _variant_rows(info, instances)
            else:
                rows.append(
                    [
                        with_variant_count(info),
                        variant.params_string,
                        variant.arch,
                        human_size(variant.size_bytes),
                        _device(info),
                        loaded_mark(len(instances)),
                    ]
                )
        lines += table(rows, [_TITLES[kind], *_LS_COLUMNS], _LS_SPLITTER)
        lines.append("")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def variant_lines(info: ModelInfo, loaded: list) -> list[str]:
    """``lms ls <modelKey>``: that model's variants."""
    instances = [m for m in loaded if m.info.key == info.key]
    title = _TITLES[v1_type(info)]
    return [
        f"Listing variants for {info.key}:",
        "",
        *table(_variant_rows(info, instances), [title, *_LS_COLUMNS], _LS_SPLITTER),
    ]


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
        parallel = snap.get("parallel")
        rows.append(
            [
                snap["identifier"],
                snap["modelKey"],
                snap["status"].upper(),
                str(snap["queued"]),
                human_size(snap["sizeBytes"]),
                str(snap["contextLength"]),
                "-" if parallel is None else str(parallel),
                snap.get("kvCacheType") or "-",  # the KV cells (a remote model: not ours)
                ttl_text,
                "JIT" if snap["jit"] else "",
            ]
        )
    lines = table(
        rows,
        ["IDENTIFIER", "MODEL", "STATUS", "QUEUED", "SIZE", "CONTEXT", "PARALLEL", "KV", "TTL", ""],
    )
    for model in loaded:
        if model.crash is not None:
            lines.append(
                f"{model.identifier} crashed: {model.crash.reason}. The next request "
                "that names it loads it again."
            )
    return lines
