"""LM Studio's OpenAI-compatible endpoints as plain Python (no web framework here).

Each endpoint has an async entry point (for the server) and a blocking one (for the
kernel). Both prepare the request the same way, queue it on the model's worker thread
and shape the worker's events into OpenAI's wire format.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..engine.channel import EventChannel, run_blocking
from ..engine.model import LoadedModel
from ..errors import APIError, bad_request
from ..engine.generation import Failed, Finished, GenerationRequest, Started, TextDelta
from ..engine.manager import ModelManager
from ..chat.templates import PLAIN_TRANSCRIPT_STOP, normalise_messages, render_chat
from ..chat import plan as chat_features
from . import embeddings as embeddings_api
from . import params
from ..chat.output import ChatOutput
from .results import JSONResponse, StreamResponse


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


@dataclass
class Prepared:
    """A validated request bound to a loaded model, ready to queue."""

    model: LoadedModel
    request: GenerationRequest
    kind: str  # "chat" or "text"
    stream: bool
    include_usage: bool
    body: dict
    output_factory: Callable[[], ChatOutput] = ChatOutput
    echo: str = ""
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    load_time: float | None = None


class Collector:
    """Shapes one generation's events into chunks or a final response body."""

    def __init__(self, api: "OpenAICompatAPI", prep: Prepared):
        self.api = api
        self.prep = prep
        self.output = prep.output_factory() if prep.kind == "chat" else None
        self.text_parts: list[str] = [prep.echo] if prep.echo else []
        self.finished: Finished | None = None
        self.prompt_tokens = 0

    # -- chunks ------------------------------------------------------------------------
    def _chunk(self, choice: dict) -> dict:
        prep = self.prep
        if prep.kind == "chat":
            return {"id": prep.id, "object": "chat.completion.chunk", "created": prep.created,
                    "model": prep.model.identifier,
                    "system_fingerprint": prep.model.identifier, "choices": [choice]}
        return {"id": prep.id, "object": "text_completion", "created": prep.created,
                "model": prep.model.identifier, "system_fingerprint": prep.model.identifier,
                "choices": [choice]}

    def _delta_chunk(self, delta: dict, finish_reason=None) -> dict:
        if self.prep.kind == "chat":
            return self._chunk({"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish_reason})
        return self._chunk({"index": 0, "text": delta.get("content", ""), "logprobs": None,
                            "finish_reason": finish_reason})

    def first_chunks(self) -> list[dict]:
        chunks = []
        if self.prep.kind == "chat":
            chunks.append(self._delta_chunk({"role": "assistant", "content": ""}))
        elif self.prep.echo:
            chunks.append(self._delta_chunk({"content": self.prep.echo}))
        return chunks

    def on_event(self, event) -> list[dict]:
        """Chunks for one worker event (streaming)."""
        if isinstance(event, Started):
            self.prompt_tokens = event.prompt_tokens
            return []
        if isinstance(event, TextDelta):
            return [self._delta_chunk(d) for d in self._feed(event.text)]
        if isinstance(event, Finished):
            self.finished = event
            chunks = [self._delta_chunk(d) for d in self._finish_output()]
            chunks.append(self._delta_chunk({}, self.finish_reason))
            chunks.extend(self.api.extra_final_chunks(self))
            if self.prep.include_usage:
                usage = self._chunk({})
                usage["choices"] = []
                usage["usage"] = event.usage
                chunks.append(usage)
            return chunks
        if isinstance(event, Failed):
            return [event.error.to_dict()]
        return []

    def _feed(self, text: str) -> list[dict]:
        if self.output is not None:
            return self.output.feed(text)
        self.text_parts.append(text)
        return [{"content": text}]

    def _finish_output(self) -> list[dict]:
        return self.output.finish() if self.output is not None else []

    @property
    def finish_reason(self) -> str:
        if self.output is not None and self.output.finish_reason_override:
            return self.output.finish_reason_override
        return self.finished.finish_reason

    # -- whole response ------------------------------------------------------------------
    def response(self) -> dict:
        prep, done = self.prep, self.finished
        if prep.kind == "chat":
            body = {"id": prep.id, "object": "chat.completion", "created": prep.created,
                    "model": prep.model.identifier,
                    "choices": [{"index": 0, "logprobs": None,
                                 "finish_reason": self.finish_reason,
                                 "message": self.output.message()}],
                    "usage": done.usage, "system_fingerprint": prep.model.identifier}
        else:
            body = {"id": prep.id, "object": "text_completion", "created": prep.created,
                    "model": prep.model.identifier,
                    "choices": [{"index": 0, "text": "".join(self.text_parts),
                                 "logprobs": None, "finish_reason": self.finish_reason}],
                    "usage": done.usage, "system_fingerprint": prep.model.identifier}
        self.api.decorate_response(self, body)
        return body


class OpenAICompatAPI:
    """The /v1 surface. Subclasses (LM Studio's /api/v0) add fields through the hooks."""

    def __init__(self, manager: ModelManager, presets=None):
        self.manager = manager
        self.presets = presets  # presets.PresetStore; None: the default presets folder

    # -- hooks for LM Studio's richer endpoints ----------------------------------------------
    def decorate_response(self, collector: Collector, body: dict) -> None:
        """Add fields to a finished non-streamed response."""

    def extra_final_chunks(self, collector: Collector) -> list[dict]:
        """Extra chunks to stream right after the finish_reason chunk."""
        return []

    # Where reasoning goes: "both" (message.reasoning and reasoning_content), "reasoning",
    # "reasoning_content" or "inline" (left in content between think tags).
    reasoning_field: str = "both"

    def chat_output_factory(self, model: LoadedModel, body: dict,
                            extra: dict) -> Callable[[], ChatOutput]:
        """Fresh output parsers (reasoning split, tool calls) for each generation."""
        return chat_features.output_factory(extra, params.boolean(body, "stream"),
                                            self.reasoning_field)

    def prepare_chat_extras(self, model: LoadedModel, body: dict, messages: list[dict]) -> dict:
        """Template inputs, grammar and output parsing for tools / structured output."""
        return chat_features.plan_chat(model, body, messages).as_extras()

    # -- models ----------------------------------------------------------------------------
    def list_models(self) -> dict:
        manager = self.manager
        data, seen = [], set()
        for model in manager.list_loaded():
            if model.identifier not in seen:
                seen.add(model.identifier)
                data.append({"id": model.identifier, "object": "model",
                             "owned_by": "organization_owner"})
        if manager.jit:
            for info in manager.catalog.models():
                if info.key not in seen:
                    seen.add(info.key)
                    data.append({"id": info.key, "object": "model",
                                 "owned_by": "organization_owner"})
        return {"object": "list", "data": data}

    # -- preparation (blocking: may JIT-load) -----------------------------------------------
    def _acquire(self, body: dict) -> tuple[LoadedModel, float | None]:
        name = params.model_name(body)
        ttl = params.ttl_seconds(body)
        already = self.manager.get_loaded(name)
        started = time.perf_counter()
        model = self.manager.acquire(name, ttl=ttl, context_length=params.context_length(body))
        load_time = None if already is model else time.perf_counter() - started
        return model, load_time

    def _common(self, body: dict) -> dict:
        params.single_choice(body)
        stream, include_usage = params.stream_flags(body)
        return {"sampling": params.sampling_params(body), "max_tokens": params.max_tokens(body),
                "stop": params.stop_strings(body), "stream": stream,
                "include_usage": include_usage}

    def prepare_chat(self, body) -> Prepared:
        body = self.apply_preset(params.require_object(body))
        common = self._common(body)
        messages = normalise_messages(body.get("messages"))
        model, load_time = self._acquire(body)
        extra = self.prepare_chat_extras(model, body, messages)
        template = model.variant.chat_template
        prompt = render_chat(template, extra["messages"], bos_token=model.bos_text,
                             eos_token=model.eos_text, tools=extra["tools"],
                             **extra["variables"])
        stop = list(common["stop"])
        if template is None:
            stop += PLAIN_TRANSCRIPT_STOP
        bos = model.bos_text
        request = GenerationRequest(
            prompt=prompt, sampling=common["sampling"], max_tokens=common["max_tokens"],
            stop=stop, grammar=extra["grammar"],
            add_bos=model.adds_bos and not (bos and prompt.startswith(bos)),
            draft=self.draft_settings(model, body),
            render_special=extra.get("render_special", False))
        return Prepared(model, request, "chat", common["stream"], common["include_usage"], body,
                        output_factory=self.chat_output_factory(model, body, extra),
                        id=new_id("chatcmpl"), load_time=load_time)

    def prepare_completion(self, body) -> Prepared:
        body = self.apply_preset(params.require_object(body))
        common = self._common(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and all(
                isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            text_prompt: str | list[int] = list(prompt)
        elif isinstance(prompt, str) and prompt:
            text_prompt = prompt
        else:
            raise bad_request("'prompt' must be a non-empty string (or one string in an array, "
                              "or an array of token ids).", "prompt")
        echo = params.boolean(body, "echo")
        model, load_time = self._acquire(body)
        request = GenerationRequest(prompt=text_prompt, sampling=common["sampling"],
                                    max_tokens=common["max_tokens"], stop=common["stop"],
                                    grammar=self.completion_grammar(model, body),
                                    add_bos=model.adds_bos,
                                    draft=self.draft_settings(model, body))
        echo_text = text_prompt if echo and isinstance(text_prompt, str) else ""
        return Prepared(model, request, "text", common["stream"], common["include_usage"], body,
                        echo=echo_text, id=new_id("cmpl"), load_time=load_time)

    def completion_grammar(self, model: LoadedModel, body: dict) -> str | None:
        return None

    # -- presets and speculative decoding (shared by /v1 and /api/v0) ------------------------
    def apply_preset(self, body: dict) -> dict:
        """The request with its ``preset`` applied; explicit request fields win."""
        if body.get("preset") is None:
            return body
        if self.presets is None:
            from ..models.presets import PresetStore

            self.presets = PresetStore()
        return self.presets.apply(body)

    def draft_settings(self, model: LoadedModel, body: dict):
        """The request's ``draft_model`` (loaded if need be and checked), or None."""
        name = body.get("draft_model")
        if name is None:
            return None
        if not isinstance(name, str) or not name.strip():
            raise bad_request("'draft_model' must be a non-empty string.", "draft_model")
        from ..engine.speculative import (DEFAULT_DRAFT_TOKENS, DraftSettings, check_draft_pair,
                                   header_vocab_mismatch, incompatible_draft)

        look_ahead = params.number(body, "draft_max_tokens", 1, 64, DEFAULT_DRAFT_TOKENS,
                                    integer=True)
        name = name.strip()
        loaded = self.manager.get_loaded(name)
        variant = loaded.variant if loaded else self.manager.resolve_draft(name)[1]
        reason = header_vocab_mismatch(model.variant.header, variant.header)
        if reason:  # refuse before loading a useless draft model
            raise incompatible_draft(name, model.identifier, reason)
        draft = self.manager.acquire_draft(name)
        check_draft_pair(model, draft)
        return DraftSettings(draft, draft.identifier, look_ahead)

    # -- async (server) ----------------------------------------------------------------------
    async def chat_completions(self, body, channel: EventChannel | None = None):
        prep = await run_blocking(self.prepare_chat, body)
        return await self._run(prep, channel)

    async def completions(self, body, channel: EventChannel | None = None):
        prep = await run_blocking(self.prepare_completion, body)
        return await self._run(prep, channel)

    async def _run(self, prep: Prepared, channel: EventChannel | None):
        channel = channel or EventChannel.for_running_loop()
        collector = Collector(self, prep)
        prep.model.generate(prep.request, channel)
        first = await channel.get()
        if first is None:
            raise APIError("The request was cancelled.", 499, "invalid_request_error")
        if isinstance(first, Failed):
            raise first.error
        collector.on_event(first)
        if not prep.stream:
            async for event in channel:
                if isinstance(event, Failed):
                    raise event.error
                collector.on_event(event)
            return JSONResponse(collector.response())
        return StreamResponse(self._stream(collector, channel), channel.cancel)

    async def _stream(self, collector: Collector, channel: EventChannel):
        """Yields lists of chunks: whatever the worker produced since the last write."""
        try:
            yield collector.first_chunks()
            async for event in channel:
                batch = []
                while event is not None:
                    batch.extend(collector.on_event(event))
                    if isinstance(event, Failed):
                        yield batch
                        return
                    event = channel.get_nowait()
                yield batch
        finally:
            channel.cancel()  # the consumer stopped early: free the model

    async def embeddings(self, body) -> JSONResponse:
        """/v1/embeddings: see :mod:`.embeddings`."""
        return await embeddings_api.embeddings(self, body)

    # -- blocking (kernel) -------------------------------------------------------------------
    def run_sync(self, prep: Prepared,
                 channel: EventChannel | None = None) -> dict | Iterator[dict]:
        """The response body, or (``stream``) an iterator of chunks; closing it cancels.

        Pass your own ``channel`` to cancel from another thread (``channel.cancel()``).
        """
        channel = channel or EventChannel()
        collector = Collector(self, prep)
        prep.model.generate(prep.request, channel)
        if not prep.stream:
            for event in channel:
                if isinstance(event, Failed):
                    raise event.error
                collector.on_event(event)
            return collector.response()
        return self._stream_sync(collector, channel)

    @staticmethod
    def _stream_sync(collector: Collector, channel: EventChannel) -> Iterator[dict]:
        events = iter(channel)
        try:
            first = next(events, None)
            if isinstance(first, Failed):
                raise first.error
            if first is not None:
                collector.on_event(first)
            yield from collector.first_chunks()
            for event in events:
                if isinstance(event, Failed):
                    raise event.error
                yield from collector.on_event(event)
        finally:
            channel.cancel()

    def embeddings_sync(self, body) -> dict:
        """/v1/embeddings for the kernel (blocking); the same body as over HTTP."""
        return embeddings_api.embeddings_sync(self, body)
