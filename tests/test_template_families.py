"""A model whose chat template speaks another tool-call family.

The SmolLM2 weights are copied into a new GGUF (with the ``gguf`` package) whose
tokenizer.chat_template is Qwen/Hermes style: it renders tools, <tool_call> blocks and
<tool_response> results, and opens a <think> block. Served from its own models folder,
it must be detected as the "hermes" family with tool use, its forced calls must come
back parsed, its tool history must render natively, and its reasoning must be split off.
"""

from __future__ import annotations

import json

import gguf
import httpx
import jsonschema
import openai
import pytest
from conftest import MODEL, JupyterServer
from family_templates import MISTRAL_STYLE, QWEN_STYLE

from lms_jupyter.api import OpenAICompatAPI
from lms_jupyter.chat.plan import markers_are_special, needs_short_call_ids, short_call_id
from lms_jupyter.chat.reasoning import detect_reasoning
from lms_jupyter.chat.templates import render_chat
from lms_jupyter.chat.toolcalls import detect_family
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.errors import APIError
from lms_jupyter.models.catalog import ModelCatalog, embedded_model_path
from lms_jupyter.models.gguf import read_header

pytestmark = pytest.mark.timeout(300)

HERMES_MODEL = "hermes-smollm2"
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {"name": "getWeather", "description": "Weather in a city.", "parameters": CITY},
}
ASK = [{"role": "user", "content": "What is the weather in Rome?"}]
FORCED = dict(
    messages=ASK,
    tools=[WEATHER],
    max_tokens=40,
    temperature=0,
    seed=3,
    tool_choice={"type": "function", "function": {"name": "getWeather"}},
)
HISTORY = ASK + [
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "123456789",
                "type": "function",
                "function": {"name": "getWeather", "arguments": '{"city": "Rome"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "123456789", "content": "Sunny, 24 C"},
]


def copy_gguf_with_template(source, target, chat_template: str) -> None:
    """Same weights and metadata, another tokenizer.chat_template."""
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(target), arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # written by GGUFWriter itself
        value = chat_template if field.name == "tokenizer.chat_template" else field.contents()
        kind = field.types[0]
        sub_kind = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, kind, sub_type=sub_kind)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()


def models_with_template(root, family: str, chat_template: str):
    """A models folder holding SmolLM2 with another chat template, as the catalog reads
    it: ``lms-tests/<Family>-SmolLM2-GGUF/<family>-smollm2-Q4_1.gguf``."""
    folder = root / "lms-tests" / f"{family.capitalize()}-SmolLM2-GGUF"
    folder.mkdir(parents=True)
    copy_gguf_with_template(
        embedded_model_path(), folder / f"{family}-smollm2-Q4_1.gguf", chat_template
    )
    return root


@pytest.fixture(scope="module")
def hermes_models(tmp_path_factory):
    return models_with_template(tmp_path_factory.mktemp("hermes-models"), "hermes", QWEN_STYLE)


@pytest.fixture(scope="module")
def hermes_server(tmp_path_factory, hermes_models):
    srv = JupyterServer(tmp_path_factory.mktemp("hermes-server"), hermes_models)
    yield srv
    srv.stop()


@pytest.fixture()
def hermes_client(hermes_server):
    return openai.OpenAI(
        base_url=hermes_server.api_url, api_key=hermes_server.token, max_retries=0, timeout=120
    )


@pytest.fixture(scope="module")
def local_api(hermes_models):
    """The same pipeline in-process, to look at the prompt and grammar it builds."""
    manager = ModelManager(ModelCatalog(hermes_models, include_embedded=False))
    yield OpenAICompatAPI(manager)
    manager.shutdown()


