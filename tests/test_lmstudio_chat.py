"""LM Studio 0.4's native chat, ``POST /lms/api/v1/chat``, over httpx against real
servers: the body and its ``stats``, every streamed event in order (a JIT load included),
``chat.end``'s result equal to the plain body, stored turns continued, branched and
surviving a server restart, ``store: false``, MCP integrations through a real MCP server
on loopback, and errors in LM Studio's shape (as HTTP errors and inside a stream)."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import MODEL, JupyterServer, free_port  # noqa: F401
from test_responses import McpTestServer

pytestmark = pytest.mark.timeout(300)

STATS = (
    "input_tokens",
    "total_output_tokens",
    "reasoning_output_tokens",
    "tokens_per_second",
    "time_to_first_token_seconds",
)


@pytest.fixture(scope="module")
def mcp_server():
    srv = McpTestServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("native-chat-db") / "responses.sqlite"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, models_dir, db, mcp_server):
    root = tmp_path_factory.mktemp("native-chat")
    server = JupyterServer(
        root,
        models_dir,
        [
            f"--LMSJupyterApp.responses_db={db}",
            "--LMSJupyterApp.allow_remote_mcp=True",
            f"--LMSJupyterApp.remote_mcp_allowed_urls={[mcp_server.url]!r}",
            "--LMSJupyterApp.remote_mcp_timeout=5",
        ],
    )
    yield server
    server.stop()


def chat(server, **body) -> httpx.Response:
    return httpx.post(
        server.url + "lms/api/v1/chat", json=body, headers=server.headers, timeout=120
    )


def events(server, **body) -> list[tuple[str, dict]]:
    out = []
    with httpx.stream(
        "POST",
        server.url + "lms/api/v1/chat",
        json={**body, "stream": True},
        headers=server.headers,
        timeout=120,
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                out.append((name, data))
    return out


def message_text(body: dict) -> str:
    return "".join(o["content"] for o in body["output"] if o["type"] == "message")


def test_plain_chat_body_and_stats(srv):
    r = chat(
        srv,
        model=MODEL,
        input="Say hello.",
        system_prompt="You are terse.",
        max_output_tokens=8,
        temperature=0,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_instance_id"] == MODEL
    assert body["output"][0]["type"] == "message" and message_text(body)
    assert set(STATS) <= set(body["stats"])
    assert 0 < body["stats"]["total_output_tokens"] <= 8
    assert body["stats"]["input_tokens"] > 0 and body["stats"]["tokens_per_second"] >= 0
    assert body["stats"]["time_to_first_token_seconds"] > 0
    assert body["response_id"].startswith("resp_")


def test_every_streamed_event_in_order_and_chat_end_equals_the_body(srv):
    kwargs = dict(
        model=MODEL, input="Name a colour.", max_output_tokens=6, temperature=0, store=False
    )
    seen = events(srv, **kwargs)
    names = [n for n, _d in seen]
    assert names[0] == "chat.start" and seen[0][1]["model_instance_id"] == MODEL
    assert names[1] == "message.start" and names[-2] == "message.end"
    assert names[-1] == "chat.end"
    assert set(names[2:-2]) == {"message.delta"}
    text = "".join(d["content"] for n, d in seen if n == "message.delta")
    result = seen[-1][1]["result"]
    assert message_text(result) == text and "response_id" not in result
    plain = chat(srv, **kwargs).json()
    assert plain["output"] == result["output"]
    assert plain["stats"]["total_output_tokens"] == result["stats"]["total_output_tokens"]


def load_events(seen: list) -> int:
    """Check the model_load events of a stream; the index of ``model_load.end``."""
    names = [n for n, _d in seen]
    assert names[:2] == ["chat.start", "model_load.start"]
    end = names.index("model_load.end")
    progress = [d["progress"] for n, d in seen[:end] if n == "model_load.progress"]
    assert progress and progress == sorted(progress) and 0 < progress[-1] <= 1
    assert len(progress) <= 21  # one per 5%
    assert seen[end][1]["load_time_seconds"] > 0
    return end


def test_jit_load_events_and_an_error_event_inside_a_stream(tmp_path_factory, models_dir):
    """A streamed request that JIT-loads reports the load's progress; one whose prompt
    does not fit the context it loaded with fails after the stream started: an ``error``
    event in LM Studio's shape, and no ``chat.end``."""
    root = tmp_path_factory.mktemp("native-chat-jit")
    fresh = JupyterServer(root, models_dir, [f"--LMSJupyterApp.responses_db={root / 'r.db'}"])
    try:
        too_long = events(
            fresh, model=MODEL, input="word " * 300, context_length=64, max_output_tokens=2
        )
        unloaded = httpx.post(
            fresh.url + "lms/api/v1/models/unload",
            timeout=30,
            headers=fresh.headers,
            json={"instance_id": MODEL},
        )
        seen = events(fresh, model=MODEL, input="Hi", max_output_tokens=3)
    finally:
        fresh.stop()
    end = load_events(too_long)
    names = [n for n, _d in too_long]
    assert names[end + 1 :] == ["error"], names
    error = too_long[-1][1]["error"]
    assert error["type"] == "invalid_request" and "context length" in error["message"]
    assert unloaded.status_code == 200, unloaded.text
    end = load_events(seen)
    names = [n for n, _d in seen]
    assert names[end + 1] == "message.start" and names[-1] == "chat.end"


