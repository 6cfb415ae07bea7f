"""How models and loaded instances look to clients: the row shapes that the REST API
and the kernel's ``%lms ls/ps --json`` share, so both print the same objects.

Field names follow LM Studio (``lms ls --json`` / ``lms ps --json`` camelCase rows;
``/api/v0`` and ``/api/v1`` snake_case objects).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from lms_jupyter.models.catalog import ModelInfo, ModelVariant
from lms_jupyter.models.display_names import display_name as human_display_name

if TYPE_CHECKING:
    from lms_jupyter.engine.remote.models import RemoteModelInfo

_BITS = re.compile(r"(\d+)")


def nominal_bits(quantization: str) -> int | None:
    """The bits in a quantization's name: Q4_K_M -> 4, F16 -> 16, MXFP4 -> 4."""
    match = _BITS.search(quantization or "")
    return int(match.group(1)) if match else None


def display_name(info: ModelInfo) -> str:
    """A name for people (models/display_names.py: not the converter's title-cased one)."""
    variant = info.default_variant
    return human_display_name(variant.header, variant.path, info.key)


def v1_type(info: ModelInfo | RemoteModelInfo) -> str:
    """LM Studio 0.4's type names: ``llm`` or ``embedding``."""
    return "embedding" if info.type.startswith("embedding") else "llm"


def variant_id(info: ModelInfo, variant: ModelVariant) -> str:
    return f"{info.publisher.lower()}/{info.key}@{variant.quantization.lower()}"


def relative_path(info: ModelInfo, variant: ModelVariant) -> str:
    """LM Studio's ``path``: the file relative to the models folder
    (``publisher/repo/file.gguf``); ``publisher/file`` for the embedded model."""
    parts = variant.path.parts
    if not info.embedded:
        for i in range(len(parts) - 2, -1, -1):
            if parts[i] == info.publisher:
                return "/".join(parts[i:])
    return f"{info.publisher}/{variant.path.name}"


def _info_json(info: ModelInfo, variant: ModelVariant, model_key: str) -> dict:
    """The fields LM Studio's SDK ``ModelInfo`` has, for one variant, in its order."""
    path = relative_path(info, variant)
    entry = {
        "type": v1_type(info),
        "modelKey": model_key,
        "format": "gguf",
        "displayName": display_name(info),
        "publisher": info.publisher,
        "path": path,
        "sizeBytes": variant.size_bytes,
        "indexedModelIdentifier": path,
        "deviceIdentifier": None,
        "paramsString": variant.params_string,
        "architecture": variant.arch,
        "quantization": {"name": variant.quantization, "bits": nominal_bits(variant.quantization)},
    }
    return entry


def _capabilities(info: ModelInfo, variant: ModelVariant) -> dict:
    if v1_type(info) != "llm":
        return {"maxContextLength": variant.max_context_length}
    return {
        "vision": False,
        "trainedForToolUse": variant.supports_tools,
        "maxContextLength": variant.max_context_length,
    }


def model_json(info: ModelInfo) -> dict:
    """One ``lms ls --json`` entry (LM Studio's ModelInfo, camelCase)."""
    variant = info.default_variant
    entry = _info_json(info, variant, info.key)
    entry.update({"variants": info.variant_ids, "selectedVariant": variant_id(info, variant)})
    entry.update(_capabilities(info, variant))
    return entry


def variant_json(info: ModelInfo, variant: ModelVariant) -> dict:
    """One variant as ``lms ls <modelKey> --json`` lists it (its key is ``pub/key@quant``)."""
    entry = _info_json(info, variant, variant_id(info, variant))
    entry.update(_capabilities(info, variant))
    return entry


