"""The stream interval (``c.ModelManager.stream_interval_ms``) through a real server and
the ``openai`` client: text generated within the interval of the last delivery arrives
merged, one chunk for several tokens, and nothing is lost or reordered on the way: the
joined text equals the unstreamed answer, logprobs keep one entry per token, a forced tool
call's streamed arguments equal the unstreamed call's (vLLM's stream_interval lost them:
vllm-project/vllm#31501), and the first token is never held.

A 200 ms interval makes the merging certain even on a slow machine (SmolLM2 generates a
token in ~10 ms here); 0 sends each token alone.
"""

from __future__ import annotations

import json

import pytest
from conftest import EOS_ID, MODEL

TOKENS = 48
ASK = [{"role": "user", "content": "Tell me a long story about a fox."}]
SAME = dict(temperature=0, max_tokens=TOKENS, logit_bias={str(EOS_ID): -100}, seed=1)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _client(srv):
    from openai import OpenAI

    return OpenAI(base_url=srv.api_url, api_key=srv.token, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def clients(server_factory):
    return {
        ms: _client(server_factory(f"--ModelManager.stream_interval_ms={ms}")) for ms in (200, 0)
    }


def _stream(client, **body) -> list:
    chunks = client.chat.completions.create(
        model=MODEL, messages=ASK, stream=True, stream_options={"include_usage": True}, **body
    )
    return list(chunks)


def _content(chunks) -> list:
    return [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]


def test_merged_chunks_carry_every_token_in_order(clients):
    client = clients[200]
    whole = client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, **SAME)
    chunks = _stream(client, logprobs=True, **SAME)
    content = _content(chunks)
    assert "".join(c.delta.content for c in content) == whole.choices[0].message.content
    tokens = [entry.token for c in content for entry in c.logprobs.content]
    assert tokens == [entry.token for entry in whole.choices[0].logprobs.content]
    assert chunks[-1].usage.completion_tokens == TOKENS == len(tokens)
    assert len(content) <= TOKENS // 2, f"{len(content)} chunks for {TOKENS} tokens: not merged"
    assert len(content[0].logprobs.content) == 1, "the first token was held"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_interval_zero_sends_each_token_alone(clients):
    content = _content(_stream(clients[0], logprobs=True, **SAME))
    assert len(content) == TOKENS
    assert all(len(c.logprobs.content) == 1 for c in content)


def test_a_forced_tool_calls_streamed_arguments_are_whole(clients):
    client = clients[200]
    body = dict(tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=60, seed=1)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    whole = client.chat.completions.create(model=MODEL, messages=ask, **body)
    (call,) = whole.choices[0].message.tool_calls
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask, stream=True, **body))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == call.function.name
    streamed = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(streamed) == json.loads(call.function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
