"""Grammars that force a tool call in the model's own wire format (tool_choice
"required" or a named function); llama-cpp-python never forces one itself."""

from __future__ import annotations

import json

from lms_jupyter.chat.gbnf.json_schema import SchemaConverter
from lms_jupyter.chat.gbnf.rules import Grammar, gbnf_literal, repeat
from lms_jupyter.chat.toolcalls import families


def _function(tool: dict) -> dict:
    return tool.get("function", tool) if isinstance(tool, dict) else {}


def _call_rule(grammar: Grammar, family: str, function: dict) -> tuple[str, str]:
    """(call rule, JSON-object-call rule or "") for one tool in the family's wire format."""
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("every tool needs a function name")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    converter = SchemaConverter(grammar, parameters)
    hint = "call-" + name
    quoted = json.dumps(name, ensure_ascii=False)
    comma, colon = grammar.separators
    if family == families.SEED_OSS:
        params = converter.xml_parameters(parameters, hint + "-params")
        opening = gbnf_literal(f"<seed:tool_call>\n<function={name}>\n")
        closing = gbnf_literal("</function>\n</seed:tool_call>")
        body = f"{opening} {params} {closing}"
        return grammar.add(hint, body), ""
    arguments = converter.convert(parameters, "#", hint + "-args")
    args_key = "parameters" if family == families.LLAMA3 else "arguments"
    opening = gbnf_literal('{"name"' + colon + quoted + comma + '"' + args_key + '"' + colon)
    json_call = grammar.add(hint + "-json", f'{opening} {arguments} "}}"')
    if family == families.GENERIC:
        body = f'"[TOOL_REQUEST]" {json_call} "[END_TOOL_REQUEST]"'
    elif family == families.HERMES:
        body = f'"<tool_call>\\n" {json_call} "\\n</tool_call>"'
    elif family in (families.LLAMA3, families.NEMOTRON):
        body = json_call
    elif family == families.MISTRAL:
        body = f"{gbnf_literal(name + '[ARGS]')} {arguments}"
    elif family == families.HARMONY:
        header = f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
        body = f"{gbnf_literal(header)} {arguments}"
    else:
        raise ValueError(f"unknown tool-call family {family!r}")
    return grammar.add(hint, body), json_call


def tool_call_gbnf(
    tools: list[dict],
    family: str,
    choice: str | dict = "required",
    *,
    parallel: bool = True,
    compact: bool = True,
) -> str:
    """A grammar that makes the model call tools in its family's wire format.

    choice "required": one call to any of the tools, or several when `parallel`;
    choice {"type": "function", "function": {"name": ...}}: exactly one call to that
    tool. Arguments follow each tool's parameters schema. gpt-oss (harmony) always
    makes one call, since its <|call|> token ends the turn.
    """
    functions = [_function(tool) for tool in tools]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
        functions = [f for f in functions if f.get("name") == wanted]
        if not functions:
            raise ValueError(f"tool_choice names a tool that is not in tools: {wanted!r}")
        parallel = False
    elif choice != "required":
        raise ValueError("a tool-call grammar needs tool_choice 'required' or a named function")
    if not functions:
        raise ValueError("tool_choice 'required' needs at least one tool")
    if family == families.HARMONY:
        parallel = False

    grammar = Grammar(compact)
    comma = gbnf_literal(grammar.separators[0])
    rules = [_call_rule(grammar, family, function) for function in functions]
    calls = [call for call, _ in rules]
    json_calls = [json_call for _, json_call in rules]
    call = grammar.add("call", " | ".join(calls))
    if family == families.NEMOTRON:
        listed = repeat(call, comma, 1, None if parallel else 1)
        root = f'"<TOOLCALL>[" {listed} "]</TOOLCALL>"'
    elif family == families.MISTRAL:
        json_call = grammar.add("json-call", " | ".join(json_calls))
        array = f'"[" {repeat(json_call, comma, 1, None if parallel else 1)} "]"'
        named = f'{call} ( "[TOOL_CALLS]" {call} )*' if parallel else call
        root = f'"[TOOL_CALLS]" ( {array} | {named} )'
    elif family == families.LLAMA3:
        root = repeat(call, '"; "', 1, None if parallel else 1)
    else:
        root = repeat(call, '"\\n"', 1, None if parallel else 1)
    grammar.define("root", root)
    return grammar.text()
