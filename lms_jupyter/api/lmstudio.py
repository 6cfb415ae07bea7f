"""LM Studio's native REST API (/api/v0 and the /api/v1 model management endpoints)."""
from __future__ import annotations

from ..catalog import ModelInfo
from ..errors import model_not_found
from ..manager import ModelManager


class LMStudioAPI:
    def __init__(self, manager: ModelManager):
        self.manager = manager

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
        entry["capabilities"] = ["tool_use"] if variant.supports_tools else []
        return entry

    def models_v0(self) -> dict:
        return {"object": "list", "data": [self._model_v0(m) for m in self.manager.catalog.models()]}

    def model_v0(self, model_id: str) -> dict:
        for info in self.manager.catalog.models():
            if model_id.lower() in (info.key, f"{info.publisher.lower()}/{info.key}"):
                return self._model_v0(info)
        raise model_not_found(model_id, [m.key for m in self.manager.catalog.models()])

    def ps(self) -> dict:
        return {"object": "list", "data": [m.snapshot() for m in self.manager.list_loaded()]}
