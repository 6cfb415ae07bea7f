"""Tornado adapters for the OpenAI-compatible /v1 endpoints."""
from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..engine.channel import EventChannel
from .base import LMSHandler


class ModelsHandler(LMSHandler):
    @web.authenticated
    @authorized
    async def get(self):
        await self.guarded(self._list)

    async def _list(self):
        return self.services.openai.list_models()


class _GenerationHandler(LMSHandler):
    endpoint = ""

    @web.authenticated
    @authorized
    async def post(self):
        channel = EventChannel.for_running_loop()
        self._cancel = channel.cancel

        async def call():
            body = self.read_json()
            return await getattr(self.api, self.endpoint)(body, channel=channel)

        await self.guarded(call)

    @property
    def api(self):
        return self.services.openai


class ChatCompletionsHandler(_GenerationHandler):
    endpoint = "chat_completions"


class CompletionsHandler(_GenerationHandler):
    endpoint = "completions"


class EmbeddingsHandler(LMSHandler):
    @web.authenticated
    @authorized
    async def post(self):
        async def call():
            return await self.api.embeddings(self.read_json())

        await self.guarded(call)

    @property
    def api(self):
        return self.services.openai


def openai_handlers(prefix: str) -> list[tuple]:
    return [
        (rf"/{prefix}/v1/models/?", ModelsHandler),
        (rf"/{prefix}/v1/chat/completions/?", ChatCompletionsHandler),
        (rf"/{prefix}/v1/completions/?", CompletionsHandler),
        (rf"/{prefix}/v1/embeddings/?", EmbeddingsHandler),
    ]
