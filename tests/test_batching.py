"""Continuous batching on the real model: parallel slots in one context, per-slot sampling,
the prompt cache per conversation, lazy grammars, queueing and cancellation per slot, and
``parallel`` through load / ps / the CLI. Behaviour only (benchmarks/bench_perf.py times it).
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import EOS_ID, MODEL

from lms_jupyter.api import OpenAICompatAPI
from lms_jupyter.api.openai.requests import load_request
from lms_jupyter.chat.grammar import grammar_for_response_format
from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.engine.events import Failed, Finished, Started, TextDelta
from lms_jupyter.engine.load_settings import kv_cache_type_for
from lms_jupyter.engine.local import llama, sampling
from lms_jupyter.engine.local.generation import run_generation
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.engine.request import GenerationRequest, SamplingParams
from lms_jupyter.errors import APIError
from lms_jupyter.models.catalog import ModelCatalog, embedded_model_path

pytestmark = pytest.mark.timeout(600)

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
NO_EOS = {EOS_ID: -100.0}


def chatml(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def json_grammar() -> str:
    return grammar_for_response_format(
        {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    )


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    # one thread: llama.cpp's spinning workers crawl when a shared machine is oversubscribed.
    # Flash attention: a request's text is then the same alone or beside others (its CPU
    # kernel skips other sequences' cells; without it, they change the rounding of sums)
    mgr = ModelManager(
        ModelCatalog(tmp_path_factory.mktemp("models")),
        reaper_interval=0.2,
        n_threads=1,
        flash_attention=True,
    )
    yield mgr
    mgr.shutdown()


@pytest.fixture(scope="module")
def default_kv(manager) -> str:
    """The KV cell type the manager's loads get by default (q8_0 on this CPU)."""
    return kv_cache_type_for(manager, "llm", True, 0)


@pytest.fixture(scope="module")
def reference(default_kv):
    """llama-cpp-python's own single-request path (``Llama.generate`` with its sampler
    chain, the grammar applied to the whole vocabulary), on a separate instance."""
    kv = llama.KV_CACHE_TYPES[default_kv]
    llm = llama.load_llama(
        str(embedded_model_path()), n_ctx=2048, n_batch=512, flash_attn=True, type_k=kv, type_v=kv
    )  # as the manager loads

    yield lambda request: single_path_text(llm, request)
    llm.close()


def single_path_text(llm, request: GenerationRequest) -> str:
    """``request``'s text through llama-cpp-python's single-request path on ``llm``."""
    events = []
    run_generation(
        llm, request, threading.Event(), events.append, eog=lambda t: llama.is_eog(llm, t)
    )
    assert isinstance(events[-1], Finished), events[-1]
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def start(model, request: GenerationRequest) -> EventChannel:
    channel = EventChannel()
    model.generate(request, channel)
    return channel


def collect(channel: EventChannel) -> tuple[str, list]:
    events = list(channel)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


def run_together(model, requests: list[GenerationRequest]) -> list[tuple[str, list]]:
    """Submit every request at once and read them all (each from its own thread)."""
    channels = [start(model, r) for r in requests]
    results: list = [None] * len(channels)

    def read(i):
        results[i] = collect(channels[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(channels))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def finished(events) -> Finished:
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


# -- same output alone or batched ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sampling_args", [dict(temperature=0), dict(temperature=0.8, seed=11)], ids=["greedy", "seeded"]
)
def test_same_output_alone_or_beside_three_others(manager, reference, sampling_args):
    """Four requests decoded together in one context give what each gives alone through
    llama-cpp-python's single-request path (token for token: a fresh instance, so every
    sequence's cells are in order), including one constrained by a grammar; under the
    default KV cache (q8_0 cells on the CPU)."""
    model = manager.load(LoadRequest(MODEL, identifier="fresh", parallel=4, context_length=2048))
    try:
        assert model.engine_stats()["type_k"] == llama.KV_CACHE_TYPES["q8_0"]
        prompts = [
            "Write a haiku about rain.",
            "List three fruits.",
            "Describe a cat in one sentence.",
            "Reply with a person as JSON.",
        ]

        def request(i):
            return GenerationRequest(
                chatml(prompts[i]),
                SamplingParams(**sampling_args),
                max_tokens=40,
                add_bos=False,
                grammar=json_grammar() if i == 3 else None,
            )

        together = run_together(model, [request(i) for i in range(4)])
        assert model.engine_stats()["stats"]["steps"] < sum(
            finished(events).completion_tokens for _text, events in together
        )  # batched
        for i, (text, events) in enumerate(together):
            assert finished(events).completion_tokens > 0
            assert text == reference(request(i)), prompts[i]
    finally:
        manager.unload("fresh")


