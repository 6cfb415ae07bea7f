"""``/v1/responses`` end to end: real servers, the real ``openai`` client (3.x), SmolLM2.

The 135M model rambles, so whatever must end is constrained: forced tool calls
(``tool_choice`` required or named) and ``json_schema`` formats are grammars, and free
text is cut by ``max_output_tokens``. MCP tests run a real ``mcp`` server (MCPServer over
Streamable HTTP, uvicorn in a thread) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import jsonschema
import openai
import pytest
from conftest import EOS_ID, MODEL, JupyterServer, free_port
from family_templates import QWEN_STYLE

from lms_jupyter.api.responses.mcp_tools import url_allowed, url_list
from lms_jupyter.api.responses.request import items_to_messages, parse, step_request

pytestmark = pytest.mark.timeout(300)

HERMES = "hermes-smollm2"  # SmolLM2 with a Qwen-style template that opens <think>
SECRET = "sekrit-header-value-42"
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": CITY,
    "strict": True,
}
CLOCK = {
    "type": "function",
    "name": "current_time",
    "description": "The current time.",
    "parameters": {"type": "object", "properties": {}},
    "strict": True,
}
ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
YES_NO = {"format": {"type": "json_schema", "name": "verdict", "schema": ANSWER, "strict": True}}
SUM = {
    "format": {
        "type": "json_schema",
        "name": "sum",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"sum": {"type": "integer", "minimum": 0, "maximum": 999}},
            "required": ["sum"],
            "additionalProperties": False,
        },
    }
}
VOLATILE = {
    "id",
    "call_id",
    "created_at",
    "completed_at",
    "cached_tokens",
    "parsed",
    "parsed_arguments",
    "output_parsed",
}


def normalised(value):
    """A response as plain data without what differs between two runs of one request
    (ids, times, the KV cache's share of the prompt)."""
    if hasattr(value, "model_dump"):
        value = json.loads(value.model_dump_json())
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


# -- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """SmolLM2 (embedded) and a copy of it with a reasoning template."""
    from test_template_families import models_with_template

    return models_with_template(tmp_path_factory.mktemp("responses-models"), "hermes", QWEN_STYLE)


@pytest.fixture(scope="module")
def main(tmp_path_factory, models):
    """Remote MCP off (the default)."""
    root = tmp_path_factory.mktemp("responses-server")
    srv = JupyterServer(root, models, [f"--LMSJupyterApp.responses_db={root / 'r.sqlite'}"])
    yield srv
    srv.stop()


def openai_client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.api_url, api_key=srv.token, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(main):
    return openai_client(main)


class McpTestServer:
    """A real MCP server (the ``mcp`` package) on 127.0.0.1 that records what reaches it."""

    def __init__(self):
        import uvicorn
        from mcp.server.mcpserver import MCPServer

        self.calls: list[tuple] = []
        self.headers: list[dict] = []
        srv = MCPServer("calculator", log_level="WARNING")

        @srv.tool()
        def add(a: int, b: int) -> int:
            """Add two integers."""
            self.calls.append(("add", a, b))
            return a + b

        @srv.tool()
        def secret_tool() -> str:
            """Never offered: not in allowed_tools."""
            self.calls.append(("secret_tool",))
            return "leaked"

        @srv.tool()
        async def slow() -> str:
            """Answers after the server's MCP timeout."""
            self.calls.append(("slow",))
            await asyncio.sleep(20)
            return "late"

        app = srv.streamable_http_app()

        async def recording(scope, receive, send):
            if scope["type"] == "http":
                self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            await app(scope, receive, send)

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.server = uvicorn.Server(
            uvicorn.Config(
                recording,
                host="127.0.0.1",
                port=self.port,
                lifespan="on",
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "MCP server failed"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def mcp_server():
    srv = McpTestServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def restarted(tmp_path_factory, models, mcp_server):
    """A response stored by one server, then a new server on the same database, with remote
    MCP on and the test MCP server (and a closed port) allow-listed; timeout 3 s."""
    root = tmp_path_factory.mktemp("responses-restart")
    db = root / "responses.sqlite"
    for name in ("a", "b"):
        (root / name).mkdir()
    first = JupyterServer(root / "a", models, [f"--LMSJupyterApp.responses_db={db}"])
    try:
        earlier = openai_client(first).responses.create(
            model=MODEL,
            input="My name is Ada Lovelace. Say hi.",
            max_output_tokens=12,
            temperature=0,
        )
    finally:
        first.stop()
    assert db.is_file()  # the configured file, not the default one
    closed = free_port()
    allowed = [mcp_server.url, f"http://127.0.0.1:{closed}"]
    second = JupyterServer(
        root / "b",
        models,
        [
            f"--LMSJupyterApp.responses_db={db}",
            "--LMSJupyterApp.allow_remote_mcp=True",
            f"--LMSJupyterApp.remote_mcp_allowed_urls={allowed!r}",
            "--LMSJupyterApp.remote_mcp_timeout=3",
        ],
    )
    second.closed_url = f"http://127.0.0.1:{closed}/mcp"
    second.earlier = earlier
    yield second
    second.stop()


@pytest.fixture(scope="module")
def mcp_client(restarted):
    return openai_client(restarted)


def mcp_tool(url, **kwargs) -> dict:
    return {
        "type": "mcp",
        "server_label": "calc",
        "server_url": url,
        "allowed_tools": ["add"],
        "require_approval": "never",
        "headers": {"X-Api-Key": SECRET},
        **kwargs,
    }


# -- plain turns ----------------------------------------------------------------------------


def test_plain_text(client, main):
    r = client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=8, temperature=0)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text" and r.output_text
    assert r.output_text == message.content[0].text
    usage = r.usage
    assert usage.input_tokens > 0 and usage.output_tokens <= 8
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cache_write_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    if usage.output_tokens == 8:  # cut by max_output_tokens
        assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
        assert message.status == "incomplete"
    else:
        assert r.status == "completed" and r.incomplete_details is None
    assert r.store is True and r.previous_response_id is None and r.tools == []
    assert r.text.format.type == "text" and r.tool_choice == "auto"


def test_instructions(client):
    kwargs = dict(model=MODEL, input="Is the sky blue?", max_output_tokens=3, temperature=0)
    plain = client.responses.create(**kwargs)
    told = client.responses.create(instructions="You are a weather expert. Be brief.", **kwargs)
    assert told.instructions == "You are a weather expert. Be brief."
    assert plain.instructions is None
    # the system message replaces SmolLM2's default one: another prompt
    assert told.usage.input_tokens != plain.usage.input_tokens
    assert told.output_text
    # a continuation does not inherit them (OpenAI's rule)
    follow = client.responses.create(
        model=MODEL, previous_response_id=told.id, input="And the grass?", max_output_tokens=3
    )
    assert follow.instructions is None


def test_instructions_are_not_carried_over():
    """What the model is given: the current instructions, the earlier turns' items."""
    earlier = [
        {"type": "message", "role": "user", "content": "Hi"},
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
        },
    ]
    request = parse({"model": MODEL, "input": "Bye", "instructions": "Be terse."})
    chat = step_request(request, [*earlier, *request.items], [], "auto", 10)
    assert [(m["role"], m["content"]) for m in chat.messages] == [
        ("system", "Be terse."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Bye"),
    ]
    nothing = parse({"model": MODEL, "input": "Bye"})
    chat = step_request(nothing, [*earlier, *nothing.items], [], "auto", 10)
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user"]


def test_preset_fills_what_the_request_leaves_out(tmp_path):
    from lms_jupyter.api.responses.request import apply_preset
    from lms_jupyter.models.presets import PresetStore

    presets = PresetStore(tmp_path)
    presets.save("terse", {"system_prompt": "Be terse.", "temperature": 0.1, "max_tokens": 7})
    request = parse(
        apply_preset(
            {"model": MODEL, "input": "Hi", "preset": "terse", "temperature": 0.5}, presets
        )
    )
    assert request.instructions == "Be terse." and request.max_output_tokens == 7
    assert request.generation["sampling"].temperature == 0.5  # the request wins
    own = parse(
        apply_preset(
            {
                "model": MODEL,
                "input": "Hi",
                "preset": "terse",
                "instructions": "Mine.",
                "max_output_tokens": 3,
            },
            presets,
        )
    )
    assert own.instructions == "Mine." and own.max_output_tokens == 3


def test_multi_turn_reuses_the_cached_prefix(client):
    first = client.responses.create(
        model=MODEL, input="My name is Ada. Say hi.", max_output_tokens=10, temperature=0
    )
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=10,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    # the earlier turn (its input and its answer) is part of this prompt ...
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    # ... and was not evaluated again: at least the first turn's prompt came from the cache
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 1
    third = client.responses.create(
        model=MODEL,
        previous_response_id=second.id,
        input="Thanks.",
        max_output_tokens=4,
        temperature=0,
    )
    assert third.usage.input_tokens_details.cached_tokens >= second.usage.input_tokens - 1


def test_store_false_keeps_nothing(client):
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            model=MODEL, input="Again", previous_response_id=r.id, max_output_tokens=2
        )
    assert err.value.body["param"] == "previous_response_id"
    assert err.value.body["code"] == "previous_response_not_found"


def test_get_and_delete(client, main):
    r = client.responses.create(
        model=MODEL, input="Hi", max_output_tokens=3, metadata={"topic": "greeting"}
    )
    fetched = client.responses.retrieve(r.id)
    assert fetched.model_dump() == r.model_dump()
    assert fetched.metadata == {"topic": "greeting"}
    client.responses.delete(r.id)
    for call in (client.responses.retrieve, client.responses.delete):
        with pytest.raises(openai.NotFoundError):
            call(r.id)
    raw = httpx.get(f"{main.api_url}/responses/resp_unknown", headers=main.headers)
    assert raw.status_code == 404
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert "resp_unknown" in raw.json()["error"]["message"]


# -- tools and formats ----------------------------------------------------------------------


def test_function_tool_round_trip(client):
    asked = client.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=40,
        temperature=0,
    )
    (call,) = asked.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id and call.id.startswith("fc_") and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), CITY)
    assert asked.status == "completed"
    answer = client.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        tools=[WEATHER],
        max_output_tokens=40,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"}],
        temperature=0,
    )
    # the 135M model may answer or call the tool again; a call cut off by the budget is a
    # function_call item now, never markup in a message
    last = answer.output[-1]
    assert last.type == "function_call" or (last.type == "message" and answer.output_text)
    assert answer.usage.input_tokens > asked.usage.input_tokens + asked.usage.output_tokens
    assert answer.usage.input_tokens_details.cached_tokens > 0
    with pytest.raises(openai.BadRequestError) as err:  # an output for no call
        client.responses.create(
            model=MODEL,
            previous_response_id=asked.id,
            input=[{"type": "function_call_output", "call_id": "nope", "output": "x"}],
        )
    assert err.value.body["param"] == "input[0].call_id"


