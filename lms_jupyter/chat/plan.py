"""Tools, structured output and reasoning for one chat request: what the template sees,
which grammar constrains sampling, and how the output is parsed back.

The pure pieces (family detection, parsers, grammars, splitters) live in
lms_jupyter.toolcalls, lms_jupyter.grammar and lms_jupyter.reasoning; this module picks
and wires them for one model and one request. Decisions:

- A template whose tool format we parse natively (Hermes, Llama 3, Mistral, ...) gets the
  tools and the history as they are (names normalised); any other template gets LM
  Studio's generic [TOOL_REQUEST] instruction and a history rewritten into plain turns.
- tool_choice "required" / a named function is enforced with a grammar in the family's
  own format. That grammar allows several calls only when the request says
  ``parallel_tool_calls: true``: small models given the freedom repeat the same call.
  With "auto" nothing is forced, and calls are parsed from whatever the model writes.
- tool_choice "auto" next to a JSON response_format: the grammar accepts either a tool
  call or the JSON answer, so agents that use both still work.
- Tool-call ids are OpenAI's ``call_...``; templates that insist on 9 alphanumeric
  characters in the history (Mistral's raise an exception otherwise) get every id mapped
  to one, the same way in ``tool_calls`` and ``tool_call_id``, when the history renders.
- Grammars force the output from its first token, so a template whose generation prompt
  opens a <think> block gets no reasoning split while a grammar is active (the forced
  output is the answer, not reasoning).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from lms_jupyter.chat import reasoning as reasoning_mod
from lms_jupyter.chat.grammar import UnsupportedSchemaError, tool_call_gbnf, union_gbnf
from lms_jupyter.chat.output import REASONING_FIELDS, ChatOutput
from lms_jupyter.chat.toolcalls import (
    GENERIC,
    HARMONY,
    MISTRAL,
    convert_messages_for_generic,
    detect_family,
    forced_tool_system_prompt,
    generic_tool_system_prompt,
    make_parser,
    model_names_in_history,
    normalize_tool_names,
    template_supports_tools,
)
from lms_jupyter.chat.toolcalls.parsers import PARSERS
from lms_jupyter.errors import bad_request

_HARMONY_TOKENS = ("<|channel|>", "<|message|>", "<|call|>", "<|start|>", "<|end|>")


@dataclass
class ChatPlan:
    """What the prompt needs (messages, tools and variables for the template, the
    grammar) and what the output needs to parse the generated text back."""

    messages: list[dict]
    tools: list[dict] | None = None  # handed to the template (native families only)
    grammar: str | None = None
    variables: dict = field(default_factory=dict)
    render_special: bool = False
    family: str | None = None  # tool-call family, None when no tools are offered
    model_tools: list[dict] = field(default_factory=list)  # tools under the model's names
    name_map: dict[str, str] = field(default_factory=dict)  # model name -> caller's name
    reasoning: dict | None = None  # detect_reasoning() info when output is split


# -- history ----------------------------------------------------------------------------------


def _arguments_as_objects(messages: list[dict]) -> list[dict]:
    """Assistant tool-call arguments as dicts: native templates (Qwen, Llama 3, Mistral,
    gpt-oss) apply ``tojson`` to them, which would double-encode OpenAI's JSON strings."""
    out = []
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            message = dict(message)
            calls = []
            for call in message["tool_calls"]:
                call = copy.deepcopy(call)
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    try:
                        function["arguments"] = json.loads(function["arguments"] or "{}")
                    except ValueError:
                        pass  # not JSON: the template gets the text as it is
                calls.append(call)
            message["tool_calls"] = calls
        out.append(message)
    return out


_NINE_CHARACTER_CHECK = re.compile(r"length\s*!=\s*9\b")


def needs_short_call_ids(chat_template: str | None) -> bool:
    """Whether the template wants 9-character alphanumeric tool-call ids (the Mistral
    family's templates raise "Tool call IDs should be alphanumeric strings with length
    9!" on anything else)."""
    if not chat_template:
        return False
    return detect_family(chat_template) == MISTRAL or bool(
        _NINE_CHARACTER_CHECK.search(chat_template)
    )