def test_quantized_kv_cache_keeps_outputs_batch_invariant(tmp_path):
    """``c.ModelManager.kv_cache_type = "q8_0"``: the context really holds q8_0 cells, the
    estimate counts them (34 bytes per 32 values, not 64), requests batched together give
    what each gives alone through llama-cpp-python on a q8_0 cache, and a quantized cache
    with flash attention off is a clear 400 (llama.cpp cannot read it without)."""
    mgr = ModelManager(
        ModelCatalog(tmp_path),
        reaper_interval=0.2,
        n_threads=1,
        flash_attention=True,
        kv_cache_type="q8_0",
    )
    f16 = ModelManager(
        ModelCatalog(tmp_path),
        n_threads=1,
        flash_attention=True,
        kv_cache_type="f16",
        prestart_worker=False,
    )
    q8 = mgr.estimate(MODEL, context_length=2048)
    assert q8["kv_cache_type"] == "q8_0"
    assert q8["breakdown"]["kv_cache"] == pytest.approx(
        f16.estimate(MODEL, context_length=2048)["breakdown"]["kv_cache"] * 17 / 32, rel=0.01
    )
    with pytest.raises(APIError) as err:
        mgr.load(LoadRequest(MODEL, flash_attention=False))
    assert err.value.status == 400 and err.value.code == "kv_cache_needs_flash_attention"
    assert mgr.list_loaded() == []
    assert f16.estimate(MODEL)["kv_cache_type"] == "f16"  # the setting overrides auto
    by_device = ModelManager(ModelCatalog(tmp_path), flash_attention=None, kv_cache_type="q8_0")
    assert by_device.estimate(MODEL)["flash_attention"] is True  # "by device" picks it on
    q8_type = llama.KV_CACHE_TYPES["q8_0"]
    alone = llama.load_llama(
        str(embedded_model_path()),
        n_ctx=2048,
        n_batch=512,
        flash_attn=True,
        type_k=q8_type,
        type_v=q8_type,
    )
    try:
        model = mgr.load(LoadRequest(MODEL, parallel=4, context_length=2048))
        stats = model.engine_stats()  # the worker's context
        assert stats["type_k"] == q8_type == stats["type_v"]
        prompts = [
            "Write a haiku about rain.",
            "List three fruits.",
            "Describe a cat in one sentence.",
        ]
        requests = [
            GenerationRequest(
                chatml(p), SamplingParams(temperature=0), max_tokens=40, add_bos=False
            )
            for p in prompts
        ]
        together = run_together(model, requests)
        for request, (text, events) in zip(requests, together, strict=False):
            assert finished(events).completion_tokens > 0
            assert text == single_path_text(alone, request)
    finally:
        alone.close()
        mgr.shutdown()


def test_kv_cache_default_by_device(tmp_path):
    """``kv_cache_type = "auto"`` (the default): q8_0 cells with flash attention on the
    CPU; a load that turns flash attention off gets f16 cells (not a 400); an embedding
    model keeps f16; ``ps`` rows say which. (GPU offload keeps f16: this build has none,
    so a load asking for layers on a GPU stays on the CPU and keeps q8_0.)"""
    mgr = ModelManager(
        ModelCatalog(tmp_path), reaper_interval=3600, n_threads=1, prestart_worker=False
    )
    assert mgr.kv_cache_type == "auto" and mgr.flash_attention is True
    estimate = mgr.estimate(MODEL, context_length=2048)
    assert estimate["kv_cache_type"] == "q8_0" and estimate["flash_attention"] is True
    assert mgr.estimate(MODEL, flash_attention=False)["kv_cache_type"] == "f16"
    assert kv_cache_type_for(mgr, "embedding", True, 0) == "f16"
    try:
        plain = mgr.load(LoadRequest(MODEL, identifier="q8", context_length=1024))
        off = mgr.load(
            LoadRequest(MODEL, identifier="no-fa", context_length=1024, flash_attention=False)
        )
        rows = {m.identifier: m.snapshot() for m in mgr.list_loaded()}
        assert (rows["q8"]["kvCacheType"], rows["q8"]["flashAttention"]) == ("q8_0", True)
        assert (rows["no-fa"]["kvCacheType"], rows["no-fa"]["flashAttention"]) == ("f16", False)
        assert plain.engine_stats()["type_k"] == llama.KV_CACHE_TYPES["q8_0"]
        assert off.engine_stats()["type_v"] == llama.KV_CACHE_TYPES["f16"]
    finally:
        mgr.shutdown()