def test_named_tool_choice(client):
    r = client.responses.create(
        model=MODEL,
        input="What time is it?",
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "name": "current_time"},
        max_output_tokens=30,
        temperature=0,
    )
    (call,) = r.output
    assert call.name == "current_time" and json.loads(call.arguments) == {}
    assert r.tool_choice.type == "function" and r.tool_choice.name == "current_time"
    assert [t.name for t in r.tools] == ["get_weather", "current_time"]


def test_json_schema_text_format(client):
    r = client.responses.create(
        model=MODEL, input="Is water wet?", text=YES_NO, max_output_tokens=40, temperature=0
    )
    assert r.status == "completed"
    jsonschema.validate(json.loads(r.output_text), ANSWER)
    assert r.text.format.type == "json_schema" and r.text.format.name == "verdict"


# -- streaming ------------------------------------------------------------------------------


def stream_then_create(client, kwargs):
    """The same request streamed (its events, checked, and the SDK's accumulated response)
    and then sent plain."""
    with client.responses.stream(**kwargs) as stream:
        events = list(stream)
        streamed = stream.get_final_response()
    check_envelope(events)
    return events, streamed, client.responses.create(**kwargs)


def check_envelope(events) -> None:
    """The rules openai 3.x's stream accumulator enforces, checked here directly."""
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1
    added = {e.output_index: e.item for e in events if e.type == "response.output_item.added"}
    done = {e.output_index: e.item for e in events if e.type == "response.output_item.done"}
    assert sorted(added) == sorted(done) == list(range(len(added)))
    for index, item in added.items():
        assert (item.type, item.id, getattr(item, "call_id", None)) == (
            done[index].type,
            done[index].id,
            getattr(done[index], "call_id", None),
        )
    assert "error" not in [e.type for e in events]


