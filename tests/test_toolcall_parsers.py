"""Tool-call parsing: family detection, stream parsers, generic fallback, names.

Sample outputs are written from each family's documented wire format.
"""

from __future__ import annotations

import json

import pytest
from toolcall_helpers import ToolCallAccumulator, parse_tool_calls

from lms_jupyter.chat.reasoning import HarmonySplitter, ReasoningSplitter
from lms_jupyter.chat.toolcalls import (
    FAMILIES,
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
    convert_messages_for_generic,
    detect_family,
    forced_tool_system_prompt,
    format_tool_request,
    generic_tool_system_prompt,
    make_parser,
    model_names_in_history,
    normalize_tool_names,
    original_tool_name,
    snake_case,
    template_supports_tools,
    xml_value_to_json,
)
from lms_jupyter.chat.toolcalls.parsers import PARSERS

TOOL_NAMES = ["get_weather", "get_time"]

WEATHER = '{"city": "Paris"}'

# (family, model output, expected content, expected [(name, arguments JSON)])
SAMPLES = [
    (
        "hermes",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        None,
        [("get_weather", WEATHER)],
    ),
    (
        "hermes",
        'Let me check both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>',
        "Let me check both.",
        [("get_weather", WEATHER), ("get_time", '{"tz": "Europe/Paris"}')],
    ),
    (
        "hermes",  # Qwen3-Coder / Nemotron 3 XML body inside the Hermes tags
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        None,
        [("get_weather", WEATHER)],
    ),
    (
        "hermes",  # malformed JSON falls back to content
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>',
        [],
    ),
    (
        "hermes",  # a call the output's end cut off: as far as it got, no markup in content
        'Sure <tool_call>\n{"name": "get_weather", "arguments": {"ci',
        "Sure",
        [("get_weather", '{"ci')],
    ),
    (
        "hermes",  # a lookalike marker is plain text
        "Use <tool_calls> or <tool_call without bracket.",
        "Use <tool_calls> or <tool_call without bracket.",
        [],
    ),
    (
        "generic",
        '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]',
        None,
        [("get_weather", WEATHER)],
    ),
    (
        "generic",
        'I will look.\n[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]\n'
        '[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]',
        "I will look.",
        [("get_weather", WEATHER), ("get_time", "{}")],
    ),
    (
        "generic",  # arguments serialised into a string, as some models do
        '[TOOL_REQUEST]{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}[END_TOOL_REQUEST]',
        None,
        [("get_weather", WEATHER)],
    ),
    (
        "llama3",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        None,
        [("get_weather", WEATHER)],
    ),
    (
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_time", "parameters": {"tz": "UTC"}}',
        None,
        [("get_weather", WEATHER), ("get_time", '{"tz": "UTC"}')],
    ),
    (
        "llama3",  # ordinary JSON content is not a call
        '{"answer": 42, "name": "x"}',
        '{"answer": 42, "name": "x"}',
        [],
    ),
    (
        "llama3",  # bare JSON naming an unknown tool is content
        '{"name": "Bob", "parameters": {"age": 3}}',
        '{"name": "Bob", "parameters": {"age": 3}}',
        [],
    ),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}, '
        '{"name": "get_time", "arguments": {}, "id": "f5g6h7i8j"}]',
        None,
        [("get_weather", WEATHER), ("get_time", "{}")],
    ),
    (
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{}',
        None,
        [("get_weather", WEATHER), ("get_time", "{}")],
    ),
    (
        "nemotron",
        '<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_time", "arguments": {"tz": "UTC"}}]</TOOLCALL>',
        None,
        [("get_weather", WEATHER), ("get_time", '{"tz": "UTC"}')],
    ),
    (
        "seed_oss",
        "<seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris</parameter>\n"
        "<parameter=days>3</parameter>\n</function>\n</seed:tool_call>",
        None,
        [("get_weather", '{"city": "Paris", "days": 3}')],
    ),
    (
        "harmony",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
        None,
        [("get_weather", '{"city":"Paris"}')],
    ),
]