def test_template_detection_and_capabilities(hermes_models, hermes_server):
    (path,) = hermes_models.rglob("*.gguf")
    template = read_header(path).get("tokenizer.chat_template")
    assert template == QWEN_STYLE and detect_family(template) == "hermes"
    assert detect_reasoning(template)["opens_in_prompt"] is True
    assert (
        detect_family(read_header(embedded_model_path()).get("tokenizer.chat_template"))
        == "generic"
    )

    def capabilities(model):
        r = httpx.get(
            f"{hermes_server.url}lms/api/v0/models/{model}",
            headers=hermes_server.headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.json()["capabilities"]

    assert "tool_use" in capabilities(HERMES_MODEL)
    assert "tool_use" not in capabilities(MODEL)


def test_native_prompt_and_grammar(local_api):
    prep = local_api.prepare_chat(dict(FORCED, model=HERMES_MODEL))
    prompt, grammar = prep.request.prompt, prep.request.grammar
    assert "<tools>" in prompt and '"name": "get_weather"' in prompt  # rendered by the template
    assert "[TOOL_REQUEST]" not in prompt
    assert '"<tool_call>\\n"' in grammar and "get_weather" in grammar
    history = local_api.prepare_chat(
        {"model": HERMES_MODEL, "messages": HISTORY, "tools": [WEATHER], "max_tokens": 5}
    )
    assert '{"name": "get_weather", "arguments": {"city": "Rome"}}' in history.request.prompt
    assert "<tool_response>\nSunny, 24 C\n</tool_response>" in history.request.prompt


def test_special_token_markers_are_detected(local_api):
    model = local_api.manager.acquire(HERMES_MODEL)
    assert markers_are_special(model, ("<|im_start|>",))  # a control token in SmolLM2
    assert not markers_are_special(model, ("<tool_call>", "[TOOL_REQUEST]"))


def test_forced_call_is_parsed_from_the_hermes_format(hermes_client):
    resp = hermes_client.chat.completions.create(model=HERMES_MODEL, **FORCED)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id and call.function.name == "getWeather"  # mapped back from get_weather
    jsonschema.validate(json.loads(call.function.arguments), CITY)
    stream = hermes_client.chat.completions.create(model=HERMES_MODEL, stream=True, **FORCED)
    deltas = [d for chunk in stream for d in chunk.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "getWeather" and deltas[0].id
    # the same call (the text may differ in whitespace: the prompt is then cached)
    assert json.loads("".join(d.function.arguments for d in deltas)) == json.loads(
        call.function.arguments
    )


def test_tool_history_round_trip(hermes_client):
    resp = hermes_client.chat.completions.create(
        model=HERMES_MODEL,
        messages=HISTORY,
        tools=[WEATHER],
        tool_choice="none",
        reasoning_effort="none",
        max_tokens=16,
        temperature=0,
    )
    message = resp.choices[0].message
    assert message.content and message.tool_calls is None


def test_reasoning_goes_to_its_own_fields(hermes_client):
    kwargs = dict(
        model=HERMES_MODEL,
        messages=[{"role": "user", "content": "Hi!"}],
        max_tokens=12,
        temperature=0,
        seed=1,
    )
    message = hermes_client.chat.completions.create(**kwargs).choices[0].message
    extra = message.model_extra
    assert extra["reasoning"] and extra["reasoning_content"] == extra["reasoning"]
    assert not message.content and "<think>" not in extra["reasoning"]
    streamed = {"reasoning": "", "reasoning_content": "", "content": ""}
    for chunk in hermes_client.chat.completions.create(stream=True, **kwargs):
        delta = chunk.choices[0].delta
        for key in streamed:
            streamed[key] += getattr(delta, key, None) or (delta.model_extra or {}).get(key) or ""
    # the same fields streamed; the text itself may part ways after a few tokens: the
    # repeated prompt comes from the slot's cache, evaluated in another batch shape, and a
    # near-tie at temperature 0 can round the other way (README, "Prompt cache")
    assert streamed["content"] == "" and "<think>" not in streamed["reasoning"]
    assert streamed["reasoning"] == streamed["reasoning_content"]
    assert streamed["reasoning"][:20] == extra["reasoning"][:20]
    # reasoning_effort "none" switches thinking off in the template: all content
    plain = hermes_client.chat.completions.create(reasoning_effort="none", **kwargs)
    assert plain.choices[0].message.content
    assert "reasoning" not in (plain.choices[0].message.model_extra or {})


def test_logprobs_leave_reasoning_out(hermes_client):
    kwargs = dict(
        model=HERMES_MODEL,
        messages=[{"role": "user", "content": "Hi!"}],
        max_tokens=12,
        temperature=0,
        seed=1,
        logprobs=True,
    )
    thinking = hermes_client.chat.completions.create(**kwargs).choices[0]
    assert thinking.message.model_extra["reasoning"] and not thinking.message.content
    assert thinking.logprobs.content == []  # twelve tokens, all of them reasoning
    plain = hermes_client.chat.completions.create(reasoning_effort="none", **kwargs).choices[0]
    assert plain.message.content
    assert "".join(t.token for t in plain.logprobs.content) == plain.message.content


# -- Mistral: 9-character tool-call ids in the history ------------------------------------------

MISTRAL_MODEL = "mistral-smollm2"


@pytest.fixture(scope="module")
def mistral_api(tmp_path_factory):
    """SmolLM2 with a Mistral v0.3 style template, served in-process."""
    root = models_with_template(tmp_path_factory.mktemp("mistral-models"), "mistral", MISTRAL_STYLE)
    manager = ModelManager(ModelCatalog(root, include_embedded=False))
    yield OpenAICompatAPI(manager)
    manager.shutdown()


def openai_history(call_id: str) -> list[dict]:
    return ASK + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "getWeather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 24 C"},
    ]


def test_mistral_history_gets_nine_character_call_ids(mistral_api):
    call_id = "call_Xq3b9ZkTn2LwPq8RvY1sUd4M"  # OpenAI's form, as our own calls have
    history = openai_history(call_id)
    with pytest.raises(APIError, match="length 9"):  # the template's own check
        render_chat(MISTRAL_STYLE, history, tools=[WEATHER])
    assert needs_short_call_ids(MISTRAL_STYLE) and not needs_short_call_ids(QWEN_STYLE)
    short = short_call_id(call_id)
    assert len(short) == 9 and short.isalnum() and short_call_id(call_id) == short
    prepared = mistral_api.prepare_chat(
        {"model": MISTRAL_MODEL, "messages": history, "tools": [WEATHER], "max_tokens": 4}
    )
    prompt = prepared.request.prompt
    assert "[TOOL_CALLS]" in prompt and "[TOOL_RESULTS]" in prompt
    assert f'"id": "{short}"' in prompt and f'"call_id": "{short}"' in prompt
    assert call_id not in prompt
    body = mistral_api.run_sync(prepared)  # and it generates
    assert body["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    # without tools offered the history still renders natively, ids mapped the same way
    plain = mistral_api.prepare_chat({"model": MISTRAL_MODEL, "messages": history, "max_tokens": 4})
    assert f'"call_id": "{short}"' in plain.request.prompt
    # ids that already fit are kept; two calls never share an id
    kept = mistral_api.prepare_chat(
        {"model": MISTRAL_MODEL, "messages": HISTORY, "tools": [WEATHER], "max_tokens": 4}
    )
    assert '"call_id": "123456789"' in kept.request.prompt
    assert short_call_id("call_a") != short_call_id("call_b")
