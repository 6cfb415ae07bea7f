"""LM Studio's REST API (/api/v0 and the /api/v1 model management) on a real server.

The idle-TTL and auto-evict tests run on a server of their own so the models they load
and unload cannot disturb the other tests.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from conftest import EOS_ID, GEMMA, MODEL, counts, wait_for

pytestmark = pytest.mark.timeout(300)

STATS_KEYS = {"tokens_per_second", "time_to_first_token", "generation_time", "stop_reason"}


def url(server, path: str) -> str:
    return server.url + "lms/api/" + path


def get(server, path: str) -> httpx.Response:
    return httpx.get(url(server, path), headers=server.headers, timeout=60)


def post(server, path: str, body, timeout: float = 120) -> httpx.Response:
    return httpx.post(url(server, path), json=body, headers=server.headers, timeout=timeout)


def ps_rows(server) -> dict:
    r = get(server, "v0/ps")
    assert r.status_code == 200, r.text
    return {row["identifier"]: row for row in r.json()["data"]}


def sse_chunks(text: str) -> list:
    chunks = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            chunks.append(payload if payload == "[DONE]" else json.loads(payload))
    return chunks


# -- /api/v0 models ----------------------------------------------------------------------------
def test_v0_models_lists_every_catalog_model(server):
    r = get(server, "v0/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert {MODEL, GEMMA} <= set(by_id)
    smol = by_id[MODEL]
    assert smol == {
        **smol,
        "object": "model",
        "type": "llm",
        "publisher": "HuggingFaceTB",
        "arch": "llama",
        "compatibility_type": "gguf",
        "quantization": "Q4_1",
        "max_context_length": 8192,
    }
    assert by_id[GEMMA]["arch"] == "gemma3" and by_id[GEMMA]["quantization"] == "Q4_K_M"
    for model in body["data"]:
        assert model["state"] in ("loaded", "not-loaded")
        assert ("loaded_context_length" in model) == (model["state"] == "loaded")
        assert isinstance(model["capabilities"], list)


def test_v0_model_by_id_shows_loaded_context_length(server):
    r = post(server, "v1/models/load", {"model": GEMMA, "context_length": 1024})
    assert r.status_code == 200, r.text
    try:
        for name in (GEMMA, f"lmstudio-community/{GEMMA}"):
            model = get(server, f"v0/models/{name}").json()
            assert model["id"] == GEMMA and model["state"] == "loaded"
            assert model["loaded_context_length"] == 1024
            assert model["max_context_length"] == 32768
    finally:
        assert post(server, "v1/models/unload", {"instance_id": GEMMA}).status_code == 200
    model = get(server, f"v0/models/{GEMMA}").json()
    assert model["state"] == "not-loaded" and "loaded_context_length" not in model
    r = get(server, "v0/models/no-such-model")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


# -- /api/v1 model management ------------------------------------------------------------------
def test_v1_load_list_unload(server):
    r = post(
        server,
        "v1/models/load",
        {
            "model": MODEL,
            "context_length": 2048,
            "identifier": "smol-explicit",
            "ttl": 600,
            "flash_attention": True,
            "echo_load_config": True,
        },
    )
    assert r.status_code == 200, r.text
    loaded = r.json()
    assert loaded["type"] == "llm" and loaded["instance_id"] == "smol-explicit"
    assert loaded["status"] == "loaded" and loaded["load_time_seconds"] > 0
    config = loaded["load_config"]
    assert config["context_length"] == 2048 and config["flash_attention"] is True
    assert config["eval_batch_size"] == 512 and config["ttl"] == 600

    plain = post(server, "v1/models/load", {"model": MODEL, "identifier": "smol-2"}).json()
    assert "load_config" not in plain and plain["instance_id"] == "smol-2"

    models = {m["key"]: m for m in get(server, "v1/models").json()["models"]}
    smol = models[MODEL]
    assert smol["type"] == "llm" and smol["format"] == "gguf"
    assert smol["quantization"] == {"name": "Q4_1", "bits_per_weight": 4}
    assert smol["size_bytes"] > 90e6 and smol["params_string"] == "135M"
    assert smol["max_context_length"] == 8192 and smol["architecture"] == "llama"
    assert smol["capabilities"] == {"vision": False, "trained_for_tool_use": False}
    assert smol["variants"] == ["huggingfacetb/smollm2-135m-instruct@q4_1"]
    instances = {i["id"]: i["config"] for i in smol["loaded_instances"]}
    assert set(instances) >= {"smol-explicit", "smol-2"}
    assert instances["smol-explicit"]["context_length"] == 2048
    assert models[GEMMA]["quantization"] == {"name": "Q4_K_M", "bits_per_weight": 4}

    rows = ps_rows(server)
    assert rows["smol-explicit"]["ttlMs"] == 600_000 and rows["smol-explicit"]["jit"] is False
    assert rows["smol-2"]["ttlMs"] is None  # explicit loads have no TTL unless given one

    for instance in ("smol-explicit", "smol-2"):
        r = post(server, "v1/models/unload", {"instance_id": instance})
        assert r.status_code == 200 and r.json() == {"instance_id": instance}
    r = post(server, "v1/models/unload", {"instance_id": "smol-explicit"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "model_not_found"


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({}, 400, "model"),
        ({"model": 5}, 400, "model"),
        ({"model": "no-such-model"}, 404, "model"),
        ({"model": MODEL, "context_length": "big"}, 400, "context_length"),
        ({"model": MODEL, "context_length": 10**7}, 400, "context_length"),
        ({"model": MODEL, "ttl": -1}, 400, "ttl"),
        ({"model": MODEL, "flash_attention": "yes"}, 400, "flash_attention"),
        ({"model": MODEL, "gpu": "lots"}, 400, "gpu"),
        ({"model": MODEL, "identifier": ""}, 400, "identifier"),
    ],
)
def test_v1_load_bad_input_is_lmstudio_error(server, body, status, param):
    r = post(server, "v1/models/load", body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == ("model_not_found" if status == 404 else "invalid_request")
    assert error["param"] == param and error["message"]


def test_v1_malformed_json_and_unload_errors(server):
    r = httpx.post(
        url(server, "v1/models/load"),
        content=b"{nope",
        headers={**server.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request"
    r = post(server, "v1/models/unload", {})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_required_parameter"


# -- /api/v0 inference -------------------------------------------------------------------------
def test_v0_chat_has_stats_model_info_runtime(server):
    import llama_cpp

    r = post(
        server,
        "v0/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 6,
            "temperature": 0,
            "logit_bias": {str(EOS_ID): -100},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 6
    stats = body["stats"]
    assert set(stats) == STATS_KEYS
    assert stats["stop_reason"] == "maxPredictedTokensReached"
    assert stats["tokens_per_second"] > 0
    assert 0 < stats["time_to_first_token"] <= stats["generation_time"]
    assert body["model_info"] == {
        "arch": "llama",
        "quant": "Q4_1",
        "format": "gguf",
        "context_length": 4096,
    }
    runtime = body["runtime"]
    assert runtime["name"].startswith("llama.cpp-") and runtime["name"][-3:] in ("cpu", "gpu")
    assert runtime["version"] == llama_cpp.__version__
    assert runtime["supported_formats"] == ["gguf"]


def test_v0_chat_stream_sends_stats_in_final_chunk(server):
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name a color."}],
        "max_tokens": 8,
        "temperature": 0,
        "seed": 3,
    }
    full = post(server, "v0/chat/completions", request).json()
    r = post(server, "v0/chat/completions", {**request, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(r.text)
    assert chunks[-1] == "[DONE]"
    final = chunks[-2]
    assert final["choices"] == [] and set(final["stats"]) == STATS_KEYS
    assert final["stats"]["stop_reason"] == full["stats"]["stop_reason"]
    assert final["model_info"] == full["model_info"] and final["runtime"] == full["runtime"]
    assert counts(final["usage"]) == counts(full["usage"])  # cached_tokens may differ
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks[:-2] if c["choices"]
    )
    assert text == full["choices"][0]["message"]["content"]


def test_v0_completions_stop_string_reason(server):
    r = post(
        server,
        "v0/completions",
        {
            "model": MODEL,
            "prompt": "1, 2, 3, 4, 5,",
            "max_tokens": 30,
            "temperature": 0,
            "stop": [" 8"],
            "repeat_penalty": 1.0,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and " 8" not in body["choices"][0]["text"]
    assert body["stats"]["stop_reason"] == "stopStringFound"
    assert body["model_info"]["format"] == "gguf" and "runtime" in body


def test_v0_completions_stream_and_embeddings(server):
    r = post(
        server,
        "v0/completions",
        {
            "model": MODEL,
            "prompt": "The sky is",
            "max_tokens": 4,
            "temperature": 0,
            "stream": True,
            "logit_bias": {str(EOS_ID): -100},
        },
    )
    chunks = sse_chunks(r.text)
    assert chunks[-2]["stats"]["stop_reason"] == "maxPredictedTokensReached"
    assert chunks[-2]["usage"]["completion_tokens"] == 4
    r = post(server, "v0/embeddings", {"model": MODEL, "input": ["cats", "dogs"]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 576 and body["usage"]["prompt_tokens"] > 1


def test_v0_bad_input_is_openai_error(server):
    r = post(server, "v0/chat/completions", {"model": MODEL, "messages": "hi"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = post(
        server,
        "v0/chat/completions",
        {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 404


# -- ps while busy -----------------------------------------------------------------------------
def test_ps_status_while_generating_and_queued_count(server):
    # one slot, so that the short requests wait behind the long one (with more slots they
    # run beside it and finish between two polls)
    assert (
        post(
            server,
            "v1/models/load",
            {"model": MODEL, "identifier": "busy", "parallel": 1, "context_length": 1024},
        ).status_code
        == 200
    )
    long_body = {
        "model": "busy",
        "stream": True,
        "max_tokens": 400,
        "temperature": 1,
        "logit_bias": {str(EOS_ID): -100},
        "messages": [{"role": "user", "content": "Tell a long story."}],
    }
    stop = threading.Event()
    results = []

    def stream():
        with httpx.Client(timeout=120) as http:
            with http.stream(
                "POST", url(server, "v0/chat/completions"), json=long_body, headers=server.headers
            ) as r:
                for _ in r.iter_lines():
                    if stop.is_set():
                        break

    def short(i):
        r = post(
            server,
            "v0/chat/completions",
            {
                "model": "busy",
                "max_tokens": 2,
                "temperature": 0,
                "messages": [{"role": "user", "content": f"Say {i}"}],
            },
        )
        results.append(r.status_code)

    streamer = threading.Thread(target=stream)
    streamer.start()
    waiters = []
    try:
        row = wait_for(
            lambda: ps_rows(server)["busy"]["status"] == "generating" and ps_rows(server)["busy"],
            "status=generating",
        )
        assert row["queued"] == 1  # LM Studio counts the running request
        waiters = [threading.Thread(target=short, args=(i,)) for i in range(2)]
        for t in waiters:
            t.start()
        row = wait_for(lambda: (r := ps_rows(server)["busy"])["queued"] == 3 and r, "queued 3")
        assert row["status"] == "generating"
        assert {
            "identifier",
            "modelKey",
            "status",
            "queued",
            "ttlMs",
            "lastUsedTime",
            "contextLength",
            "sizeBytes",
        } <= set(row)
        assert row["modelKey"] == MODEL and row["contextLength"] == 1024
        assert row["sizeBytes"] > 90e6 and row["lastUsedTime"] > 1.6e12
    finally:
        stop.set()
        streamer.join(60)
        for t in waiters:
            t.join(60)
    assert results == [200, 200]
    row = wait_for(lambda: (r := ps_rows(server)["busy"])["queued"] == 0 and r, "queued 0")
    assert row["status"] == "idle"
    post(server, "v1/models/unload", {"instance_id": "busy"})


# -- idle TTL and auto-evict (own server) ------------------------------------------------------
@pytest.fixture(scope="module")
def ttl_server(server_factory):
    return server_factory()


def chat(server, model: str, **extra) -> dict:
    r = post(
        server,
        "v0/chat/completions",
        {
            "model": model,
            "max_tokens": 1,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}],
            **extra,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()


def unload_all(server) -> None:
    for identifier in ps_rows(server):
        post(server, "v1/models/unload", {"instance_id": identifier})


def test_jit_load_default_ttl_is_60_minutes(ttl_server):
    unload_all(ttl_server)
    chat(ttl_server, MODEL)
    row = ps_rows(ttl_server)[MODEL]
    assert row["jit"] is True and row["ttlMs"] == 3_600_000
    assert 3_590_000 < row["ttlRemainingMs"] <= 3_600_000


def test_request_ttl_expires_and_requests_reset_the_timer(ttl_server):
    unload_all(ttl_server)
    chat(ttl_server, GEMMA, ttl=3)
    assert ps_rows(ttl_server)[GEMMA]["ttlMs"] == 3000
    time.sleep(2)
    chat(ttl_server, GEMMA)  # resets the idle timer
    reset_at = time.time()
    time.sleep(1.8)  # past 3 s from the first request, not from the second
    assert GEMMA in ps_rows(ttl_server)
    wait_for(lambda: GEMMA not in ps_rows(ttl_server), "the idle TTL's unload", timeout=10)
    assert time.time() - reset_at >= 2.5


def test_never_unloaded_while_generating(ttl_server):
    unload_all(ttl_server)
    # ~250 tokens last a few seconds even on a fast machine: longer than the 1 s TTL
    body = {
        "model": MODEL,
        "ttl": 1,
        "max_tokens": 250,
        "temperature": 0,
        "logit_bias": {str(EOS_ID): -100},
        "messages": [{"role": "user", "content": "Count to one hundred."}],
    }
    seen = []

    def watch():
        while not done.is_set():
            seen.append(MODEL in ps_rows(ttl_server))
            time.sleep(0.2)

    done = threading.Event()
    watcher = threading.Thread(target=watch)
    started = time.time()
    watcher.start()
    try:
        r = post(ttl_server, "v0/chat/completions", body)
    finally:
        done.set()
        watcher.join(10)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 250
    assert time.time() - started > 1.5  # the generation outlived its 1 s TTL...
    assert True in seen and all(seen[seen.index(True) :])  # ...and it stayed loaded throughout
    wait_for(lambda: MODEL not in ps_rows(ttl_server), "the idle TTL's unload", timeout=10)


def test_auto_evict_keeps_only_the_newest_jit_model(ttl_server):
    unload_all(ttl_server)
    chat(ttl_server, MODEL)
    assert set(ps_rows(ttl_server)) == {MODEL}
    chat(ttl_server, GEMMA)
    rows = wait_for(lambda: (r := ps_rows(ttl_server)) and set(r) == {GEMMA} and r, "the evict")
    assert rows[GEMMA]["jit"] is True
    chat(ttl_server, MODEL)
    wait_for(lambda: set(ps_rows(ttl_server)) == {MODEL}, "the second evict")


def test_explicit_load_survives_jit_loads(ttl_server):
    unload_all(ttl_server)
    assert (
        post(ttl_server, "v1/models/load", {"model": MODEL, "identifier": "pinned"}).status_code
        == 200
    )
    chat(ttl_server, GEMMA)
    rows = ps_rows(ttl_server)
    assert set(rows) == {"pinned", GEMMA}
    assert rows["pinned"]["jit"] is False and rows[GEMMA]["jit"] is True
    chat(ttl_server, "pinned")  # a request naming the explicit instance uses it
    assert set(ps_rows(ttl_server)) == {"pinned", GEMMA}
    unload_all(ttl_server)