def ps_row(model) -> dict:
    """One ``lms ps --json`` row: the loaded variant's ModelInfo, the instance's state
    (identifier, ttlMs, lastUsedTime, contextLength, status, queued, parallel), then a few
    fields of our own."""
    variant, now, ttl = model.variant, time.time(), model.ttl
    remaining = None if ttl is None else max(0.0, ttl - (now - model.last_used))
    row = _info_json(model.info, variant, model.info.key)
    row.update(
        {
            "identifier": model.identifier,
            "ttlMs": None if ttl is None else int(ttl * 1000),
            "lastUsedTime": int(model.last_used * 1000),
        }
    )
    row.update(_capabilities(model.info, variant))
    row.update(
        {
            "contextLength": model.config.context_length,
            "status": model.status,
            "queued": model.queued,
            "parallel": model.config.parallel if v1_type(model.info) == "llm" else None,
            # not in LM Studio's row: how it was loaded and when the idle TTL fires
            "jit": model.jit,
            "ttlRemainingMs": None if remaining is None else int(remaining * 1000),
            "loadedAt": int(model.loaded_at * 1000),
            "estimatedMemoryBytes": model.estimated_bytes,
            "selectedVariant": variant_id(model.info, variant),
        }
    )
    snap = model.snapshot()  # what only some instances know: their worker, their crash
    for key in ("pid", "residentBytes", "kvCacheType", "flashAttention"):
        if snap.get(key) is not None:
            row[key] = snap[key]
    row["crash"] = model.crash.as_dict() if model.crash is not None else None
    return row


def loading_row(load) -> dict:
    """A load still running, as a ``ps`` row: ``status: "loading"`` and ``loadProgress``
    (0..1 of the weights read), so the sidebar and ``%lms ps`` can show progress."""
    row = _info_json(load.info, load.variant, load.info.key)
    row.update(
        {
            "selectedVariant": variant_id(load.info, load.variant),
            "identifier": load.identifier,
            "contextLength": load.context_length,
            "status": "loading",
            "loadProgress": round(load.progress, 4),
            "queued": 0,
            "jit": load.jit,
            "ttlMs": None,
            "lastUsedTime": None,
            "loadStartedAt": int(load.started_at * 1000),
        }
    )
    return row


def model_v0(info: ModelInfo, loaded: list) -> dict:
    """One ``/api/v0/models`` entry."""
    variant = info.default_variant
    instances = [m for m in loaded if m.info.key == info.key]
    entry: dict[str, object] = {
        "id": info.key,
        "object": "model",
        "type": info.type,
        "publisher": info.publisher,
        "arch": variant.arch,
        "compatibility_type": "gguf",
        "quantization": variant.quantization,
        "state": "loaded" if instances else "not-loaded",
        "max_context_length": variant.max_context_length,
    }
    if instances:
        entry["loaded_context_length"] = instances[0].config.context_length
    entry["capabilities"] = variant.capabilities
    return entry


def instance_config(model) -> dict:
    """A loaded instance's config as ``/api/v1/models`` reports it."""
    config = model.config
    entry = {
        "context_length": config.context_length,
        "eval_batch_size": config.n_batch,
        "flash_attention": config.flash_attention,
        "offload_kv_cache_to_gpu": config.n_gpu_layers != 0,
    }
    if v1_type(model.info) == "llm":
        entry["parallel"] = config.parallel
    return entry


def model_v1(info: ModelInfo, loaded: list) -> dict:
    """One ``/api/v1/models`` entry with its loaded instances."""
    variant = info.default_variant
    instances = [m for m in loaded if m.info.key == info.key]
    entry = {
        "type": v1_type(info),
        "publisher": info.publisher,
        "key": info.key,
        "display_name": display_name(info),
        "quantization": {
            "name": variant.quantization,
            "bits_per_weight": nominal_bits(variant.quantization),
        },
        "size_bytes": variant.size_bytes,
        "params_string": variant.params_string,
        "loaded_instances": [{"id": m.identifier, "config": instance_config(m)} for m in instances],
        "max_context_length": variant.max_context_length,
        "format": "gguf",
        "variants": info.variant_ids,
        "selected_variant": variant_id(info, variant),
    }
    if entry["type"] == "llm":
        entry["architecture"] = variant.arch
        entry["capabilities"] = {"vision": False, "trained_for_tool_use": variant.supports_tools}
    description = variant.header.get("general.description")
    if isinstance(description, str) and description:
        entry["description"] = description
    return entry
