"""LM Studio's native REST API as plain Python: the /api/v0 model listing and ``ps``, and
LM Studio 0.4's /api/v1 model management (list, load, unload), plus memory estimates
and presets. The /api/v0 inference endpoints are in ``lmstudio_v0``.

Shapes follow LM Studio's docs; /api/v1 errors use LM Studio's error object
(``{"error": {"type", "message", "code", "param"}}``).
"""
from __future__ import annotations

import re
import time

from ..models.catalog import ModelInfo, ModelVariant
from ..errors import APIError, bad_request, model_not_found
from ..engine.manager import ModelManager
from ..models.memory import parse_gpu_offload
from ..models.presets import PresetStore
from . import params
from .lmstudio_v0 import LMStudioV0API

_BITS = re.compile(r"(\d+)")


def nominal_bits(quantization: str) -> int | None:
    """The bits in a quantization's name: Q4_K_M -> 4, F16 -> 16, MXFP4 -> 4."""
    match = _BITS.search(quantization or "")
    return int(match.group(1)) if match else None


def display_name(info: ModelInfo) -> str:
    name = info.default_variant.header.get("general.name")
    return name if isinstance(name, str) and name else info.key


def v1_type(info: ModelInfo) -> str:
    return "embedding" if info.type.startswith("embedding") else "llm"


def variant_id(info: ModelInfo, variant: ModelVariant) -> str:
    return f"{info.publisher.lower()}/{info.key}@{variant.quantization.lower()}"


def model_json(info: ModelInfo) -> dict:
    """One ``lms ls --json`` entry (LM Studio's ModelInfo, camelCase)."""
    variant = info.default_variant
    return {
        "type": v1_type(info), "modelKey": info.key, "format": "gguf",
        "displayName": display_name(info), "publisher": info.publisher,
        "path": str(variant.path), "sizeBytes": variant.size_bytes,
        "paramsString": variant.params_string, "architecture": variant.arch,
        "quantization": {"name": variant.quantization,
                         "bits": nominal_bits(variant.quantization)},
        "variants": info.variant_ids, "selectedVariant": variant_id(info, variant),
        "vision": False, "trainedForToolUse": variant.supports_tools,
        "maxContextLength": variant.max_context_length,
    }


def ps_row(model) -> dict:
    """One ``lms ps --json`` row: the loaded variant's info plus the instance's state."""
    variant, now, ttl = model.variant, time.time(), model.ttl
    remaining = None if ttl is None else max(0.0, ttl - (now - model.last_used))
    row = model_json(model.info)
    row.update({
        "path": str(variant.path), "sizeBytes": variant.size_bytes,
        "quantization": {"name": variant.quantization,
                         "bits": nominal_bits(variant.quantization)},
        "selectedVariant": variant_id(model.info, variant),
        "identifier": model.identifier,
        "ttlMs": None if ttl is None else int(ttl * 1000),
        "lastUsedTime": int(model.last_used * 1000),
        "contextLength": model.config.context_length,
        "status": model.status, "queued": model.queued,
        "parallel": 1 if v1_type(model.info) == "llm" else None,
        # not in LM Studio's row: how it was loaded and when the idle TTL fires
        "jit": model.jit,
        "ttlRemainingMs": None if remaining is None else int(remaining * 1000),
        "loadedAt": int(model.loaded_at * 1000),
        "estimatedMemoryBytes": model.estimated_bytes,
    })
    return row


def v1_error_body(error: APIError) -> dict:
    """LM Studio's /api/v1 error object."""
    if error.code == "model_not_found":
        kind = "model_not_found"
    elif error.status >= 500:
        kind = "internal_error"
    else:
        kind = "invalid_request"
    return {"error": {"type": kind, "message": error.message, "code": error.code,
                      "param": error.param}}