def test_text_stream_event_by_event(client):
    kwargs = dict(
        model=MODEL, input="Is fire hot?", text=YES_NO, max_output_tokens=40, temperature=0
    )
    # one token fills the model's cache with this prompt: the two runs below start alike
    client.responses.create(**dict(kwargs, max_output_tokens=1))
    events, streamed, again = stream_then_create(client, kwargs)
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 2
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    item_id = events[2].item.id
    assert events[2].item.status == "in_progress" and events[2].item.content == []
    assert events[3].part.type == "output_text" and events[3].part.text == ""
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert all(e.item_id == item_id for e in events[3:-2])
    assert all(e.logprobs == [] for e in events if e.type.startswith("response.output_text"))
    assert events[-4].text == text and events[-3].part.text == text
    final = events[-1].response
    assert final.status == "completed" and final.output_text == text
    assert final.output[0].id == item_id and final.usage.output_tokens > 0
    # what the SDK accumulated is what a plain request returns, and what is stored
    assert normalised(streamed) == normalised(again)
    assert streamed.output_text == again.output_text == text
    assert normalised(client.responses.retrieve(final.id)) == normalised(final)


def test_sse_lines(main):
    """``event: <type>`` beside each ``data:`` line, and no ``[DONE]``."""
    with httpx.stream(
        "POST",
        f"{main.api_url}/responses",
        headers=main.headers,
        timeout=60,
        json={"model": MODEL, "input": "Hi", "max_output_tokens": 3, "stream": True},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert "data: [DONE]" not in lines
    names = [line[len("event: ") :] for line in lines[0::2]]
    data = [json.loads(line[len("data: ") :]) for line in lines[1::2]]
    assert all(line.startswith("event: ") for line in lines[0::2])
    assert names == [d["type"] for d in data]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert names[0] == "response.created" and names[-1] == "response.incomplete"
    assert data[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_function_call_argument_deltas(client):
    kwargs = dict(
        model=MODEL,
        input="Weather in Rome?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
        temperature=0,
    )
    client.responses.create(**dict(kwargs, max_output_tokens=1))  # as above
    events, streamed, again = stream_then_create(client, kwargs)
    kinds = [e.type for e in events]
    n = kinds.count("response.function_call_arguments.delta")
    assert n >= 2
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * n,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2].item
    assert (
        added.type == "function_call"
        and added.arguments == ""
        and added.name == "get_weather"
        and added.status == "in_progress"
    )
    arguments = "".join(e.delta for e in events if e.type.endswith("arguments.delta"))
    assert events[-3].arguments == arguments == events[-2].item.arguments
    jsonschema.validate(json.loads(arguments), CITY)
    assert normalised(streamed) == normalised(again)
    assert streamed.output[0].arguments == arguments
    assert streamed.output[0].call_id == events[-2].item.call_id


def test_failure_mid_stream_is_response_failed(main, client):
    """Unloading the model while it writes: open items are closed, then response.failed;
    the failed response is stored."""
    body = {
        "model": MODEL,
        "input": "Write a very long story.",
        "stream": True,
        "max_output_tokens": 2000,
        "logit_bias": {str(EOS_ID): -100},
    }
    events = []
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{main.api_url}/responses", json=body, headers=main.headers) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line[len("data: ") :]))
                if len(events) == 6:
                    unload = http.post(
                        main.url + "lms/api/v1/models/unload",
                        json={"instance_id": MODEL},
                        headers=main.headers,
                    )
                    assert unload.status_code == 200, unload.text
    kinds = [e["type"] for e in events]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    assert "error" not in kinds and all("error" not in e for e in events)
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["error"]["message"] and failed["output"][0]["status"] == "incomplete"
    assert client.responses.retrieve(failed["id"]).status == "failed"


def test_disconnect_mid_stream_stops_the_generation(main, client):
    body = {
        "model": MODEL,
        "input": "Write a very long story.",
        "stream": True,
        "max_output_tokens": 2000,
        "logit_bias": {str(EOS_ID): -100},
    }
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{main.api_url}/responses", json=body, headers=main.headers) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and "output_text.delta" in line:
                    break
    # the model is free again (2000 tokens would keep it busy for minutes), and a stream
    # its client left is not stored
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2)
    assert r.output_text
    rows = httpx.get(main.url + "lms/api/v0/ps", headers=main.headers).json()["data"]
    (row,) = [row for row in rows if row["identifier"] == MODEL]
    assert row["queued"] == 0 and row["status"] == "idle"


