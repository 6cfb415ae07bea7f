"""Relaying an upstream engine's stream onto a model channel: each OpenAI chunk back into the
engine's typed events, with the timings, usage and stop reason the relay learns on the way, and
errors inside the stream as API errors."""

from __future__ import annotations

import time
from dataclasses import dataclass

from lms_jupyter.engine.events import (
    STOP_EOS,
    STOP_MAX_TOKENS,
    STOP_USER,
    Failed,
    Finished,
    TextDelta,
)
from lms_jupyter.errors import APIError
from lms_jupyter.sse import SSEParser


@dataclass
class UpstreamChunk:
    """One chunk of a remote chat answer, as the engine sent it (decoded by the API's
    ``ChunkOutput`` into answer events). A non-streamed answer is one chunk."""

    payload: dict


@dataclass
class RemoteRequest:
    """What to send: the engine path and the wire body (``model`` = the upstream id)."""

    path: str
    body: dict
    stream: bool = True
    text: bool = False  # a text completion: chunks carry choices[0].text
    # Log-probabilities are never computed here: when asked for, they are part of ``body``
    # and come back inside the engine's own chunks, relayed as they are.
    logprobs = None


# -- the facts listings show (the shapes of models.catalog and engine.options) ------------


class _Report:
    """What the relay learns from the chunks it passes on: timings, usage, why it ended."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first: float | None = None
        self.pieces = 0
        self.text: list[str] = []  # what was generated, to count when usage never comes
        self.usage: dict | None = None
        self.finish: str | None = None
        self.stats: dict | None = None

    def see(self, payload: dict) -> None:
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if choice.get("text") or (
                isinstance(delta, dict)
                and any(
                    delta.get(k)
                    for k in ("content", "reasoning_content", "reasoning", "tool_calls")
                )
            ):
                self.pieces += 1
                self.text.append(_generated_text(choice, delta))
                if self.first is None:
                    self.first = time.perf_counter()
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if isinstance(payload.get("stats"), dict):
            self.stats = payload["stats"]

    def finished(self, cancelled: bool = False) -> Finished:
        usage = self.usage or {}
        elapsed = time.perf_counter() - self.started
        ttft = (self.first - self.started) if self.first is not None else elapsed
        if cancelled:
            reason = STOP_USER
        elif (
            self.stats is not None
            and isinstance(self.stats.get("stop_reason"), str)
            and self.stats["stop_reason"] != "toolCalls"
        ):
            reason = self.stats["stop_reason"]
        else:
            reason = STOP_MAX_TOKENS if self.finish == "length" else STOP_EOS
        details = usage.get("prompt_tokens_details") or {}
        output_details = usage.get("completion_tokens_details") or {}
        reasoning = (
            output_details.get("reasoning_tokens") if isinstance(output_details, dict) else None
        )
        return Finished(
            reason,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or self.pieces),
            ttft,
            elapsed,
            cached_tokens=int(details.get("cached_tokens") or 0)
            if isinstance(details, dict)
            else 0,
            reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
            usage_estimated=bool(usage.get("estimated")),
        )


def _generated_text(choice: dict, delta) -> str:
    """A chunk's generated text (content, reasoning, call names and arguments)."""
    if choice.get("text"):
        return str(choice["text"])
    parts = [str(delta.get(k) or "") for k in ("content", "reasoning_content")]
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {} if isinstance(call, dict) else {}
        parts += [str(function.get("name") or ""), str(function.get("arguments") or "")]
    return "".join(parts)


class _Relay:
    """What both relay loops (asyncio on the server, a thread in a kernel) do with the
    engine's answer: turn its chunks into channel events and end the answer once.

    Feed it the one body of a non-streamed answer (:meth:`whole`) or the stream's lines
    (:meth:`line`, False: stop reading), then :meth:`end`.
    """

    def __init__(self, engine: str, request: RemoteRequest, channel):
        self.engine, self.request, self.channel = engine, request, channel
        self.report = _Report()
        self.parser = SSEParser()
        self.done = False  # the engine sent [DONE]
        self.failed = False  # a chunk was an error, already reported

    def whole(self, payload) -> None:
        if self._deliver(payload):
            self.channel.put(self.report.finished())

    def line(self, line: str) -> bool:
        event = self.parser.line(line)
        if event is None:
            return True
        if event.done:
            self.done = True
            return False
        try:
            payload = event.json()
        except ValueError as exc:
            payload = {"error": f"the stream carried {exc}"}
        return self._deliver(payload)

    def end(self) -> None:
        """The stream is over: Finished, or Failed when it stopped before finishing."""
        if self.failed:
            return
        report = self.report
        if (
            not self.done
            and report.finish is None
            and report.usage is None
            and report.stats is None
        ):
            self.channel.put(
                Failed(
                    APIError(
                        f'Remote engine "{self.engine}" ended the answer without finishing it.',
                        502,
                        "server_error",
                        None,
                        "upstream_disconnected",
                    )
                )
            )
            return
        self.channel.put(report.finished())

    def cancelled(self) -> None:
        self.channel.put(self.report.finished(cancelled=True))

    def _deliver(self, payload) -> bool:
        """Pass one chunk on; False when it was an error (reported as Failed)."""
        if not isinstance(payload, dict):
            self.failed = True
            self.channel.put(
                Failed(
                    APIError(
                        f'Remote engine "{self.engine}" sent a chunk that is not an object.',
                        502,
                        "server_error",
                        None,
                        "upstream_error",
                    )
                )
            )
            return False
        if "error" in payload and not payload.get("choices"):
            self.failed = True
            self.channel.put(Failed(_in_stream_error(self.engine, payload)))
            return False
        self.report.see(payload)
        if self.request.text:
            for choice in payload.get("choices") or []:
                if isinstance(choice, dict) and choice.get("text"):
                    self.channel.put(TextDelta(choice["text"]))
        else:
            self.channel.put(UpstreamChunk(payload))
        return True


def _in_stream_error(engine: str, payload: dict) -> APIError:
    error = payload.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or "server_error"
        status = 400 if kind == "invalid_request_error" else 502
        return APIError(
            f'{error.get("message") or error} (remote engine "{engine}")',
            status,
            kind,
            error.get("param"),
            error.get("code"),
        )
    return APIError(
        f'Remote engine "{engine}" failed: {error}', 502, "server_error", None, "upstream_error"
    )
