"""Presets: LM Studio's preset files, applying them (explicit fields win), and the HTTP API."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import EOS_ID, GEMMA, MODEL, counts

from lms_jupyter.api.openai.requests import merge_preset
from lms_jupyter.api.openai.requests import preset_settings as validate_settings
from lms_jupyter.errors import APIError
from lms_jupyter.models.presets import Preset, PresetStore

pytestmark = pytest.mark.timeout(300)

LMSTUDIO_FILE = {
    "identifier": "@local:json-bot",
    "name": "JSON bot",
    "changed": True,
    "operation": {
        "fields": [
            {"key": "llm.prediction.systemPrompt", "value": "Answer in JSON."},
            {"key": "llm.prediction.temperature", "value": 0.1},
            {"key": "llm.prediction.topKSampling", "value": 20},
            {"key": "llm.prediction.topPSampling", "value": {"checked": True, "value": 0.9}},
            {"key": "llm.prediction.minPSampling", "value": {"checked": False, "value": 0.05}},
            {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": True, "value": 64}},
            {"key": "llm.prediction.stopStrings", "value": ["##"]},
            {
                "key": "llm.prediction.structured",
                "value": {"type": "json", "jsonSchema": {"type": "object"}},
            },
            {"key": "llm.prediction.somethingNew", "value": 1},
        ]
    },
    "load": {"fields": [{"key": "llm.load.contextLength", "value": 1024}]},
}


# -- pure functions -----------------------------------------------------------------------------
def test_reads_lmstudio_preset_files():
    preset = Preset.from_lmstudio(LMSTUDIO_FILE)
    assert preset.name == "JSON bot" and preset.identifier == "@local:json-bot"
    assert preset.settings == {
        "system_prompt": "Answer in JSON.",
        "temperature": 0.1,
        "top_k": 20,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["##"],
        "context_length": 1024,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "preset_schema", "schema": {"type": "object"}, "strict": True},
        },
    }
    # and writes the same format back
    again = Preset.from_lmstudio(preset.to_lmstudio())
    assert again.settings == preset.settings


def test_apply_fills_only_what_the_request_leaves_out():
    preset = Preset(
        "p", {"system_prompt": "Be brief.", "temperature": 0.1, "max_tokens": 64, "top_k": 20}
    )
    body = {"model": "m", "temperature": 0.7, "messages": [{"role": "user", "content": "hi"}]}
    merged = merge_preset(preset, body)
    assert merged["temperature"] == 0.7 and merged["top_k"] == 20 and merged["max_tokens"] == 64
    assert merged["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # not mutated
    own_system = {
        "model": "m",
        "max_completion_tokens": 5,
        "messages": [{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}],
    }
    merged = merge_preset(preset, own_system)
    assert merged["messages"] == own_system["messages"]  # the request's system prompt wins
    assert "max_tokens" not in merged  # max_completion_tokens already says it
    completion = merge_preset(preset, {"model": "m", "prompt": "x"})
    assert "messages" not in completion and completion["temperature"] == 0.1


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": "hot"},
        {"unknown_field": 1},
        {"stop": "x"},
        {"system_prompt": 3},
        {"response_format": {"type": "xml"}},
        [],
    ],
)
def test_validate_settings_rejects(settings):
    with pytest.raises(APIError) as err:
        validate_settings(settings)
    assert err.value.status == 400


def test_store_save_get_delete(tmp_path):
    store = PresetStore(tmp_path / "presets")
    assert store.list() == []
    store.save("My Preset", {"temperature": 0.2})
    assert (tmp_path / "presets" / "my-preset.preset.json").is_file()
    for name in ("My Preset", "my-preset", "@local:my-preset"):
        assert store.get(name).settings == {"temperature": 0.2}
    (tmp_path / "presets" / "broken.preset.json").write_text("{not json")
    assert [p.name for p in store.list()] == ["My Preset"]  # a broken file is skipped
    with pytest.raises(APIError) as err:
        store.get("nope")
    assert err.value.status == 404 and "My Preset" in err.value.message
    with pytest.raises(APIError):
        store.save("My Preset", {"temperature": 0.3}, overwrite=False)
    store.delete("my-preset")
    assert store.list() == []


# -- over HTTP ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def preset_server(server_factory, tmp_path_factory):
    folder = tmp_path_factory.mktemp("presets")
    (folder / "json-bot.preset.json").write_text(json.dumps(LMSTUDIO_FILE))
    srv = server_factory(f"--LMSJupyterApp.presets_dir={folder}")
    srv.presets_dir = folder
    return srv


def presets_url(server, name: str = "") -> str:
    return server.url + "lms/api/v0/presets" + (f"/{name}" if name else "")


def chat(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=server.headers, timeout=120)


def test_create_list_get_presets(preset_server):
    r = httpx.post(
        presets_url(preset_server),
        headers=preset_server.headers,
        json={
            "name": "Terse",
            "settings": {
                "system_prompt": "Reply in one word.",
                "temperature": 0,
                "max_tokens": 3,
                "seed": None,
            },
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "name": "Terse",
        "identifier": "@local:terse",
        "settings": {"system_prompt": "Reply in one word.", "temperature": 0, "max_tokens": 3},
    }
    assert (preset_server.presets_dir / "terse.preset.json").is_file()
    listed = httpx.get(presets_url(preset_server), headers=preset_server.headers).json()
    assert {p["name"] for p in listed["data"]} == {"Terse", "JSON bot"}
    one = httpx.get(presets_url(preset_server, "terse"), headers=preset_server.headers).json()
    assert one["preset"]["operation"]["fields"][0] == {
        "key": "llm.prediction.systemPrompt",
        "value": "Reply in one word.",
    }
    r = httpx.get(presets_url(preset_server, "missing"), headers=preset_server.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "preset_not_found"
    r = httpx.post(
        presets_url(preset_server),
        headers=preset_server.headers,
        json={"name": "bad", "settings": {"temperature": "hot"}},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    # an LM Studio preset file's JSON can be posted as is
    r = httpx.post(
        presets_url(preset_server),
        headers=preset_server.headers,
        json={**LMSTUDIO_FILE, "name": "JSON bot copy"},
    )
    assert r.status_code == 200 and r.json()["settings"]["top_k"] == 20


def test_preset_applies_on_v1_and_v0_and_request_fields_override(preset_server):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    eos = {str(EOS_ID): -100}
    with_preset = chat(
        preset_server,
        "lms/v1/chat/completions",
        {"model": MODEL, "preset": "Terse", "messages": question, "logit_bias": eos},
    ).json()
    spelled_out = chat(
        preset_server,
        "lms/v1/chat/completions",
        {
            "model": MODEL,
            "temperature": 0,
            "max_tokens": 3,
            "logit_bias": eos,
            "messages": [{"role": "system", "content": "Reply in one word."}, *question],
        },
    ).json()
    assert counts(with_preset["usage"]) == counts(spelled_out["usage"])
    assert with_preset["usage"]["completion_tokens"] == 3
    assert with_preset["choices"][0]["message"] == spelled_out["choices"][0]["message"]

    override = chat(
        preset_server,
        "lms/api/v0/chat/completions",
        {
            "model": MODEL,
            "preset": "@local:terse",
            "max_tokens": 5,
            "messages": question,
            "logit_bias": eos,
        },
    ).json()
    assert override["usage"]["completion_tokens"] == 5  # the request's max_tokens wins
    assert override["usage"]["prompt_tokens"] == with_preset["usage"]["prompt_tokens"]
    assert override["stats"]["stop_reason"] == "maxPredictedTokensReached"

    completion = chat(
        preset_server,
        "lms/v1/completions",
        {"model": MODEL, "preset": "terse", "prompt": "Paris is", "logit_bias": eos},
    ).json()
    assert completion["usage"]["completion_tokens"] == 3


def test_preset_context_length_applies_to_jit_loads(preset_server):
    r = chat(
        preset_server,
        "lms/v1/chat/completions",
        {
            "model": GEMMA,
            "preset": "JSON bot",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert r.status_code == 200, r.text
    rows = httpx.get(preset_server.url + "lms/api/v0/ps", headers=preset_server.headers).json()
    assert {row["identifier"]: row["contextLength"] for row in rows["data"]}[GEMMA] == 1024


def test_unknown_preset_is_404(preset_server):
    r = chat(
        preset_server,
        "lms/v1/chat/completions",
        {"model": MODEL, "preset": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["param"] == "preset" and "Terse" in error["message"]
    r = chat(preset_server, "lms/api/v0/completions", {"model": MODEL, "preset": 5, "prompt": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "preset"