# -- reasoning ------------------------------------------------------------------------------


def test_reasoning_items_and_tokens(client):
    events = list(
        client.responses.create(
            model=HERMES, input="Hi!", max_output_tokens=12, temperature=0, stream=True
        )
    )
    check_envelope(events)
    kinds = [e.type for e in events]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
    ]
    assert events[2].item.type == "reasoning" and events[3].part.type == "reasoning_text"
    final = events[-1].response
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text
    assert "<think>" not in reasoning.content[0].text
    text = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert reasoning.content[0].text == text
    details = final.usage.output_tokens_details
    assert 0 < details.reasoning_tokens <= final.usage.output_tokens
    # effort "none" switches thinking off through the template: no reasoning item
    plain = client.responses.create(
        model=HERMES, input="Hi!", max_output_tokens=12, temperature=0, reasoning={"effort": "none"}
    )
    assert [o.type for o in plain.output] == ["message"]
    assert plain.usage.output_tokens_details.reasoning_tokens == 0
    assert plain.reasoning.effort == "none"


# -- bad requests ---------------------------------------------------------------------------

BAD = [
    ({"input": "x"}, "model"),
    ({"model": MODEL}, "input"),
    ({"model": MODEL, "input": []}, "input"),
    ({"model": MODEL, "input": [{"type": "banana"}]}, "input[0].type"),
    ({"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    (
        {
            "model": MODEL,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Look:"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                    ],
                }
            ],
        },
        "input[0].content[1]",
    ),
    (
        {"model": MODEL, "input": "x", "text": {"format": {"type": "json_schema"}}},
        "text.format.schema",
    ),
    ({"model": MODEL, "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    (
        {
            "model": MODEL,
            "input": "x",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "n",
                    "schema": {"type": "string", "pattern": "a+"},
                }
            },
        },
        "text.format",
    ),
    ({"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": MODEL, "input": "x", "tools": [{"type": "function", "name": ""}]}, "tools[0].name"),
    ({"model": MODEL, "input": "x", "tools": [WEATHER, WEATHER]}, "tools"),
    (
        {
            "model": MODEL,
            "input": "x",
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "nope"},
        },
        "tool_choice",
    ),
    ({"model": MODEL, "input": "x", "tool_choice": "required"}, "tool_choice"),
    (
        {"model": MODEL, "input": "x", "tools": [{"type": "mcp", "server_label": "x"}]},
        "tools[0].server_url",
    ),
    ({"model": MODEL, "input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"model": MODEL, "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": MODEL, "input": "x", "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "input": "x", "metadata": {"k": 1}}, "metadata"),
    ({"model": MODEL, "input": "x", "store": "yes"}, "store"),
    (
        {"model": MODEL, "input": "x", "previous_response_id": "resp_missing"},
        "previous_response_id",
    ),
    ({"model": MODEL, "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": MODEL, "input": "x", "max_tool_calls": 0}, "max_tool_calls"),
    (
        {
            "model": MODEL,
            "input": [
                {"type": "mcp_approval_response", "approve": True, "approval_request_id": "mcpr_x"}
            ],
        },
        "input[0].approval_request_id",
    ),
]


