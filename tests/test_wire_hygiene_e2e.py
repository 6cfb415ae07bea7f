"""Issue 26, points 1-3 through the real server with the openai SDK, in every tool-call
family's format (SmolLM2 re-templated as Hermes/Qwen, Llama 3, Mistral and gpt-oss; plain
SmolLM2 speaks the generic format): no format fragment reaches content, a delta or an
output item; a forced call cut off by max_tokens comes back as far as it got (client's
name, partial arguments, finish_reason "length", content null), streamed and not; and the
forced call is compact JSON. Ends with a seeded property test over random requests."""

from __future__ import annotations

import json
import random

import openai
import pytest
from conftest import MODEL, JupyterServer
from family_templates import MISTRAL_STYLE, QWEN_STYLE
from test_template_families import models_with_template
from wire_markers import FRAGMENTS as MARKER_FRAGMENTS

LLAMA3_STYLE = """\
{{- bos_token }}
{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\nYou may call tools: \
{{ tools | tojson }}. Reply with {"name": ..., "parameters": ...} or <|python_tag|>.<|eot_id|>
{%- endif %}
{%- for message in messages %}<|start_header_id|>{{ 'ipython' if message.role == 'tool' \
else message.role }}<|end_header_id|>\n\n{{ message.content or '' }}<|eot_id|>{%- endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}
"""
HARMONY_STYLE = """\
{%- if tools %}<|start|>developer<|message|>Tools: {{ tools | tojson }}<|end|>{%- endif %}
{%- for message in messages %}<|start|>{{ message.role }}<|channel|>final<|message|>\
{{ message.content or '' }}<|end|>{%- endfor %}
{%- if add_generation_prompt %}<|start|>assistant{%- endif %}
"""
TEMPLATES = {
    "hermes": QWEN_STYLE,
    "llama3": LLAMA3_STYLE,
    "mistral": MISTRAL_STYLE,
    "harmony": HARMONY_STYLE,
}
MODELS = {"generic": MODEL, **{family: f"{family}-smollm2" for family in TEMPLATES}}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "YesNo",
            "description": "Answer a yes/no question.",
            "parameters": {
                "type": "object",
                "properties": {"answer": {"type": "string", "maxLength": 24}},
                "required": ["answer"],
            },
        },
    }
]
ASK = [{"role": "user", "content": "Is the sky blue? Answer with the tool."}]
NAMED = {"type": "function", "function": {"name": "YesNo"}}

# every marker of every family (shared with the wire_hygiene hook), and the server's
# normalised tool name
FRAGMENTS = (*MARKER_FRAGMENTS, "yes_no")


def leaks(text) -> list[str]:
    return [f for f in FRAGMENTS if text and f in text]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hygiene-models")
    for family, template in TEMPLATES.items():
        models_with_template(root, family, template)
    srv = JupyterServer(tmp_path_factory.mktemp("hygiene-server"), root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0, timeout=180)


def create(client, family, **kwargs):
    kwargs.setdefault("messages", ASK)
    return client.chat.completions.create(model=MODELS[family], temperature=0, seed=1, **kwargs)


def streamed(client, family, **kwargs):
    """(content text, {index: [name, arguments]}, finish_reason, every delta as a dict)."""
    content, calls, finish, deltas = "", {}, None, []
    for chunk in create(client, family, stream=True, **kwargs):
        for choice in chunk.choices:
            delta = choice.delta
            deltas.append(delta.model_dump())
            content += delta.content or ""
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, ["", ""])
                entry[0] += (call.function.name or "") if call.function else ""
                entry[1] += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    return content, calls, finish, deltas


def check_body(message):
    dumped = json.dumps(message.model_dump())
    assert not leaks(message.content), message
    for call in message.tool_calls or []:
        assert call.function.name == "YesNo"
        assert not leaks(call.function.arguments)
    return dumped


