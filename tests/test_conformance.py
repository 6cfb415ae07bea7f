"""OpenAI wire conformance where real clients trip (issue 17), with the openai client
against a real server: JSON 404s for unknown paths, model retrieval and ``created``,
token-id inputs, log-probabilities (checked against llama-cpp-python's own), ``call_``
tool-call ids, and /api/v0 streams that send usage once.
"""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import openai
import pytest
from conftest import EOS_ID, MODEL

pytestmark = pytest.mark.timeout(300)

PROMPT = "The capital of France is"
GREEDY = dict(temperature=0, seed=1, extra_body={"repeat_penalty": 1.0})


@pytest.fixture(scope="module")
def smol(smollm_path):
    """SmolLM2 in this process: its tokenizer, and llama-cpp-python's own logprobs, with the
    KV cells and flash attention the server's default load uses on this CPU (q8_0 cells)."""
    from llama_cpp import Llama

    from lms_jupyter.engine.load_settings import CPU_KV_CACHE_TYPE
    from lms_jupyter.engine.options import KV_CACHE_TYPES

    cells = KV_CACHE_TYPES[CPU_KV_CACHE_TYPE]
    llm = Llama(
        str(smollm_path),
        n_ctx=512,
        n_threads=2,
        logits_all=True,
        flash_attn=True,
        type_k=cells,
        type_v=cells,
        verbose=False,
    )  # flash attention and quantized cells, as the server loads models by default
    yield llm
    llm.close()


