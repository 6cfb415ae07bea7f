"""The Anthropic Messages API (``/lms/v1/messages``) against the real server, with the
official ``anthropic`` SDK (2.x): create, the SDK's stream helper, a forced tool call and
its tool_result round trip, count_tokens, errors in Anthropic's shape, ``x-api-key`` and
``Authorization: Bearer`` with the Jupyter token and with a scoped token.

SmolLM2 rambles, so every generation is bounded by ``max_tokens`` (and tool calls by the
grammar a forced ``tool_choice`` selects)."""

from __future__ import annotations

import json

import httpx
import pytest

anthropic = pytest.importorskip("anthropic")

from conftest import MODEL  # noqa: E402

pytestmark = pytest.mark.timeout(300)

# SDK 2.x has no sampling arguments (newer Claude models take none); the server still
# reads temperature/top_p/top_k, so the tests send them as extra body fields
T0 = {"temperature": 0}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def sdk(server):
    return anthropic.Anthropic(
        base_url=server.url + "lms", api_key=server.token, max_retries=0, timeout=120
    )


def test_create(sdk):
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=12,
        extra_body=T0,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == MODEL
    assert message.content and message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 12 and message.usage.input_tokens > 0


def test_max_tokens_stop_reason_and_prompt_cache(sdk):
    kwargs = dict(
        model=MODEL,
        max_tokens=3,
        extra_body=T0,
        messages=[{"role": "user", "content": "Write a long story about a dragon and a castle."}],
    )
    first = sdk.messages.create(**kwargs)
    assert first.stop_reason == "max_tokens" and first.usage.output_tokens == 3
    second = sdk.messages.create(**kwargs)  # the same prompt: its prefix is cached
    assert second.usage.cache_read_input_tokens > 0
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == total


def test_stop_sequence(sdk):
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=40,
        extra_body=T0,
        stop_sequences=["3"],
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
    )
    if message.stop_reason == "stop_sequence":
        assert message.stop_sequence == "3" and "3" not in message.content[0].text
    else:  # the model did not count: then it must not claim a stop sequence
        assert message.stop_sequence is None


def test_stream_helper_rebuilds_the_message(sdk):
    kinds = []
    with sdk.messages.stream(
        model=MODEL, max_tokens=10, extra_body=T0, messages=[{"role": "user", "content": "Say hi."}]
    ) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds
    assert kinds.index("content_block_start") < kinds.index("content_block_stop")
    assert "message_delta" in kinds
    assert final.content[0].type == "text" and final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
    plain = sdk.messages.create(
        model=MODEL, max_tokens=10, extra_body=T0, messages=[{"role": "user", "content": "Say hi."}]
    )
    assert plain.content[0].text == final.content[0].text


def test_raw_sse_events(server):
    body = {
        "model": MODEL,
        "max_tokens": 5,
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    names = []
    with httpx.stream(
        "POST",
        server.url + "lms/v1/messages",
        json=body,
        timeout=60,
        headers={"x-api-key": server.token, "anthropic-version": "2023-06-01"},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == event  # the event name and the data agree
                names.append(event)
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in names


def test_forced_tool_call_and_tool_result_round_trip(sdk):
    question = {"role": "user", "content": "What is the weather in Paris?"}
    message = sdk.messages.create(
        model=MODEL,
        max_tokens=60,
        extra_body=T0,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[question],
    )
    assert message.stop_reason == "tool_use"
    call = next(b for b in message.content if b.type == "tool_use")
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert isinstance(call.input, dict) and isinstance(call.input.get("city"), str)
    answer = sdk.messages.create(
        model=MODEL,
        max_tokens=20,
        extra_body=T0,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": message.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 degrees."}
                ],
            },
        ],
    )
    assert answer.content and answer.content[0].type in ("text", "tool_use")
    assert (
        answer.usage.input_tokens + answer.usage.cache_read_input_tokens
        > message.usage.input_tokens
    )  # the call and its result are in the prompt


def test_tool_choice_any_streams_input_json(sdk):
    deltas = []
    with sdk.messages.stream(
        model=MODEL,
        max_tokens=60,
        extra_body=T0,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Rome?"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                deltas.append(event.delta.partial_json)
        final = stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use" and call.name == "get_weather"
    assert json.loads("".join(deltas)) == call.input


def test_count_tokens(sdk):
    small = sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    larger = sdk.messages.count_tokens(
        model=MODEL,
        tools=[WEATHER],
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert 0 < small.input_tokens < larger.input_tokens
    made = sdk.messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "Hi"}]
    )
    assert made.usage.input_tokens + made.usage.cache_read_input_tokens == small.input_tokens


def test_errors_are_anthropic_error_objects(sdk, server):
    with pytest.raises(anthropic.NotFoundError) as err:
        sdk.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "not_found_error"
    cases = [
        ({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "role",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "tool_choice": {"type": "any"},
                "messages": [{"role": "user", "content": "Hi"}],
            },
            "tools",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}
                        ],
                    }
                ],
            },
            "tool_use_id",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "temperature": 1.5,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            "temperature",
        ),
    ]
    for body, word in cases:
        r = httpx.post(
            server.url + "lms/v1/messages",
            json=body,
            timeout=30,
            headers={"x-api-key": server.token},
        )
        assert r.status_code == 400, body
        error = r.json()
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert word in error["error"]["message"]
    r = httpx.post(
        server.url + "lms/v1/messages",
        content=b"{nope",
        timeout=30,
        headers={"x-api-key": server.token},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_x_api_key_bearer_and_scoped_tokens(server):
    bad = anthropic.Anthropic(base_url=server.url + "lms", api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.body["error"]["type"] == "authentication_error"
    r = httpx.post(
        server.url + "lms/v1/messages/count_tokens",
        timeout=30,
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    created = httpx.post(
        server.url + "lms/api/v1/tokens",
        json={"name": "claude"},
        headers=server.headers,
        timeout=30,
    ).json()
    scoped = created["token"]
    for client in (
        anthropic.Anthropic(base_url=server.url + "lms", api_key=scoped, max_retries=0),
        anthropic.Anthropic(
            base_url=server.url + "lms", auth_token=scoped, api_key=None, max_retries=0
        ),
        anthropic.Anthropic(
            base_url=server.url + "lms", auth_token=server.token, api_key=None, max_retries=0
        ),
    ):
        counted = client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        )
        assert counted.input_tokens > 0
    httpx.delete(
        server.url + f"lms/api/v1/tokens/{created['id']}", headers=server.headers, timeout=30
    )
    revoked = anthropic.Anthropic(base_url=server.url + "lms", api_key=scoped, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        revoked.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hi"}])


def test_models_list_keeps_openai_shape(sdk, server):
    r = httpx.get(server.url + "lms/v1/models", headers={"x-api-key": server.token}, timeout=30)
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert MODEL in [m["id"] for m in r.json()["data"]]
