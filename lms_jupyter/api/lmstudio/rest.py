"""LM Studio's native REST API as plain Python: the /api/v0 model listing and ``ps``,
LM Studio 0.4's /api/v1 model management (list, load, unload), memory estimates and
presets. The /api/v0 inference endpoints are the /v1 ones with ``lmstudio_v0``'s extras.

Shapes follow LM Studio's docs (row shapes in :mod:`.views`); /api/v1 errors use LM
Studio's error object (``{"error": {"type", "message", "code", "param"}}``).
"""

from __future__ import annotations

from lms_jupyter.api import fields as api_fields
from lms_jupyter.api.lmstudio.inference_v0 import v0_extras
from lms_jupyter.api.openai import requests
from lms_jupyter.api.openai.endpoints import OpenAICompatAPI
from lms_jupyter.api.spec import lmstudio as lms_spec
from lms_jupyter.api.views import instance_config, loading_row, model_v0, model_v1, ps_row, v1_type
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.errors import APIError, bad_request, model_not_found
from lms_jupyter.models.presets import Preset, PresetStore


def v1_error_body(error: APIError) -> dict:
    """LM Studio's /api/v1 error object."""
    if error.code in ("model_not_found", "job_not_found"):
        kind = error.code
    elif error.status >= 500:
        kind = "internal_error"
    else:
        kind = "invalid_request"
    return {
        "error": {"type": kind, "message": error.message, "code": error.code, "param": error.param}
    }


class LMStudioAPI:
    def __init__(
        self,
        manager: ModelManager,
        presets: PresetStore | None = None,
        reasoning_field: str = "both",
    ):
        self.manager = manager
        self.presets = presets or PresetStore()
        self.v0 = OpenAICompatAPI(
            manager, self.presets, extras=v0_extras, reasoning_field=reasoning_field
        )

    # -- /api/v0 models ----------------------------------------------------------------------
    def models_v0(self) -> dict:
        loaded = self.manager.list_loaded()
        return {
            "object": "list",
            "data": [model_v0(m, loaded) for m in self.manager.catalog.models()],
        }

    def model_v0(self, model_id: str) -> dict:
        for info in self.manager.catalog.models():
            if model_id.lower() in (info.key, f"{info.publisher.lower()}/{info.key}"):
                return model_v0(info, self.manager.list_loaded())
        raise model_not_found(model_id, [m.key for m in self.manager.catalog.models()])

    # -- ps (lms ps --json) --------------------------------------------------------------------
    def ps(self) -> dict:
        """Every loaded instance, as ``lms ps --json`` rows plus our own extras, the
        crashed ones (``status: "crashed"`` with ``crash.reason``), and the loads still
        running (``status: "loading"`` with ``loadProgress``)."""
        rows = [ps_row(m) for m in self.manager.list_instances()]
        rows += [loading_row(load) for load in list(self.manager.loads_in_progress.values())]
        return {"object": "list", "data": rows}

    def engines(self) -> dict:
        """Remote engines with their replicas' health and load (``remote_engines``)."""
        remotes = getattr(self.manager, "remotes", None)
        return {"object": "list", "data": remotes.status() if remotes is not None else []}

    # -- /api/v1 models ------------------------------------------------------------------------
    def models_v1(self) -> dict:
        loaded = self.manager.list_loaded()
        return {"models": [model_v1(info, loaded) for info in self.manager.catalog.models()]}

    def load_v1(self, body) -> dict:
        """POST /api/v1/models/load (blocking). ``estimate_only`` answers without loading."""
        request = requests.load_request(body)
        if lms_spec.ESTIMATE_ONLY.read(body):
            return self.manager.estimate(
                request.model,
                context_length=request.context_length,
                gpu=request.gpu,
                flash_attention=request.flash_attention,
                parallel=request.parallel,
            )
        instance = self.manager.load(request)
        result = {
            "type": v1_type(instance.info),
            "instance_id": instance.identifier,
            "load_time_seconds": round(instance.load_time_seconds, 3),
            "status": "loaded",
        }
        if lms_spec.ECHO_LOAD_CONFIG.read(body):
            config = instance_config(instance)
            config["ttl"] = instance.ttl
            config["gpu_layers"] = instance.config.n_gpu_layers
            result["load_config"] = config
        return result

    def unload_v1(self, body) -> dict:
        body = api_fields.require_object(body)
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id.strip():
            raise bad_request(
                "'instance_id' is required and must be a non-empty string.",
                "instance_id",
                "missing_required_parameter",
            )
        loaded = self.manager.get_loaded(instance_id.strip()) or next(
            (m for m in self.manager.list_crashed() if m.identifier == instance_id.strip()), None
        )  # a crashed instance is unloaded (forgotten) too
        if loaded is None:
            raise APIError(
                f'No loaded model instance "{instance_id}".',
                404,
                "invalid_request_error",
                "instance_id",
                "model_not_found",
            )
        self.manager.unload(loaded.identifier)
        return {"instance_id": loaded.identifier}

    def estimate(self, body) -> dict:
        """POST /api/v1/models/estimate: ``lms load --estimate-only`` over HTTP."""
        request = requests.load_request(body)
        return self.manager.estimate(
            request.model,
            context_length=request.context_length,
            gpu=request.gpu,
            flash_attention=request.flash_attention,
            parallel=request.parallel,
        )

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
        body = api_fields.require_object(body)
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
        name = requests.short_name({"name": name})  # it becomes a file name
        preset = self.presets.save(
            name,
            requests.preset_settings(settings),
            overwrite=lms_spec.PRESET_CREATE["overwrite"].read(body),
        )
        return preset.as_dict()

    def delete_preset(self, name: str) -> dict:
        return {"deleted": self.presets.delete(name).name}
