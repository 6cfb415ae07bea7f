"""Memory estimates from GGUF metadata: the arithmetic, real loads measured against it, and
the load guardrail over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import pytest
from conftest import GEMMA, MODEL

from lms_jupyter.models.gguf import read_header
from lms_jupyter.models.memory import (
    GGML_TYPE_SIZES,
    MIB,
    ModelShape,
    estimate_memory,
    kv_cache_bytes,
    parse_gpu_offload,
    tensor_bytes,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def smol_header(smollm_path):
    return read_header(smollm_path)


@pytest.fixture(scope="module")
def gemma_header(gemma_file):
    return read_header(gemma_file)


# -- arithmetic ---------------------------------------------------------------------------------
def test_ggml_type_sizes_match_the_gguf_package():
    import gguf

    for type_id, sizes in GGML_TYPE_SIZES.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(type_id)] == sizes


def test_tensor_bytes_add_up_to_the_file(smol_header, smollm_path, gemma_header, gemma_file):
    for header, path in ((smol_header, smollm_path), (gemma_header, gemma_file)):
        total = sum(tensor_bytes(t.shape, t.ggml_type) for t in header.tensors)
        size = path.stat().st_size
        assert 0.9 * size < total < size  # the rest is metadata and the vocabulary


def test_kv_cache_matches_llama_cpp(smol_header, gemma_header):
    """llama.cpp logs 45.00 MiB (30 layers) and 6.00 + 30.00 MiB (3 global + 15 SWA layers)
    for these models at n_ctx=2048 with f16 K and V."""
    smol, gemma = ModelShape.from_header(smol_header), ModelShape.from_header(gemma_header)
    assert kv_cache_bytes(smol, 2048) == 45 * MIB
    assert kv_cache_bytes(smol, 8192) == 180 * MIB
    assert kv_cache_bytes(smol, 1000) == kv_cache_bytes(smol, 1024)  # padded to 256 cells
    assert kv_cache_bytes(gemma, 2048) == 36 * MIB
    assert [i for i, swa in enumerate(gemma.swa) if not swa] == [5, 11, 17]
    assert gemma.head_dim_k == 256 and gemma.n_head_kv == [1] * 18
    # without a full-size SWA cache the 15 SWA layers keep only n_swa + n_ubatch cells
    assert kv_cache_bytes(gemma, 8192, swa_full=False) == (3 * 8192 + 15 * 1024) * 512 * 2
    assert kv_cache_bytes(smol, 2048, kv_type="q8_0") < kv_cache_bytes(smol, 2048) * 0.6


def test_estimate_shape_and_knobs(smol_header):
    size = 98_362_432
    small = estimate_memory("smol", smol_header, size, 2048)
    big = estimate_memory("smol", smol_header, size, 8192)
    no_fa = estimate_memory("smol", smol_header, size, 8192, flash_attention=False)
    assert small.weights == size and small.gpu_bytes == 0
    assert big.kv_cache == 4 * small.kv_cache and big.total_bytes > small.total_bytes
    assert no_fa.compute > big.compute + 100 * MIB  # f32 attention scores for 8192 cells
    gpu = estimate_memory("smol", smol_header, size, 2048, gpu_offload=1.0)
    half = estimate_memory("smol", smol_header, size, 2048, gpu_offload=0.5)
    assert gpu.gpu_layers == 31 and half.gpu_layers == 15
    assert gpu.gpu_bytes > half.gpu_bytes > 0
    assert gpu.gpu_bytes > small.kv_cache + 0.5 * size
    as_dict = small.as_dict(10**12)
    assert as_dict["fits"] is True and as_dict["estimated_total_bytes"] == small.total_bytes
    assert set(as_dict["breakdown"]) == {"weights", "kv_cache", "compute", "slots"}
    assert small.as_dict(1)["fits"] is False


@pytest.mark.parametrize(
    "value, expected",
    [(None, 0.0), ("off", 0.0), ("max", 1.0), (0.25, 0.25), ("0.5", 0.5), (1, 1.0), (True, 1.0)],
)
def test_parse_gpu_offload(value, expected):
    assert parse_gpu_offload(value) == expected


@pytest.mark.parametrize("value", ["lots", 1.5, -0.1, [1]])
def test_parse_gpu_offload_rejects(value):
    from lms_jupyter.errors import APIError

    with pytest.raises(APIError) as err:
        parse_gpu_offload(value)
    assert err.value.status == 400 and err.value.param == "gpu"


# -- estimate vs a real load --------------------------------------------------------------------
_MEASURE = textwrap.dedent("""
    import json, sys
    from lms_jupyter.models.catalog import ModelCatalog
    from lms_jupyter.engine.channel import EventChannel
    from lms_jupyter.engine.local.generation import GenerationRequest, SamplingParams
    from lms_jupyter.engine.manager import ModelManager
    from lms_jupyter.engine.options import LoadRequest
    from lms_jupyter.engine.worker.proxy import WorkerProcess

    def rss(pid):
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

    models_dir, model, n_ctx = sys.argv[1], sys.argv[2], int(sys.argv[3])
    manager = ModelManager(ModelCatalog(models_dir), reaper_interval=3600,
                           prestart_worker=False)
    estimate = manager.estimate(model, context_length=n_ctx)
    # the baseline: a worker process with Python, numpy and llama.cpp imported, no model
    idle = WorkerProcess()
    idle.wait_ready(120)
    before = rss(idle.process.pid)
    idle.discard()
    loaded = manager.load(LoadRequest(model, context_length=n_ctx))
    after_load = loaded.resident_bytes()
    # a prompt longer than one micro-batch touches the whole compute working set
    request = GenerationRequest(prompt="The quick brown fox. " * 105,
                                sampling=SamplingParams(temperature=0), max_tokens=4)
    channel = EventChannel()
    loaded.generate(request, channel)
    events = list(channel)
    after_gen = loaded.resident_bytes()
    manager.shutdown()
    print(json.dumps({"estimate": estimate, "load": after_load - before,
                      "generation": after_gen - before,
                      "prompt_tokens": events[-1].prompt_tokens}))
