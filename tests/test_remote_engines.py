"""Remote engines behind the same API, against real servers on loopback.

Upstreams: llama-cpp-python's own OpenAI server (``python -m llama_cpp.server``) on
SmolLM2 as plain OpenAI engines (two of them form a replica pool), and a second
lms-jupyter server as an LM Studio-kind engine. The front is an lms-jupyter server with
``c.ModelManager.remote_engines``; clients are the ``openai`` client and httpx.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import MODEL, JupyterServer, free_port

from lms_jupyter.models.catalog import embedded_model_path

pytestmark = pytest.mark.timeout(300)
UP = f"up/{MODEL}"  # the lms-jupyter engine's SmolLM2
LONG = {"logit_bias": {"2": -100}}  # SmolLM2's EOS banned: it keeps talking


class LlamaServer:
    """``python -m llama_cpp.server`` on SmolLM2 (model id ``smollm2``)."""

    def __init__(self, port: int | None = None, log_dir=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(log_dir or "/tmp", f"llama-server-{self.port}.log"), "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(embedded_model_path()),
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "1024",
                "--n_threads",
                "1",
                "--interrupt_requests",
                "False",
            ],  # (its default: any request cuts a stream)
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited ({self.log.name})")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("llama_cpp.server did not start")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
        self.log.close()


class BlackHole:
    """Accepts connections and never answers (an engine that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory, models_dir):
    log_dir = str(tmp_path_factory.mktemp("llama-logs"))
    started = {}
    try:
        started["a"] = LlamaServer(log_dir=log_dir)
        started["b"] = LlamaServer(log_dir=log_dir)
        started["up"] = JupyterServer(tmp_path_factory.mktemp("upstream"), models_dir)
        started["hole"] = BlackHole()
        started["log_dir"] = log_dir
        yield started
    finally:
        for name, thing in started.items():
            if name == "up":
                thing.stop()
            elif hasattr(thing, "kill"):
                thing.kill()
            elif hasattr(thing, "close"):
                thing.close()


