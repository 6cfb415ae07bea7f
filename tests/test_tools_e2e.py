"""Tool calling end to end: the real server, the openai client and SmolLM2, whose ChatML
template knows no tools, so LM Studio's generic [TOOL_REQUEST] format is used."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from conftest import MODEL

pytestmark = [pytest.mark.timeout(300), pytest.mark.wire_hygiene]

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20, "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": WEATHER_PARAMETERS,
    },
}
# a camelCase name (normalised for the model, mapped back) and root-level $defs
BOOKING_PARAMETERS = {
    "type": "object",
    "$defs": {"seat": {"type": "string", "enum": ["window", "aisle"]}},
    "properties": {
        "seat": {"$ref": "#/$defs/seat"},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
    },
    "required": ["seat", "passengers"],
}
BOOKING = {
    "type": "function",
    "function": {
        "name": "bookFlight",
        "description": "Book a flight seat.",
        "parameters": BOOKING_PARAMETERS,
    },
}
# no parameters at all
CLOCK = {
    "type": "function",
    "function": {"name": "current_time", "description": "The current time."},
}

ASK = [{"role": "user", "content": "What is the weather in Paris? Use celsius."}]
COMMON = dict(model=MODEL, temperature=0, seed=11, max_tokens=60)


def assert_valid_call(call, name, parameters):
    assert call.type == "function" and call.id and isinstance(call.id, str)
    assert call.function.name == name
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, parameters)
    return arguments


REQUIRED = dict(messages=ASK, tools=[WEATHER], tool_choice="required", **COMMON)


@pytest.fixture(scope="module")
def weather_call(server):
    """One forced call, shared by the tests that compare with or continue from it."""
    client = openai.OpenAI(
        base_url=server.api_url, api_key=server.token, max_retries=0, timeout=120
    )
    return client.chat.completions.create(**REQUIRED)


def test_required_tool_choice_gives_a_valid_call(weather_call):
    choice = weather_call.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert len(choice.message.tool_calls) == 1  # parallel_tool_calls not asked for
    assert_valid_call(choice.message.tool_calls[0], "get_weather", WEATHER_PARAMETERS)
    assert weather_call.usage.completion_tokens <= COMMON["max_tokens"]


def test_tool_without_parameters(client):
    resp = client.chat.completions.create(
        messages=[{"role": "user", "content": "What time is it?"}],
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "current_time"}},
        **COMMON,
    )
    (call,) = resp.choices[0].message.tool_calls
    assert call.function.name == "current_time" and json.loads(call.function.arguments) == {}


def test_named_tool_choice_with_defs_and_name_mapping(client):
    resp = client.chat.completions.create(
        messages=[{"role": "user", "content": "Book me a window seat for two people."}],
        tools=[WEATHER, BOOKING],
        tool_choice={"type": "function", "function": {"name": "bookFlight"}},
        **COMMON,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    arguments = assert_valid_call(call, "bookFlight", BOOKING_PARAMETERS)
    assert arguments["seat"] in ("window", "aisle")


def test_streamed_tool_call_matches_non_streamed(client, weather_call):
    (expected,) = weather_call.choices[0].message.tool_calls
    stream = client.chat.completions.create(stream=True, **REQUIRED)
    pieces, finish, content = [], None, ""
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        pieces += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and content == ""
    first, rest = pieces[0], pieces[1:]
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function.name == "get_weather" and first.function.arguments == ""
    assert rest and all(
        p.index == 0 and p.id is None and p.function.name is None and p.function.arguments
        for p in rest
    )
    arguments = json.loads("".join(p.function.arguments for p in rest))
    # the same call; whitespace may differ, since the second run starts from a cached prompt
    assert arguments == json.loads(expected.function.arguments)
    jsonschema.validate(arguments, WEATHER_PARAMETERS)


def test_round_trip_call_result_answer(client, weather_call):
    assistant = weather_call.choices[0].message
    (call,) = assistant.tool_calls
    history = ASK + [
        assistant.model_dump(exclude_none=True),  # content omitted: only tool_calls
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"temperature": 21, "unit": "celsius", "sky": "sunny"}),
        },
    ]
    # content null with tool_calls must be accepted too
    history_null = (
        ASK
        + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}]
        + history[-1:]
    )
    answer_only = dict(COMMON, max_tokens=20)
    final = client.chat.completions.create(
        messages=history_null, tools=[WEATHER], tool_choice="none", **answer_only
    )
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert answer.message.tool_calls is None and answer.message.content.strip()
    assert "[TOOL_REQUEST]" not in answer.message.content
    # "auto": the model may answer or call again; either way the response is well formed
    again = client.chat.completions.create(
        messages=history, tools=[WEATHER], tool_choice="auto", **answer_only
    ).choices[0]
    if again.message.tool_calls:
        # a call, whole ("tool_calls") or cut off by max_tokens ("length", as OpenAI reports
        # a call that ran out of tokens: its name complete, its arguments partial)
        assert again.finish_reason in ("tool_calls", "length")
        assert again.message.tool_calls[0].function.name == "get_weather"
    else:
        assert again.message.content


def test_usage_counts_tool_definitions(client):
    kwargs = dict(model=MODEL, messages=ASK, max_tokens=1, temperature=0)
    plain = client.chat.completions.create(**kwargs).usage.prompt_tokens
    with_tools = client.chat.completions.create(tools=[WEATHER], **kwargs)
    assert with_tools.usage.prompt_tokens > plain + 50  # the instruction and the schema
    # a forced call's shorter instruction (the grammar enforces the form), still with the
    # schema; a named function describes only that tool
    required = client.chat.completions.create(tools=[WEATHER], tool_choice="required", **kwargs)
    assert plain + 50 < required.usage.prompt_tokens < with_tools.usage.prompt_tokens
    named = {"type": "function", "function": {"name": "get_weather"}}
    both = client.chat.completions.create(tools=[WEATHER, BOOKING], tool_choice=named, **kwargs)
    assert both.usage.prompt_tokens < required.usage.prompt_tokens + 10
    # tool_choice "none" offers no tools
    none = client.chat.completions.create(tools=[WEATHER], tool_choice="none", **kwargs)
    assert none.usage.prompt_tokens == plain


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tools": {"type": "function", "function": {"name": "x"}}}, "tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"x": {"type": "string", "pattern": "^a$"}},
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "tools",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": None, "tool_calls": "oops"},
                ]
            },
            "messages[1].tool_calls",
        ),
    ],
)
def test_bad_tool_inputs_are_openai_400s(server, extra, param):
    body = {"model": MODEL, "messages": ASK, "max_tokens": 5, **extra}
    r = httpx.post(
        server.api_url + "/chat/completions", json=body, headers=server.headers, timeout=60
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"]


def test_bad_tool_input_through_the_sdk(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            messages=ASK,
            tools=[WEATHER],
            max_tokens=5,
            model=MODEL,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert info.value.status_code == 400 and "get_time" in info.value.message
