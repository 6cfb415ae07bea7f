"""Speculative decoding with a real draft model: the same SmolLM2 file loaded twice is a
valid pair, and the output must equal plain greedy decoding."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import EOS_ID, GEMMA, MODEL, counts

pytestmark = pytest.mark.timeout(300)

DRAFT_KEYS = {
    "draft_model",
    "total_draft_tokens_count",
    "accepted_draft_tokens_count",
    "rejected_draft_tokens_count",
    "ignored_draft_tokens_count",
}


@pytest.fixture(scope="module")
def pair(server):
    """SmolLM2 as the main model and again as the draft (identifier "draft")."""
    for body in (
        {"model": MODEL, "context_length": 2048},
        {"model": MODEL, "context_length": 2048, "identifier": "draft"},
    ):
        r = httpx.post(
            server.url + "lms/api/v1/models/load", json=body, headers=server.headers, timeout=120
        )
        assert r.status_code == 200, r.text
    rows = httpx.get(server.url + "lms/api/v0/ps", headers=server.headers).json()["data"]
    # under the default on the CPU: q8_0 cells, flash attention
    assert {(row["kvCacheType"], row["flashAttention"]) for row in rows} == {("q8_0", True)}
    return server


def v0(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(
        server.url + "lms/api/v0/" + path, json=body, headers=server.headers, timeout=180
    )


def check_counts(stats: dict) -> None:
    assert DRAFT_KEYS <= set(stats)
    assert stats["draft_model"] == "draft"
    assert stats["total_draft_tokens_count"] == (
        stats["accepted_draft_tokens_count"]
        + stats["rejected_draft_tokens_count"]
        + stats["ignored_draft_tokens_count"]
    )


CHAT = {
    "model": MODEL,
    "temperature": 0,
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
}


def test_greedy_output_equals_plain_decoding(pair):
    plain = v0(pair, "chat/completions", CHAT).json()
    drafted = v0(pair, "chat/completions", {**CHAT, "draft_model": "draft"}).json()
    assert drafted["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert counts(drafted["usage"]) == counts(plain["usage"])
    assert drafted["stats"]["stop_reason"] == plain["stats"]["stop_reason"]
    assert not DRAFT_KEYS & set(plain["stats"])
    stats = drafted["stats"]
    check_counts(stats)
    assert stats["accepted_draft_tokens_count"] > 0
    print(
        f"\nplain {plain['stats']['tokens_per_second']:.1f} tok/s, speculative "
        f"{stats['tokens_per_second']:.1f} tok/s; draft counts {stats}"
    )


def test_logprobs_with_a_draft_model_equal_plain_ones(pair):
    """Verification samples each position once, so each emitted token has its own logits."""
    body = {
        **CHAT,
        "max_tokens": 10,
        "logprobs": True,
        "top_logprobs": 2,
        "logit_bias": {str(EOS_ID): -100},
    }
    plain = v0(pair, "chat/completions", body).json()["choices"][0]["logprobs"]["content"]
    drafted = v0(pair, "chat/completions", {**body, "draft_model": "draft"}).json()
    tokens = drafted["choices"][0]["logprobs"]["content"]
    assert drafted["stats"]["accepted_draft_tokens_count"] > 0 and len(plain) == 10
    assert [t["token"] for t in tokens] == [t["token"] for t in plain]
    assert [t["logprob"] for t in tokens] == pytest.approx([t["logprob"] for t in plain], abs=1e-3)


def test_openai_endpoint_and_stream_accept_draft_model(pair):
    from openai import OpenAI

    client = OpenAI(base_url=pair.api_url, api_key=pair.token, max_retries=0, timeout=180)
    kwargs = dict(model=MODEL, messages=CHAT["messages"], max_tokens=10, temperature=0)
    plain = client.chat.completions.create(**kwargs).choices[0].message.content
    drafted = client.chat.completions.create(extra_body={"draft_model": "draft"}, **kwargs)
    assert drafted.choices[0].message.content == plain
    stream = client.chat.completions.create(
        stream=True, extra_body={"draft_model": "draft"}, **kwargs
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == plain


def test_prompt_longer_than_n_batch(pair):
    prompt = "The quick brown fox jumps over the lazy dog. " * 60 + "\nThe fox"
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": 8,
        "temperature": 0,
        "logit_bias": {str(EOS_ID): -100},
    }
    plain = v0(pair, "completions", body).json()
    drafted = v0(
        pair, "completions", {**body, "draft_model": "draft", "draft_max_tokens": 4}
    ).json()
    assert plain["usage"]["prompt_tokens"] > 512  # more than one n_batch
    assert drafted["choices"][0]["text"] == plain["choices"][0]["text"]
    check_counts(drafted["stats"])
    assert drafted["stats"]["accepted_draft_tokens_count"] > 0
    assert drafted["stats"]["stop_reason"] == "maxPredictedTokensReached"


def test_stop_string_and_seeded_sampling(pair):
    body = {
        "model": MODEL,
        "prompt": "1, 2, 3, 4, 5,",
        "max_tokens": 30,
        "temperature": 0,
        "stop": [" 9"],
        "repeat_penalty": 1.0,
    }
    plain = v0(pair, "completions", body).json()
    drafted = v0(pair, "completions", {**body, "draft_model": "draft"}).json()
    assert drafted["choices"][0]["text"] == plain["choices"][0]["text"]
    assert drafted["stats"]["stop_reason"] == "stopStringFound"
    check_counts(drafted["stats"])
    # verification samples exactly like plain decoding: a seed reproduces it at temperature 1
    body = {**CHAT, "temperature": 1.0, "seed": 11, "max_tokens": 8}
    plain = v0(pair, "chat/completions", body).json()
    drafted = v0(pair, "chat/completions", {**body, "draft_model": "draft"}).json()
    assert drafted["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    check_counts(drafted["stats"])


def test_vocabulary_mismatch_is_a_clear_400(pair):
    r = v0(pair, "chat/completions", {**CHAT, "draft_model": GEMMA})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "draft_model" and error["code"] == "incompatible_draft_model"
    assert "vocabulary" in error["message"] and "49152" in error["message"]
    ps = httpx.get(pair.url + "lms/api/v0/ps", headers=pair.headers).json()["data"]
    assert GEMMA not in {row["identifier"] for row in ps}  # refused before loading it


@pytest.mark.parametrize(
    "draft, status, code",
    [
        ("no-such-model", 404, "model_not_found"),
        (MODEL, 400, None),  # the main instance itself
        (7, 400, None),
    ],
)
def test_bad_draft_model(pair, draft, status, code):
    r = v0(pair, "chat/completions", {**CHAT, "draft_model": draft})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == "draft_model"
    if code:
        assert error["code"] == code


def test_speculative_stream_reports_counts(pair):
    r = v0(
        pair, "chat/completions", {**CHAT, "max_tokens": 8, "stream": True, "draft_model": "draft"}
    )
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    check_counts(chunks[-1]["stats"])


# -- the decoding loop itself, in process ------------------------------------------------------
def test_header_check_needs_no_loading(smollm_path, gemma_file):
    from lms_jupyter.engine.drafts import header_vocab_mismatch
    from lms_jupyter.models.gguf import read_header

    smol, gemma = read_header(smollm_path), read_header(gemma_file)
    assert header_vocab_mismatch(smol, smol) is None
    assert "49152 vs 262144" in header_vocab_mismatch(smol, gemma)


def test_unconsumed_drafts_count_as_ignored_and_caches_stay_usable(smollm_path):
    from llama_cpp import Llama

    from lms_jupyter.engine.drafts import DraftSettings
    from lms_jupyter.engine.local.generation import SamplingParams
    from lms_jupyter.engine.local.speculative import DraftStats, speculative_tokens, vocab_mismatch

    def load():
        return Llama(model_path=str(smollm_path), n_ctx=512, n_batch=128, verbose=False)

    main, draft = load(), load()
    assert vocab_mismatch(main, draft) is None
    prompt = main.tokenize(b"Once upon a time", add_bos=True)
    settings = dict(temp=0.0, repeat_penalty=1.1, top_k=40, top_p=0.95, min_p=0.05)
    reference = []
    for token in main.generate(prompt, **settings):
        reference.append(token)
        if len(reference) == 12:
            break
    stats = DraftStats("draft")
    tokens = speculative_tokens(
        main,
        draft,
        prompt,
        settings,
        SamplingParams(temperature=0, repeat_penalty=1.1),
        DraftSettings(None, "draft", max_tokens=8),
        stats,
        lambda t: t == main.token_eos(),
    )
    got = [next(tokens) for _ in range(3)]  # the first token, then 2 of 8 agreed drafts
    tokens.close()
    assert got == reference[:3]
    assert (stats.accepted, stats.rejected, stats.ignored, stats.total) == (2, 0, 6, 8)
    # both caches are consistent: plain decoding afterwards reuses them and agrees
    again = []
    for token in main.generate(prompt, **settings):
        again.append(token)
        if len(again) == 12:
            break
    assert again == reference
    more = list(
        zip(
            range(10),
            speculative_tokens(
                main,
                draft,
                prompt,
                settings,
                SamplingParams(temperature=0, repeat_penalty=1.1),
                DraftSettings(None, "draft"),
                DraftStats("draft"),
                lambda t: t == main.token_eos(),
            ),
            strict=False,
        )
    )
    assert [t for _, t in more] == reference[:10]
    main.close()
    draft.close()