""")


def measure(models_dir, model: str, n_ctx: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(models_dir), model, str(n_ctx)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "model, n_ctx", [(MODEL, 2048), (MODEL, 8192), (GEMMA, 2048), (GEMMA, 8192)]
)
def test_estimate_within_25_percent_of_resident_growth(models_dir, model, n_ctx):
    result = measure(models_dir, model, n_ctx)
    estimate = result["estimate"]["estimated_total_bytes"]
    measured = result["generation"]
    assert result["prompt_tokens"] > 512
    print(
        f"{model} n_ctx={n_ctx}: estimated {estimate / MIB:.1f} MiB, measured "
        f"{measured / MIB:.1f} MiB after a generation ({result['load'] / MIB:.1f} after load)"
    )
    assert abs(estimate - measured) <= 0.25 * measured


# -- over HTTP: the estimate endpoint and the guardrail -----------------------------------------
@pytest.fixture(scope="module")
def small_server(server_factory):
    """A server with a 300 MiB budget: SmolLM2 at 2048 (~180 MiB) fits, Gemma (~350) not."""
    return server_factory("--ModelManager.memory_limit_mb=300")


def v1(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(
        server.url + "lms/api/v1/" + path, json=body, headers=server.headers, timeout=120
    )


def test_estimate_endpoint(small_server):
    r = v1(small_server, "models/estimate", {"model": GEMMA, "context_length": 8192})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == GEMMA and body["context_length"] == 8192
    assert body["gpu_offload"] == 0 and body["estimated_gpu_bytes"] == 0
    breakdown = body["breakdown"]
    # the CPU default: q8_0 cells, 34 bytes per 32 values (144 MiB as f16)
    assert body["kv_cache_type"] == "q8_0" and body["flash_attention"] is True
    assert breakdown["kv_cache"] == 144 * MIB * 17 // 32 and breakdown["weights"] > 240e6
    assert body["estimated_total_bytes"] == sum(breakdown.values())
    assert body["fits"] is False and body["available_bytes"] <= 300 * MIB
    gpu = v1(
        small_server, "models/estimate", {"model": GEMMA, "context_length": 8192, "gpu": "max"}
    ).json()
    assert gpu["gpu_offload"] == 1 and gpu["estimated_gpu_bytes"] > 300 * MIB
    only = v1(
        small_server, "models/load", {"model": MODEL, "context_length": 2048, "estimate_only": True}
    ).json()
    assert only["fits"] is True and "instance_id" not in only
    for bad, param in (
        ({"model": MODEL, "context_length": 10}, "context_length"),
        ({"model": MODEL, "gpu": "lots"}, "gpu"),
        ({}, "model"),
    ):
        r = v1(small_server, "models/estimate", bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_guardrail_refuses_loads_that_do_not_fit(small_server):
    r = v1(small_server, "models/load", {"model": GEMMA, "context_length": 2048})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request" and error["code"] == "insufficient_memory"
    assert "GiB" in error["message"]
    # a JIT load through the OpenAI endpoint is refused the same way
    r = httpx.post(
        small_server.api_url + "/chat/completions",
        headers=small_server.headers,
        json={"model": GEMMA, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "insufficient_memory"
    # the budget counts models already loaded
    assert (
        v1(
            small_server, "models/load", {"model": MODEL, "context_length": 2048, "identifier": "a"}
        ).status_code
        == 200
    )
    r = v1(small_server, "models/load", {"model": MODEL, "context_length": 2048, "identifier": "b"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "insufficient_memory"
    # force skips the guardrail
    r = v1(
        small_server,
        "models/load",
        {"model": MODEL, "context_length": 2048, "identifier": "b", "force": True},
    )
    assert r.status_code == 200, r.text
    for instance in ("a", "b"):
        assert v1(small_server, "models/unload", {"instance_id": instance}).status_code == 200