def _summary(content, calls):
    return content, [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


def _run_chunks(family, chunks, *, stream_arguments):
    parser = make_parser(family, TOOL_NAMES, stream_arguments=stream_arguments)
    accumulator = ToolCallAccumulator()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.finish()
    accumulator.add(events)
    return accumulator, events


@pytest.mark.parametrize("family,text,content,calls", SAMPLES)
def test_parse_samples(family, text, content, calls):
    assert _summary(*parse_tool_calls(family, text, TOOL_NAMES)) == (content, calls)
    for _, arguments in calls:
        if not text.endswith(arguments):  # a cut-off call's arguments stop where it did
            assert isinstance(json.loads(arguments), dict)


@pytest.mark.parametrize("family,text,content,calls", SAMPLES)
@pytest.mark.parametrize("stream_arguments", [True, False])
def test_chunking_never_changes_the_result(family, text, content, calls, stream_arguments):
    whole, _ = _run_chunks(family, [text], stream_arguments=stream_arguments)
    expected = (
        whole.content,
        [(c["function"]["name"], c["function"]["arguments"]) for c in whole.tool_calls],
    )
    char_by_char, _ = _run_chunks(family, list(text), stream_arguments=stream_arguments)
    assert (char_by_char.content, _summary(None, char_by_char.tool_calls)[1]) == expected
    for split in range(1, len(text)):
        halves, _ = _run_chunks(
            family, [text[:split], text[split:]], stream_arguments=stream_arguments
        )
        assert (halves.content, _summary(None, halves.tool_calls)[1]) == expected, split


@pytest.mark.parametrize("family,text,content,calls", SAMPLES)
def test_event_sequence_is_well_formed(family, text, content, calls):
    _, events = _run_chunks(family, list(text), stream_arguments=True)
    started, ended = [], []
    for event in events:
        if isinstance(event, ToolCallStart):
            assert event.index == len(started) and event.id and event.name
            started.append(event.index)
        elif isinstance(event, ToolCallArgsDelta):
            assert event.index in started and event.index not in ended
        elif isinstance(event, ToolCallEnd):
            assert event.index in started and event.index not in ended
            ended.append(event.index)
    assert started == ended
    ids = [e.id for e in events if isinstance(e, ToolCallStart)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("call_") and len(i) == 29 and i[5:].isalnum() for i in ids)


def test_arguments_stream_before_the_call_is_finished():
    parser = make_parser("hermes", TOOL_NAMES)
    assert parser.feed('<tool_call>\n{"name": "get_weather", "argu') == []
    events = parser.feed('ments": {"city": "Pa')
    assert isinstance(events[0], ToolCallStart) and events[0].name == "get_weather"
    assert events[1:] == [ToolCallArgsDelta(0, '{"city": "Pa')]
    assert parser.feed('ris"}}\n</tool_call>') == [ToolCallArgsDelta(0, 'ris"}'), ToolCallEnd(0)]
    assert parser.finish() == []


def test_possible_marker_is_held_back_then_released():
    parser = make_parser("hermes", TOOL_NAMES)
    assert parser.feed("Hello <tool") == [ContentDelta("Hello")]
    assert parser.feed("box> here") == [ContentDelta(" <toolbox> here")]
    assert parser.finish() == []


def test_streaming_call_cut_off_is_closed_incomplete():
    parser = make_parser("hermes", TOOL_NAMES)
    events = parser.feed('<tool_call>{"name": "get_weather", "arguments": {"city": "Pa')
    events += parser.finish()
    accumulator = ToolCallAccumulator()
    accumulator.add(events)
    assert events[-1] == ToolCallEnd(0, complete=False, cut_off=True)
    assert accumulator.incomplete_indexes == {0}
    assert accumulator.cut_off_indexes == {0}
    assert accumulator.tool_calls[0]["function"]["arguments"] == '{"city": "Pa'


def test_streaming_call_with_broken_arguments_gives_the_rest_back_as_content():
    parser = make_parser("generic", TOOL_NAMES)
    events = parser.feed(
        '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": oops}}[END_TOOL_REQUEST] ok'
    )
    events += parser.finish()
    accumulator = ToolCallAccumulator()
    accumulator.add(events)
    assert accumulator.incomplete_indexes == {0}
    assert accumulator.content == "oops}}[END_TOOL_REQUEST] ok"


def test_unknown_tool_name_is_still_reported_for_marked_families():
    content, calls = parse_tool_calls(
        "hermes", '<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>', TOOL_NAMES
    )
    assert content is None and calls[0]["function"]["name"] == "launch_rocket"


def test_call_without_arguments_key_gets_empty_object():
    _, calls = parse_tool_calls("hermes", '<tool_call>{"name": "get_time"}</tool_call>', TOOL_NAMES)
    assert calls[0]["function"]["arguments"] == "{}"


def test_openai_shape_of_parsed_calls():
    _, calls = parse_tool_calls("generic", SAMPLES[6][1], TOOL_NAMES)
    (call,) = calls
    assert set(call) == {"id", "type", "function"}
    assert call["type"] == "function" and call["id"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_content_only_output():
    assert parse_tool_calls("hermes", "Just text.", TOOL_NAMES) == ("Just text.", [])
    assert parse_tool_calls("hermes", "", TOOL_NAMES) == (None, [])


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError):
        make_parser("nope", [])


def test_feed_after_finish_is_an_error():
    parser = make_parser("generic", [])
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")


def test_seed_parameters_follow_the_schema_types():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"zip": {"type": "string"}, "count": {"type": "integer"}},
                },
            },
        }
    ]
    text = (
        "<seed:tool_call><function=lookup><parameter=zip>01234</parameter>"
        "<parameter=count>2</parameter></function></seed:tool_call>"
    )
    _, calls = parse_tool_calls("seed_oss", text, ["lookup"], tools)
    assert json.loads(calls[0]["function"]["arguments"]) == {"zip": "01234", "count": 2}


