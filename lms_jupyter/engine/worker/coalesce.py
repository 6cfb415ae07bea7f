"""Fewer, larger token messages from a fast model: a worker's stream interval.

Every message a worker sends costs work outside llama.cpp: a write here, a wake-up of the
parent's reader and of its event loop, an SSE chunk to frame and send, and one for the
client to read and parse (the ``openai`` SDK spends about 0.4 ms on each). On two cores
that time comes straight out of decoding: llama.cpp's threads meet at a barrier for every
graph node, so a thread that loses its core stalls the other. One stream over HTTP ran at
0.91x raw llama-cpp-python's speed with a message per token.

So the text of a step that comes less than ``interval`` after the last message sent waits
and goes with a later step, merged into one :class:`TextDelta` per request (OpenAI's
deltas may carry several tokens; logprobs keep one entry per token). What is never held:
a request's first text (time to first token), and a step that carries anything but text
(``Started``, ``Finished``, ``Failed``, the end of a request), which sends everything
held before it. A model slower than ``interval`` a token is never held at all. vLLM,
SGLang and TensorRT-LLM offer the same trade as a ``stream_interval`` counted in tokens;
counting time keeps the wait bounded whatever the model's speed.
"""

from __future__ import annotations

from lms_jupyter.engine.events import TextDelta


def _is_text(message) -> bool:
    return message[0] == "event" and type(message[2]) is TextDelta


def merged(messages: list) -> list:
    """``messages`` with each request's consecutive text events joined into one: a text
    event joins the last one of its request unless another event of that request (its
    end) came between them. Messages of different requests keep their own order."""
    out: list = []
    open_text: dict[int, int] = {}  # rid -> index in out of its text event still open
    for message in messages:
        if _is_text(message):
            rid, delta = message[1], message[2]
            index = open_text.get(rid)
            if index is None:
                open_text[rid] = len(out)
                out.append(message)
            else:
                earlier = out[index][2]
                logprobs = (
                    None
                    if earlier.logprobs is None and delta.logprobs is None
                    else [*(earlier.logprobs or []), *(delta.logprobs or [])]
                )
                out[index] = ("event", rid, TextDelta(earlier.text + delta.text, logprobs))
        else:
            if message[0] in ("event", "closed"):
                open_text.pop(message[1], None)
            out.append(message)
    return out


class Coalescer:
    """Which of a step's messages to send now. Not thread-safe: the worker calls it under
    its send lock."""

    def __init__(self, interval: float = 0.0):
        self.interval = interval  # seconds; 0: every step's messages at once
        self._held: list = []
        self._last_sent = float("-inf")
        self._streaming: set[int] = set()  # requests whose first text has gone

    def step(self, messages: list, now: float) -> list | None:
        """A step's messages (or none, at a tick): what to send now, or None to hold."""
        if (
            self.interval > 0
            and now - self._last_sent < self.interval
            and all(self._may_wait(message) for message in messages)
        ):
            self._held.extend(messages)
            return None
        return self.release(messages, now)

    def release(self, messages: list, now: float) -> list:
        """Everything held, then ``messages``, merged: to be sent now."""
        out = merged(self._held + messages) if self._held else messages
        self._held = []
        for message in out:
            if _is_text(message):
                self._streaming.add(message[1])
            elif message[0] == "closed":
                self._streaming.discard(message[1])
        if out:
            self._last_sent = now
        return out

    def _may_wait(self, message) -> bool:
        return _is_text(message) and message[1] in self._streaming