def test_lazy_grammar_gives_the_full_checks_output(reference, default_kv):
    """The grammar checked on a window of candidates (falling back to the whole
    vocabulary only when that cannot decide) samples what the full check samples.

    The engine itself, in this process (sampling.LAZY_GRAMMAR is this process's switch),
    loaded as a worker loads it."""
    from lms_jupyter.engine.local.model import LoadedModel
    from lms_jupyter.engine.options import LoadConfig

    info, variant = ModelCatalog(None).resolve(MODEL)
    model = LoadedModel(
        info,
        variant,
        "grammar",
        LoadConfig(
            context_length=2048,
            n_threads=1,
            parallel=2,
            flash_attention=True,
            kv_cache_type=default_kv,
        ),
    ).load()
    try:
        for args in (
            dict(temperature=0),
            dict(temperature=0.8, seed=3),
            dict(temperature=1.2, seed=5, top_k=20),
        ):
            request = GenerationRequest(
                chatml("Describe a person as JSON."),
                SamplingParams(**args),
                max_tokens=60,
                add_bos=False,
                grammar=json_grammar(),
            )
            before = model.engine_stats()["stats"]
            lazy, events = collect(start(model, request))
            after = model.engine_stats()["stats"]
            windows = after.get("grammar_window", 0) - before.get("grammar_window", 0)
            full_checks = after["grammar_full"] - before.get("grammar_full", 0)
            tokens = finished(events).completion_tokens
            assert windows > 0 and full_checks < tokens  # the lazy path did the work
            sampling.LAZY_GRAMMAR = False
            try:
                full, _ = collect(start(model, request))
            finally:
                sampling.LAZY_GRAMMAR = True
            assert lazy == full == reference(request), args
            assert lazy.startswith("{") and '"age"' in lazy
    finally:
        model.close()


# -- semantics per slot -------------------------------------------------------------------------


def test_stop_strings_max_tokens_and_logprobs_per_slot(manager):
    model = manager.load(LoadRequest(MODEL, identifier="limits", parallel=3))
    try:
        story = chatml("Tell me a long story about a dragon.")
        requests = [
            GenerationRequest(
                story, SamplingParams(temperature=0, logit_bias=NO_EOS), max_tokens=5, add_bos=False
            ),
            GenerationRequest(
                story,
                SamplingParams(temperature=0, logit_bias=NO_EOS),
                max_tokens=200,
                stop=[" the"],
                add_bos=False,
                logprobs=0,
            ),
            GenerationRequest(
                story,
                SamplingParams(temperature=0, repeat_penalty=1.0, logit_bias=NO_EOS),
                max_tokens=12,
                add_bos=False,
                logprobs=2,
            ),
        ]
        (short, e1), (stopped, e2), (scored, e3) = run_together(model, requests)
        assert finished(e1).stop_reason == "maxPredictedTokensReached"
        assert finished(e1).completion_tokens == 5
        assert finished(e2).stop_reason == "stopStringFound" and " the" not in stopped
        assert finished(e2).completion_tokens < 200
        assert finished(e3).completion_tokens == 12
        # log-probabilities: one entry per token, riding with the text they belong to
        entries = [lp for e in e3 if isinstance(e, TextDelta) for lp in e.logprobs]
        assert len(entries) == 12
        assert "".join(lp.token for lp in entries) == scored
        for delta in (e for e in e3 if isinstance(e, TextDelta)):
            assert "".join(lp.token for lp in delta.logprobs) == delta.text
        for lp in entries:
            assert lp.logprob <= 0 and len(lp.top) == 2
            assert lp.top[0].logprob >= lp.top[1].logprob
            assert lp.top[0].token == lp.token  # greedy, no penalty: the likeliest
            assert bytes(lp.bytes).decode("utf-8", "replace") == lp.token
        assert not any(e.logprobs for e in e1 if isinstance(e, TextDelta))  # not asked
        # a stop string's tokens carry no entries: what is left spells the text before it
        kept = [lp for e in e2 if isinstance(e, TextDelta) for lp in e.logprobs]
        assert kept and all(lp.top == () for lp in kept)
        assert stopped.startswith("".join(lp.token for lp in kept))
        assert len(kept) < finished(e2).completion_tokens
    finally:
        manager.unload("limits")