class LMStudioAPI:
    def __init__(self, manager: ModelManager, presets: PresetStore | None = None):
        self.manager = manager
        self.presets = presets or PresetStore()
        self.v0 = LMStudioV0API(manager, self.presets)

    # -- /api/v0 models ----------------------------------------------------------------------
    def _model_v0(self, info: ModelInfo) -> dict:
        variant = info.default_variant
        loaded = [m for m in self.manager.list_loaded() if m.info.key == info.key]
        entry = {
            "id": info.key, "object": "model", "type": info.type, "publisher": info.publisher,
            "arch": variant.arch, "compatibility_type": "gguf",
            "quantization": variant.quantization,
            "state": "loaded" if loaded else "not-loaded",
            "max_context_length": variant.max_context_length,
        }
        if loaded:
            entry["loaded_context_length"] = loaded[0].config.context_length
        entry["capabilities"] = variant.capabilities
        return entry

    def models_v0(self) -> dict:
        models = self.manager.catalog.models()
        return {"object": "list", "data": [self._model_v0(m) for m in models]}

    def model_v0(self, model_id: str) -> dict:
        for info in self.manager.catalog.models():
            if model_id.lower() in (info.key, f"{info.publisher.lower()}/{info.key}"):
                return self._model_v0(info)
        raise model_not_found(model_id, [m.key for m in self.manager.catalog.models()])

    # -- ps (lms ps --json) --------------------------------------------------------------------
    def ps(self) -> dict:
        """Every loaded instance, as ``lms ps --json`` rows plus our own extras."""
        return {"object": "list", "data": [ps_row(m) for m in self.manager.list_loaded()]}

    # -- /api/v1 models ------------------------------------------------------------------------
    def models_v1(self) -> dict:
        loaded = self.manager.list_loaded()
        return {"models": [self._model_v1(info, loaded) for info in self.manager.catalog.models()]}

    def _model_v1(self, info: ModelInfo, loaded: list) -> dict:
        variant = info.default_variant
        instances = [m for m in loaded if m.info.key == info.key]
        entry = {
            "type": v1_type(info), "publisher": info.publisher, "key": info.key,
            "display_name": display_name(info),
            "quantization": {"name": variant.quantization,
                             "bits_per_weight": nominal_bits(variant.quantization)},
            "size_bytes": variant.size_bytes, "params_string": variant.params_string,
            "loaded_instances": [{"id": m.identifier, "config": self._instance_config(m)}
                                 for m in instances],
            "max_context_length": variant.max_context_length, "format": "gguf",
            "variants": info.variant_ids, "selected_variant": variant_id(info, variant),
        }
        if entry["type"] == "llm":
            entry["architecture"] = variant.arch
            entry["capabilities"] = {"vision": False,
                                     "trained_for_tool_use": variant.supports_tools}
        description = variant.header.get("general.description")
        if isinstance(description, str) and description:
            entry["description"] = description
        return entry

    @staticmethod
    def _instance_config(model) -> dict:
        config = model.config
        entry = {"context_length": config.context_length, "eval_batch_size": config.n_batch,
                 "flash_attention": config.flash_attention,
                 "offload_kv_cache_to_gpu": config.n_gpu_layers != 0}
        if v1_type(model.info) == "llm":
            entry["parallel"] = 1
        return entry

    def load_v1(self, body) -> dict:
        """POST /api/v1/models/load (blocking). ``estimate_only`` answers without loading."""
        body = params.require_object(body)
        model = params.model_name(body)
        context_length = params.context_length(body)
        flash_attention = body.get("flash_attention")
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise bad_request("'flash_attention' must be a boolean.", "flash_attention")
        params.number(body, "eval_batch_size", 1, None, integer=True)  # accepted, fixed at 512
        ttl = params.ttl_seconds(body)
        identifier = body.get("identifier")
        if identifier is not None and (not isinstance(identifier, str) or not identifier.strip()):
            raise bad_request("'identifier' must be a non-empty string.", "identifier")
        gpu = body.get("gpu")
        if params.boolean(body, "estimate_only"):
            return self.manager.estimate(model, context_length=context_length, gpu=gpu,
                                         flash_attention=flash_attention)
        n_gpu_layers = None
        if gpu is not None:
            _info, variant = self.manager.resolve_model(model)
            fraction = parse_gpu_offload(gpu)
            n_layer = int(variant.arch_value("block_count", 0) or 0)
            n_gpu_layers = -1 if fraction >= 1 else int(round(fraction * n_layer))
        instance = self.manager.load(
            model, identifier=identifier.strip() if identifier else None,
            context_length=context_length, ttl=ttl, flash_attention=flash_attention,
            n_gpu_layers=n_gpu_layers, force=params.boolean(body, "force"))
        result = {"type": v1_type(instance.info), "instance_id": instance.identifier,
                  "load_time_seconds": round(instance.load_time_seconds, 3), "status": "loaded"}
        if params.boolean(body, "echo_load_config"):
            config = self._instance_config(instance)
            config["ttl"] = instance.ttl
            config["gpu_layers"] = instance.config.n_gpu_layers
            result["load_config"] = config
        return result

    def unload_v1(self, body) -> dict:
        body = params.require_object(body)
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id.strip():
            raise bad_request("'instance_id' is required and must be a non-empty string.",
                              "instance_id", "missing_required_parameter")
        loaded = self.manager.get_loaded(instance_id.strip())
        if loaded is None:
            raise APIError(f"No loaded model instance \"{instance_id}\".", 404,
                           "invalid_request_error", "instance_id", "model_not_found")
        self.manager.unload(loaded.identifier)
        return {"instance_id": loaded.identifier}

    def estimate(self, body) -> dict:
        """POST /api/v1/models/estimate: ``lms load --estimate-only`` over HTTP."""
        body = params.require_object(body)
        flash_attention = body.get("flash_attention")
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise bad_request("'flash_attention' must be a boolean.", "flash_attention")
        return self.manager.estimate(
            params.model_name(body),
            context_length=params.context_length(body),
            gpu=body.get("gpu"), flash_attention=flash_attention)

    # -- presets ---------------------------------------------------------------------------------
    def list_presets(self) -> dict:
        return {"object": "list", "data": [p.as_dict() for p in self.presets.list()]}

    def get_preset(self, name: str) -> dict:
        preset = self.presets.get(name)
        entry = preset.as_dict()
        entry["preset"] = preset.to_lmstudio()
        return entry

    def create_preset(self, body) -> dict:
        """Save a preset from ``{"name", "settings": {...}}`` (request field names) or from
        an LM Studio preset file's JSON (``operation.fields``)."""
        from ..models.presets import Preset

        body = params.require_object(body)
        if "operation" in body or "load" in body:
            try:
                parsed = Preset.from_lmstudio(body)
            except ValueError as exc:
                raise bad_request(f"Not an LM Studio preset: {exc}") from None
            name, settings = parsed.name, parsed.settings
        else:
            name = body.get("name")
            settings = body.get("settings")
            if settings is None:
                settings = {k: v for k, v in body.items() if k not in ("name", "overwrite")}
        preset = self.presets.save(name, settings,
                                   overwrite=params.boolean(body, "overwrite", True))
        return preset.as_dict()

    def delete_preset(self, name: str) -> dict:
        return {"deleted": self.presets.delete(name).name}
