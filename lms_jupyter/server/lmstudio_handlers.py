"""Tornado adapters for LM Studio's REST API under /api (v0 and the v1 management API)."""
from __future__ import annotations

from urllib.parse import unquote

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..api.lmstudio import v1_error_body
from ..engine.channel import run_blocking
from ..errors import APIError
from .base import LMSHandler
from .openai_handlers import EmbeddingsHandler, _GenerationHandler


class ModelsV0Handler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self, model_id: str | None = None):
        async def call():
            api = self.services.lmstudio
            return api.model_v0(unquote(model_id)) if model_id else api.models_v0()

        await self.guarded(call)


class PsHandler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self):
        async def call():
            return self.services.lmstudio.ps()

        await self.guarded(call)


class _V0GenerationHandler(_GenerationHandler):
    @property
    def api(self):
        return self.services.lmstudio.v0


class ChatCompletionsV0Handler(_V0GenerationHandler):
    endpoint = "chat_completions"


class CompletionsV0Handler(_V0GenerationHandler):
    endpoint = "completions"


class EmbeddingsV0Handler(EmbeddingsHandler):
    @property
    def api(self):
        return self.services.lmstudio.v0


class _V1Handler(LMSHandler):
    """LM Studio 0.4's /api/v1: errors in its own error object."""

    def error_body(self, error: APIError) -> dict:
        return v1_error_body(error)


class ModelsV1Handler(_V1Handler):
    @web.authenticated
    @authorized
    async def get(self):
        async def call():
            return self.services.lmstudio.models_v1()

        await self.guarded(call)


class _V1PostHandler(_V1Handler):
    method = ""

    @web.authenticated
    @authorized
    async def post(self):
        async def call():
            body = self.read_json()
            return await run_blocking(getattr(self.services.lmstudio, self.method), body)

        await self.guarded(call)


class LoadV1Handler(_V1PostHandler):
    method = "load_v1"


class UnloadV1Handler(_V1PostHandler):
    method = "unload_v1"


class EstimateV1Handler(_V1PostHandler):
    method = "estimate"


class PresetsHandler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self):
        async def call():
            return self.services.lmstudio.list_presets()

        await self.guarded(call)

    @web.authenticated
    @authorized
    async def post(self):
        async def call():
            return self.services.lmstudio.create_preset(self.read_json())

        await self.guarded(call)


class PresetHandler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str):
        async def call():
            return self.services.lmstudio.get_preset(unquote(name))

        await self.guarded(call)

    @web.authenticated
    @authorized
    async def delete(self, name: str):
        async def call():
            return self.services.lmstudio.delete_preset(unquote(name))

        await self.guarded(call)


def lmstudio_handlers(prefix: str) -> list[tuple]:
    v0, v1 = rf"/{prefix}/api/v0", rf"/{prefix}/api/v1"
    return [
        (rf"{v0}/models/?", ModelsV0Handler),
        (rf"{v0}/models/(?P<model_id>.+)", ModelsV0Handler),
        (rf"{v0}/ps/?", PsHandler),
        (rf"{v0}/chat/completions/?", ChatCompletionsV0Handler),
        (rf"{v0}/completions/?", CompletionsV0Handler),
        (rf"{v0}/embeddings/?", EmbeddingsV0Handler),
        (rf"{v0}/presets/?", PresetsHandler),
        (rf"{v0}/presets/(?P<name>[^/]+)/?", PresetHandler),
        (rf"{v1}/models/?", ModelsV1Handler),
        (rf"{v1}/models/load/?", LoadV1Handler),
        (rf"{v1}/models/unload/?", UnloadV1Handler),
        (rf"{v1}/models/estimate/?", EstimateV1Handler),
    ]
