"""Separating a model's reasoning from its answer.

Reasoning goes to ``message.reasoning`` / ``reasoning_content`` and must never reach
``content`` or the tool-call parsers. Two output styles exist: tags such as
<think>...</think> (DeepSeek R1, Qwen3, Nemotron, Seed-OSS with <seed:think>) and
gpt-oss's harmony channels. Splitters are fed text piece by piece and return
("reasoning" | "content", text) pairs; tags split across pieces are held back.
"""

from __future__ import annotations

import re
from typing import Any

REASONING = "reasoning"
CONTENT = "content"

_WHITESPACE = " \t\n\r"

Piece = tuple[str, str]


def _partial_suffix(text: str, tokens: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that could be the start of a token."""
    longest = min(len(text), max(len(t) for t in tokens) - 1)
    for length in range(longest, 0, -1):
        if any(token.startswith(text[-length:]) for token in tokens):
            return length
    return 0


def _merge(pieces: list[Piece]) -> list[Piece]:
    merged: list[Piece] = []
    for kind, text in pieces:
        if not text:
            continue
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


class ReasoningSplitter:
    """Splits <think>...</think> style output.

    Only a start tag at the very start of the output (after whitespace) opens
    reasoning; an unclosed one makes everything after it reasoning. Use
    ``starts_in_reasoning=True`` when the generation prompt already opened the tag
    (see detect_reasoning); a repeated start tag is then swallowed. Whitespace right
    inside the tags and right after the end tag is dropped.
    """

    def __init__(
        self,
        start_tag: str = "<think>",
        end_tag: str = "</think>",
        starts_in_reasoning: bool = False,
    ) -> None:
        self.start_tag = start_tag
        self.end_tag = end_tag
        self._state = "opening" if starts_in_reasoning else "start"
        self._buf = ""
        self._final = False

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        return _merge(self._run())

    def finish(self) -> list[Piece]:
        self._final = True
        return _merge(self._run())

    def _run(self) -> list[Piece]:
        out: list[Piece] = []
        while True:
            state = self._state
            getattr(self, "_on_" + state)(out)
            if self._state == state:
                return out

    def _on_start(self, out: list[Piece]) -> None:
        stripped = self._buf.lstrip(_WHITESPACE)
        if stripped.startswith(self.start_tag):
            self._buf = stripped[len(self.start_tag) :]
            self._state = "opening"
        elif self._final or (stripped and not self.start_tag.startswith(stripped)):
            self._state = "content"

    def _on_opening(self, out: list[Piece]) -> None:
        stripped = self._buf.lstrip(_WHITESPACE)
        if stripped.startswith(self.start_tag):  # prompt opened it and the model repeats it
            stripped = stripped[len(self.start_tag) :].lstrip(_WHITESPACE)
        elif stripped and self.start_tag.startswith(stripped) and not self._final:
            return
        self._buf = stripped
        if stripped or self._final:
            self._state = "reasoning"

    def _on_reasoning(self, out: list[Piece]) -> None:
        found = self._buf.find(self.end_tag)
        if found >= 0:
            out.append((REASONING, self._buf[:found].rstrip(_WHITESPACE)))
            self._buf = self._buf[found + len(self.end_tag) :]
            self._state = "closing"
            return
        if self._final:
            out.append((REASONING, self._buf.rstrip(_WHITESPACE)))
            self._buf = ""
            return
        keep = len(self._buf) - _partial_suffix(self._buf, (self.end_tag,))
        emit = self._buf[:keep].rstrip(_WHITESPACE)  # trailing space may precede the end tag
        out.append((REASONING, emit))
        self._buf = self._buf[len(emit) :]

    def _on_closing(self, out: list[Piece]) -> None:
        self._buf = self._buf.lstrip(_WHITESPACE)
        if self._buf:
            self._state = "content"

    def _on_content(self, out: list[Piece]) -> None:
        out.append((CONTENT, self._buf))
        self._buf = ""


# -- gpt-oss harmony ---------------------------------------------------------------------

_HARMONY_TOKENS = (
    "<|start|>",
    "<|channel|>",
    "<|message|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|constrain|>",
)
_MESSAGE_ENDS = ("<|end|>", "<|return|>", "<|call|>")
_HEADER_OPENERS = ("<|start|>", "<|channel|>")
_MAX_HEADER = 512
TOOL_CALL_HEADER = "<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
TOOL_CALL_END = "<|call|>"


class HarmonySplitter:
    """Splits gpt-oss output into reasoning (analysis channel) and content.

    Messages look like <|channel|>NAME[ to=RECIPIENT][ <|constrain|>json]<|message|>BODY
    ending in <|end|>, <|return|> or <|call|>, with <|start|>assistant between them.
    The final channel, and commentary without a recipient (preambles), are content.
    A call to ``functions.NAME`` is passed on as content in the one canonical form
    ``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>ARGS<|call|>``
    so that the "harmony" tool parser finds it in the content stream. Calls to other
    recipients (built-in browser/python tools) are passed on as plain content.
    Text outside any message (a model ignoring the format) is content.
    """

    def __init__(self, starts_in_channel: str | None = None) -> None:
        self._buf = ""
        self._final = False
        self._header = ""
        self._kind = CONTENT
        self._tool_call = False
        self._mode = "between"
        if starts_in_channel:
            self._open_message(f"<|channel|>{starts_in_channel}", [])

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        return _merge(self._run())

    def finish(self) -> list[Piece]:
        self._final = True
        out = self._run()
        # a call body the stream ended in gets no <|call|>: the tool-call parser then
        # sees where the output stopped (a complete call parses without the token, a
        # cut-off one is reported as far as it got instead of turning into content)
        self._mode = "between"
        return _merge(out)

    def _run(self) -> list[Piece]:
        out: list[Piece] = []
        while self._buf:
            before = (self._mode, len(self._buf))
            getattr(self, "_on_" + self._mode)(out)
            if (self._mode, len(self._buf)) == before:
                break
        return out

    def _on_between(self, out: list[Piece]) -> None:
        for token in _MESSAGE_ENDS:  # stray end tokens carry nothing
            if self._buf.startswith(token):
                self._buf = self._buf[len(token) :]
                return
        if self._buf.startswith("<|start|>"):
            self._buf = self._buf[len("<|start|>") :]
            self._header = ""
            self._mode = "header"
            return
        if self._buf.startswith("<|channel|>"):
            self._header = ""
            self._mode = "header"
            return
        if not self._final and any(t.startswith(self._buf) for t in _HARMONY_TOKENS):
            return  # maybe the start of a token
        self._kind, self._tool_call = CONTENT, False
        self._mode = "body"

    def _on_header(self, out: list[Piece]) -> None:
        found = self._buf.find("<|message|>")
        if found >= 0:
            header = self._header + self._buf[:found]
            self._buf = self._buf[found + len("<|message|>") :]
            self._open_message(header, out)
            return
        if len(self._header) + len(self._buf) > _MAX_HEADER:
            # not a header after all: give the text back as content
            out.append((CONTENT, self._header + self._buf))
            self._header, self._buf = "", ""
            self._kind, self._tool_call = CONTENT, False
            self._mode = "body"
            return
        if self._final:
            self._header, self._buf = "", ""  # an unfinished header carries no text
            return
        keep = _partial_suffix(self._buf, ("<|message|>",))
        self._header += self._buf[: len(self._buf) - keep]
        self._buf = self._buf[len(self._buf) - keep :]

    def _open_message(self, header: str, out: list[Piece]) -> None:
        channel = re.search(r"<\|channel\|>\s*([\w-]+)", header)
        recipient = re.search(r"to=([^\s<]+)", header)
        self._tool_call = False
        if recipient and recipient.group(1).startswith("functions."):
            self._tool_call = True
            self._kind = CONTENT
            name = recipient.group(1)[len("functions.") :]
            out.append((CONTENT, TOOL_CALL_HEADER.format(name=name)))
        elif channel and channel.group(1) == "analysis":
            self._kind = REASONING
        else:
            self._kind = CONTENT
        self._mode = "body"

    def _on_body(self, out: list[Piece]) -> None:
        ends = [(self._buf.find(t), t) for t in _MESSAGE_ENDS + _HEADER_OPENERS]
        ends = [(offset, token) for offset, token in ends if offset >= 0]
        if ends:
            offset, token = min(ends)
            out.append((self._kind, self._buf[:offset]))
            if self._tool_call:
                out.append((CONTENT, TOOL_CALL_END))
            consumed = offset + (len(token) if token in _MESSAGE_ENDS else 0)
            self._buf = self._buf[consumed:]
            self._mode = "between"
            return
        keep = 0 if self._final else _partial_suffix(self._buf, _HARMONY_TOKENS)
        out.append((self._kind, self._buf[: len(self._buf) - keep]))
        self._buf = self._buf[len(self._buf) - keep :]


# -- template inspection -------------------------------------------------------------------

_EFFORTS = ("none", "minimal", "low", "medium", "high")
_THINKING_VARIABLES = ("enable_thinking", "reasoning_effort", "thinking_budget")


def _render_generation_prompt(chat_template: str, variables: dict) -> str | None:
    """Renders the template for one user turn with the generation prompt; None if it fails.

    Uses the templates module's compiled-template cache, so a chat request does not
    compile the model's template a second time."""
    from lms_jupyter.chat.templates import render_template

    try:
        return render_template(
            chat_template,
            messages=[{"role": "user", "content": "Hi"}],
            add_generation_prompt=True,
            bos_token="",
            eos_token="",
            **variables,
        )
    except Exception:  # noqa: BLE001 - any template error just means "unknown"
        return None


def detect_reasoning(chat_template: str | None, template_kwargs: dict | None = None) -> dict:
    """What kind of reasoning a template produces.

    Returns {"format": "harmony" | "tags" | None, "start_tag", "end_tag",
    "thinks": bool, "opens_in_prompt": bool, "variables": [...]}. ``opens_in_prompt``
    (the generation prompt already ends with the start tag, as in DeepSeek R1) is
    found by rendering the template with `template_kwargs`, since e.g. Qwen3 opens
    or pre-closes the tag depending on ``enable_thinking``.
    """
    info: dict[str, Any] = {
        "format": None,
        "start_tag": None,
        "end_tag": None,
        "thinks": False,
        "opens_in_prompt": False,
        "variables": [],
    }
    if not chat_template:
        return info
    info["variables"] = [v for v in _THINKING_VARIABLES if v in chat_template]
    if "<|channel|>" in chat_template and "<|start|>" in chat_template:
        info.update(format="harmony", thinks=True)
        return info
    if "<seed:think>" in chat_template:
        start, end = "<seed:think>", "</seed:think>"
    elif "<think>" in chat_template or "</think>" in chat_template:
        start, end = "<think>", "</think>"
    else:
        info["thinks"] = bool(info["variables"])
        return info
    info.update(format="tags", start_tag=start, end_tag=end, thinks=True)
    prompt = _render_generation_prompt(chat_template, dict(template_kwargs or {}))
    if prompt is not None:
        info["opens_in_prompt"] = prompt.rstrip(_WHITESPACE).endswith(start)
    return info


def splitter_for(info: dict | None) -> ReasoningSplitter | HarmonySplitter | None:
    """The splitter for :func:`detect_reasoning`'s answer (None: nothing to split)."""
    if info is None:
        return None
    if info["format"] == "harmony":
        return HarmonySplitter()
    if info["format"] == "tags":
        return ReasoningSplitter(info["start_tag"], info["end_tag"], info["opens_in_prompt"])
    return None


def make_reasoning_splitter(
    chat_template: str | None, template_kwargs: dict | None = None
) -> ReasoningSplitter | HarmonySplitter | None:
    """The splitter that suits a template, or None when the template does not think."""
    return splitter_for(detect_reasoning(chat_template, template_kwargs))


def reasoning_template_kwargs(chat_template: str | None, effort: str | None) -> dict:
    """Template variables for an OpenAI ``reasoning_effort``.

    gpt-oss reads ``reasoning_effort`` (low/medium/high; it cannot switch thinking off,
    so none/minimal become low), Qwen3-style templates ``enable_thinking`` (off only
    for "none"), Seed-OSS ``thinking_budget`` in tokens (0 = no thinking, -1 =
    unlimited). Variables the template does not read are left out.
    """
    if effort is None or not chat_template:
        return {}
    effort = str(effort).lower()
    if effort not in _EFFORTS:
        raise ValueError(f"reasoning effort must be one of {', '.join(_EFFORTS)}, got {effort!r}")
    kwargs: dict = {}
    if "reasoning_effort" in chat_template:
        harmony = "<|channel|>" in chat_template
        if harmony and effort in ("none", "minimal"):
            kwargs["reasoning_effort"] = "low"
        else:
            kwargs["reasoning_effort"] = effort
    if "enable_thinking" in chat_template:
        kwargs["enable_thinking"] = effort != "none"
    if "thinking_budget" in chat_template:
        budgets = {"none": 0, "minimal": 512, "low": 512, "medium": 4096, "high": -1}
        kwargs["thinking_budget"] = budgets[effort]
    return kwargs
