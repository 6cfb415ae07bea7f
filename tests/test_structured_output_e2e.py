"""Structured output end to end: response_format grammars on the real server with
SmolLM2 and the openai client (create and parse). Schemas bound every string and array
so a 135M model always finishes within max_tokens."""

from __future__ import annotations

import json
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
from conftest import MODEL
from pydantic import BaseModel, Field

pytestmark = [pytest.mark.timeout(300), pytest.mark.wire_hygiene]

CITY_SCHEMA = {
    "type": "object",
    "$defs": {
        "landmark": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 12},
                "kind": {"enum": ["museum", "tower", "park", "church"]},
            },
            "required": ["name", "kind"],
            "additionalProperties": False,
        },
    },
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 12},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 99},
        "landmarks": {
            "type": "array",
            "items": {"$ref": "#/$defs/landmark"},
            "minItems": 1,
            "maxItems": 1,
        },
    },
    "required": ["city", "population_millions", "landmarks"],
    "additionalProperties": False,
}
PARIS = [{"role": "user", "content": "Describe Paris as JSON."}]
COMMON = dict(model=MODEL, temperature=0, seed=5, max_tokens=100)
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "city", "strict": True, "schema": CITY_SCHEMA},
}


def test_json_schema_output_validates_and_streams_the_same(client):
    full = client.chat.completions.create(
        messages=PARIS, response_format=JSON_SCHEMA_FORMAT, **COMMON
    )
    choice = full.choices[0]
    assert choice.finish_reason == "stop"
    data = json.loads(choice.message.content)
    jsonschema.validate(data, CITY_SCHEMA)
    stream = client.chat.completions.create(
        messages=PARIS, response_format=JSON_SCHEMA_FORMAT, stream=True, **COMMON
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert json.loads(text) == data  # whitespace may differ: the prompt is cached by then


def test_json_object_output_is_an_object(client):
    resp = client.chat.completions.create(
        messages=[{"role": "user", "content": "Give me a JSON object with a greeting."}],
        response_format={"type": "json_object"},
        **dict(COMMON, max_tokens=40),
    )
    choice = resp.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:  # free-form JSON is not bounded; a cut-off answer must still start as an object
        assert choice.message.content.lstrip().startswith("{")


def test_text_format_is_plain_text(client):
    resp = client.chat.completions.create(
        messages=[{"role": "user", "content": "Say hi."}],
        response_format={"type": "text"},
        **dict(COMMON, max_tokens=8),
    )
    assert resp.choices[0].message.content


class Landmark(BaseModel):
    name: str = Field(max_length=12)
    kind: Literal["museum", "tower", "park"]


class City(BaseModel):
    city: str = Field(max_length=12)
    landmarks: list[Landmark] = Field(max_length=1)


def test_parse_with_a_pydantic_model(client):
    completion = client.chat.completions.parse(messages=PARIS, response_format=City, **COMMON)
    message = completion.choices[0].message
    assert isinstance(message.parsed, City)
    assert len(message.parsed.city) <= 12 and len(message.parsed.landmarks) <= 1
    assert City.model_validate_json(message.content) == message.parsed


@pytest.mark.parametrize(
    "response_format",
    [
        {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
                },
            },
        },
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "yaml"},
        "json",
    ],
)
def test_bad_response_format_is_a_400(server, response_format):
    body = {"model": MODEL, "messages": PARIS, "max_tokens": 5, "response_format": response_format}
    r = httpx.post(
        server.api_url + "/chat/completions", json=body, headers=server.headers, timeout=60
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "response_format" and error["type"] == "invalid_request_error"


def test_unsupported_schema_through_the_sdk_names_the_keyword(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            messages=PARIS,
            max_tokens=5,
            model=MODEL,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}},
            },
        )
    assert "pattern" in info.value.message
