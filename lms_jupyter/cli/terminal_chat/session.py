"""One terminal conversation: its messages, its model, and one answer at a time.

The session builds the same typed :class:`~..api.requests.ChatRequest` every front
builds and reads the one typed event stream (:class:`~..api.drive.Generation`), from
whichever API it was given: the running server's (``client.connected.ConnectedAPI``,
which streams over HTTP) or this process's own (``api.OpenAICompatAPI``). Cancelling
the generation closes that stream, which stops the model within a token; the text
received until then stays in the conversation, as LM Studio's ``lms chat`` keeps it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from lms_jupyter.api.events import Done
from lms_jupyter.api.openai import requests
from lms_jupyter.chat.events import ContentDelta, ReasoningDelta

if TYPE_CHECKING:
    from lms_jupyter.api.drive import Generation

log = logging.getLogger(__name__)


class ChatAPI(Protocol):
    """What a session needs of an API: the server's (``ConnectedAPI``) or this
    process's own (``OpenAICompatAPI``)."""

    def start_chat(self, request: requests.ChatRequest) -> Generation: ...


@dataclass
class Answer:
    """What one question got: the text, whether it was interrupted, the engine's
    figures (None when the engine never reported them)."""

    text: str
    interrupted: bool = False
    done: Done | None = None
    first_token_seconds: float | None = None  # measured here when the engine's are absent


@dataclass
class ChatSession:
    api: ChatAPI  # start_chat(ChatRequest) -> Generation
    model: str
    system: str | None = None
    ttl: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    messages: list[dict] = field(default_factory=list)

    def clear(self) -> None:
        self.messages.clear()

    def request(self, question: str) -> requests.ChatRequest:
        """The typed request for the conversation so far plus ``question``."""
        messages = (
            ([{"role": "system", "content": self.system}] if self.system else [])
            + self.messages
            + [{"role": "user", "content": question}]
        )
        body: dict = {"model": self.model, "messages": messages, "stream": True}
        for name, value in (
            ("ttl", self.ttl),
            ("max_tokens", self.max_tokens),
            ("temperature", self.temperature),
        ):
            if value is not None:
                body[name] = value
        return requests.chat_request(body)

    def ask(
        self,
        question: str,
        write: Callable[[str], object],
        started: Callable[[object], None] | None = None,
    ) -> Answer:
        """Stream the answer to ``question`` through ``write``. A KeyboardInterrupt while
        it streams cancels the generation and returns the partial answer (interrupted);
        either way the question and the answer join the conversation."""
        generation = self.api.start_chat(self.request(question))
        if started is not None:
            started(generation)
        pieces: list[str] = []
        began, first = time.monotonic(), None
        interrupted = False
        events = iter(generation)
        try:
            for event in events:
                if isinstance(event, ContentDelta) and event.text:
                    first = first if first is not None else time.monotonic() - began
                    pieces.append(event.text)
                    write(event.text)
                elif isinstance(event, ReasoningDelta) and event.text:
                    first = first if first is not None else time.monotonic() - began
                    write(event.text)
        except KeyboardInterrupt:
            interrupted = True
            generation.cancel()  # closes the stream: the model stops within a token
            log.info("prediction interrupted after %d pieces", len(pieces))
        finally:
            events.close()
        text = "".join(pieces)
        self.messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": text},
        ]
        return Answer(text, interrupted, generation.done, first)


def stats_text(answer: Answer) -> str:
    """LM Studio's ``lms chat --stats`` block."""
    done = answer.done
    if done is None:
        ttft = f"{answer.first_token_seconds:.3f}s" if answer.first_token_seconds else "n/a"
        return f"Prediction Stats:\n  Stop Reason: userStopped\n  Time to First Token: {ttft}"
    stats = done.stats
    return (
        "Prediction Stats:\n"
        f"  Stop Reason: {stats.stop_reason}\n"
        f"  Tokens/Second: {stats.tokens_per_second:.2f}\n"
        f"  Time to First Token: {stats.time_to_first_token:.3f}s\n"
        f"  Prompt Tokens: {stats.prompt_tokens}\n"
        f"  Predicted Tokens: {stats.completion_tokens}\n"
        f"  Total Tokens: {stats.prompt_tokens + stats.completion_tokens}"
    )
