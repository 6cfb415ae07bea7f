"""What the worker-process boundary costs: the same engine in this process (the previous
design) and behind a worker, in one run, on the same model (SmolLM2-135M Q4_1).

Prints medians over --runs repetitions:

* load: the engine loading in this process / a worker started for the load / a worker
  taken from the spare pool (the default)                    goal: worker <= 1.3x in-process
* time to first token of one request, in-process vs worker   goal: within 5 ms
* decode tokens/s of one stream, in-process vs worker        goal: >= 0.97x
* cancel latency: a cancelled stream's worker idle again (Finished received)
                                                             goal: <= 100 ms
* resident memory: this process (the server's role) before a load, after it and after
  its unload; the worker's while loaded                     goal: unload gives back
                                                             all but 15 MiB

The three loads and their requests are interleaved run by run (a noisy machine slows all
three alike); the server-side RSS cycles run first, before llama.cpp is in this process.
Both sides get the same GenerationRequest (greedy, EOS banned, ``--tokens`` tokens) through
the same ``generate(request, channel)`` call, so the difference is the boundary alone.
Usage: python benchmarks/bench_workers.py [--runs 5] [--tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lms_jupyter.engine.channel import EventChannel  # noqa: E402
from lms_jupyter.engine.events import Finished, TextDelta  # noqa: E402
from lms_jupyter.engine.local.generation import GenerationRequest, SamplingParams  # noqa: E402
from lms_jupyter.engine.options import LoadConfig, default_threads  # noqa: E402
from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY, ModelCatalog  # noqa: E402

STORY = "Here is a long story about a dragon who learns to read:\n\n"
MIB = 1 << 20


def rss(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def median(values) -> float:
    return statistics.median(list(values))


def one_stream(model, prompt: str, tokens: int) -> tuple[float, float]:
    """(time to first token, decode tokens/s) of one request."""
    channel = EventChannel()
    started = time.perf_counter()
    model.generate(
        GenerationRequest(
            prompt,
            SamplingParams(temperature=0, repeat_penalty=1.0, logit_bias={2: -100.0}),
            max_tokens=tokens,
        ),
        channel,
    )
    first = last = None
    count = 0
    for event in channel:
        if isinstance(event, TextDelta):
            now = time.perf_counter()
            first = first or now
            last = now
            count += 1
    return first - started, (count - 1) / (last - first)


def cancel_latency(model) -> float:
    """Seconds from cancelling a stream to its Finished event (the slot is free)."""
    channel = EventChannel()
    model.generate(
        GenerationRequest(
            STORY, SamplingParams(temperature=0, logit_bias={2: -100.0}), max_tokens=2000
        ),
        channel,
    )
    seen = 0
    cancelled_at = None
    for event in channel:
        if isinstance(event, TextDelta):
            seen += 1
            if seen == 5 and cancelled_at is None:
                cancelled_at = time.perf_counter()
                channel.cancel()
        if isinstance(event, Finished):
            return time.perf_counter() - cancelled_at
    raise RuntimeError("no Finished event")


def server_rss(manager_cls, catalog, config: LoadConfig, args) -> dict:
    """This process's RSS (the server's role: no llama.cpp here yet) before and after
    ``--runs`` load + unload cycles through worker processes."""
    from lms_jupyter.engine.options import LoadRequest

    manager = manager_cls(
        catalog,
        n_threads=config.n_threads,
        flash_attention=config.flash_attention,
        kv_cache_type=config.kv_cache_type,
    )
    time.sleep(2.0)  # the spare is ready
    before = rss()
    for _run in range(args.runs):
        model = manager.load(
            LoadRequest(
                DEFAULT_MODEL_KEY,
                identifier="bench",
                context_length=config.context_length,
                parallel=config.parallel,
            )
        )
        manager.unload("bench")
        model.join(30)
        time.sleep(2.0)  # the next spare starts (once nothing runs: SparePool)
    after = rss()
    manager.shutdown()
    return {"server_before": before, "server_after": after}


def measure(model, run: int, args, out: dict) -> None:
    """The first request after a load, a later one, a cancelled one."""
    out["first"].append(one_stream(model, "Warm up.", 8)[0])
    t, d = one_stream(model, f"Story {run}. {STORY}", args.tokens)
    out["ttft"].append(t)
    out["decode"].append(d)
    out["cancel"].append(cancel_latency(model))


def interleaved(manager_cls, catalog, info, variant, config: LoadConfig, args) -> tuple:
    """Run by run: a load in this process, a load in a worker started for it, a load in
    the spare worker (the default), each followed by the same requests."""
    from lms_jupyter.engine.local.model import LoadedModel
    from lms_jupyter.engine.options import LoadRequest

    keys = ("load", "first", "ttft", "decode", "cancel")
    local = {key: [] for key in keys}
    workers = {key: [] for key in keys} | {"cold_load": [], "worker_rss": []}
    managers = {
        prestart: manager_cls(
            catalog,
            n_threads=config.n_threads,
            prestart_worker=prestart,
            flash_attention=config.flash_attention,
            kv_cache_type=config.kv_cache_type,
        )
        for prestart in (False, True)
    }
    time.sleep(2.0)  # the spare is ready, as it is long before a user's load
    request = LoadRequest(
        DEFAULT_MODEL_KEY,
        identifier="bench",
        context_length=config.context_length,
        parallel=config.parallel,
    )
    try:
        for run in range(args.runs):
            started = time.perf_counter()
            model = LoadedModel(info, variant, "bench", LoadConfig(**vars(config))).load()
            local["load"].append(time.perf_counter() - started)
            measure(model, run, args, local)
            model.close()
            started = time.perf_counter()
            cold = managers[False].load(request)
            workers["cold_load"].append(time.perf_counter() - started)
            managers[False].unload("bench")
            cold.join(30)
            started = time.perf_counter()
            model = managers[True].load(request)
            workers["load"].append(time.perf_counter() - started)
            measure(model, run, args, workers)
            workers["worker_rss"].append(model.resident_bytes())
            managers[True].unload("bench")
            model.join(30)
            time.sleep(2.0)  # the next spare starts (once nothing runs: SparePool)
    finally:
        for manager in managers.values():
            manager.shutdown()
    return (
        {key: median(values) for key, values in local.items()},
        {key: median(values) for key, values in workers.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="default: every core")
    args = parser.parse_args()
    from lms_jupyter.engine.manager import ModelManager

    threads = args.threads or default_threads()
    catalog = ModelCatalog(None)
    info, variant = catalog.resolve(DEFAULT_MODEL_KEY)
    manager = ModelManager(catalog, prestart_worker=False)  # the defaults a load gets
    from lms_jupyter.engine.load_settings import flash_attention_for, kv_cache_type_for

    flash = flash_attention_for(manager, None, 0, "llm")
    config = LoadConfig(
        context_length=4096,
        flash_attention=flash,
        n_threads=threads,
        parallel=4,
        kv_cache_type=kv_cache_type_for(manager, "llm", flash, 0),
    )
    manager.shutdown()
    print(f"$ python benchmarks/bench_workers.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"model {variant.path.name}; {default_threads()} cores; threads {threads}; "
        f"{args.tokens} tokens; {args.runs} runs; KV {config.kv_cache_type}, flash "
        f"attention {config.flash_attention}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    memory = server_rss(ModelManager, catalog, config, args)  # first: no llama.cpp here yet
    local, workers = interleaved(ModelManager, catalog, info, variant, config, args)
    workers.update(memory)
    rows = [
        (
            "load: in-process / worker started for it / spare worker (default)",
            "spare <= 1.3x in-process",
            f"{local['load'] * 1000:.0f} / {workers['cold_load'] * 1000:.0f} / "
            f"{workers['load'] * 1000:.0f} ms (**{workers['load'] / local['load']:.2f}x**)",
        ),
        (
            "time to first token of the first request after a load: in-process / worker",
            "",
            f"{local['first'] * 1000:.1f} / {workers['first'] * 1000:.1f} ms",
        ),
        (
            "time to first token (a later request): in-process / worker",
            "within 5 ms",
            f"{local['ttft'] * 1000:.1f} / {workers['ttft'] * 1000:.1f} ms "
            f"(**{(workers['ttft'] - local['ttft']) * 1000:+.1f} ms**)",
        ),
        (
            "decode tok/s, 1 stream: in-process / worker",
            ">= 0.97x",
            f"{local['decode']:.1f} / {workers['decode']:.1f} "
            f"(**{workers['decode'] / local['decode']:.2f}x**)",
        ),
        (
            "cancel to Finished: in-process / worker",
            "<= 100 ms",
            f"{local['cancel'] * 1000:.1f} / **{workers['cancel'] * 1000:.1f} ms**",
        ),
        (
            "server-side RSS before loads / after load+unload x runs (no llama.cpp)",
            "within 15 MiB",
            f"{workers['server_before'] / MIB:.1f} / {workers['server_after'] / MIB:.1f} MiB "
            f"(**{(workers['server_after'] - workers['server_before']) / MIB:+.1f} MiB**)",
        ),
        (
            "worker RSS while loaded (4096 context, 4 slots)",
            "",
            f"{workers['worker_rss'] / MIB:.0f} MiB",
        ),
    ]
    print()
    print("| measure | goal | value |")
    print("| --- | --- | --- |")
    for measure, goal, value in rows:
        print(f"| {measure} | {goal} | {value} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