def short_call_id(call_id) -> str:
    """A 9-character alphanumeric id for ``call_id``: itself when it already is one,
    else a digest of it (the same id always maps to the same short one)."""
    text = str(call_id)
    if len(text) == 9 and text.isascii() and text.isalnum():
        return text
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:9]


def _short_call_ids(messages: list[dict]) -> list[dict]:
    """The history with every tool-call id (assistant ``tool_calls[].id`` and tool
    ``tool_call_id``) mapped by :func:`short_call_id`."""
    out = []
    for message in messages:
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                if isinstance(call, dict) and call.get("id") is not None:
                    call = dict(call, id=short_call_id(call["id"]))
                calls.append(call)
            message = dict(message, tool_calls=calls)
        if message.get("role") == "tool" and message.get("tool_call_id") is not None:
            message = dict(message, tool_call_id=short_call_id(message["tool_call_id"]))
        out.append(message)
    return out


def _has_tool_history(messages: list[dict]) -> bool:
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


def _generic_history_without_instruction(messages: list[dict], tools: list[dict]) -> list[dict]:
    """Tool turns rewritten as plain turns, without offering tools (tool_choice "none")."""
    converted = convert_messages_for_generic(messages, tools)
    instruction = generic_tool_system_prompt(tools)
    first = converted[0]
    text = first.get("content") if isinstance(first.get("content"), str) else None
    if text == instruction:
        return converted[1:]
    if text is not None and text.endswith("\n\n" + instruction):
        converted[0] = dict(first, content=text[: -len(instruction) - 2])
    return converted


# -- special tokens ---------------------------------------------------------------------------

_special_cache: dict[tuple, bool] = {}


def markers_are_special(model, markers: tuple[str, ...]) -> bool:
    """Whether any marker is a control token, whose text generation drops unless it
    renders special tokens (e.g. <|python_tag|>, [TOOL_CALLS], <|channel|>).

    ``model`` is a loaded instance; one without a vocabulary here (a remote engine) has
    none to check."""
    if not markers or not model.capabilities.vocabulary:
        return False
    key = (str(model.variant.path), markers)
    if key not in _special_cache:
        _special_cache[key] = any(model.is_control_text(marker) for marker in markers)
    return _special_cache[key]


# -- planning ---------------------------------------------------------------------------------


def _forced_model_name(settings, name_map) -> str | None:
    """The forced function's name as the model sees it (tool names are normalized)."""
    if settings.forced_name is None:
        return None
    to_model = {original: name for name, original in name_map.items()}
    return to_model.get(settings.forced_name, settings.forced_name)


def _generic_instruction(settings, model_tools, name_map) -> str:
    """The system prompt that offers the tools: the "auto" one, or the shorter one for a
    call the grammar enforces."""
    if not settings.forced:
        return generic_tool_system_prompt(model_tools)
    return forced_tool_system_prompt(
        model_tools, _forced_model_name(settings, name_map), parallel=settings.parallel is True
    )


def _tool_grammar(settings, model_tools, family, name_map) -> str:
    choice = settings.choice
    if isinstance(choice, dict):
        choice = {"type": "function", "function": {"name": _forced_model_name(settings, name_map)}}
    try:
        return tool_call_gbnf(model_tools, family, choice, parallel=settings.parallel is True)
    except UnsupportedSchemaError as exc:
        raise bad_request(
            f"A tool's parameters cannot be enforced for tool_choice {settings.choice!r}: {exc}.",
            "tools",
        ) from None
    except ValueError as exc:
        raise bad_request(f"Invalid tools for tool_choice: {exc}.", "tools") from None


