"""Embedding throughput: batched decodes against one text per decode, same model, same texts.

For each model (all-MiniLM-L6-v2 converted to a BERT GGUF in a temporary folder, and the
SmolLM2 chat model's mean pooling) prints, as medians over --runs repetitions, texts/s and
tokens/s for:
  * engine, batched      ``Embedder.embed(texts)``: several sequences per ``llama_decode``
  * engine, one by one   ``Embedder.embed([text])`` for each text
  * API, one request     ``OpenAICompatAPI.embeddings_sync`` with every text (what a server
                         request costs beyond the engine: queue, JSON-ready floats)
  * raw Llama.embed      llama-cpp-python's own batched ``Llama.embed`` (reference, MiniLM)

The modes of one model alternate inside every run (a shared machine's load then hits them
alike) and the speed-up is the median of the per-run ratios. The chat model embeds the first
--chat-texts texts (it is several times MiniLM's compute per token).

Usage: python benchmarks/bench_embeddings.py [--runs 5] [--texts 128] [--chat-texts 16]
                                             [--threads N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lms_jupyter.engine.local.embedding import Embedder, model_pooling
from lms_jupyter.engine.local.model import default_threads
from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY, ModelCatalog, embedded_model_path
from lms_jupyter.models.convert import MINILM_KEY, install_minilm

WORDS = (
    "the a model search vector query river mountain garden football python server "
    "memory bread coffee music window yellow quickly slowly because under between "
    "learns builds reads finds carries"
).split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Sentences of 4 to 40 words, the same every run."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))).capitalize() + "."
        for _ in range(n)
    ]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(modes: dict, runs: int) -> dict:
    """Seconds per run for each mode; the modes alternate inside every run, so a load that
    comes and goes on a shared machine hits all of them alike."""
    for fn in modes.values():
        fn()  # warm-up (first-use allocations)
    times = {name: [] for name in modes}
    for _ in range(runs):
        for name, fn in modes.items():
            times[name].append(timed(fn))
    return times


def report(model: str, times: dict, n_texts: int, n_tokens: int) -> None:
    for mode, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{model:<22} {mode:<20} {n_texts / median:9.1f} {n_tokens / median:10.0f}")
    ratios = [
        alone / batched
        for alone, batched in zip(
            times["engine, one by one"], times["engine, batched"], strict=False
        )
    ]
    print(
        f"{model:<22} batched / one by one: {statistics.median(ratios):.2f}x "
        f"(median of per-run ratios)",
        flush=True,
    )


def engine_modes(embedder: Embedder, texts: list[str]) -> dict:
    return {
        "engine, batched": lambda: embedder.embed(texts),
        "engine, one by one": lambda: [embedder.embed([t]) for t in texts],
    }


def describe(label: str, embedder: Embedder, texts: list[str]) -> int:
    tokens = embedder.embed(texts).prompt_tokens
    groups = len(embedder.batches([len(embedder.tokenize(t)) for t in texts]))
    print(
        f"# {label}: {len(texts)} texts, {tokens} tokens, {groups} batched decodes "
        f"(up to {embedder.n_seq_max} sequences each)",
        flush=True,
    )
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--chat-texts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args()
    texts = make_texts(args.texts)
    from llama_cpp import Llama

    from lms_jupyter.api import OpenAICompatAPI
    from lms_jupyter.engine.manager import ModelManager

    print(f"threads {args.threads}, {args.runs} runs, medians")
    print(f"{'model':<22} {'mode':<20} {'texts/s':>9} {'tokens/s':>10}")
    with tempfile.TemporaryDirectory() as folder:
        # all-MiniLM-L6-v2: the engine, the API, and raw llama-cpp-python, interleaved
        minilm = install_minilm(folder)
        catalog = ModelCatalog(folder)
        _info, variant = catalog.resolve(MINILM_KEY)
        embedder = Embedder.load(
            minilm,
            context_length=512,
            n_threads=args.threads,
            pooling=model_pooling(variant.header),
            label=MINILM_KEY,
        )
        manager = ModelManager(catalog, n_threads=args.threads)
        api = OpenAICompatAPI(manager)
        raw = Llama(
            str(minilm),
            embedding=True,
            n_ctx=512,
            n_batch=512,
            n_ubatch=512,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
        tokens = describe(MINILM_KEY, embedder, texts)
        body = {"model": MINILM_KEY, "input": texts}
        modes = engine_modes(embedder, texts)
        modes["API, one request"] = lambda: api.embeddings_sync(body)
        modes["raw Llama.embed"] = lambda: raw.embed(texts)
        report(MINILM_KEY, interleaved(modes, args.runs), len(texts), tokens)
        raw.close()
        manager.shutdown()
        embedder.close()

    # SmolLM2-135M (a chat model): mean pooling on a second context over its weights
    llm = Llama(str(embedded_model_path()), n_ctx=2048, n_threads=args.threads, verbose=False)
    smol = Embedder.for_chat_model(
        llm, context_length=2048, n_threads=args.threads, label=DEFAULT_MODEL_KEY
    )
    chat_texts = texts[: args.chat_texts]
    tokens = describe(DEFAULT_MODEL_KEY, smol, chat_texts)
    report(
        DEFAULT_MODEL_KEY,
        interleaved(engine_modes(smol, chat_texts), args.runs),
        len(chat_texts),
        tokens,
    )
    smol.close()
    llm.close()


if __name__ == "__main__":
    main()