def test_cancelling_one_stream_leaves_the_others_running(manager):
    model = manager.load(LoadRequest(MODEL, identifier="cancel", parallel=3))
    try:
        requests = [
            GenerationRequest(
                chatml(f"Story number {i}:"),
                SamplingParams(temperature=0, logit_bias=NO_EOS),
                max_tokens=40,
                add_bos=False,
            )
            for i in range(3)
        ]
        channels = [start(model, r) for r in requests]
        victim = channels[1]
        seen = 0
        for event in victim:
            if isinstance(event, TextDelta):
                seen += 1
                if seen == 3:
                    victim.cancel()  # the client went away
                    break
        deadline = time.time() + 30
        while model.engine_stats()["running"] == 3 and time.time() < deadline:
            time.sleep(0.01)
        assert model.engine_stats()["running"] == 2  # its slot is free, the others run on
        cancelled = list(victim)
        assert isinstance(cancelled[-1], Finished) and cancelled[-1].stop_reason == "userStopped"
        assert cancelled[-1].completion_tokens < 40
        for channel in (channels[0], channels[2]):
            _text, events = collect(channel)
            assert finished(events).completion_tokens == 40
        assert model.queued == 0 and model.status == "idle"
    finally:
        manager.unload("cancel")


def test_requests_beyond_the_slots_wait_in_arrival_order(manager):
    model = manager.load(LoadRequest(MODEL, identifier="queue", parallel=2))
    try:
        requests = [
            GenerationRequest(
                chatml(f"Count to {10 + i}."),
                SamplingParams(temperature=0, logit_bias=NO_EOS),
                max_tokens=25 + 5 * i,
                add_bos=False,
            )
            for i in range(4)
        ]
        channels = [start(model, r) for r in requests]
        peak_running = peak_queued = 0
        statuses = set()
        started_order = []
        results: list = [None] * 4

        def read(i):
            for event in channels[i]:
                if isinstance(event, Started):
                    started_order.append(i)
            results[i] = True

        threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak_running = max(peak_running, model.engine_stats()["running"])
            peak_queued = max(peak_queued, model.queued)
            statuses.add(model.status)
            time.sleep(0.002)
        assert all(results)
        assert peak_running == 2 and peak_queued == 4
        assert started_order[:2] in ([0, 1], [1, 0]) and started_order[2:] == [2, 3]
        assert "generating" in statuses
        assert model.queued == 0 and model.status == "idle"
        # a waiting request whose client leaves is dropped without running
        first = [start(model, r) for r in requests[:2]]
        waiting = start(model, requests[3])
        waiting.cancel()
        assert not any(isinstance(e, Started) for e in waiting)
        for channel in first:
            collect(channel)
        assert model.queued == 0
    finally:
        manager.unload("queue")


def test_a_full_shared_cache_stops_requests_cleanly(manager):
    """Four slots sharing a 256-token cache cannot all grow to 100 tokens: cached
    prompts are dropped first, then the biggest request stops with contextLengthReached;
    nobody fails."""
    model = manager.load(LoadRequest(MODEL, identifier="small", parallel=4, context_length=256))
    try:
        requests = [
            GenerationRequest(
                chatml(f"Write story {i}."),
                SamplingParams(temperature=0, logit_bias=NO_EOS),
                max_tokens=100,
                add_bos=False,
            )
            for i in range(4)
        ]
        results = run_together(model, requests)
        reasons = [finished(events).stop_reason for _text, events in results]
        assert "contextLengthReached" in reasons
        assert set(reasons) <= {"contextLengthReached", "maxPredictedTokensReached"}
        # and the model still answers
        text, events = collect(start(model, requests[0]))
        assert finished(events).completion_tokens > 0
    finally:
        manager.unload("small")


# -- the prompt cache per conversation ------------------------------------------------------------


def test_cached_tokens_for_follow_ups_and_interleaved_conversations(manager):
    manager.load(LoadRequest(MODEL, identifier="chats", parallel=2))
    api = OpenAICompatAPI(manager)
    try:
        histories = {
            "a": [{"role": "system", "content": "You are a pirate."}],
            "b": [{"role": "system", "content": "You are a librarian."}],
        }
        usage = {"a": [], "b": []}
        for turn in range(3):
            for name in ("a", "b"):  # the two conversations take turns
                messages = histories[name] + [
                    {"role": "user", "content": f"Question {turn} from {name}?"}
                ]
                body = api.run_sync(
                    api.prepare_chat(
                        {"model": "chats", "messages": messages, "max_tokens": 8, "temperature": 0}
                    )
                )
                usage[name].append(body["usage"])
                histories[name] = messages + [body["choices"][0]["message"]]
        for name in ("a", "b"):
            first, *later = usage[name]
            for previous, current in zip(usage[name], later, strict=False):
                cached = current["prompt_tokens_details"]["cached_tokens"]
                # everything the previous turn evaluated is reused (its answer's last
                # token was sampled, never decoded, so it is evaluated now)
                assert cached >= previous["prompt_tokens"], usage[name]
                assert cached < current["prompt_tokens"]
        # a conversation that starts like another reuses its prefix from the other slot
        third = api.run_sync(
            api.prepare_chat(
                {
                    "model": "chats",
                    "messages": histories["a"][:2]
                    + [{"role": "user", "content": "Something else entirely?"}],
                    "max_tokens": 4,
                    "temperature": 0,
                }
            )
        )
        assert third["usage"]["prompt_tokens_details"]["cached_tokens"] > 10
    finally:
        manager.unload("chats")