@pytest.mark.parametrize("body,param", BAD, ids=[p for _b, p in BAD])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_malformed_input_is_a_400_naming_the_param(main, body, param, stream):
    r = httpx.post(
        f"{main.api_url}/responses",
        json=dict(body, stream=stream),
        headers=main.headers,
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


def test_not_json_and_unknown_model(main):
    r = httpx.post(f"{main.api_url}/responses", content=b"{nope", headers=main.headers)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(
        f"{main.api_url}/responses",
        json={"model": "no-such-model", "input": "x"},
        headers=main.headers,
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


# -- remote MCP -----------------------------------------------------------------------------


def test_mcp_refused_unless_enabled(client, mcp_server):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input="2+3?", tools=[mcp_tool(mcp_server.url)])
    assert err.value.body["param"] == "tools[0]" and err.value.body["code"] == "mcp_disabled"
    assert "--LMSJupyterApp.allow_remote_mcp=True" in err.value.body["message"]
    assert not mcp_server.calls


def test_mcp_loopback_refused_unless_allow_listed(mcp_client, mcp_server):
    seen = len(mcp_server.headers)
    for url in (
        mcp_server.url.replace("127.0.0.1", "localhost"),
        f"http://127.0.0.2:{mcp_server.port}/mcp",
        "http://10.1.2.3/mcp",
        "http://[::1]:9/mcp",
        "http://169.254.169.254/latest",
    ):
        with pytest.raises(openai.BadRequestError) as err:
            mcp_client.responses.create(model=MODEL, input="2+3?", tools=[mcp_tool(url)])
        assert err.value.body["param"] == "tools[0].server_url", url
        assert err.value.body["code"] == "mcp_url_not_allowed"
        assert "remote_mcp_allowed_urls" in err.value.body["message"]
    assert len(mcp_server.headers) == seen  # nothing was sent there


def test_allow_list_matches_urls_not_strings():
    assert url_list(["['http://a:1/mcp', 'http://b']", "http://c"]) == (
        "http://a:1/mcp",
        "http://b",
        "http://c",
    )
    assert url_allowed("http://127.0.0.1:8001/mcp", "http://127.0.0.1:8001/mcp")
    assert url_allowed("http://127.0.0.1:8001/mcp/x", "http://127.0.0.1:8001/mcp/")
    assert url_allowed("http://127.0.0.1:9/mcp", "http://127.0.0.1")  # no port: any port
    assert not url_allowed("http://127.0.0.1:80012/mcp", "http://127.0.0.1:8001")
    assert not url_allowed("http://127.0.0.1.evil.example/mcp", "http://127.0.0.1")
    assert not url_allowed("http://127.0.0.1:8001/mcpx", "http://127.0.0.1:8001/mcp")
    assert not url_allowed("https://127.0.0.1:8001/mcp", "http://127.0.0.1:8001/mcp")


def test_mcp_tool_call(mcp_client, restarted, mcp_server):
    """Listed (allowed tools only), called with the model's arguments, the result fed
    back; streamed events checked; the headers reach the MCP server and nothing else."""
    kwargs = dict(
        model=MODEL,
        input="What is 2 plus 3?",
        tools=[mcp_tool(mcp_server.url)],
        tool_choice={"type": "mcp", "server_label": "calc", "name": "add"},
        max_tool_calls=1,
        text=SUM,
        max_output_tokens=60,
        temperature=0,
    )
    mcp_server.calls.clear()
    seen = len(mcp_server.headers)
    with mcp_client.responses.stream(**kwargs) as stream:
        events = list(stream)
        streamed = stream.get_final_response()
    check_envelope(events)
    kinds = [e.type for e in events]
    n = kinds.count("response.mcp_call_arguments.delta")
    assert kinds[: 9 + n] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.mcp_call.in_progress",
        *["response.mcp_call_arguments.delta"] * n,
        "response.mcp_call_arguments.done",
    ]
    assert kinds[9 + n : 11 + n] == ["response.mcp_call.completed", "response.output_item.done"]
    assert kinds[-1] == "response.completed"
    final = events[-1].response
    listing, call, message = final.output
    assert listing.type == "mcp_list_tools" and listing.server_label == "calc"
    assert [t.name for t in listing.tools] == ["add"]  # secret_tool and slow: not allowed
    assert listing.tools[0].input_schema["required"] == ["a", "b"]
    assert call.type == "mcp_call" and call.name == "add" and call.server_label == "calc"
    arguments = json.loads(call.arguments)
    assert call.output == str(arguments["a"] + arguments["b"]) and call.error is None
    assert mcp_server.calls == [("add", arguments["a"], arguments["b"])]
    assert message.type == "message" and "sum" in json.loads(final.output_text)
    assert final.usage.input_tokens > 0  # both steps
    sent = mcp_server.headers[seen:]
    assert len(sent) >= 4 and all(h.get("x-api-key") == SECRET for h in sent)
    stored = httpx.get(f"{restarted.api_url}/responses/{final.id}", headers=restarted.headers)
    assert stored.status_code == 200 and SECRET not in stored.text
    assert SECRET not in json.dumps(final.model_dump())
    assert final.tools[0].server_url == mcp_server.url
    assert SECRET not in restarted.log_path.read_text()
    # the SDK's accumulator agrees with the response the server stored
    assert normalised(streamed) == normalised(mcp_client.responses.retrieve(final.id))