def sse(text: str) -> list[dict]:
    return [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


# -- 1. unknown paths ------------------------------------------------------------------------


def test_unknown_paths_are_openai_404s(client, server):
    with pytest.raises(openai.NotFoundError) as err:
        client.get("/no/such/endpoint", cast_to=object)
    assert err.value.code == "unknown_url" and "/no/such/endpoint" in err.value.message
    with pytest.raises(openai.NotFoundError) as err:
        client.post("/no/such/endpoint", cast_to=object, body={"model": MODEL})
    assert err.value.code == "unknown_url"
    r = httpx.get(server.url + "lms/api/v9/whatever", headers=server.headers, timeout=30)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "unknown_url"


# -- 2. models ---------------------------------------------------------------------------------


def test_model_objects_have_created_and_can_be_retrieved(client, smollm_path, gemma_file):
    listed = client.models.list().data
    assert listed and all(isinstance(m.created, int) and m.created > 0 for m in listed)
    smol = client.models.retrieve(MODEL)
    assert smol.id == MODEL and smol.object == "model"
    assert smol.created == int(smollm_path.stat().st_mtime)
    assert next(m for m in listed if m.id == MODEL).created == smol.created
    for model_id in (
        "huggingfacetb/smollm2-135m-instruct@q4_1",
        "HuggingFaceTB/" + MODEL,
        "lmstudio-community/gemma-3-270m@q4_k_m",
    ):
        assert client.models.retrieve(model_id).id == model_id  # "/" and "@" survive the path
    gemma = client.models.retrieve("gemma-3-270m")
    assert gemma.created == int(gemma_file.stat().st_mtime)
    for unknown in ("nobody/nothing@q4_k_m", "gemma-3-270m@q2_k"):
        with pytest.raises(openai.NotFoundError) as err:
            client.models.retrieve(unknown)
        assert err.value.code == "model_not_found" and unknown in err.value.message


# -- 3. token ids ------------------------------------------------------------------------------


def test_completions_take_token_ids(client, smol):
    ids = smol.tokenize(PROMPT.encode(), add_bos=True)
    kwargs = dict(model=MODEL, max_tokens=5, **GREEDY)
    by_text = client.completions.create(prompt=PROMPT, **kwargs)
    by_ids = client.completions.create(prompt=ids, **kwargs)
    nested = client.completions.create(prompt=[ids], **kwargs)
    assert by_ids.choices[0].text == nested.choices[0].text == by_text.choices[0].text
    assert (
        by_ids.usage.prompt_tokens
        == nested.usage.prompt_tokens
        == len(ids)
        == by_text.usage.prompt_tokens
    )
    for prompt, param, words in (
        ([ids[0], 10**6], "prompt", "vocabulary"),
        ([ids, ids], "prompt", "one prompt"),
        ([[5, -1]], "prompt", "negative"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(prompt=prompt, **kwargs)
        assert err.value.param == param and words in err.value.message


def test_embeddings_take_token_ids(client, smol):
    texts = ["hello world", "A man is eating food."]
    # the tokens the embedder makes of each text (SmolLM2 adds no special tokens)
    ids = [smol.tokenize(t.encode(), add_bos=True, special=True) for t in texts]
    by_text = client.embeddings.create(model=MODEL, input=texts)
    by_ids = client.embeddings.create(model=MODEL, input=ids)
    single = client.embeddings.create(model=MODEL, input=ids[1])
    for a, b in zip(by_text.data, by_ids.data, strict=False):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=2e-4)
    np.testing.assert_allclose(single.data[0].embedding, by_ids.data[1].embedding, atol=2e-4)
    assert by_ids.usage.prompt_tokens == sum(map(len, ids)) == by_text.usage.prompt_tokens
    for bad, param in (
        ([[1, 10**6]], "input"),
        ([[1], []], "input[1]"),
        ([[-3]], "input[0]"),
        ([1.5, 2], "input[0]"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(model=MODEL, input=bad)
        assert err.value.param == param


# -- 4. log-probabilities ------------------------------------------------------------------------


def check_entry(entry, n_top: int) -> None:
    assert entry.logprob <= 0 and entry.bytes == list(entry.token.encode("utf-8"))
    assert len(entry.top_logprobs) == n_top
    figures = [alt.logprob for alt in entry.top_logprobs]
    assert figures == sorted(figures, reverse=True)
    assert all(alt.bytes == list(alt.token.encode("utf-8")) for alt in entry.top_logprobs)


def test_chat_logprobs_whole_and_streamed(client):
    kwargs = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        logprobs=True,
        top_logprobs=3,
        **GREEDY,
    )
    whole = client.chat.completions.create(**kwargs)
    choice = whole.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    assert len(entries) == whole.usage.completion_tokens
    for entry in entries:
        check_entry(entry, 3)
        # greedy, no penalties: the chosen token is the likeliest one
        assert entry.token == entry.top_logprobs[0].token
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
    streamed, text = [], ""
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if not chunk.choices:
            continue
        delta, logprobs = chunk.choices[0].delta, chunk.choices[0].logprobs
        if delta.content:
            assert "".join(e.token for e in logprobs.content) == delta.content
            streamed += logprobs.content
            text += delta.content
    assert text == choice.message.content
    assert [e.token for e in streamed] == [e.token for e in entries]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in entries], abs=1e-3)
    plain = client.chat.completions.create(**dict(kwargs, logprobs=None, top_logprobs=None))
    assert plain.choices[0].logprobs is None


def test_logprobs_limits_are_400s(client):
    chat = dict(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    for extra, param in (
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
    ):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(**chat, extra_body=extra)
        assert err.value.param == param
    for extra, param in (({"logprobs": 21}, "logprobs"), ({"logprobs": 2, "echo": True}, "echo")):
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, extra_body=extra)
        assert err.value.param == param


def test_completion_logprobs_equal_llama_cpp_pythons(client, smol):
    """The legacy shape, with figures llama-cpp-python computes itself (logits_all)."""
    smol.reset()
    reference = smol.create_completion(
        PROMPT, max_tokens=6, temperature=0, repeat_penalty=1.0, logprobs=3
    )["choices"][0]
    ours = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=6, logprobs=3, **GREEDY
    ).choices[0]
    expected, got = reference["logprobs"], ours.logprobs
    assert ours.text == reference["text"] and got.tokens == expected["tokens"]
    assert got.token_logprobs == pytest.approx(
        [float(x) for x in expected["token_logprobs"]], abs=2e-3
    )
    for mine, theirs in zip(got.top_logprobs, expected["top_logprobs"], strict=False):
        assert set(mine) == set(theirs)
        assert [mine[k] for k in theirs] == pytest.approx(
            [float(v) for v in theirs.values()], abs=2e-3
        )
    offsets = [len(PROMPT) + len("".join(got.tokens[:i])) for i in range(len(got.tokens))]
    assert got.text_offset == offsets == expected["text_offset"]
    streamed = [
        c.choices[0].logprobs
        for c in client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=6, logprobs=3, stream=True, **GREEDY
        )
        if c.choices and c.choices[0].logprobs
    ]
    assert sum((s.tokens for s in streamed), []) == got.tokens
    assert sum((s.text_offset for s in streamed), []) == got.text_offset