# -- parallel in load / ps / CLI ------------------------------------------------------------------


def test_parallel_is_validated():
    assert load_request({"model": MODEL, "parallel": 3}).parallel == 3
    assert load_request({"model": MODEL}).parallel is None
    for bad in (0, -1, 65, "four", 2.5, True):
        with pytest.raises(APIError) as err:
            load_request({"model": MODEL, "parallel": bad})
        assert err.value.status == 400 and err.value.param == "parallel"


def test_estimate_counts_the_slots_not_a_kv_cache_each(manager):
    one = manager.estimate(MODEL, context_length=4096, parallel=1)
    four = manager.estimate(MODEL, context_length=4096, parallel=4)
    assert one["parallel"] == 1 and four["parallel"] == 4
    assert four["breakdown"]["kv_cache"] == one["breakdown"]["kv_cache"]  # shared
    assert 0 < one["breakdown"]["slots"] < four["breakdown"]["slots"]
    assert (
        four["estimated_total_bytes"] - one["estimated_total_bytes"]
        < one["breakdown"]["kv_cache"] / 4
    )


def test_http_load_parallel_ps_and_concurrent_streams(server_factory):
    from openai import OpenAI

    server = server_factory("--ModelManager.n_threads=1")
    base = server.url + "lms/api/"
    http = httpx.Client(headers=server.headers, timeout=120)
    r = http.post(
        base + "v1/models/load",
        json={"model": MODEL, "identifier": "p3", "parallel": 3, "echo_load_config": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["load_config"]["parallel"] == 3
    r = http.post(base + "v1/models/load", json={"model": MODEL, "parallel": 1000})
    assert r.status_code == 400 and r.json()["error"]["param"] == "parallel"
    try:
        rows = {row["identifier"]: row for row in http.get(base + "v0/ps").json()["data"]}
        assert rows["p3"]["parallel"] == 3
        models = http.get(base + "v1/models").json()["models"]
        instance = next(i for m in models for i in m["loaded_instances"] if i["id"] == "p3")
        assert instance["config"]["parallel"] == 3

        client = OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0, timeout=300)
        results: list = [None] * 4
        statuses = set()

        def stream(i):
            chunks = client.chat.completions.create(
                model="p3",
                messages=[{"role": "user", "content": f"Tell story {i}."}],
                max_tokens=20,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                logit_bias={str(EOS_ID): -100},
            )
            text, usage = "", None
            for chunk in chunks:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                elif chunk.usage:
                    usage = chunk.usage
            results[i] = (text, usage)

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            row = next(
                r for r in http.get(base + "v0/ps").json()["data"] if r["identifier"] == "p3"
            )
            statuses.add((row["status"], row["queued"]))
            time.sleep(0.05)
        for text, usage in results:
            assert text and usage.completion_tokens == 20
        assert any(queued == 4 for _status, queued in statuses)  # three run, one waits
        assert any(status == "generating" for status, _queued in statuses)
    finally:
        http.post(base + "v1/models/unload", json={"instance_id": "p3"})
        http.close()


def test_cli_load_parallel_and_estimate(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "LMS_JUPYTER_MODELS_DIR": str(tmp_path)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lms_jupyter.cli",
            "load",
            MODEL,
            "--estimate-only",
            "--json",
            "--parallel",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["parallel"] == 2
    bad = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "load", MODEL, "--parallel", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode != 0 and "parallel" in bad.stderr


def test_unload_fails_running_and_waiting_requests(manager):
    model = manager.load(LoadRequest(MODEL, identifier="gone", parallel=1))
    request = GenerationRequest(
        chatml("Story:"),
        SamplingParams(temperature=0, logit_bias=NO_EOS),
        max_tokens=400,
        add_bos=False,
    )
    running, waiting = start(model, request), start(model, request)
    for event in running:
        if isinstance(event, TextDelta):
            break
    manager.unload("gone")
    for channel in (running, waiting):
        events = list(channel)
        assert isinstance(events[-1], Failed) and events[-1].error.code == "model_unloaded"
