"""The wire-hygiene check that guards the tool and structured-output suites (issue 26) can
fail: it catches a marker injected into a body, a stream delta (also gzipped and split
across chunks) and a normalised tool name, through the openai SDK (httpx2) and httpx, and
the conftest hook fails the test that received it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from wire_markers import WireInspector

pytest_plugins = ["pytester"]

BOOKING = {
    "type": "function",
    "function": {"name": "bookFlight", "parameters": {"type": "object", "properties": {}}},
}


def completion(content=None, calls=None) -> dict:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, "tool_calls": calls},
            }
        ],
    }


def sse(*deltas: dict) -> bytes:
    events = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": d, "finish_reason": None}],
        }
        for d in deltas
    ]
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


class Chunked(httpx2.SyncByteStream):
    """A body that arrives in small pieces, so events straddle chunk boundaries."""

    def __init__(self, body: bytes, size: int = 7) -> None:
        self.pieces = [body[i : i + size] for i in range(0, len(body), size)]

    def __iter__(self):
        yield from self.pieces


def sdk(body: bytes | dict, *, stream: bool = False, gzipped: bool = False) -> openai.OpenAI:
    def handler(request):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "text/event-stream" if stream else "application/json"}
        if gzipped:
            raw, headers["content-encoding"] = gzip.compress(raw), "gzip"
        return httpx2.Response(200, headers=headers, stream=Chunked(raw))

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(base_url="http://test/v1", api_key="k", http_client=http)


def ask(client, **kwargs):
    return client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], **kwargs
    )


def test_clean_responses_pass_and_are_looked_at():
    inspector = WireInspector()
    with inspector.installed():
        ask(sdk(completion("The sky is blue.")))
        list(ask(sdk(sse({"content": "Blue"}, {"content": "."}), stream=True), stream=True))
    assert inspector.found == [] and inspector.checked >= 3


@pytest.mark.parametrize("content", ["[END_TOOL_REQUEST", "<|python_tag|>{", "x</tool_call>"])
def test_marker_in_a_body_is_caught(content):
    inspector = WireInspector()
    with inspector.installed():
        ask(sdk(completion(content)))
    assert inspector.found and content[:6] in inspector.found[0]


@pytest.mark.parametrize("gzipped", [False, True])
def test_marker_in_a_stream_delta_is_caught(gzipped):
    inspector = WireInspector()
    body = sse({"content": "Sure "}, {"content": "<tool_"}, {"content": "call>{"})
    with inspector.installed():
        # split over deltas the marker is in no single event, but in the joined content
        list(ask(sdk(body, stream=True, gzipped=gzipped), stream=True))
        assert (
            len(inspector.found) == 1
            and "joined /choices/0/delta/content" in inspector.found[0]
            and "<tool_call" in inspector.found[0]
        )
        inspector.found.clear()
        leaky = sse(
            {"content": "ok"},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}[END_TOOL_REQUEST]'}}]},
        )
        list(ask(sdk(leaky, stream=True, gzipped=gzipped), stream=True))
    # the event, and the joined arguments
    assert len(inspector.found) == 2 and all("[END_TOOL" in f for f in inspector.found)


def test_the_internal_tool_name_is_caught_where_it_differs_from_the_callers():
    inspector = WireInspector()
    call = {"id": "1", "type": "function", "function": {"name": "bookFlight", "arguments": "{}"}}
    with inspector.installed():
        ask(sdk(completion(None, [call])), tools=[BOOKING])
        assert inspector.found == []
        leaked = dict(call, function={"name": "book_flight", "arguments": "{}"})
        ask(sdk(completion(None, [leaked])), tools=[BOOKING])
    assert len(inspector.found) == 1 and "book_flight" in inspector.found[0]


def test_plain_httpx_is_checked_too_and_the_patch_is_undone():
    original = httpx.Client.send
    inspector = WireInspector()
    transport = httpx.MockTransport(
        lambda request: httpx.Response(400, json={"error": {"message": "bad <|channel|> thing"}})
    )
    with inspector.installed():
        httpx.Client(transport=transport).post("http://test/x", json={})
    assert httpx.Client.send is original
    assert inspector.found and "<|channel|>" in inspector.found[0]


def test_the_conftest_hook_fails_a_marked_test_that_received_a_marker(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        test_leaky="""
import httpx
import pytest

pytestmark = pytest.mark.wire_hygiene

def reply(text):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"content": text}))
    return httpx.Client(transport=transport).get("http://test/")

def test_leaks():
    reply("[TOOL_REQUEST]{")

def test_clean():
    reply("fine")
""",
        test_unmarked="""
import httpx

def test_not_checked():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="[TOOL_REQUEST]"))
    httpx.Client(transport=transport).get("http://test/")
""",
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*tool-call format markup reached the client*", "*[[]TOOL_REQUEST*"]
    )