def test_xml_value_conversion():
    assert xml_value_to_json("\nhello\n") == '"hello"'
    assert xml_value_to_json("3") == "3"
    assert xml_value_to_json("3", {"type": "string"}) == '"3"'
    assert xml_value_to_json('["a"]', {"type": "array"}) == '["a"]'
    assert xml_value_to_json("true", {"type": ["boolean", "null"]}) == "true"
    assert xml_value_to_json("maybe", {"type": "boolean"}) == '"maybe"'


def test_reasoning_is_split_before_tool_parsing():
    text = (
        '<think>\nShould I write <tool_call>{"name": "get_time", "arguments": {}}</tool_call>? '
        "No, weather.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    splitter = ReasoningSplitter()
    parser = make_parser("hermes", TOOL_NAMES)
    reasoning, accumulator = "", ToolCallAccumulator()
    for ch in text:
        for kind, piece in splitter.feed(ch):
            if kind == "reasoning":
                reasoning += piece
            else:
                accumulator.add(parser.feed(piece))
    for _kind, piece in splitter.finish():
        accumulator.add(parser.feed(piece))
    accumulator.add(parser.finish())
    assert "get_time" in reasoning
    assert [c["function"]["name"] for c in accumulator.tool_calls] == ["get_weather"]
    assert accumulator.content == ""


def test_harmony_pipeline_splitter_then_parser():
    text = (
        "<|channel|>analysis<|message|>User wants weather; call get_weather.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city":"Paris"}<|call|>'
    )
    for chunks in ([text], list(text)):
        splitter, parser = HarmonySplitter(), make_parser("harmony", TOOL_NAMES)
        reasoning, accumulator = "", ToolCallAccumulator()
        pieces = [p for chunk in chunks for p in splitter.feed(chunk)] + splitter.finish()
        for kind, piece in pieces:
            if kind == "reasoning":
                reasoning += piece
            else:
                accumulator.add(parser.feed(piece))
        accumulator.add(parser.finish())
        assert reasoning == "User wants weather; call get_weather."
        assert accumulator.content == ""
        assert [
            (c["function"]["name"], c["function"]["arguments"]) for c in accumulator.tool_calls
        ] == [("get_weather", '{"city":"Paris"}')]


def test_harmony_recipient_first_header_and_missing_call_token():
    text = (
        '<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{"tz": "UTC"}'
    )
    assert _summary(*parse_tool_calls("harmony", text, TOOL_NAMES)) == (
        None,
        [("get_time", '{"tz": "UTC"}')],
    )


# -- family detection ---------------------------------------------------------------------

