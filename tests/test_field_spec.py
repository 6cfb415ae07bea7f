"""The field declarations (``lms_jupyter/api/spec``): one declaration gives the parser's
check and the schema's rule, presets are checked by the same declarations, and chat's
``response_format`` and the Responses API's ``text.format`` share one checker whose errors
keep each API's own paths. Plain Python, no server."""

from __future__ import annotations

import pytest

from lms_jupyter.api.fields import metadata
from lms_jupyter.api.lmstudio.chat.request import responses_body
from lms_jupyter.api.openai import features, requests
from lms_jupyter.api.responses import request as responses_request
from lms_jupyter.api.schemas import component_schemas
from lms_jupyter.api.spec import lmstudio as lms_spec
from lms_jupyter.api.spec import openai as spec
from lms_jupyter.api.spec.field import Field
from lms_jupyter.errors import APIError

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _error(call, *args) -> tuple[str, str | None]:
    with pytest.raises(APIError) as caught:
        call(*args)
    return caught.value.message, caught.value.param


def test_a_bound_is_declared_once_for_the_parser_and_the_schema():
    temperature = spec.CHAT["temperature"]
    assert component_schemas()["ChatCompletionRequest"]["properties"]["temperature"] == {
        "type": ["number", "null"],
        "minimum": temperature.lo,
        "maximum": temperature.hi,
    }
    assert _error(requests.chat_request, {**CHAT, "temperature": temperature.hi + 1}) == (
        f"'temperature' must be between 0 and 5 (got {temperature.hi + 1}).",
        "temperature",
    )
    assert (
        requests.chat_request({**CHAT, "temperature": None}).sampling.temperature
        == temperature.default
    )


def test_aliases_are_named_as_the_client_spelled_them():
    schema = component_schemas()["ChatCompletionRequest"]["properties"]
    assert all(name in schema for name in spec.MAX_TOKENS.aliases)
    assert _error(requests.chat_request, {**CHAT, "max_completion_tokens": 0}) == (
        "'max_completion_tokens' must be positive, or -1 for no limit.",
        "max_completion_tokens",
    )
    assert requests.chat_request({**CHAT, "max_output_tokens": 7}).max_tokens == 7


def test_exclusive_bound_and_enum_fields():
    assert _error(spec.TTL.read, {"ttl": 0}) == (
        "'ttl' must be a positive number of seconds (got 0).",
        "ttl",
    )
    assert _error(spec.ENCODING_FORMAT.read, {"encoding_format": ""}) == (
        "'encoding_format' must be 'float' or 'base64'.",
        "encoding_format",
    )
    assert spec.ENCODING_FORMAT.read({}) == "float"
    made = Field("level", "enum", enum=("a", "b", "c"))
    assert _error(made.read, {"level": ["a"]}) == ("'level' must be 'a', 'b' or 'c'.", "level")
    assert made.schema() == {"anyOf": [{"enum": ["a", "b", "c"]}, {"type": "null"}]}


def test_presets_are_checked_by_the_request_fields_declarations():
    assert set(requests.PRESET_SETTINGS) == {f.name for f in lms_spec.PRESET_FIELDS}
    for declared in spec.SAMPLING:
        message, _ = _error(requests.preset_settings, {declared.name: "x"})
        assert message == f"'{declared.name}' must be " + (
            "an integer." if declared.integer else "a number."
        )
    assert (
        _error(requests.preset_settings, {"response_format": {"type": "xml"}})[0]
        == "'response_format.type' must be 'text', 'json_object' or 'json_schema' (got 'xml')."
    )
    assert _error(requests.preset_settings, {"frob": 1})[0].startswith(
        "Unknown preset settings: frob. Known: context_length, flash_attention"
    )


@pytest.mark.parametrize(
    "chat_format, text_format, chat_error, text_error",
    [
        (
            {"type": "xml"},
            {"type": "xml"},
            (
                "'response_format.type' must be 'text', 'json_object' or 'json_schema' (got 'xml').",
                "response_format",
            ),
            (
                "'text.format.type' must be 'text', 'json_object' or 'json_schema' (got 'xml').",
                "text.format.type",
            ),
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {}, "strict": 1}},
            {"type": "json_schema", "schema": {}, "strict": 1},
            ("'response_format.json_schema.strict' must be a boolean.", "response_format"),
            ("'text.format.strict' must be a boolean.", "text.format.strict"),
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": 3}},
            {"type": "json_schema", "schema": 3},
            (
                "'response_format.json_schema.schema' must be a JSON schema object.",
                "response_format",
            ),
            ("'text.format.schema' must be a JSON schema object.", "text.format.schema"),
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {"type": "frob"}}},
            {"type": "json_schema", "schema": {"type": "frob"}},
            "Unsupported response_format schema",
            "Unsupported text.format schema",
        ),
    ],
)
def test_response_format_and_text_format_share_one_checker(
    chat_format, text_format, chat_error, text_error
):
    chat = _error(features.format_grammar, chat_format, features.CHAT_FORMAT)
    text = _error(
        responses_request.parse, {"model": "m", "input": "hi", "text": {"format": text_format}}
    )
    if isinstance(chat_error, str):
        assert chat[0].startswith(chat_error) and chat[1] == "response_format"
        assert text[0].startswith(text_error) and text[1] == "text.format"
    else:
        assert (chat, text) == (chat_error, text_error)


def test_both_formats_compile_the_same_grammar():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    chat = requests.chat_request(
        {
            **CHAT,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        }
    )
    text = responses_request.parse(
        {
            "model": "m",
            "input": "hi",
            "text": {"format": {"type": "json_schema", "name": "x", "schema": schema}},
        }
    )
    assert chat.features.format_grammar and chat.features.format_grammar == text.format_grammar


def test_metadata_has_one_rule_for_responses_and_batches():
    assert metadata({"metadata": {"k": "v"}}) == {"k": "v"}
    for bad in ({"k": 1}, {str(i): "v" for i in range(17)}, {"k" * 65: "v"}, "x"):
        assert _error(metadata, {"metadata": bad})[1] == "metadata"


def test_native_chat_reasoning_that_is_no_string_is_a_400():
    for bad in ([], {}, 3):
        message, param = _error(responses_body, {"model": "m", "input": "hi", "reasoning": bad})
        assert param == "reasoning" and message.startswith("'reasoning' must be one of off")
