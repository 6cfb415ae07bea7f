"""``/v1/messages`` and ``/v1/messages/count_tokens`` as plain Python.

The same three steps as every generation endpoint: the body becomes the typed
``ChatRequest`` (:mod:`.request`), :func:`..prepare.prepare_chat` renders it with the
model's template and tool grammar, :class:`..drive.Generation` yields the typed events,
and :class:`.encode.MessageEncoder` spells them the Anthropic way. Whatever can refuse
the request (the body, the model, a prompt that does not fit) is refused before the
first byte, as an HTTP error; a failure after that is an ``error`` event in the stream.
"""

from __future__ import annotations

import logging

from lms_jupyter.api.anthropic import request as anthropic_request
from lms_jupyter.api.anthropic.encode import MessageEncoder
from lms_jupyter.api.anthropic.errors import anthropic_error
from lms_jupyter.api.drive import Generation
from lms_jupyter.api.events import Done, Failed
from lms_jupyter.api.prepare import prepare_chat
from lms_jupyter.api.results import JSONResponse, StreamResponse
from lms_jupyter.engine.channel import EventChannel, run_blocking
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.request import GenerationRequest
from lms_jupyter.errors import APIError

log = logging.getLogger(__name__)


class AnthropicAPI:
    """The Messages surface over one model manager."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    async def messages(self, body, channel: EventChannel | None = None):
        """POST /v1/messages (``stream: true`` answers with Anthropic's SSE events)."""
        request = anthropic_request.parse(body)
        prepared = await run_blocking(prepare_chat, self.manager, request.chat, "both")
        generation = Generation(prepared, channel or EventChannel.for_running_loop())
        await generation.start()  # a prompt that does not fit is still an HTTP error
        encoder = MessageEncoder(request.model, request.stop_sequences)
        log.info(
            "messages %s on %s (%d prompt tokens, stream=%s)",
            encoder.id,
            prepared.model.identifier,
            generation.prompt_tokens,
            prepared.stream,
        )
        if prepared.stream:
            return StreamResponse(
                self._events(generation, encoder), generation.cancel, done_marker=None
            )
        events, done = [], None
        async for batch in generation.batches():
            for event in batch:
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Done):
                    done = event
                else:
                    events.append(event)
        if done is None:
            raise APIError("The request was cancelled.", 499, "invalid_request_error")
        return JSONResponse(encoder.whole(events, done))

    @staticmethod
    async def _events(generation: Generation, encoder: MessageEncoder):
        yield encoder.start(generation.prompt_tokens)
        try:
            async for batch in generation.batches():
                out = []
                for event in batch:
                    if isinstance(event, Failed):
                        raise event.error
                    out += encoder.finish(event) if isinstance(event, Done) else encoder.feed(event)
                if out:
                    yield out
        except APIError as error:
            yield [{"__event__": "error", **anthropic_error(error)}]
        except Exception as exc:
            log.exception("messages %s failed", encoder.id)
            yield [
                {
                    "__event__": "error",
                    **anthropic_error(APIError(f"The generation failed: {exc}", 500, "api_error")),
                }
            ]

    async def count_tokens(self, body) -> JSONResponse:
        """POST /v1/messages/count_tokens: the prompt's tokens as the model would see them
        (rendered with its template and tools), nothing generated."""
        request = anthropic_request.parse(body, counting=True)

        def count() -> int:
            prepared = prepare_chat(self.manager, request.chat, "both")
            tokenize = getattr(prepared.model, "tokenize", None)
            generation = prepared.request  # a remote engine's RemoteRequest has no prompt
            if (
                tokenize is None
                or not isinstance(generation, GenerationRequest)
                or not isinstance(generation.prompt, str)
            ):
                raise APIError(
                    f"Model {prepared.model.identifier!r} is served by a remote "
                    "engine, whose tokenizer is not available here.",
                    400,
                )
            return len(tokenize(generation.prompt, add_bos=generation.add_bos, special=True))

        return JSONResponse({"input_tokens": await run_blocking(count)})