TEMPLATES = {
    "hermes": (
        "{%- if tools %}<|im_start|>system\n# Tools\n<tools>{% for tool in tools %}{{ tool | tojson }}"
        "{% endfor %}</tools>\nFor each function call, return a json object within "
        "<tool_call></tool_call> XML tags{% endif %}"
    ),
    "llama3": (
        "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{%- if tools is not none %}"
        "{{- 'Environment: ipython\\n' }}{%- endif %}{%- if message.role == 'ipython' %}"
        "{{- '<|python_tag|>' + tool_call.function.name }}{% endif %}"
    ),
    "mistral": "{%- if tools %}[AVAILABLE_TOOLS]{{ tools|tojson }}[/AVAILABLE_TOOLS]{%- endif %}"
    "{%- if message.tool_calls %}[TOOL_CALLS]{{ message.tool_calls|tojson }}{% endif %}",
    "nemotron": "{%- if tools %}<AVAILABLE_TOOLS>{{ tools | tojson }}</AVAILABLE_TOOLS>{% endif %}"
    "<TOOLCALL>[{{ tool_calls }}]</TOOLCALL><think>",
    "seed_oss": "{%- set toolcall_begin_token = '<seed:tool_call>' -%}{% if tools %}{{ tools }}{% endif %}"
    "<seed:think>",
    "harmony": "<|start|>system<|message|>Reasoning: {{ reasoning_effort }}<|end|>"
    "{% if tools %}namespace functions{% endif %}<|start|>assistant<|channel|>final<|message|>",
    "generic": "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_detect_family(family):
    assert detect_family(TEMPLATES[family]) == family
    assert family in FAMILIES


def test_detect_family_without_template():
    assert detect_family(None) == "generic"
    assert detect_family("") == "generic"
    assert not template_supports_tools(None)


def test_template_supports_tools():
    assert template_supports_tools(TEMPLATES["hermes"])
    assert not template_supports_tools(TEMPLATES["generic"])


# -- names ------------------------------------------------------------------------------------


def test_snake_case():
    assert snake_case("getWeather") == "get_weather"
    assert snake_case("Get Weather") == "get_weather"
    assert snake_case("get-weather.v2") == "get_weather_v2"
    assert snake_case("HTTPRequest") == "http_request"
    assert snake_case("already_snake") == "already_snake"
    assert snake_case("***") == "tool"


def test_normalize_tool_names():
    tools = [
        {"type": "function", "function": {"name": "getWeather", "description": "d"}},
        {"type": "function", "function": {"name": "get-weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": ""}},
    ]
    original = json.dumps(tools)
    normalized, mapping = normalize_tool_names(tools)
    names = [t["function"]["name"] for t in normalized]
    assert names == ["get_weather", "get_weather_2", "tool"]
    assert mapping == {"get_weather": "getWeather", "get_weather_2": "get-weather", "tool": ""}
    assert normalized[0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert normalized[1]["function"]["parameters"] == {"type": "object"}
    assert json.dumps(tools) == original  # input untouched
    assert original_tool_name("get_weather_2", mapping) == "get-weather"
    assert original_tool_name("other", mapping) == "other"


def test_history_names_follow_the_model_names():
    _, mapping = normalize_tool_names([{"type": "function", "function": {"name": "getWeather"}}])
    history = [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "getWeather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "1", "name": "getWeather", "content": "sunny"},
    ]
    renamed = model_names_in_history(history, mapping)
    assert renamed[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert renamed[1]["name"] == "get_weather"
    assert history[0]["tool_calls"][0]["function"]["name"] == "getWeather"


# -- generic (default) tool use ---------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_generic_system_prompt_lists_tools():
    prompt = generic_tool_system_prompt([WEATHER_TOOL])
    assert "[TOOL_REQUEST]" in prompt and "[END_TOOL_REQUEST]" in prompt
    assert "get_weather" in prompt and "Current weather for a city" in prompt
    assert json.dumps(WEATHER_TOOL["function"]["parameters"]) in prompt


CLOCK_TOOL = {"type": "function", "function": {"name": "now", "description": "The time."}}


def test_forced_system_prompt_says_only_what_the_grammar_leaves_open():
    auto = generic_tool_system_prompt([WEATHER_TOOL, CLOCK_TOOL])
    required = forced_tool_system_prompt([WEATHER_TOOL, CLOCK_TOOL], None, parallel=False)
    assert "If no tool is needed" in auto and "If no tool is needed" not in required
    assert "Example:" not in required and len(required) < len(auto)
    for text in ("get_weather", "now", json.dumps(WEATHER_TOOL["function"]["parameters"])):
        assert text in required
    assert "Reply with a tool call and nothing else" in required
    several = forced_tool_system_prompt([WEATHER_TOOL, CLOCK_TOOL], None, parallel=True)
    assert "one or more tool calls, one block each" in several
    # a named function: only that tool, and its name in the form
    named = forced_tool_system_prompt([WEATHER_TOOL, CLOCK_TOOL], "now", parallel=True)
    assert "get_weather" not in named and "Current weather" not in named
    assert '[TOOL_REQUEST]{"name": "now", "arguments"' in named


def test_converted_history_carries_the_given_instruction():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    forced = forced_tool_system_prompt([WEATHER_TOOL], None, parallel=False)
    converted = convert_messages_for_generic(messages, [WEATHER_TOOL], forced)
    assert converted[0]["content"] == "Be brief.\n\n" + forced
    default = convert_messages_for_generic(messages, [WEATHER_TOOL])
    assert default[0]["content"] == "Be brief.\n\n" + generic_tool_system_prompt([WEATHER_TOOL])
    assert messages[0]["content"] == "Be brief."  # input not modified


def test_format_tool_request_round_trips_through_the_parser():
    text = format_tool_request("get_weather", {"city": "Paris"})
    assert _summary(*parse_tool_calls("generic", text, ["get_weather"])) == (
        None,
        [("get_weather", WEATHER)],
    )


def _conversation():
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "111",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "222",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "111", "content": "18C"},
        {"role": "tool", "tool_call_id": "222", "content": "25C"},
        {"role": "user", "content": "Thanks, which is warmer?"},
    ]


def test_convert_messages_for_generic():
    messages = _conversation()
    before = json.dumps(messages)
    converted = convert_messages_for_generic(messages, [WEATHER_TOOL])
    assert json.dumps(messages) == before
    assert [m["role"] for m in converted] == ["system", "user", "assistant", "user"]
    assert converted[0]["content"].startswith("Be brief.\n\n")
    assert "[TOOL_REQUEST]" in converted[0]["content"]
    assert all("tool_calls" not in m and "tool_call_id" not in m for m in converted)
    content, calls = parse_tool_calls("generic", converted[2]["content"], ["get_weather"])
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    results = converted[3]["content"]
    assert 'Tool result for get_weather({"city": "Paris"}):\n18C' in results
    assert 'Tool result for get_weather({"city": "Rome"}):\n25C' in results
    assert results.endswith("Thanks, which is warmer?")


def test_convert_messages_inserts_a_system_message():
    converted = convert_messages_for_generic([{"role": "user", "content": "hi"}], [WEATHER_TOOL])
    assert converted[0]["role"] == "system" and "get_weather" in converted[0]["content"]
    assert converted[1] == {"role": "user", "content": "hi"}


def test_converted_history_renders_with_a_plain_template():
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(message)

    # a template that insists on alternating roles and knows no tools
    template = (
        "{% for message in messages %}"
        "{% if message.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}"
        "{% if loop.index0 > 1 and message.role == messages[loop.index0 - 1].role %}"
        "{{ raise_exception('roles must alternate') }}{% endif %}"
        "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n"
    )
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    rendered = environment.from_string(template).render(
        messages=convert_messages_for_generic(_conversation(), [WEATHER_TOOL]),
        raise_exception=raise_exception,
    )
    assert rendered.count("[TOOL_REQUEST]") >= 3  # prompt example/format + two calls
    assert "25C" in rendered
    assert jinja2 is not None


def test_mutated_outputs_never_raise_and_never_lose_text():
    """Seeded fuzzing: broken, truncated and glued samples parse the same whole or
    char by char, and an output without calls comes back verbatim as content, except
    for a call block the output's end cut off (dropped as markup, or a cut-off call)."""
    import random

    rng = random.Random(4)
    for _ in range(300):
        family, text, _, _ = rng.choice(SAMPLES)
        if rng.random() < 0.5:
            text += rng.choice(["", " ", "\n", "tail text", rng.choice(SAMPLES)[1]])
        for _ in range(rng.randint(0, 3)):
            cut = rng.randint(0, len(text))
            operation = rng.random()
            if operation < 0.3:
                text = text[:cut] + text[cut + 1 :]
            elif operation < 0.6:
                text = text[:cut] + rng.choice('{}[]",: \n<>|x') + text[cut:]
            else:
                text = text[:cut]
        content, calls = parse_tool_calls(family, text, TOOL_NAMES)
        whole, _ = _run_chunks(family, [text], stream_arguments=False)
        if not calls:
            assert text.startswith(content or "")
            if (content or "") != text:  # only markup cut off at the end is dropped
                dropped = text[len(content or "") :]
                # (or, in Llama 3, a bare-JSON call cut off in its name)
                assert any(marker[:1] in dropped for marker in PARSERS[family].markers) or (
                    family == "llama3" and not content and dropped.lstrip()[:1] in ("{", "[")
                )
        for index, call in enumerate(calls):
            if index not in whole.cut_off_indexes:
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
        for stream_arguments in (True, False):
            whole, _ = _run_chunks(family, [text], stream_arguments=stream_arguments)
            pieces, _ = _run_chunks(family, list(text), stream_arguments=stream_arguments)
            assert (whole.content, whole.tool_calls and _summary(None, whole.tool_calls)[1]) == (
                pieces.content,
                pieces.tool_calls and _summary(None, pieces.tool_calls)[1],
            )
            assert whole.incomplete_indexes == pieces.incomplete_indexes
