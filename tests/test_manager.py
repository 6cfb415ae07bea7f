"""The model manager in process, on the real models: JIT, TTL, auto-evict, queueing."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import EOS_ID, GEMMA, MODEL

from lms_jupyter.api import OpenAICompatAPI
from lms_jupyter.api.openai.requests import load_request
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.errors import APIError
from lms_jupyter.models.catalog import ModelCatalog


@pytest.fixture()
def manager(models_dir):
    mgr = ModelManager(ModelCatalog(models_dir), reaper_interval=0.2)
    yield mgr
    mgr.shutdown()


def loaded(mgr):
    return sorted(m.identifier for m in mgr.list_loaded())


def test_explicit_load_unload_identifier(manager):
    model = manager.load(LoadRequest(MODEL, identifier="mine", context_length=1024))
    assert loaded(manager) == ["mine"]
    assert model.ttl is None and not model.jit
    assert model.engine_stats()["n_ctx"] == 1024  # what the worker's context has
    assert manager.get_loaded("mine") is model
    assert manager.get_loaded(MODEL) is model  # the model key finds it too
    with pytest.raises(APIError) as err:
        manager.load(LoadRequest(MODEL, identifier="mine"))
    assert err.value.status == 409
    second = manager.load(LoadRequest(MODEL))
    assert second.identifier == MODEL
    manager.unload("mine")
    assert loaded(manager) == [MODEL]
    with pytest.raises(APIError):
        manager.unload("mine")


def test_bad_load_arguments(manager):
    with pytest.raises(APIError) as err:
        manager.load(LoadRequest("no-such-model"))
    assert err.value.code == "model_not_found"
    with pytest.raises(APIError):
        manager.load(LoadRequest(MODEL, context_length=10**7))
    with pytest.raises(APIError):
        manager.load(load_request({"model": MODEL, "ttl": -1}))
    assert loaded(manager) == []


def test_jit_load_ttl_and_auto_evict(manager):
    api = OpenAICompatAPI(manager)
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 2, "temperature": 0}
    api.run_sync(api.prepare_completion(body))
    smol = manager.get_loaded(MODEL)
    assert smol.jit and smol.ttl == 3600
    # a request naming another model evicts the previous JIT model
    api.run_sync(api.prepare_completion({**body, "model": GEMMA, "ttl": 1}))
    assert loaded(manager) == [GEMMA]
    gemma = manager.get_loaded(GEMMA)
    assert gemma.ttl == 1
    # each request resets the idle timer
    time.sleep(0.6)
    api.run_sync(api.prepare_completion({**body, "model": GEMMA}))
    time.sleep(0.6)
    assert loaded(manager) == [GEMMA]
    deadline = time.time() + 5
    while manager.list_loaded() and time.time() < deadline:
        time.sleep(0.1)
    assert loaded(manager) == []


def test_explicit_loads_are_never_evicted(manager):
    manager.load(LoadRequest(GEMMA))
    api = OpenAICompatAPI(manager)
    api.run_sync(api.prepare_completion({"model": MODEL, "prompt": "Hi", "max_tokens": 1}))
    assert loaded(manager) == [GEMMA, MODEL]
    assert manager.reap_idle(now=time.time() + 10**6) == [MODEL]  # only the JIT one expires
    assert loaded(manager) == [GEMMA]


def test_ttl_never_unloads_a_busy_model(manager):
    api = OpenAICompatAPI(manager)
    body = {
        "model": MODEL,
        "prompt": "Story:",
        "max_tokens": 60,
        "stream": True,
        "logit_bias": {str(EOS_ID): -100},
        "ttl": 1,
    }
    chunks = api.run_sync(api.prepare_completion(body))
    next(chunks)
    model = manager.get_loaded(MODEL)
    assert model.busy
    assert manager.reap_idle(now=time.time() + 100) == []
    assert sum(1 for _ in chunks) > 10
    chunks.close()


def test_queue_status_and_arrival_order(manager):
    """With one slot, requests run one at a time in arrival order (more slots:
    test_batching.py)."""
    api = OpenAICompatAPI(manager)
    model = manager.load(LoadRequest(MODEL, parallel=1))
    order, statuses = [], set()
    body = {
        "model": MODEL,
        "prompt": "Count:",
        "max_tokens": 30,
        "temperature": 0,
        "logit_bias": {str(EOS_ID): -100},
    }
    preps = [api.prepare_completion(dict(body)) for _ in range(3)]

    def run(i):
        api.run_sync(preps[i])
        order.append(i)

    threads = []
    for i in range(3):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.05)
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, model.queued)
        statuses.add(model.status)
        time.sleep(0.005)
    assert order == [0, 1, 2]
    assert peak == 3
    assert "generating" in statuses
    assert model.queued == 0 and model.status == "idle"


def test_cancel_mid_stream_stops_within_tokens(manager):
    api = OpenAICompatAPI(manager)
    body = {
        "model": MODEL,
        "prompt": "Story:",
        "max_tokens": 1000,
        "stream": True,
        "logit_bias": {str(EOS_ID): -100},
    }
    chunks = api.run_sync(api.prepare_completion(body))
    for i, _ in enumerate(chunks):
        if i == 5:
            break
    chunks.close()
    model = manager.get_loaded(MODEL)
    deadline = time.time() + 2
    while model.busy and time.time() < deadline:
        time.sleep(0.01)
    assert not model.busy
    # the slot's sequence holds the prompt and a few tokens, not 1000
    assert 0 < max(model.engine_stats()["slots"]) < 40


def test_abort_interrupts_a_long_prefill(manager):
    """Cancelling during prompt processing interrupts llama_decode via the abort callback.

    A 3,000-token prefill takes tens of seconds on two cores; the cancel lands 0.3 s in.
    """
    from lms_jupyter.api.drive import Generation

    manager.load(LoadRequest(MODEL, context_length=4096))
    api = OpenAICompatAPI(manager)
    prompt = "word " * 3000
    generation = Generation(
        api.prepare_completion({"model": MODEL, "prompt": prompt, "max_tokens": 5, "stream": True})
    )
    started = time.perf_counter()
    # the client goes away 0.3 s in, as a disconnect does: the cancel crosses to the worker
    canceller = threading.Timer(0.3, generation.cancel)
    canceller.start()
    list(generation.channel)
    elapsed = time.perf_counter() - started
    assert elapsed < 3, elapsed
    # and the model still works
    out = api.run_sync(api.prepare_completion({"model": MODEL, "prompt": "Hi", "max_tokens": 2}))
    assert out["usage"]["completion_tokens"] >= 1


def test_unload_mid_stream_reports_an_error_and_fails_queued(manager):
    api = OpenAICompatAPI(manager)
    manager.load(LoadRequest(MODEL))
    body = {
        "model": MODEL,
        "prompt": "Story:",
        "max_tokens": 500,
        "stream": True,
        "logit_bias": {str(EOS_ID): -100},
    }
    running = api.run_sync(api.prepare_completion(body))
    waiting = api.run_sync(api.prepare_completion(dict(body)))
    next(running)
    manager.unload(MODEL)
    with pytest.raises(APIError) as err:
        for _ in running:
            pass
    assert err.value.code == "model_unloaded"
    with pytest.raises(APIError) as err:
        list(waiting)
    assert err.value.code == "model_unloaded"
    assert manager.list_loaded() == []


def test_unload_while_a_request_is_being_admitted_stops_it(monkeypatch):
    """The unload lands between a request leaving the queue and entering its slot (the
    race CI once hit): the request must still end with model_unloaded, not run on. The
    engine in this process (the interleaving is forced by patching its prompt check)."""
    from lms_jupyter.engine.channel import EventChannel
    from lms_jupyter.engine.events import Failed
    from lms_jupyter.engine.local import batching
    from lms_jupyter.engine.local.generation import GenerationRequest, SamplingParams
    from lms_jupyter.engine.local.model import LoadedModel
    from lms_jupyter.engine.options import LoadConfig

    info, variant = ModelCatalog(None).resolve(MODEL)
    model = LoadedModel(info, variant, MODEL, LoadConfig(context_length=2048)).load()
    scheduler = model.scheduler
    real_check = batching.check_prompt
    unloading = threading.Thread(target=model.close, kwargs={"wait": False})

    def check_during_unload(llm, request):
        unloading.start()
        deadline = time.monotonic() + 10
        while not scheduler.cancelling and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_check(llm, request)

    monkeypatch.setattr(batching, "check_prompt", check_during_unload)
    channel = EventChannel()
    model.generate(
        GenerationRequest("Story:", SamplingParams(logit_bias={EOS_ID: -100}), max_tokens=500),
        channel,
    )
    events = list(channel)
    assert isinstance(events[-1], Failed) and events[-1].error.code == "model_unloaded"
    unloading.join(30)
    assert model.join(30)
