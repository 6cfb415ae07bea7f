"""The wiring between the pure tool / reasoning layer and the chat pipeline, without a
model: request validation, the plan for a template, and the deltas/message of ChatOutput."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from family_templates import QWEN_STYLE

from lms_jupyter.api.openai import features as api_features
from lms_jupyter.api.openai import requests
from lms_jupyter.api.openai.encode import chat_delta, chat_message
from lms_jupyter.chat import plan as chat_features
from lms_jupyter.chat.grammar import json_schema_to_gbnf, union_gbnf
from lms_jupyter.chat.output import ChatOutput
from lms_jupyter.chat.reasoning import ReasoningSplitter
from lms_jupyter.chat.templates import render_chat
from lms_jupyter.chat.toolcalls import make_parser
from lms_jupyter.engine.instance import Capabilities
from lms_jupyter.engine.local.llama import gbnf_compiles
from lms_jupyter.errors import APIError

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "Get Weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PING = {"type": "function", "function": {"name": "ping"}}


def fake_model(template):
    # no vocabulary to check markers against, as a remote engine's model
    return SimpleNamespace(
        variant=SimpleNamespace(chat_template=template, path="fake.gguf"),
        capabilities=Capabilities(vocabulary=False),
    )


def plan(template, body, messages=None):
    """The plan for a request, parsed as the API parses it."""
    request = requests.chat_request(
        {"model": "m", "messages": messages or [{"role": "user", "content": "hi"}], **body}
    )
    return chat_features.plan_chat(fake_model(template), request.features, request.messages)


def error_of(call) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    assert info.value.status == 400
    return info.value


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, param",
    [
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": ["x"]}, "tools[0]"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "a", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [PING, PING]}, "tools"),
        ({"tools": [PING], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [PING], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [PING], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}},
                }
            },
            "response_format",
        ),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning": "high"}, "reasoning"),
        ({"reasoning": {"effort": 3}}, "reasoning.effort"),
    ],
)
def test_bad_fields_are_400_naming_the_field(body, param):
    error = error_of(lambda: plan(CHATML, body))
    assert error.param == param and error.type == "invalid_request_error"


def test_unsupported_schema_message_names_the_keyword():
    body = {
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {"code": {"type": "string", "pattern": "[A-Z]+"}},
                },
            },
        }
    }
    assert "'pattern'" in error_of(lambda: plan(CHATML, body)).message


def test_forced_tool_with_unenforceable_parameters_is_400():
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"x": {"type": "string", "pattern": "a"}},
            },
        },
    }
    assert (
        error_of(lambda: plan(CHATML, {"tools": [tool], "tool_choice": "required"})).param
        == "tools"
    )
    assert plan(CHATML, {"tools": [tool]}).grammar is None  # "auto" forces nothing


def test_bad_history_tool_calls_are_400():
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": "get_weather()"},
    ]
    assert error_of(lambda: plan(CHATML, {}, messages)).param == "messages[1].tool_calls"


def test_flat_tools_and_tool_choice_are_accepted():
    settings = api_features.tool_settings(
        {
            "tools": [{"type": "function", "name": "ping"}],
            "tool_choice": {"type": "function", "name": "ping"},
        }
    )
    assert settings.forced_name == "ping" and settings.tools[0]["function"]["name"] == "ping"


# -- planning -------------------------------------------------------------------------------


def test_generic_family_rewrites_history_and_keeps_tools_out_of_the_template():
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "123456789",
                    "type": "function",
                    "function": {"name": "Get Weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "123456789", "content": "sunny"},
    ]
    p = plan(CHATML, {"tools": [WEATHER]}, messages)
    assert p.family == "generic" and p.tools is None and p.grammar is None
    assert p.name_map == {"get_weather": "Get Weather"}
    prompt = render_chat(CHATML, p.messages)
    assert "[TOOL_REQUEST]" in prompt and "get_weather" in prompt
    assert '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    # the result names its call by what was called (a random id would be copied by the model)
    assert 'Tool result for get_weather({"city": "Paris"}):\nsunny' in prompt
    assert "123456789" not in prompt and "<|im_start|>tool" not in prompt


def test_tool_choice_none_renders_history_without_offering_tools():
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "Get Weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
    ]
    p = plan(CHATML, {"tools": [WEATHER], "tool_choice": "none"}, messages)
    assert p.family is None and p.grammar is None
    prompt = render_chat(CHATML, p.messages)
    assert "Available tools" not in prompt and "Tool result for get_weather():" in prompt
    # no tools at all, but a tool conversation: still rendered as plain turns
    assert "Tool result" in render_chat(CHATML, plan(CHATML, {}, messages).messages)


def test_native_family_gets_tools_and_object_arguments():
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "Get Weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
    ]
    p = plan(QWEN_STYLE, {"tools": [WEATHER], "tool_choice": "required"}, messages)
    assert p.family == "hermes" and p.tools[0]["function"]["name"] == "get_weather"
    assert '"<tool_call>\\n"' in p.grammar and gbnf_compiles(p.grammar)
    prompt = render_chat(QWEN_STYLE, p.messages, tools=p.tools)
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert "<tool_response>\nsunny\n</tool_response>" in prompt
    # a grammar forces the answer, so the opened <think> block is not split off
    assert p.reasoning is None
    assert plan(QWEN_STYLE, {}).reasoning["opens_in_prompt"] is True


def test_reasoning_effort_reaches_template_variables():
    assert plan(QWEN_STYLE, {"reasoning_effort": "none"}).variables == {"enable_thinking": False}
    assert plan(QWEN_STYLE, {"reasoning": {"effort": "high"}}).variables == {
        "enable_thinking": True
    }
    assert plan(CHATML, {"reasoning_effort": "low"}).variables == {}


def test_named_choice_grammar_uses_the_model_name_and_one_call():
    body = {
        "tools": [WEATHER, PING],
        "tool_choice": {"type": "function", "function": {"name": "Get Weather"}},
    }
    grammar = plan(CHATML, body).grammar
    assert "get_weather" in grammar and "ping" not in grammar and gbnf_compiles(grammar)


def test_parallel_calls_only_when_asked():
    single = plan(CHATML, {"tools": [PING], "tool_choice": "required"}).grammar
    several = plan(
        CHATML, {"tools": [PING], "tool_choice": "required", "parallel_tool_calls": True}
    ).grammar
    assert single != several and "*" in several.splitlines()[0]


def test_auto_with_json_format_accepts_a_call_or_the_answer():
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 5}}}
    p = plan(
        CHATML,
        {
            "tools": [PING],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": schema},
            },
        },
    )
    assert p.grammar.startswith("root ::= g0-root | g1-root") and gbnf_compiles(p.grammar)
    assert p.family == "generic"


def test_union_gbnf_keeps_literals_and_bounds():
    a = json_schema_to_gbnf({"type": "string", "maxLength": 3})
    b = json_schema_to_gbnf({"enum": ["root", "ws"]})
    union = union_gbnf(a, b)
    assert '"\\"root\\""' in union and "{0,3}" in union and gbnf_compiles(union)


def test_response_format_text_and_json_object():
    assert plan(CHATML, {"response_format": {"type": "text"}}).grammar is None
    assert "json-object" in plan(CHATML, {"response_format": {"type": "json_object"}}).grammar


# -- output ---------------------------------------------------------------------------------


class Encoded:
    """A ChatOutput whose events and answer are spelled as the chat encoder sends them:
    OpenAI deltas and the assistant message."""

    def __init__(self, output: ChatOutput, field: str):
        self.output, self.field = output, field

    def _deltas(self, events) -> list[dict]:
        return [d for d in (chat_delta(e, self.field) for e in events) if d is not None]

    def feed(self, text):
        return self._deltas(self.output.feed(text))

    def finish(self):
        return self._deltas(self.output.finish())

    def message(self) -> dict:
        return chat_message(self.output.answer(), self.field)

    @property
    def tool_calls(self) -> list[dict]:
        return [call.as_openai() for call in self.output.tool_calls]

    @property
    def finish_reason_override(self):
        return self.output.finish_reason_override


def feed_all(output: Encoded, pieces) -> list[dict]:
    deltas = []
    for piece in pieces:
        deltas += output.feed(piece)
    return deltas + output.finish()


def generic_output(stream=True, name_map=None, splitter=None, field="both"):
    parser = make_parser(
        "generic", list(name_map or {"get_weather": "Get Weather"}), stream_arguments=stream
    )
    inline = ("<think>", "</think>") if field == "inline" else None
    return Encoded(
        ChatOutput(
            splitter=splitter,
            parser=parser,
            name_map=name_map or {"get_weather": "Get Weather"},
            inline_tags=inline,
        ),
        field,
    )


CALL_TEXT = (
    '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]'
)


def test_streamed_call_deltas_follow_openai_shape():
    output = generic_output()
    deltas = feed_all(output, [CALL_TEXT[i : i + 3] for i in range(0, len(CALL_TEXT), 3)])
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    first, rest = calls[0], calls[1:]
    assert first["index"] == 0 and first["id"] and first["type"] == "function"
    assert first["function"] == {"name": "Get Weather", "arguments": ""}
    assert rest and all(
        set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in rest
    )
    assert json.loads("".join(c["function"]["arguments"] for c in rest)) == {"city": "Paris"}
    assert not any("content" in d for d in deltas)
    assert output.finish_reason_override == "tool_calls"
    message = output.message()
    assert message["content"] is None and message["tool_calls"][0]["id"] == first["id"]


def test_whole_and_streamed_parsing_agree():
    text = "Let me check.\n" + CALL_TEXT + "\n" + CALL_TEXT.replace("Paris", "Rome")
    whole = generic_output(stream=False)
    feed_all(whole, [text])
    streamed = generic_output(stream=True)
    feed_all(streamed, list(text))
    for output in (whole, streamed):
        message = output.message()
        assert message["content"] == "Let me check."
        assert [c["function"]["name"] for c in message["tool_calls"]] == ["Get Weather"] * 2
    ids = [c["id"] for c in whole.message()["tool_calls"]]
    assert len(set(ids)) == 2 and all(ids)
    assert [c["function"]["arguments"] for c in whole.tool_calls] == [
        c["function"]["arguments"] for c in streamed.tool_calls
    ]


def test_unparseable_call_falls_back_to_content():
    text = '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": Paris}}'
    output = generic_output(stream=False)
    deltas = feed_all(output, [text])
    assert output.finish_reason_override is None
    assert output.message() == {"role": "assistant", "content": text}
    assert "".join(d.get("content", "") for d in deltas) == text


def test_plain_text_with_a_parser_is_unchanged():
    text = "Hello there.\n\nHow are you?  \n"
    output = generic_output()
    deltas = feed_all(output, list(text))
    assert "".join(d["content"] for d in deltas) == text
    assert output.message()["content"] == text and "tool_calls" not in output.message()


@pytest.mark.parametrize(
    "field, expected",
    [
        ("both", {"reasoning": "plan", "reasoning_content": "plan"}),
        ("reasoning", {"reasoning": "plan"}),
        ("reasoning_content", {"reasoning_content": "plan"}),
    ],
)
def test_reasoning_fields(field, expected):
    output = generic_output(splitter=ReasoningSplitter(), field=field)
    deltas = feed_all(output, ["<think>pl", "an</think>", "Answer"])
    joined: dict[str, str] = {}
    for delta in deltas:
        for key, value in delta.items():
            if key != "content":
                joined[key] = joined.get(key, "") + value
    assert joined == expected
    message = output.message()
    assert message["content"] == "Answer"
    assert {k: message[k] for k in expected} == expected


def test_reasoning_inline_and_never_parsed_for_calls():
    output = generic_output(splitter=ReasoningSplitter(), field="inline")
    deltas = feed_all(output, ["<think>maybe " + CALL_TEXT + "</think>", "No call."])
    text = "".join(d.get("content", "") for d in deltas)
    assert text == "<think>maybe " + CALL_TEXT + "</think>No call."
    assert output.message()["content"] == text and output.finish_reason_override is None
    hidden = generic_output(splitter=ReasoningSplitter())
    feed_all(hidden, ["<think>" + CALL_TEXT + "</think>Done."])
    assert hidden.message()["content"] == "Done." and "tool_calls" not in hidden.message()


def test_output_factory_without_plan_is_plain():
    assert chat_features.output_factory(None, stream=False) is ChatOutput
    with pytest.raises(ValueError):
        chat_features.output_factory(None, stream=False, reasoning_field="bogus")


# -- log-probabilities: which tokens are content --------------------------------------------------


def run_with_logprobs(output: ChatOutput, pieces: list[str]):
    """Feed ``pieces`` (one token each) as the driving step does; the content, the tokens
    attached to content events, and the events."""
    from lms_jupyter.chat.events import ContentDelta as Content
    from lms_jupyter.chat.logprobs import ContentLogprobs
    from lms_jupyter.engine.events import TokenLogprob

    aligner, events = ContentLogprobs(), []
    for i, piece in enumerate(pieces):
        aligner.add(piece, [TokenLogprob(piece, -float(i), tuple(piece.encode()))])
        events += aligner.attach(output.feed(piece))
    events += aligner.attach(output.finish())
    attached = [t for e in events if isinstance(e, Content) for t in e.logprobs]
    assert attached == aligner.content
    return output.answer().content, [t.token for t in attached], events


def test_logprobs_cover_content_not_reasoning():
    pieces = [
        "<think>",
        "\n",
        "Hello",
        " there",
        "\n",
        "</",
        "think",
        ">",
        "\n\n",
        "Hello",
        " there",
        "!",
    ]
    content, tokens, _ = run_with_logprobs(ChatOutput(splitter=ReasoningSplitter()), pieces)
    # the reasoning says the same words as the answer: they must not take its tokens
    assert content == "Hello there!" and tokens == ["Hello", " there", "!"]


def test_logprobs_leave_tool_calls_out():
    parser = make_parser("generic", ["get_weather"], [WEATHER], stream_arguments=True)
    pieces = [
        "Sure",
        ".",
        " ",
        "[TOOL_REQUEST]",
        '{"name": "get_weather", ',
        '"arguments": {"city": "Rome"}}',
        "[END_TOOL_REQUEST]",
    ]
    content, tokens, events = run_with_logprobs(ChatOutput(parser=parser), pieces)
    assert any(type(e).__name__ == "ToolCallStart" for e in events)
    assert content == "Sure." and "".join(tokens) == "Sure."


def test_logprobs_inline_reasoning_counts_as_content():
    output = ChatOutput(splitter=ReasoningSplitter(), inline_tags=("<think>", "</think>"))
    pieces = ["<think>", "Hmm", "</think>", "Yes"]
    content, tokens, _ = run_with_logprobs(output, pieces)
    assert content == "<think>Hmm</think>Yes" and tokens == pieces