def test_logprobs_follow_logit_bias_and_stop_strings(client, smol):
    paris = smol.tokenize(b" Paris", add_bos=False)
    assert len(paris) == 1
    kwargs = dict(model=MODEL, prompt=PROMPT, max_tokens=4, logprobs=5)
    plain = client.completions.create(**kwargs, **GREEDY).choices[0].logprobs
    assert plain.tokens[0] == " Paris"
    banned = (
        client.completions.create(
            **kwargs,
            temperature=0,
            seed=1,
            extra_body={"repeat_penalty": 1.0, "logit_bias": {str(paris[0]): -100}},
        )
        .choices[0]
        .logprobs
    )
    # figures come after logit_bias: the banned token has no probability left
    assert banned.tokens[0] != " Paris" and " Paris" not in banned.top_logprobs[0]
    # ...and the rest share its probability: each alternative gains log(1 / (1 - p(Paris)))
    first = banned.tokens[0]
    gain = -math.log1p(-math.exp(plain.token_logprobs[0]))
    assert banned.token_logprobs[0] == pytest.approx(plain.top_logprobs[0][first] + gain, abs=2e-3)
    # a stop string's tokens are not reported; text held back for it keeps its tokens
    stopped = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, logprobs=0, stop=["."], **GREEDY
    ).choices[0]
    assert stopped.text == " Paris" and stopped.logprobs.tokens == [" Paris"]
    held = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=3, logprobs=0, stop=[" Paris is"], **GREEDY
    ).choices[0]
    assert held.text.startswith(" Paris") and "".join(held.logprobs.tokens) == held.text


def test_logprobs_cover_content_only(client):
    """Grammar-constrained content is covered token by token; a tool call's tokens are
    not content and are left out."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is water wet?"}],
        max_tokens=12,
        logprobs=True,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
        **GREEDY,
    ).choices[0]
    assert json.loads(answer.message.content)["ok"] in (True, False)
    assert "".join(e.token for e in answer.logprobs.content) == answer.message.content
    assert all(math.isfinite(e.logprob) and e.top_logprobs == [] for e in answer.logprobs.content)
    tool = {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string", "enum": ["UTC"]}},
                "required": ["tz"],
            },
        },
    }
    called = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Time?"}],
        tools=[tool],
        tool_choice="required",
        max_tokens=30,
        logprobs=True,
        **GREEDY,
    ).choices[0]
    assert called.finish_reason == "tool_calls" and called.message.tool_calls
    content = called.logprobs.content
    assert "".join(e.token for e in content) == (called.message.content or "")
    assert len(content) < 20  # the call took most of the 30 tokens: none of them are here


# -- 5. tool-call ids -----------------------------------------------------------------------------


def test_tool_call_ids_are_openai_style_and_unique(client):
    tool = {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string", "enum": ["UTC"]}},
                "required": ["tz"],
            },
        },
    }
    kwargs = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Time?"}],
        tools=[tool],
        tool_choice="required",
        max_tokens=30,
        **GREEDY,
    )
    (call,) = client.chat.completions.create(**kwargs).choices[0].message.tool_calls
    streamed = [
        d.id
        for chunk in client.chat.completions.create(stream=True, **kwargs)
        for d in chunk.choices[0].delta.tool_calls or []
        if d.id
    ]
    ids = [call.id, *streamed]
    assert len(ids) == 2  # the same call twice (greedy), each with its own id
    assert all(i.startswith("call_") and len(i) == 29 and i[5:].isalnum() for i in ids)
    assert ids[0] != ids[1]


# -- 6. /api/v0 usage once ------------------------------------------------------------------------


def test_v0_stream_sends_usage_once_with_stats(server):
    r = httpx.post(
        server.url + "lms/api/v0/chat/completions",
        headers=server.headers,
        timeout=120,
        json={
            "model": MODEL,
            "stream": True,
            "max_tokens": 3,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Hi"}],
            "logit_bias": {str(EOS_ID): -100},
        },
    )
    chunks = sse(r.text)
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert with_usage[0]["usage"]["completion_tokens"] == 3 and "stats" in with_usage[0]
    assert with_usage[0]["choices"] == []
