"""A conversation with a model, one streamed turn at a time.

The runner is shared by ``%%chat`` and the chat widget: it builds OpenAI chat requests,
streams the answer into a *view* (a cell's display handle, a widget), runs tool calls
in the calling thread and feeds their results back, and keeps the conversation so the
next turn continues it. Stopping (Ctrl+C in the kernel, or a ``stop`` event) closes the
stream, which cancels generation on the model's worker thread within a token, and keeps
the partial answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from lms_jupyter.api.events import ContentDelta
from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.errors import APIError
from lms_jupyter.kernel.schemas import OutputSchema
from lms_jupyter.kernel.tools import Toolbox, ToolResult

DEFAULT_MAX_TOOL_ROUNDS = 5


class GenerationInterrupted(KeyboardInterrupt):
    """The user interrupted generation; the partial answer was kept.

    A KeyboardInterrupt so "Run all" stops at this cell, shown as one line instead of a
    traceback (IPython's ``_render_traceback_`` hook).
    """

    def __init__(self, tokens: int = 0):
        self.tokens = tokens
        super().__init__(
            f"Generation interrupted after {tokens} tokens; the partial answer "
            f"is kept and the model is ready for the next cell."
        )

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self.args[0]}"]


@dataclass
class ChatStats:
    model: str
    completion_tokens: int
    prompt_tokens: int | None
    time_to_first_token: float | None
    tokens_per_second: float | None
    finish_reason: str | None

    def line(self) -> str:
        parts = [self.model, f"{self.completion_tokens} tokens"]
        if self.tokens_per_second:
            parts.append(f"{self.tokens_per_second:.1f} tok/s")
        if self.time_to_first_token is not None:
            parts.append(f"{self.time_to_first_token:.2f} s to first token")
        if self.prompt_tokens is not None:
            parts.append(f"{self.prompt_tokens} prompt tokens")
        parts.append(
            "stopped by user"
            if self.finish_reason == "interrupted"
            else f"finish: {self.finish_reason}"
        )
        return " · ".join(parts)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_done(cls, model: str, done, finish_reason: str | None) -> ChatStats:
        """The engine's exact figures (``done`` is None if it never reported them)."""
        if done is None:
            return cls(model, 0, None, None, None, finish_reason)
        stats = done.stats
        return cls(
            model=model,
            completion_tokens=stats.completion_tokens,
            prompt_tokens=stats.prompt_tokens,
            time_to_first_token=stats.time_to_first_token,
            tokens_per_second=stats.tokens_per_second or None,
            finish_reason=finish_reason,
        )


@dataclass
class Reply:
    """One streamed response."""

    content: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    interrupted: bool = False
    stats: ChatStats | None = None


@dataclass
class TurnResult:
    """What one user turn produced (possibly several requests when tools are used)."""

    content: str = ""
    parsed: Any = None
    stats: ChatStats | None = None
    interrupted: bool = False
    tool_results: list[ToolResult] = field(default_factory=list)
    requests: int = 0


class ChatView(Protocol):
    def start_text(self, model: str) -> None: ...
    def text(self, text: str) -> None: ...
    def end_text(self, text: str, stage: str) -> None: ...
    def tool_result(self, result: ToolResult) -> None: ...
    def stats(self, stats: ChatStats) -> None: ...


class NullView:
    """Collects nothing; for programmatic use."""

    def start_text(self, model):
        pass

    def text(self, text):
        pass

    def end_text(self, text, stage):
        pass

    def tool_result(self, result):
        pass

    def stats(self, stats):
        pass


@dataclass
class ChatOptions:
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    schema: OutputSchema | None = None
    tools: Toolbox | None = None
    tool_choice: str | dict | None = None  # first request only; later ones use "auto"
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    extra: dict = field(default_factory=dict)  # other request fields (seed, top_k, ...)


class Conversation:
    """The messages so far; the system prompt is kept apart so it can change."""

    def __init__(self, system: str | None = None, model: str | None = None):
        self.system = system
        self.model = model  # as the user named it (key or instance identifier)
        self.model_key: str | None = None  # its catalog key, if that instance goes away
        self.messages: list[dict] = []
        self.notes: dict[int, str] = {}  # message index -> "interrupted", ...
        self._lock = threading.Lock()

    def reset(self, system: str | None = None) -> None:
        with self._lock:
            self.messages = []
            self.notes = {}
            self.system = system

    def request_messages(self, pending: list[dict]) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [dict(m) for m in self.messages] + [dict(m) for m in pending]

    def commit(self, pending: list[dict], notes: dict[int, str] | None = None) -> None:
        with self._lock:
            base = len(self.messages)
            self.messages.extend(pending)
            for offset, note in (notes or {}).items():
                self.notes[base + offset] = note

    def __len__(self) -> int:
        return len(self.messages)

    # -- showing it --------------------------------------------------------------------
    def entries(self) -> list[dict]:
        out = []
        if self.system:
            out.append({"role": "system", "content": self.system})
        for i, message in enumerate(self.messages):
            entry = dict(message)
            if i in self.notes:
                entry["note"] = self.notes[i]
            out.append(entry)
        return out

    @staticmethod
    def _describe(entry: dict) -> str:
        content = entry.get("content") or ""
        calls = entry.get("tool_calls") or []
        if calls:
            described = ", ".join(
                f"{c['function']['name']}({c['function']['arguments']})" for c in calls
            )
            content = (content + "\n" if content else "") + f"[tool calls: {described}]"
        if entry.get("note"):
            content += f" [{entry['note']}]"
        return content

    def to_text(self) -> str:
        if not self.messages and not self.system:
            return "The conversation is empty. Start one with %%chat."
        lines = []
        for entry in self.entries():
            lines.append(f"{entry['role'].upper()}: {self._describe(entry)}")
        return "\n\n".join(lines)

    def to_markdown(self) -> str:
        if not self.messages and not self.system:
            return "*The conversation is empty. Start one with `%%chat`.*"
        blocks = []
        for entry in self.entries():
            blocks.append(f"**{entry['role']}**\n\n{self._describe(entry)}")
        return "\n\n---\n\n".join(blocks)


class ChatRunner:
    """Runs turns of a conversation against an OpenAICompatAPI."""

    def __init__(self, api, conversation: Conversation | None = None):
        self.api = api
        self.conversation = conversation if conversation is not None else Conversation()
        self._cancelled = threading.Event()
        self._channel: EventChannel | None = None

    def cancel(self) -> None:
        """Stop the running turn from any thread; generation stops at the next token."""
        self._cancelled.set()
        channel = self._channel
        if channel is not None:
            channel.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _body(self, messages: list[dict], options: ChatOptions, tool_choice) -> dict:
        body = {
            "model": options.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update(options.extra)
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        if options.schema is not None:
            body["response_format"] = options.schema.response_format()
        if options.tools:
            body["tools"] = options.tools.specs
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        return body

    def stream_once(self, body: dict, view: ChatView, stop: threading.Event | None = None) -> Reply:
        """One streamed request. Ctrl+C or ``stop`` ends it early with the partial answer.

        The answer arrives as typed events; the stats line uses the engine's exact counts
        and timings (also after an interruption: the engine reports how far it got).
        """
        request = self.api.chat_request(body)
        channel = self._channel = EventChannel()
        if self.cancelled:
            channel.cancel()
        generation = self.api.start_chat(request, channel)
        reply = Reply()
        parts: list[str] = []
        view.start_text(generation.model_id)
        events = iter(generation)
        try:
            for event in events:
                if stop is not None and stop.is_set():
                    reply.interrupted = True
                    break
                if isinstance(event, ContentDelta) and event.text:
                    parts.append(event.text)
                    view.text("".join(parts))
                if stop is not None and stop.is_set():
                    reply.interrupted = True
                    break
        except KeyboardInterrupt:
            reply.interrupted = True
        except APIError:
            view.end_text("".join(parts), "failed")
            raise
        finally:
            events.close()  # stops generation if it is still running; harmless after
            self._channel = None
        if self.cancelled:
            reply.interrupted = True
        done = generation.done or generation.wait_done(timeout=2.0)
        if done is not None and not reply.interrupted:
            reply.content = done.answer.content
            reply.tool_calls = [call.as_openai() for call in done.answer.tool_calls]
            reply.finish_reason = done.finish_reason
        else:
            reply.content = "".join(parts)
        if reply.interrupted:
            reply.finish_reason = "interrupted"
        reply.stats = ChatStats.from_done(generation.model_id, done, reply.finish_reason)
        view.end_text(reply.content, "interrupted" if reply.interrupted else "finished")
        return reply

    def run(
        self,
        prompt: str,
        options: ChatOptions,
        view: ChatView | None = None,
        stop: threading.Event | None = None,
    ) -> TurnResult:
        """One user turn: stream answers and run tool calls until the model answers."""
        view = view or NullView()
        self._cancelled.clear()
        conversation = self.conversation
        pending: list[dict] = [{"role": "user", "content": prompt}]
        notes: dict[int, str] = {}
        result = TurnResult()
        rounds = max(0, options.max_tool_rounds) if options.tools else 0
        for round_no in range(rounds + 1):
            choice: str | dict | None
            if options.tools:
                if round_no == rounds:
                    choice = "none"  # out of rounds: the model must answer now
                else:
                    choice = options.tool_choice if round_no == 0 else "auto"
            else:
                choice = None
            body = self._body(conversation.request_messages(pending), options, choice)
            reply = self.stream_once(body, view, stop)
            result.requests += 1
            result.stats = reply.stats
            result.content = reply.content
            assert reply.stats is not None  # stream_once always sets it
            if reply.interrupted:
                view.stats(reply.stats)
                result.interrupted = True
                if reply.content:
                    pending.append({"role": "assistant", "content": reply.content})
                    notes[len(pending) - 1] = "interrupted"
                conversation.commit(pending, notes)
                return result
            if reply.tool_calls and options.tools and round_no < rounds:
                checkpoint = len(pending)
                pending.append(
                    {
                        "role": "assistant",
                        "content": reply.content or None,
                        "tool_calls": reply.tool_calls,
                    }
                )
                try:
                    for call in reply.tool_calls:
                        outcome = options.tools.call(
                            call["function"]["name"], call["function"]["arguments"]
                        )
                        result.tool_results.append(outcome)
                        view.tool_result(outcome)
                        pending.append(
                            {
                                "role": "tool",
                                "tool_call_id": call["id"],
                                "name": call["function"]["name"],
                                "content": outcome.content,
                            }
                        )
                except KeyboardInterrupt:
                    del pending[checkpoint:]  # no half-answered tool round in the history
                    conversation.commit(pending, notes)
                    raise
                continue
            view.stats(reply.stats)
            pending.append({"role": "assistant", "content": reply.content})
            conversation.commit(pending, notes)
            break
        if options.schema is not None:
            result.parsed = options.schema.parse(result.content)
        return result
