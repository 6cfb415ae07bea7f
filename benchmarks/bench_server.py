"""Serving overhead of lms-jupyter against raw llama-cpp-python, same model, same run.

Prints, as medians over --runs repetitions:
  * streamed decode tokens/s through HTTP (openai client, /lms/v1/completions) divided by
    raw ``Llama.create_completion(stream=True)``            target >= 0.97
  * time to first token over HTTP minus raw                 target <= 15 ms
  * jupyter-server ``GET /api/status`` p99 latency while two streams generate
                                                            target <= 50 ms

Raw and server never run at the same time, and both use the same thread count.
Usage: python benchmarks/bench_server.py [--runs 7] [--tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lms_jupyter.engine.local.model import default_threads
from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY, embedded_model_path

PROMPT = "Here is a long story about a dragon who learns to read:\n\n"
EOS_BIAS = {2: -100.0}  # SmolLM2's EOS: keep both sides generating the full length


def prompt(run: int) -> str:
    """A different first token each run, so neither side reuses a cached prefix."""
    return f"Story {run}. {PROMPT}"


def raw_run(llm, tokens: int, run: int) -> tuple[float, float]:
    """(time to first token, decode tokens/s) for raw llama-cpp-python."""
    started = time.perf_counter()
    first = None
    count = 0
    for _chunk in llm.create_completion(
        prompt(run), max_tokens=tokens, temperature=0, stream=True, logit_bias=EOS_BIAS
    ):
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - started, (count - 1) / (end - first)


def http_run(client, tokens: int, run: int) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    count = 0
    stream = client.completions.create(
        model=DEFAULT_MODEL_KEY,
        prompt=prompt(run),
        max_tokens=tokens,
        temperature=0,
        stream=True,
        logit_bias={"2": -100},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            count += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return first - started, (count - 1) / (end - first)


def status_latency_under_load(server, client, tokens: int) -> float:
    """p99 of GET /api/status (ms) while two streams generate."""
    from bench_perf import status_p99_while

    def generate(i, stop):
        run = 1000 * (i + 1)
        while not stop.is_set():
            run += 1
            http_run(client, tokens, run)

    return status_p99_while(server, generate, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="generation threads on both sides (0: all cores, the default)",
    )
    args = parser.parse_args()
    from conftest import JupyterServer
    from llama_cpp import Llama
    from openai import OpenAI

    threads = args.threads or default_threads()
    path = str(embedded_model_path())
    print(f"model {path}\nthreads {threads}, {args.tokens} tokens, {args.runs} runs")

    llm = Llama(
        model_path=path,
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,
        verbose=False,
    )
    raw_run(llm, 8, -1)  # warm up
    raw = [raw_run(llm, args.tokens, i) for i in range(args.runs)]
    llm.close()
    del llm

    root = Path(tempfile.mkdtemp())
    models = root / "models"
    models.mkdir()
    server = JupyterServer(root, models, [f"--ModelManager.n_threads={threads}"])
    try:
        client = OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0)
        http_run(client, 8, -1)  # JIT load + warm up
        served = [http_run(client, args.tokens, i) for i in range(args.runs)]
        p99 = status_latency_under_load(server, client, 32)
    finally:
        server.stop()

    raw_ttft = statistics.median(r[0] for r in raw) * 1000
    raw_tps = statistics.median(r[1] for r in raw)
    http_ttft = statistics.median(r[0] for r in served) * 1000
    http_tps = statistics.median(r[1] for r in served)
    print(f"raw   decode {raw_tps:7.1f} tok/s   ttft {raw_ttft:6.1f} ms")
    print(f"http  decode {http_tps:7.1f} tok/s   ttft {http_ttft:6.1f} ms")
    print(f"decode ratio http/raw       {http_tps / raw_tps:.3f}   (target >= 0.97)")
    print(f"ttft http - raw             {http_ttft - raw_ttft:+.1f} ms (target <= 15 ms)")
    print(f"/api/status p99, 2 streams  {p99:.1f} ms   (target <= 50 ms)")


if __name__ == "__main__":
    main()