def plan_chat(model, features, messages: list[dict]) -> ChatPlan:
    """Plan one chat generation on ``model`` from the request's checked ``features``
    (``api.openai.requests.ChatFeatures``: tool settings, format grammar, reasoning effort)."""
    template = model.variant.chat_template
    settings = features.tools
    format_grammar = features.format_grammar
    effort = features.reasoning_effort
    try:
        variables = reasoning_mod.reasoning_template_kwargs(template, effort)
    except ValueError as exc:
        raise bad_request(str(exc), "reasoning_effort") from None

    family = detect_family(template)
    native = family != GENERIC and template_supports_tools(template)
    if not native:
        family = GENERIC
    plan = ChatPlan(messages=messages, variables=variables, grammar=format_grammar)

    if settings.tools:
        model_tools, name_map = normalize_tool_names(settings.tools)
        history = model_names_in_history(messages, name_map)
        if native:
            plan.messages = _arguments_as_objects(history)
            plan.tools = model_tools if settings.offered else None
        elif settings.offered:
            plan.messages = convert_messages_for_generic(
                history, model_tools, _generic_instruction(settings, model_tools, name_map)
            )
        else:
            plan.messages = _generic_history_without_instruction(history, model_tools)
        if settings.offered:
            plan.family, plan.model_tools, plan.name_map = family, model_tools, name_map
            if settings.forced:
                plan.grammar = _tool_grammar(settings, model_tools, family, name_map)
            elif format_grammar is not None:
                forced = dataclasses.replace(settings, choice="required")
                plan.grammar = union_gbnf(
                    _tool_grammar(forced, model_tools, family, name_map), format_grammar
                )
    elif _has_tool_history(messages):
        if native:
            plan.messages = _arguments_as_objects(messages)
        else:
            plan.messages = _generic_history_without_instruction(messages, [])
    if native and needs_short_call_ids(template) and _has_tool_history(plan.messages):
        plan.messages = _short_call_ids(plan.messages)

    info = reasoning_mod.detect_reasoning(template, variables)
    if info["format"] == "harmony" or (
        info["format"] == "tags" and not (plan.grammar and info["opens_in_prompt"])
    ):
        plan.reasoning = info

    markers: tuple[str, ...] = ()
    if plan.family is not None:
        markers += PARSERS[plan.family].markers
    if plan.reasoning is not None:
        if plan.reasoning["format"] == "harmony" or plan.family == HARMONY:
            markers += _HARMONY_TOKENS
        else:
            markers += (plan.reasoning["start_tag"], plan.reasoning["end_tag"])
    plan.render_special = markers_are_special(model, markers)
    return plan


# -- output -----------------------------------------------------------------------------------


def _build_output(plan: ChatPlan, stream: bool, inline: bool) -> ChatOutput:
    parser = None
    if plan.family is not None:
        parser = make_parser(
            plan.family, list(plan.name_map), plan.model_tools, stream_arguments=stream
        )
    inline_tags = None
    if inline:
        tag = (
            "<think>"
            if plan.reasoning is None or plan.reasoning["format"] != "tags"
            else plan.reasoning["start_tag"]
        )
        inline_tags = (tag, tag.replace("<", "</", 1))
    return ChatOutput(
        splitter=reasoning_mod.splitter_for(plan.reasoning),
        parser=parser,
        name_map=plan.name_map,
        inline_tags=inline_tags,
    )


def output_factory(
    plan: ChatPlan | None, stream: bool, reasoning_field: str = "both"
) -> Callable[[], ChatOutput]:
    """A maker of fresh ChatOutputs for the planned request (plain output without a plan).

    Non-streamed responses parse calls whole (a broken call becomes content); streamed
    ones announce a call as soon as its name is known and stream its arguments.
    ``reasoning_field="inline"`` keeps reasoning in the content between think tags.
    """
    if reasoning_field not in REASONING_FIELDS:
        raise ValueError(f"reasoning_field must be one of {', '.join(REASONING_FIELDS)}")
    if plan is None:
        return ChatOutput
    return partial(_build_output, plan, stream, reasoning_field == "inline")
