"""Tornado adapters for LM Studio's REST API under /api."""
from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import LMSHandler


class ModelsV0Handler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self, model_id: str | None = None):
        async def call():
            api = self.services.lmstudio
            return api.model_v0(model_id) if model_id else api.models_v0()

        await self.guarded(call)


class PsHandler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self):
        async def call():
            return self.services.lmstudio.ps()

        await self.guarded(call)


def lmstudio_handlers(prefix: str) -> list[tuple]:
    return [
        (rf"/{prefix}/api/v0/models/?", ModelsV0Handler),
        (rf"/{prefix}/api/v0/models/(?P<model_id>.+)", ModelsV0Handler),
        (rf"/{prefix}/api/v0/ps/?", PsHandler),
    ]