@pytest.mark.parametrize("family", sorted(MODELS))
def test_forced_call_is_clean_compact_and_cut_off_like_openai(client, family):
    full = create(client, family, tools=TOOLS, tool_choice=NAMED, max_tokens=200)
    choice = full.choices[0]
    check_body(choice.message)
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "YesNo"
    arguments = call.function.arguments
    assert isinstance(json.loads(arguments), dict)
    assert arguments == json.dumps(
        json.loads(arguments), separators=(",", ":"), ensure_ascii=False
    )  # point 3: compact JSON
    tokens = full.usage.completion_tokens
    cut_inside_arguments = False
    for limit in range(tokens - 1, 0, -1):  # cut at every token: closing marker, args, ...
        body = create(client, family, tools=TOOLS, tool_choice=NAMED, max_tokens=limit)
        choice = body.choices[0]
        check_body(choice.message)
        assert choice.message.content is None, (limit, choice)
        content, calls, finish, deltas = streamed(
            client, family, tools=TOOLS, tool_choice=NAMED, max_tokens=limit
        )
        assert content == "" and not any(leaks(json.dumps(d)) for d in deltas), deltas
        assert finish == choice.finish_reason, limit
        got = [[c.function.name, c.function.arguments] for c in choice.message.tool_calls or []]
        assert list(calls.values()) == got, (limit, calls, got)
        try:
            complete = bool(got) and isinstance(json.loads(got[0][1]), dict)
        except ValueError:
            complete = False
        if complete:
            assert choice.finish_reason == "tool_calls"
        else:
            assert choice.finish_reason == "length"
            if got:  # the call as far as it got, under the client's name
                assert got[0][0] == "YesNo" and arguments.startswith(got[0][1])
                cut_inside_arguments = cut_inside_arguments or len(got[0][1]) > 1
        if cut_inside_arguments and limit < tokens - 4:
            break
    assert cut_inside_arguments


@pytest.mark.parametrize("family", ["generic", "hermes"])
def test_responses_cut_off_forced_call_has_no_message_item(client, family):
    for limit in (6, 12, 18, 24, 40):
        response = client.responses.create(
            model=MODELS[family],
            input="Is the sky blue?",
            temperature=0,
            tools=[{"type": "function", **TOOLS[0]["function"]}],
            tool_choice={"type": "function", "name": "YesNo"},
            max_output_tokens=limit,
        )
        kinds = [item.type for item in response.output]
        assert "message" not in kinds, (limit, response.output)
        assert not leaks(json.dumps(response.model_dump()["output"]))
        for item in response.output:
            assert item.name == "YesNo"


def test_property_no_marker_in_any_body_or_delta(client):
    """Seeded random requests (family, tool_choice, response_format, max_tokens, stream,
    endpoint): no response body, delta or output item holds a format fragment."""
    rng = random.Random(26)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    for _ in range(16):
        family = rng.choice(sorted(MODELS))
        kwargs = {"max_tokens": rng.choice([3, 8, 16, 30])}
        mode = rng.choice(["required", "named", "auto", "json_schema", "auto+json"])
        if mode != "json_schema":
            kwargs["tools"] = TOOLS
            kwargs["tool_choice"] = {"required": "required", "named": NAMED}.get(mode, "auto")
        if "json" in mode:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": schema},
            }
        if rng.random() < 0.5:
            content, calls, _, deltas = streamed(client, family, **kwargs)
            assert not any(leaks(json.dumps(d)) for d in deltas), (family, kwargs, deltas)
        else:
            message = create(client, family, **kwargs).choices[0].message
            check_body(message)
            if mode == "json_schema" and message.content:
                assert '": ' not in message.content  # compact JSON answers


@pytest.mark.timeout(900)  # the first test of the module also starts the server
def test_llama3_bare_call_cut_off_in_its_name_leaks_no_part_of_it(client):
    """Llama 3's forced call is bare JSON ({"name":"yes_no",...}, no marker): cut off by
    max_tokens before the name is complete, nothing of it (the normalised name included)
    may come back as content, streamed or not."""
    cut_in_name = 0
    for limit in range(1, 16):
        body = create(client, "llama3", tools=TOOLS, tool_choice=NAMED, max_tokens=limit)
        choice = body.choices[0]
        check_body(choice.message)
        assert not choice.message.content, (limit, choice)  # "" or, with a call, null
        content, calls, finish, deltas = streamed(
            client, "llama3", tools=TOOLS, tool_choice=NAMED, max_tokens=limit
        )
        assert content == "" and not any(leaks(json.dumps(d)) for d in deltas), deltas
        if choice.message.tool_calls:
            assert [c.function.name for c in choice.message.tool_calls] == ["YesNo"]
            break  # the name is complete from here on: the call is reported
        assert finish == choice.finish_reason == "length"
        cut_in_name += 1
    else:
        raise AssertionError("the forced call never got its name")
    assert cut_in_name >= 2  # '{"name":"' and at least one piece of the name
