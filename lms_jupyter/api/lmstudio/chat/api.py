"""``POST /api/v1/chat``: LM Studio 0.4's stateful chat over the Responses machinery.

No second generation path: the body becomes a Responses body (:mod:`.request`), and a
Responses run (:class:`..responses_api._Run`, the same object ``/v1/responses`` uses)
does everything else: the stored conversation behind ``previous_response_id`` (the
SQLite :class:`..responses_store.ResponseStore`, so it survives restarts), MCP
``integrations`` under the same opt-in and allow-list, each model step through
``prepare_chat`` and ``Generation``. :mod:`.encode` spells its result and events the
native way. The one thing added here is ``model_load.*``: when the model is not loaded,
a streamed request loads it first and reports the load's real progress.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing

from lms_jupyter.api.lmstudio.chat.encode import EventTranslator, chat_result
from lms_jupyter.api.lmstudio.chat.request import native_error, responses_body
from lms_jupyter.api.lmstudio.rest import v1_error_body
from lms_jupyter.api.responses.endpoint import ResponsesAPI, _Run
from lms_jupyter.api.results import JSONResponse, StreamResponse
from lms_jupyter.engine.channel import EventChannel, run_blocking
from lms_jupyter.errors import APIError

log = logging.getLogger(__name__)

PROGRESS_STEP = 0.05  # model_load.progress events: one per 5% of the weights read


class _NativeRun(_Run):
    """A Responses run that keeps each model step's ``Done`` (for ``stats``)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.finished: list = []
        self._seen = None

    async def _start_step(self) -> None:
        self._record()
        await super()._start_step()

    def _record(self) -> None:
        generation = self.generation
        if generation is not None and generation is not self._seen and generation.done:
            self._seen = generation
            self.finished.append(generation.done)


class LMStudioChatAPI:
    """The native chat surface, sharing the Responses API's store and MCP policy."""

    def __init__(self, responses: ResponsesAPI):
        self.responses = responses
        self.manager = responses.manager

    async def chat(self, body, channel: EventChannel | None = None):
        param = "integrations"
        try:
            translated = responses_body(body)
            param = translated.pop("_integrations_param", param)
            request = self.responses.parse(translated)
            run = _NativeRun(self.responses, request, channel)
            if request.stream and await self._needs_load(request.model):
                return StreamResponse(
                    self._loading_stream(run, param), run.cancel, done_marker=None
                )
            await run.begin()
        except APIError as error:
            raise native_error(error, param) from None
        if request.stream:
            return StreamResponse(self._events(run, param), run.cancel, done_marker=None)
        response = await run.result()
        run._record()
        log.info("chat %s on %s: %d step(s)", response["id"], response["model"], len(run.finished))
        return JSONResponse(chat_result(response, run.finished, request.store))

    async def _needs_load(self, name: str) -> bool:
        """Whether the request will JIT-load its model (an unknown one is a 404 now)."""
        if self.manager.get_loaded(name) is not None:
            return False
        if not self.manager.jit_loading:
            return False  # begin() refuses it with LM Studio's message
        await run_blocking(self.manager.resolve_model, name)
        return True

    @staticmethod
    def _event(kind: str, **fields) -> dict:
        return {"__event__": kind, "type": kind, **fields}

    def _error(self, error: APIError, param: str) -> dict:
        return self._event("error", **v1_error_body(native_error(error, param)))

    async def _loading_stream(self, run: _NativeRun, param: str):
        """chat.start, model_load.start|progress|end, then the chat itself."""
        request = run.request
        yield [self._event("chat.start", model_instance_id=request.model)]
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue = asyncio.Queue()

        reported = [-1.0]

        def on_progress(fraction: float) -> bool:
            # llama.cpp reports hundreds of steps: one event per PROGRESS_STEP is plenty
            if fraction >= reported[0] + PROGRESS_STEP or fraction >= 1 > reported[0]:
                reported[0] = fraction
                loop.call_soon_threadsafe(progress.put_nowait, fraction)
            return not run.gone()

        started = time.monotonic()
        yield [self._event("model_load.start", model_instance_id=request.model)]
        load = asyncio.ensure_future(
            run_blocking(
                lambda: self.manager.acquire(
                    request.model,
                    ttl=request.generation["ttl"],
                    context_length=request.generation["context_length"],
                    progress=on_progress,
                )
            )
        )
        try:
            while not load.done() or not progress.empty():
                getter = asyncio.ensure_future(progress.get())
                await asyncio.wait({load, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield [
                        self._event(
                            "model_load.progress",
                            model_instance_id=request.model,
                            progress=round(getter.result(), 4),
                        )
                    ]
                else:
                    getter.cancel()
            model = load.result()
            yield [
                self._event(
                    "model_load.end",
                    model_instance_id=model.identifier,
                    load_time_seconds=round(time.monotonic() - started, 3),
                )
            ]
            await run.begin()
        except APIError as error:
            yield [self._error(error, param)]
            return
        async with aclosing(self._events(run, param, announce=False)) as events:
            async for batch in events:
                yield batch

    async def _events(self, run: _NativeRun, param: str, announce: bool = True):
        translator = EventTranslator()
        if announce:
            assert run.encoder is not None  # begin() made it
            yield [self._event("chat.start", model_instance_id=run.encoder.response["model"])]
        async with aclosing(run.events()) as events:
            async for batch in events:
                out = []
                for event in batch:
                    kind = event["type"]
                    if kind == "response.failed":
                        out.append(
                            self._error(
                                run.error or APIError("The chat failed.", 500, "server_error"),
                                param,
                            )
                        )
                        yield out
                        return
                    if kind in ("response.completed", "response.incomplete"):
                        run._record()
                        out.append(
                            self._event(
                                "chat.end",
                                result=chat_result(
                                    event["response"], run.finished, run.request.store
                                ),
                            )
                        )
                    else:
                        out += translator.translate(event)
                if out:
                    yield out
