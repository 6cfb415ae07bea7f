"""Run a prepared generation and hand out its typed events: the driving step.

One path for every front: the model's worker thread puts engine events (text, timings)
on an :class:`~..engine.channel.EventChannel`; :class:`Generation` turns them into the
typed stream of :mod:`.events` (answer pieces, then ``Done`` or ``Failed``), read either
from asyncio (the server) or by blocking iteration (the kernel). Cancelling closes the
channel, which stops generation on the worker within a token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator

from lms_jupyter.api.events import Done, Failed
from lms_jupyter.api.openai.decode import ChunkOutput
from lms_jupyter.api.prepared import Prepared
from lms_jupyter.chat.events import Answer, ContentDelta
from lms_jupyter.chat.logprobs import ContentLogprobs
from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.engine.events import Finished, Started, TextDelta
from lms_jupyter.engine.remote.models import UpstreamChunk
from lms_jupyter.errors import APIError


class Generation:
    """One queued generation as a stream of typed events.

    ``channel`` decides how events are read: one made with
    ``EventChannel.for_running_loop()`` for :meth:`events` (asyncio), a plain one for
    :meth:`__iter__` (blocking). Creating it queues the work on the model.
    """

    def __init__(self, prepared: Prepared, channel: EventChannel | None = None):
        self.prepared = prepared
        self.model_id = prepared.model.identifier
        self.channel = channel or EventChannel()
        self.output = prepared.make_output() if prepared.make_output else None
        self._text: list[str] = []
        self.prompt_tokens = 0
        self.done: Done | None = None
        self._pending: list = []  # events translated by start(), not yet handed out
        # log-probabilities (only when asked for): which tokens are content
        self._logprobs = ContentLogprobs() if prepared.request.logprobs is not None else None
        prepared.model.generate(prepared.request, self.channel)

    def cancel(self) -> None:
        """Stop generating (a client went away, the user pressed Stop)."""
        self.channel.cancel()

    # -- translation -----------------------------------------------------------------------
    def translate(self, event) -> list:
        """The typed events for one engine event."""
        if isinstance(event, Started):
            self.prompt_tokens = event.prompt_tokens
            return []
        if isinstance(event, UpstreamChunk):  # a remote engine's chat chunk
            assert isinstance(self.output, ChunkOutput)  # what a remote model's Prepared makes
            return self.output.feed_chunk(event.payload)
        if isinstance(event, TextDelta):
            if self.output is not None:
                if self._logprobs is not None:
                    self._logprobs.add(event.text, event.logprobs)
                return self._with_logprobs(self.output.feed(event.text))
            self._text.append(event.text)
            if self._logprobs is None:
                return [ContentDelta(event.text)]
            tokens = tuple(event.logprobs or ())  # plain text: every token is content
            self._logprobs.content.extend(tokens)
            return [ContentDelta(event.text, tokens)]
        if isinstance(event, Finished):
            events = self._with_logprobs(self.output.finish()) if self.output is not None else []
            if self.output is not None:
                answer = self.output.answer()
                finish_reason = self.output.finish_reason_override or event.finish_reason
            else:
                answer = Answer(content="".join(self._text))
                finish_reason = event.finish_reason
            if self._logprobs is not None:
                answer.logprobs = tuple(self._logprobs.content)
            self.done = Done(self.model_id, answer, event, finish_reason)
            return events + [self.done]
        if isinstance(event, Failed):
            return [event]
        return []

    def _with_logprobs(self, events: list) -> list:
        """Content events with their tokens' log-probabilities (when asked for)."""
        return events if self._logprobs is None else self._logprobs.attach(events)

    # -- asyncio -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Wait until generation really starts; raise the APIError if it cannot (so an
        HTTP response can still carry the right status instead of an in-stream error)."""
        first = await self.channel.get()
        if first is None:
            raise APIError("The request was cancelled.", 499, "invalid_request_error")
        if isinstance(first, Failed):
            raise first.error
        self._pending = self.translate(first)

    async def batches(self) -> AsyncGenerator[list, None]:
        """Lists of typed events: everything the worker produced since the last one, so a
        writer can send a burst of tokens with one flush. Call :meth:`start` first."""
        try:
            if self._pending:
                pending, self._pending = self._pending, []
                yield pending
            async for event in self.channel:
                batch = []
                while event is not None:
                    batch.extend(self.translate(event))
                    event = self.channel.get_nowait()
                yield batch
        finally:
            self.cancel()  # the consumer stopped early: free the model

    async def result(self) -> Done:
        """Run to the end and return ``Done``; raise the error if it failed."""
        await self.start()
        async for batch in self.batches():
            for event in batch:
                if isinstance(event, Failed):
                    raise event.error
        if self.done is None:  # the engine stopped without its final report
            raise APIError("The generation ended without a result.", 500, "server_error")
        return self.done

    # -- blocking ------------------------------------------------------------------------------
    def __iter__(self) -> Generator:
        """Typed events, blocking; a ``Failed`` is raised as its APIError. Closing the
        iterator early cancels the generation."""
        try:
            for event in self.channel:
                for typed in self.translate(event):
                    if isinstance(typed, Failed):
                        raise typed.error
                    yield typed
        finally:
            self.cancel()

    def wait_done(self, timeout: float = 2.0) -> Done | None:
        """After a blocking reader stopped early (it cancelled): wait briefly for the
        engine's final report, whose counts and timings are exact."""
        deadline = time.monotonic() + timeout
        while self.done is None:
            event = self.channel.get_blocking(max(0.0, deadline - time.monotonic()))
            if event is None:
                break
            self.translate(event)
        return self.done

    def result_sync(self) -> Done:
        for _event in self:
            pass
        if self.done is None:  # the engine stopped without its final report
            raise APIError("The generation ended without a result.", 500, "server_error")
        return self.done
