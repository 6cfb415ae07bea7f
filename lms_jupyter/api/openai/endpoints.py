"""LM Studio's OpenAI-compatible endpoints as plain Python (no web framework here).

Each endpoint is the same three steps: parse the body into a typed request
(:mod:`.requests`), prepare it on a loaded model (:mod:`.prepare`, blocking: it may
JIT-load), drive it (:mod:`.drive`) and encode the typed events in OpenAI's format
(:mod:`.encode`). The server awaits the async entry points; the kernel uses the typed
ones (:meth:`OpenAICompatAPI.start_chat`) and reads the events itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from lms_jupyter.api.drive import Generation
from lms_jupyter.api.events import Done, Failed
from lms_jupyter.api.openai import embeddings as embeddings_api
from lms_jupyter.api.openai import requests
from lms_jupyter.api.openai.encode import ChatEncoder, Extras, TextEncoder
from lms_jupyter.api.prepare import Prepared, prepare_chat, prepare_completion
from lms_jupyter.api.results import JSONResponse, StreamResponse
from lms_jupyter.engine.channel import EventChannel, run_blocking
from lms_jupyter.engine.instance import ModelInstance
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.errors import model_not_found
from lms_jupyter.models.catalog import ModelNotFound


def _owner(info) -> str:
    """``owned_by``: LM Studio's constant for local models, the engine for remote ones."""
    return getattr(info, "owner", "organization_owner")


