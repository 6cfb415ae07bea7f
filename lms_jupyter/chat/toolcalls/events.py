"""Events a tool-call stream parser emits, and how to assemble them.

The parser turns model text into a small event vocabulary so the HTTP layer can map
each event onto an OpenAI streaming delta without knowing any model family.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ContentDelta:
    """Plain assistant text (everything that is not a tool call).

    ``logprobs``: when the request asked for log-probabilities, the generated tokens of
    this text (``engine.events.TokenLogprob``s; attached by the driving step, never by a
    parser); None when it did not ask."""

    text: str
    logprobs: tuple | None = None


@dataclass(frozen=True)
class ToolCallStart:
    """A tool call begins; carries the id and name once, as OpenAI's first delta does."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallArgsDelta:
    """A piece of the call's arguments (a JSON object string once all pieces are joined)."""

    index: int
    text: str


@dataclass(frozen=True)
class ToolCallEnd:
    """The call's arguments are finished.

    ``complete`` is False only in streaming mode when the model broke off or broke the
    syntax after the call had been announced: the arguments streamed so far may then
    not be valid JSON (the rest of the text comes back as content).

    ``cut_off`` is True when the output ended inside the call (``max_tokens``): the call
    is reported as far as it got, the way OpenAI reports a call cut off by the length
    limit (partial ``arguments``, ``finish_reason: "length"``), in both modes.
    """

    index: int
    complete: bool = True
    cut_off: bool = False


ToolCallEvent = ContentDelta | ToolCallStart | ToolCallArgsDelta | ToolCallEnd


_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """An id in OpenAI's form: ``call_`` and 24 random letters and digits. (Templates
    that insist on other ids in the history, as Mistral's 9 characters, get them mapped
    when the history is rendered: ``chat.plan``.)"""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def unique_id_factory(make: Callable[[], str] = new_call_id) -> Callable[[], str]:
    """Wraps an id maker so that one parser never hands out the same id twice."""
    used: set[str] = set()

    def make_unique() -> str:
        while True:
            candidate = make()
            if candidate and candidate not in used:
                used.add(candidate)
                return candidate

    return make_unique


def coalesce(events: Iterable[ToolCallEvent]) -> list[ToolCallEvent]:
    """Merges neighbouring content pieces and neighbouring argument pieces of one call,
    so a consumer sends fewer, larger deltas."""
    merged: list[ToolCallEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, ContentDelta):
            if not event.text:
                continue
            if isinstance(last, ContentDelta):
                merged[-1] = ContentDelta(last.text + event.text)
                continue
        elif isinstance(event, ToolCallArgsDelta):
            if not event.text:
                continue
            if isinstance(last, ToolCallArgsDelta) and last.index == event.index:
                merged[-1] = ToolCallArgsDelta(event.index, last.text + event.text)
                continue
        merged.append(event)
    return merged