def test_mcp_approval_round_trip(mcp_client, mcp_server):
    tool = mcp_tool(mcp_server.url, require_approval="always")
    mcp_server.calls.clear()
    asked = mcp_client.responses.create(
        model=MODEL,
        input="What is 4 plus 5?",
        tools=[tool],
        tool_choice="required",
        max_output_tokens=40,
        temperature=0,
    )
    assert asked.status == "completed"
    listing, request = asked.output
    assert request.type == "mcp_approval_request" and request.id.startswith("mcpr_")
    assert request.name == "add" and request.server_label == "calc"
    assert not mcp_server.calls  # nothing runs before it is approved
    approved = mcp_client.responses.create(
        model=MODEL,
        previous_response_id=asked.id,
        tools=[tool],
        max_tool_calls=1,
        text=SUM,
        max_output_tokens=30,
        temperature=0,
        input=[
            {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        ],
    )
    call, message = approved.output  # the listing is in the conversation already
    assert call.type == "mcp_call" and call.approval_request_id == request.id
    arguments = json.loads(request.arguments)
    assert call.output == str(arguments["a"] + arguments["b"])
    assert mcp_server.calls == [("add", arguments["a"], arguments["b"])]
    assert message.type == "message"
    with pytest.raises(openai.BadRequestError) as err:  # answered already
        mcp_client.responses.create(
            model=MODEL,
            previous_response_id=approved.id,
            tools=[tool],
            input=[
                {
                    "type": "mcp_approval_response",
                    "approval_request_id": request.id,
                    "approve": True,
                }
            ],
        )
    assert err.value.body["param"] == "input[0].approval_request_id"


def test_unreachable_mcp_server_is_a_clean_error(mcp_client, restarted):
    with pytest.raises(openai.APIStatusError) as err:
        mcp_client.responses.create(
            model=MODEL, input="2+3?", tools=[mcp_tool(restarted.closed_url)]
        )
    assert err.value.status_code == 424
    body = err.value.body
    assert body["type"] == "external_connector_error" and body["param"] == "tools[0]"
    assert "Could not reach the MCP server" in body["message"]


def test_slow_mcp_tool_fails_on_its_item(mcp_client, mcp_server):
    """A tool slower than remote_mcp_timeout (3 s here): an error on the mcp_call item,
    and the answer goes on.

    Once flaky (issue 26: ``incomplete`` in a full run): the two steps share
    max_output_tokens, which was 40 while the forced call and the answer take about 34
    even as compact JSON; sampled (temperature unset), the answer could spend the rest
    on the optional whitespace the JSON grammars allowed, more or less of it with
    whatever sampler state and prompt cache the earlier tests left. Now the grammars
    admit no optional whitespace, the test samples greedily, and the budget leaves room
    for the two steps the test is about (a budget cut has its own tests)."""
    tool = mcp_tool(mcp_server.url, allowed_tools=["add", "slow"])
    r = mcp_client.responses.create(
        model=MODEL,
        input="Call slow.",
        tools=[tool],
        tool_choice={"type": "mcp", "server_label": "calc", "name": "slow"},
        max_tool_calls=1,
        text=SUM,
        max_output_tokens=64,
        temperature=0,
    )
    call = next(o for o in r.output if o.type == "mcp_call")
    assert call.name == "slow" and call.status == "failed" and call.output is None
    assert call.error.type == "http_error" and call.error.code == 504
    assert r.output[-1].type == "message" and r.status == "completed", r.usage
    answer = r.output[-1].content[0].text
    assert answer == json.dumps(json.loads(answer), separators=(",", ":"))  # compact
    assert r.usage.output_tokens < 64, r.usage


# -- state survives a restart -----------------------------------------------------------------


def test_conversation_survives_a_restart(mcp_client, restarted):
    earlier = restarted.earlier
    assert normalised(mcp_client.responses.retrieve(earlier.id)) == normalised(earlier)
    follow = mcp_client.responses.create(
        model=MODEL,
        previous_response_id=earlier.id,
        input="What is my name?",
        max_output_tokens=8,
        temperature=0,
    )
    assert follow.usage.input_tokens > earlier.usage.input_tokens + earlier.usage.output_tokens
    again = mcp_client.responses.create(
        model=MODEL,
        previous_response_id=follow.id,
        input="Thanks!",
        max_output_tokens=4,
        temperature=0,
    )
    assert again.usage.input_tokens_details.cached_tokens >= follow.usage.input_tokens - 1


def test_items_to_messages_for_tool_history():
    items = [
        {"type": "message", "role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": "2+3?"},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "calc", "tools": []},
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "name": "add",
            "server_label": "calc",
            "arguments": '{"a": 2, "b": 3}',
            "output": "5",
        },
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": []},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
        {
            "type": "mcp_approval_request",
            "id": "mcpr_1",
            "name": "add",
            "server_label": "calc",
            "arguments": "{}",
        },
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": False},
    ]
    messages = items_to_messages(items)
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert [
        [c["function"]["name"] for c in m["tool_calls"]]
        for m in messages
        if m["role"] == "assistant"
    ] == [["add"], ["f"], ["add"]]
    assert [m["content"] for m in messages if m["role"] == "tool"] == [
        "5",
        "done",
        "The user declined this tool call.",
    ]
    assert messages[2]["tool_calls"][0]["id"] == messages[3]["tool_call_id"] == "mcp_1"