@pytest.fixture(scope="module")
def front(tmp_path_factory, models_dir, upstreams):
    root = tmp_path_factory.mktemp("front")
    engines = {
        "llama": {"base_url": upstreams["a"].url + "/v1", "kind": "openai"},
        "pool": {
            "base_urls": [upstreams["a"].url, upstreams["b"].url],
            "kind": "openai",
            "health_interval": 1,
        },
        "up": {
            "base_url": upstreams["up"].url + "lms",
            "kind": "lmstudio",
            "api_key_env": "UP_TOKEN",
            "health_interval": 1,
        },
        "down": {"base_url": f"http://127.0.0.1:{free_port()}", "models": ["ghost"]},
        "hang": {
            "base_url": f"http://127.0.0.1:{upstreams['hole'].port}",
            "timeout": 1.0,
            "models": ["sleepy"],
        },
    }
    config = root / "remote_config.py"
    config.write_text(f"c.ModelManager.remote_engines = {engines!r}\n")
    srv = JupyterServer(
        root, models_dir, [f"--config={config}"], env={"UP_TOKEN": upstreams["up"].token}
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the engines' model lists arrive in the background
        ids = {
            m["id"] for m in httpx.get(srv.api_url + "/models", headers=srv.headers).json()["data"]
        }
        if {"llama/smollm2", "pool/smollm2", UP} <= ids:
            break
        time.sleep(0.3)
    yield srv
    srv.stop()


@pytest.fixture()
def client(front):
    from openai import OpenAI

    return OpenAI(base_url=front.api_url, api_key=front.token, max_retries=0, timeout=120)


def engines(srv) -> dict:
    data = httpx.get(srv.url + "lms/api/v0/engines", headers=srv.headers).json()["data"]
    return {e["name"]: e for e in data}


def up_ps(upstreams) -> list:
    up = upstreams["up"]
    return httpx.get(up.url + "lms/api/v0/ps", headers=up.headers).json()["data"]


def test_remote_models_are_listed_everywhere(front):
    models = httpx.get(front.api_url + "/models", headers=front.headers).json()["data"]
    owners = {m["id"]: m["owned_by"] for m in models}
    assert owners["llama/smollm2"] == "llama" and owners["pool/smollm2"] == "pool"
    assert owners[UP] == "up" and owners[MODEL] == "organization_owner"
    v0 = {
        m["id"]: m
        for m in httpx.get(front.url + "lms/api/v0/models", headers=front.headers).json()["data"]
    }
    assert v0["llama/smollm2"]["publisher"] == "llama"
    assert v0["llama/smollm2"]["state"] == "loaded"  # OpenAI engines: always loaded
    assert v0[UP]["publisher"] == "up" and v0[UP]["arch"] == "llama"  # LM Studio's own facts
    v1 = {
        m["key"]: m
        for m in httpx.get(front.url + "lms/api/v1/models", headers=front.headers).json()["models"]
    }
    assert v1["llama/smollm2"]["publisher"] == "llama"
    status = engines(front)
    assert [r["healthy"] for r in status["pool"]["replicas"]] == [True, True]
    assert status["down"]["replicas"][0]["healthy"] is False


def test_streaming_is_relayed_chunk_by_chunk(front, upstreams, client):
    body = dict(
        messages=[{"role": "user", "content": "Name three colors."}],
        max_tokens=12,
        temperature=0,
        seed=7,
    )
    upstream_pieces, upstream_finish = [], None
    with httpx.stream(
        "POST",
        upstreams["a"].url + "/v1/chat/completions",
        timeout=60,
        json={**body, "model": "smollm2", "stream": True},
    ) as direct:
        for line in direct.iter_lines():  # (this server ends its chunked body abruptly)
            if line.startswith("data: [DONE]"):
                break
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"][0]
                if choice["delta"].get("content"):
                    upstream_pieces.append(choice["delta"]["content"])
                upstream_finish = choice["finish_reason"] or upstream_finish
    stream = client.chat.completions.create(
        model="llama/smollm2", stream=True, stream_options={"include_usage": True}, **body
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    assert pieces == upstream_pieces and len(pieces) >= 5  # token by token, unchanged
    assert finish == upstream_finish
    assert usage.completion_tokens == len(pieces)  # the engine streams no usage: counted


def test_lmstudio_engine_usage_completions_and_tools(front, upstreams, client):
    body = dict(messages=[{"role": "user", "content": "Say hi."}], max_tokens=6, temperature=0)
    ours = client.chat.completions.create(model=UP, **body)
    up = upstreams["up"]
    theirs = httpx.post(
        up.api_url + "/chat/completions",
        headers=up.headers,
        json={**body, "model": MODEL},
        timeout=60,
    ).json()
    assert ours.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    assert ours.usage.prompt_tokens == theirs["usage"]["prompt_tokens"] > 0
    assert ours.usage.completion_tokens == theirs["usage"]["completion_tokens"]
    assert ours.model == UP

    text = client.completions.create(model=UP, prompt="The sky is", max_tokens=5, temperature=0)
    direct = httpx.post(
        up.api_url + "/completions",
        headers=up.headers,
        timeout=60,
        json={"model": MODEL, "prompt": "The sky is", "max_tokens": 5, "temperature": 0},
    ).json()
    assert text.choices[0].text == direct["choices"][0]["text"]

    # a call without arguments: few tokens under the upstream's grammar (slow per token)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The current time",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    stream = client.chat.completions.create(
        model=UP,
        messages=[{"role": "user", "content": "What time is it?"}],
        tools=tools,
        tool_choice="required",
        max_tokens=30,
        temperature=0,
        stream=True,
    )
    names, arguments, finish = [], "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or []:
            if call.function.name:
                names.append(call.function.name)
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_time"] and finish == "tool_calls"
    assert json.loads(arguments) == {}


def test_lmstudio_engine_load_unload_and_embeddings(front, upstreams):
    headers = front.headers
    base = front.url + "lms/api/v1/models"
    up = upstreams["up"]
    for row in up_ps(upstreams):  # start from an empty upstream (earlier tests JIT-loaded)
        httpx.post(
            up.url + "lms/api/v1/models/unload",
            headers=up.headers,
            timeout=60,
            json={"instance_id": row["identifier"]},
        ).raise_for_status()
    result = httpx.post(
        base + "/load", headers=headers, timeout=120, json={"model": UP, "context_length": 1024}
    ).json()
    assert result["status"] == "loaded", result
    assert [row["identifier"] for row in up_ps(upstreams)] == [MODEL]
    ps = httpx.get(front.url + "lms/api/v0/ps", headers=headers).json()["data"]
    assert UP in [row["identifier"] for row in ps]

    embedded = httpx.post(
        front.api_url + "/embeddings",
        headers=headers,
        timeout=60,
        json={"model": UP, "input": ["red apple", "green pear"]},
    ).json()
    direct = httpx.post(
        up.api_url + "/embeddings",
        headers=up.headers,
        timeout=60,
        json={"model": MODEL, "input": ["red apple", "green pear"]},
    ).json()
    for ours, theirs in zip(embedded["data"], direct["data"], strict=False):
        assert ours["embedding"] == pytest.approx(theirs["embedding"], abs=1e-5)
    assert embedded["usage"]["prompt_tokens"] == direct["usage"]["prompt_tokens"] > 0

    refused = httpx.post(base + "/unload", headers=headers, json={"instance_id": "llama/smollm2"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "not_unloadable"
    assert (
        httpx.post(
            base + "/unload", headers=headers, timeout=60, json={"instance_id": UP}
        ).status_code
        == 200
    )
    assert up_ps(upstreams) == []
    estimate = httpx.post(base + "/estimate", headers=headers, json={"model": UP})
    assert estimate.status_code == 400 and "remote engine" in estimate.json()["error"]["message"]


def test_errors_are_openai_errors_and_never_hang(front, client):
    import openai

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="llama/no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["code"] == "model_not_found"

    with pytest.raises(openai.APIStatusError) as down:
        client.chat.completions.create(
            model="down/ghost", messages=[{"role": "user", "content": "hi"}]
        )
    assert down.value.status_code == 503 and down.value.body["code"] == "engine_unavailable"
    assert "unavailable" in down.value.body["message"]

    with pytest.raises(openai.APIStatusError) as hung:  # 1 s engine timeout: a 504, no hang
        client.chat.completions.create(
            model="hang/sleepy", messages=[{"role": "user", "content": "hi"}]
        )
    assert hung.value.status_code == 504 and hung.value.body["code"] == "upstream_timeout"

    long_prompt = "word " * 6000  # more than the upstream's 4096-token context
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model=UP, max_tokens=4, messages=[{"role": "user", "content": long_prompt}]
        )
    assert too_long.value.body["code"] == "context_length_exceeded"

    stream = httpx.post(
        front.api_url + "/chat/completions",
        headers=front.headers,
        timeout=60,
        json={
            "model": "down/ghost",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert stream.status_code == 503  # refused before the stream starts, with its status


def test_client_disconnect_stops_the_upstream_generation(front, upstreams):
    body = {
        "model": UP,
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": 400,
        "stream": True,
        **LONG,
    }
    with httpx.Client(timeout=60) as http:
        with http.stream(
            "POST", front.api_url + "/chat/completions", headers=front.headers, json=body
        ) as response:
            seen = 0
            for line in response.iter_lines():
                if line.startswith("data: {") and '"content": "' in line:
                    seen += 1
                if seen >= 3:
                    break
    deadline = time.monotonic() + 30  # the upstream notices the closed request promptly
    while True:
        rows = up_ps(upstreams)
        if rows and rows[0]["status"] == "idle" and rows[0]["queued"] == 0:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    assert rows[0]["identifier"] == MODEL


def _stream_lines(srv, body, out: list, started: threading.Event):
    with httpx.Client(timeout=120) as http:
        with http.stream(
            "POST", srv.api_url + "/chat/completions", headers=srv.headers, json=body
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    out.append(line[6:])
                    if len(out) >= 3:
                        started.set()
    started.set()


def test_pool_routes_by_load_survives_a_killed_replica_and_takes_it_back(front, upstreams):
    a, b = upstreams["a"], upstreams["b"]
    before = {r["url"]: r["served"] for r in engines(front)["pool"]["replicas"]}
    body = {
        "model": "pool/smollm2",
        "messages": [{"role": "user", "content": "Tell a story."}],
        "max_tokens": 300,
        "stream": True,
        **LONG,
    }
    outs, events, threads = [[], []], [threading.Event(), threading.Event()], []
    for out, started in zip(outs, events, strict=False):
        thread = threading.Thread(target=_stream_lines, args=(front, body, out, started))
        thread.start()
        threads.append(thread)
        assert started.wait(60)
    served = {r["url"]: r["served"] - before[r["url"]] for r in engines(front)["pool"]["replicas"]}
    assert served == {a.url: 1, b.url: 1}  # the second went to the idle replica

    b.kill()  # one replica dies mid-answer
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    endings = [out[-2:] for out in outs]
    broken = [e for e in endings if '"upstream_disconnected"' in e[0]]
    assert len(broken) == 1 and broken[0][1] == "[DONE]", endings  # an in-stream error
    assert sum(1 for e in endings if e[1] == "[DONE]") == 2

    status = engines(front)["pool"]["replicas"]
    assert [r["healthy"] for r in status] == [True, False]
    for _ in range(3):  # requests keep working on the replica left
        reply = httpx.post(
            front.api_url + "/chat/completions",
            headers=front.headers,
            timeout=60,
            json={**body, "stream": False, "max_tokens": 3},
        )
        assert reply.status_code == 200, reply.text

    upstreams["b"] = LlamaServer(port=int(b.url.rsplit(":", 1)[1]), log_dir=upstreams["log_dir"])
    deadline = time.monotonic() + 30  # a health check takes it back
    while not engines(front)["pool"]["replicas"][1]["healthy"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    served_b = engines(front)["pool"]["replicas"][1]["served"]
    for _ in range(2):
        httpx.post(
            front.api_url + "/chat/completions",
            headers=front.headers,
            timeout=60,
            json={**body, "stream": False, "max_tokens": 3},
        ).raise_for_status()
    assert engines(front)["pool"]["replicas"][1]["served"] > served_b


def test_responses_api_runs_on_remote_models(front, client):
    """/v1/responses over a remote engine's model: the same stored turns and events as on a
    local one (the engine renders the prompt; usage comes from its own counts)."""
    for model in ("llama/smollm2", UP):
        first = client.responses.create(
            model=model,
            input="My name is Ada. Say hello.",
            instructions="Be brief.",
            max_output_tokens=8,
            temperature=0,
        )
        assert first.status in ("completed", "incomplete") and first.model == model
        assert first.output_text and first.usage.output_tokens > 0
        second = client.responses.create(
            model=model,
            previous_response_id=first.id,
            input="What is my name?",
            max_output_tokens=8,
            temperature=0,
        )
        if model == UP:  # (llama-cpp-python's server streams no usage: no prompt count)
            # the stored conversation was sent again: the prompt grew by the first turn
            assert second.usage.input_tokens > first.usage.input_tokens > 0
        assert client.responses.retrieve(second.id).output_text == second.output_text
        events = list(
            client.responses.create(
                model=model, input="Name a color.", max_output_tokens=6, temperature=0, stream=True
            )
        )
        kinds = [event.type for event in events]
        assert kinds[0] == "response.created" and kinds[-1] in (
            "response.completed",
            "response.incomplete",
        )
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas and events[-1].response.output_text == deltas
        assert [e.sequence_number for e in events] == list(range(len(events)))


def test_usage_from_an_engine_that_reports_none(front, client):
    """Issue 26 point 5: llama_cpp.server sends no usage in streams; the relay counts
    with its /extras/tokenize, says the count is an estimate, and /v1/responses turns
    with previous_response_id no longer look free."""
    first = client.responses.create(
        model="llama/smollm2", input="My name is Ada. Hi!", max_output_tokens=8, temperature=0
    )
    assert first.usage.input_tokens > 5 and first.usage.output_tokens > 0
    assert first.model_dump()["usage"].get("estimated") is True
    follow = client.responses.create(
        model="llama/smollm2",
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=8,
        temperature=0,
    )
    assert follow.usage.input_tokens > first.usage.input_tokens
    chunks = list(
        client.chat.completions.create(
            model="llama/smollm2",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.model_dump().get("estimated") is True


def test_a_remote_model_cannot_draft_for_a_local_one(front):
    """Speculative decoding runs the draft beside the main model in its worker, so a remote
    engine's model named as ``draft_model`` is refused with a 400 on that field (before
    the check it failed reading a GGUF header the remote model does not have: a 500)."""
    r = httpx.post(
        front.api_url + "/chat/completions",
        headers=front.headers,
        timeout=120,
        json={
            "model": MODEL,
            "draft_model": "llama/smollm2",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "draft_model" and "remote engine" in error["message"]
