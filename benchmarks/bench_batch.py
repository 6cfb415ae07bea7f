"""Items/s for short classification prompts: batch jobs against plain loops.

The same N prompts (default 200 short reviews, "positive or negative", answers
constrained to a two-value schema, at most 24 tokens) on the same model and thread count,
four ways. To spread the machine's changing load evenly over the four, the prompts are
split into ``--rounds`` slices and every round runs each way on its slice in turn; the
figures add up the rounds.

  * http loop      a plain Python loop of ``client.chat.completions.create`` (openai client
                   against a jupyter server with the extension)
  * http batch     the same requests as one job of OpenAI's Batch API on that server
                   (upload, create, poll until completed)
  * kernel loop    a loop of in-process requests (what a loop of ``%%chat`` cells costs)
  * kernel batch   ``lms_jupyter.batch(prompts, schema=...)`` in process (no cache)

Prints items/s and generated tokens/s for each, and the ratios batch / loop. With one
slot per model (today's engine) requests queue on the model's worker either way, so the
batch's gain is only what pipelining hides (rendering and sending the next request while
one runs); with ``parallel`` slots the batch keeps them all busy.

Usage: python benchmarks/bench_batch.py [--n 200] [--rounds 4] [--threads 1] [--max-tokens 24]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pydantic import BaseModel

from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY

GOOD = [
    "works perfectly",
    "arrived early",
    "great value",
    "I love it",
    "sturdy and light",
    "exceeded my expectations",
    "my kids adore it",
    "five stars",
]
BAD = [
    "broke after a week",
    "arrived damaged",
    "a waste of money",
    "I returned it",
    "flimsy and loud",
    "nothing like the photos",
    "stopped charging",
    "one star",
]
ITEMS = ["kettle", "lamp", "backpack", "charger", "fan", "headphones", "mug", "chair"]


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]


def prompts(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(GOOD if rng.random() < 0.5 else BAD)
        out.append(
            f'Review {len(out) + 1} of a {rng.choice(ITEMS)}: "{words}". Positive or negative?'
        )  # numbered: no two prompts are the same
    return out


def body(text: str, max_tokens: int) -> dict:
    return {
        "model": DEFAULT_MODEL_KEY,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "Sentiment",
                "schema": Sentiment.model_json_schema(),
                "strict": True,
            },
        },
    }


def http_loop(client, texts, max_tokens) -> tuple[float, int]:
    started, tokens = time.perf_counter(), 0
    for text in texts:
        reply = client.chat.completions.create(**body(text, max_tokens))
        tokens += reply.usage.completion_tokens
    return time.perf_counter() - started, tokens


def http_batch(client, texts, max_tokens) -> tuple[float, int]:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body(text, max_tokens),
        }
        for i, text in enumerate(texts)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    started = time.perf_counter()
    upload = client.files.create(file=("bench.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    elapsed = time.perf_counter() - started
    assert batch.status == "completed" and batch.request_counts.completed == len(texts), batch
    return elapsed, batch.usage.output_tokens


def kernel_loop(api, texts, max_tokens) -> tuple[float, int]:
    started, tokens = time.perf_counter(), 0
    for text in texts:
        tokens += api.run_sync(api.prepare_chat(body(text, max_tokens)))["usage"][
            "completion_tokens"
        ]
    return time.perf_counter() - started, tokens


def kernel_batch(api, texts, max_tokens) -> tuple[float, int]:
    import lms_jupyter

    started = time.perf_counter()
    out = lms_jupyter.batch(
        texts,
        model=DEFAULT_MODEL_KEY,
        schema=Sentiment,
        max_tokens=max_tokens,
        cache=False,
        progress=False,
        api=api,
    )
    elapsed = time.perf_counter() - started
    assert out["error"].isna().all(), out["error"].dropna().tolist()
    return elapsed, int(out["completion_tokens"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args()

    from conftest import JupyterServer
    from openai import OpenAI

    from lms_jupyter.api import OpenAICompatAPI
    from lms_jupyter.engine.manager import ModelManager

    texts = prompts(args.n)
    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    (root / "models").mkdir()
    server = JupyterServer(
        root,
        root / "models",
        [f"--ModelManager.n_threads={args.threads}", f"--LMSJupyterApp.batch_dir={root / 'b'}"],
    )
    results = {}
    try:
        client = OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0, timeout=600)
        api = OpenAICompatAPI(ModelManager(n_threads=args.threads))
        warm = texts[:2]  # load the models and warm the caches first
        http_loop(client, warm, args.max_tokens)
        kernel_loop(api, warm, args.max_tokens)
        modes = (
            ("http loop", http_loop, client),
            ("http batch", http_batch, client),
            ("kernel loop", kernel_loop, api),
            ("kernel batch", kernel_batch, api),
        )
        totals = {name: [0.0, 0] for name, _run, _target in modes}
        size = -(-args.n // args.rounds)
        for start in range(0, args.n, size):
            chunk = texts[start : start + size]
            for name, run, target in modes:
                elapsed, tokens = run(target, chunk, args.max_tokens)
                totals[name][0] += elapsed
                totals[name][1] += tokens
            print(
                f"round {start // size + 1}: "
                + ", ".join(f"{name} {totals[name][0]:.0f} s" for name, _r, _t in modes),
                flush=True,
            )
        for name, (elapsed, tokens) in totals.items():
            results[name] = (args.n / elapsed, tokens / elapsed)
            print(
                f"{name:13s} {args.n / elapsed:6.2f} items/s {tokens / elapsed:7.1f} "
                f"tokens/s ({elapsed:.1f} s, {tokens} tokens)",
                flush=True,
            )
        api.manager.shutdown()
    finally:
        server.stop()
    ratio = {name: rate for name, (rate, _tokens) in results.items()}
    print(f"\nhttp batch / http loop:     {ratio['http batch'] / ratio['http loop']:.2f}x")
    print(f"kernel batch / kernel loop: {ratio['kernel batch'] / ratio['kernel loop']:.2f}x")
    print(f"kernel batch / http loop:   {ratio['kernel batch'] / ratio['http loop']:.2f}x")


if __name__ == "__main__":
    main()