class OpenAICompatAPI:
    """The /v1 surface. ``extras`` adds fields to every finished completion (LM Studio's
    /api/v0 adds ``stats``, ``model_info`` and ``runtime``)."""

    def __init__(
        self,
        manager: ModelManager,
        presets=None,
        *,
        extras: Callable[[Done, ModelInstance], dict] | None = None,
        reasoning_field: str = "both",
    ):
        self.manager = manager
        self.presets = presets  # models.presets.PresetStore; None: the default folder
        self.extras = extras
        # where reasoning goes: "both" (message.reasoning and reasoning_content),
        # "reasoning", "reasoning_content" or "inline" (left in content in think tags)
        self.reasoning_field = reasoning_field

    # -- models ----------------------------------------------------------------------------
    @staticmethod
    def model_object(model_id: str, info, variant) -> dict:
        """OpenAI's model object; ``created`` is the GGUF file's modification time (as
        Ollama does: a local file has no other creation date worth reporting; 0 for a
        remote engine's model)."""
        try:
            created = int(os.stat(variant.path).st_mtime)
        except (OSError, TypeError):
            created = 0
        return {"id": model_id, "object": "model", "created": created, "owned_by": _owner(info)}

    def list_models(self) -> dict:
        manager = self.manager
        data, seen = [], set()
        for model in manager.list_loaded():
            if model.identifier not in seen:
                seen.add(model.identifier)
                data.append(self.model_object(model.identifier, model.info, model.variant))
        if manager.jit_loading:
            for info in manager.catalog.models():
                if info.key not in seen:
                    seen.add(info.key)
                    data.append(self.model_object(info.key, info, info.default_variant))
        return {"object": "list", "data": data}

    def retrieve_model(self, model_id: str) -> dict:
        """GET /v1/models/{id}: what a request may name, as the list has it: a loaded
        instance (by identifier, key, ``publisher/key`` or ``...@quantization``) or, with
        JIT loading, any model on disk. The id comes back as the client spelled it."""
        name = model_id.strip().rstrip("/")
        loaded = self.manager.get_loaded(name) if name else None
        if loaded is not None:
            return self.model_object(name, loaded.info, loaded.variant)
        if name and self.manager.jit_loading:
            try:
                info, variant = self.manager.catalog.resolve(name)
            except ModelNotFound:
                pass
            else:
                return self.model_object(name, info, variant)
        raise model_not_found(model_id, [m["id"] for m in self.list_models()["data"]])

    # -- typed requests (blocking: may JIT-load) --------------------------------------------
    def with_preset(self, body) -> dict:
        """The body with its ``preset`` applied (explicit request fields win)."""
        if isinstance(body, dict) and body.get("preset") is not None and self.presets is None:
            from lms_jupyter.models.presets import PresetStore

            self.presets = PresetStore()
        return requests.apply_preset(body, self.presets)

    def chat_request(self, body) -> requests.ChatRequest:
        return requests.chat_request(self.with_preset(body))

    def completion_request(self, body) -> requests.CompletionRequest:
        return requests.completion_request(self.with_preset(body))

    def prepare_chat(self, body) -> Prepared:
        """A wire body, checked and bound to its (JIT-loaded) model."""
        return prepare_chat(self.manager, self.chat_request(body), self.reasoning_field)

    def prepare_completion(self, body) -> Prepared:
        return prepare_completion(self.manager, self.completion_request(body))

    def start_chat(
        self, request: requests.ChatRequest, channel: EventChannel | None = None
    ) -> Generation:
        """Queue a typed chat request; iterate the result for its typed events."""
        return Generation(prepare_chat(self.manager, request, self.reasoning_field), channel)

    def encoder(self, prepared: Prepared):
        model, usage = prepared.model.identifier, prepared.include_usage
        if prepared.make_output is None:
            return TextEncoder(
                model,
                echo=prepared.echo,
                offset=prepared.prompt_chars,
                include_usage=usage,
                extras=self._extras_for(prepared),
            )
        return ChatEncoder(
            model,
            reasoning_field=self.reasoning_field,
            include_usage=usage,
            extras=self._extras_for(prepared),
        )

    def _extras_for(self, prepared: Prepared) -> Extras | None:
        extras = self.extras
        if extras is None:
            return None
        return lambda done: extras(done, prepared.model)

    # -- async (server) ----------------------------------------------------------------------
    async def chat_completions(self, body, channel: EventChannel | None = None):
        request = self.chat_request(body)
        prepared = await run_blocking(prepare_chat, self.manager, request, self.reasoning_field)
        return await self._respond(prepared, channel)

    async def completions(self, body, channel: EventChannel | None = None):
        request = self.completion_request(body)
        prepared = await run_blocking(prepare_completion, self.manager, request)
        return await self._respond(prepared, channel)

    async def _respond(self, prepared: Prepared, channel: EventChannel | None):
        generation = Generation(prepared, channel or EventChannel.for_running_loop())
        encoder = self.encoder(prepared)
        if not prepared.stream:
            return JSONResponse(encoder.response(await generation.result()))
        await generation.start()
        return StreamResponse(self._chunks(generation, encoder), generation.cancel)

    @staticmethod
    async def _chunks(generation: Generation, encoder):
        """Lists of chunks: whatever the worker produced since the last write."""
        yield encoder.start()
        async for batch in generation.batches():
            chunks = []
            for event in batch:
                if isinstance(event, Failed):
                    chunks.append(event.error.to_dict())
                    yield chunks
                    return
                chunks.extend(encoder.chunks(event))
            yield chunks

    async def embeddings(self, body) -> JSONResponse:
        """/v1/embeddings: see :mod:`.embeddings`."""
        return await embeddings_api.embeddings(self, body)

    # -- blocking (kernel, tests) --------------------------------------------------------------
    def run_sync(
        self, prepared: Prepared, channel: EventChannel | None = None
    ) -> dict | Iterator[dict]:
        """The response body, or (``stream``) an iterator of chunks; closing it cancels.

        Pass your own ``channel`` to cancel from another thread (``channel.cancel()``).
        """
        generation = Generation(prepared, channel)
        encoder = self.encoder(prepared)
        if not prepared.stream:
            return encoder.response(generation.result_sync())
        return self._chunks_sync(generation, encoder)

    def embeddings_sync(self, body) -> dict:
        """/v1/embeddings for the kernel (blocking); the same body as over HTTP."""
        return embeddings_api.embeddings_sync(self, body)

    @staticmethod
    def _chunks_sync(generation: Generation, encoder) -> Iterator[dict]:
        events = iter(generation)
        try:
            first = next(events, None)  # raises before any chunk if it cannot start
            yield from encoder.start()
            if first is not None:
                yield from encoder.chunks(first)
            for event in events:
                yield from encoder.chunks(event)
        finally:
            events.close()