def test_stateful_continue_branch_and_store_false(srv):
    first = chat(
        srv, model=MODEL, input="My name is Ada. Reply with OK.", max_output_tokens=4, temperature=0
    ).json()
    second = chat(
        srv,
        model=MODEL,
        input="What is my name?",
        max_output_tokens=6,
        temperature=0,
        previous_response_id=first["response_id"],
    ).json()
    assert second["response_id"] != first["response_id"]
    # the stored turn is the prompt's prefix: its tokens come from the prompt cache
    assert second["stats"]["input_tokens"] > first["stats"]["input_tokens"]
    assert second["stats"]["cached_input_tokens"] > 0
    branch = chat(
        srv,
        model=MODEL,
        input="And my age?",
        max_output_tokens=4,
        temperature=0,
        thread_id=first["response_id"],
    ).json()  # the preview spelling
    assert branch["stats"]["input_tokens"] < second["stats"]["input_tokens"] + 12
    assert branch["stats"]["input_tokens"] > first["stats"]["input_tokens"]
    unstored = chat(srv, model=MODEL, input="Hi", max_output_tokens=2, store=False).json()
    assert "response_id" not in unstored


def test_state_survives_a_restart(tmp_path_factory, models_dir, srv, db):
    first = chat(
        srv,
        model=MODEL,
        input="Remember the word pineapple. Say OK.",
        max_output_tokens=3,
        temperature=0,
    ).json()
    root = tmp_path_factory.mktemp("native-chat-restart")
    again = JupyterServer(root, models_dir, [f"--LMSJupyterApp.responses_db={db}"])
    try:
        r = chat(
            again,
            model=MODEL,
            input="Which word?",
            max_output_tokens=4,
            previous_response_id=first["response_id"],
        )
        alone = chat(again, model=MODEL, input="Which word?", max_output_tokens=4, store=False)
    finally:
        again.stop()
    assert r.status_code == 200, r.text
    assert r.json()["stats"]["input_tokens"] > alone.json()["stats"]["input_tokens"]


def test_mcp_integration_tool_call_events(srv, mcp_server):
    mcp_server.calls.clear()
    integration = {
        "type": "ephemeral_mcp",
        "server_label": "calc",
        "server_url": mcp_server.url,
        "allowed_tools": ["add"],
    }
    seen = events(
        srv,
        model=MODEL,
        input="What is 2 plus 3? Use the add tool.",
        integrations=[integration],
        tool_choice="required",
        max_output_tokens=60,
        temperature=0,
    )
    names = [n for n, _d in seen]
    assert "error" not in names, seen
    start = names.index("tool_call.start")
    assert names[start + 1] == "tool_call.arguments"
    assert names[start + 2] in ("tool_call.result", "tool_call.failure")
    call = seen[start + 2][1]
    assert call["tool"] == "add" and call["provider_info"] == {
        "type": "ephemeral_mcp",
        "server_label": "calc",
    }
    arguments = seen[start + 1][1]["arguments"]
    assert names[start + 2] == "tool_call.result", seen[start + 2]
    assert ("add", arguments["a"], arguments["b"]) in mcp_server.calls
    assert str(arguments["a"] + arguments["b"]) in call["output"]
    result = seen[-1][1]["result"]
    item = next(o for o in result["output"] if o["type"] == "tool_call")
    assert item["tool"] == "add" and item["arguments"] == arguments
    assert item["provider_info"]["server_label"] == "calc"
    assert not any(c[0] == "secret_tool" for c in mcp_server.calls)


def test_mcp_preview_alias_and_policy(srv, mcp_server):
    refused = chat(
        srv,
        model=MODEL,
        input="Hi",
        max_output_tokens=2,
        mcp_servers=[{"server_label": "x", "server_url": "http://10.1.2.3/mcp"}],
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "mcp_url_not_allowed"
    assert error["param"] == "mcp_servers[0].server_url"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"input": "Hi"}, "model"),
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": "Hi", "reasoning": "maximal"}, "reasoning"),
        ({"model": MODEL, "input": "Hi", "temperature": 9}, "temperature"),
        ({"model": MODEL, "input": "Hi", "system_prompt": 3}, "system_prompt"),
        ({"model": MODEL, "input": [{"type": "image", "data_url": "x"}]}, "input[0].type"),
        ({"model": MODEL, "input": "Hi", "integrations": ["mcp/playwright"]}, "integrations[0]"),
        (
            {
                "model": MODEL,
                "input": "Hi",
                "integrations": [{"type": "ephemeral_mcp", "server_label": "x"}],
            },
            "integrations[0].server_url",
        ),
    ],
)
def test_errors_in_lmstudio_shape(srv, body, param):
    r = chat(srv, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request" and error["param"] == param
    assert error["message"]


def test_unknown_ids_and_models(srv):
    r = chat(srv, model=MODEL, input="Hi", previous_response_id="resp_nope")
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"
    r = chat(srv, model="no-such-model", input="Hi")
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
