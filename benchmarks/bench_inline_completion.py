"""Inline completion latency: what the editor's ghost text waits for, on SmolLM2.

Prints, as medians over --runs repetitions (A and B interleaved in one run):
  * time from the request to the first streamed token of ``/lms/v1/completions`` with a
    ~1,000-token notebook context (what the JupyterLab provider sends once the keystroke
    pause, its debounce setting, has passed):
      - typing: the prompt continues the previous request's by one keystroke, so the
        model's prompt cache holds all but the last few tokens       target <= 300 ms
      - cold: a context the cache has never seen (the first request in a notebook)
  * the cost a cancelled completion imposes on the next one: the next keystroke's
    request after the previous stream was aborted mid-way (the client closes the
    connection, as the provider's AbortController does), right away (B, the worst case)
    or after the debounce as the editor sends it (B'), against the same request after a
    previous completion that had finished (A)            target: no measurable difference

Usage: python benchmarks/bench_inline_completion.py [--runs 9] [--context 1000] [--threads N]

On a busy machine (load average well above the core count) llama.cpp's threads wait for
each other at every barrier and a 2-thread prefill can take tens of seconds; the figures
are only meaningful in a quiet window (the script prints the load average it ran under),
or with ``--threads 1``, which degrades far less under contention.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY

SUFFIX = "\n\nprint(result)\n"
NO_EOS = {"2": -100}  # a cancelled completion must still be generating when it is cut


def cell(i: int) -> str:
    return (
        f"def transform_{i}(frame, column='value_{i}'):\n"
        f'    """Scale column {i} and drop the rows it leaves empty."""\n'
        f"    scaled = frame[column] * {i + 2} / (frame[column].max() + 1)\n"
        f"    frame = frame.assign(**{{column: scaled}})\n"
        f"    return frame.dropna(subset=[column])\n"
    )


def context(tokens: int, tag: str) -> str:
    """Notebook-like code of about ``tokens`` tokens (SmolLM2 runs near 3.2 chars a
    token on it); ``tag`` makes the first line unique, so no cache holds it."""
    parts = [f"# analysis {tag}\nimport pandas as pd\n"]
    i = 0
    while sum(map(len, parts)) < tokens * 3.2:
        parts.append(cell(i))
        i += 1
    return "\n".join(parts) + "\nresult = transform_0(pd.DataFrame({'value_0': [1, 2, 3]}))\n"


class Bench:
    def __init__(self, server, http):
        self.server = server
        self.http = http

    def first_token(
        self, prompt: str, *, cancel_after: int | None = None, max_tokens: int = 16
    ) -> tuple[float, int]:
        """(seconds from sending the request to its first streamed text, prompt tokens
        when known); ``cancel_after``: close the connection after that many chunks."""
        body = {
            "model": DEFAULT_MODEL_KEY,
            "prompt": prompt,
            "suffix": SUFFIX,
            "max_tokens": max_tokens,
            "temperature": 0.2,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": NO_EOS,
        }
        started = time.perf_counter()
        first = None
        chunks = 0
        prompt_tokens = 0
        with self.http.stream(
            "POST", self.server.api_url + "/completions", json=body, headers=self.server.headers
        ) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                if '"text": ""' not in line and first is None and '"choices": []' not in line:
                    first = time.perf_counter()
                chunks += 1
                if '"usage": {' in line and '"prompt_tokens"' in line:
                    prompt_tokens = int(line.split('"prompt_tokens": ')[1].split(",")[0])
                if cancel_after is not None and chunks >= cancel_after:
                    break  # leaving the block closes the connection mid-stream
        return (first or time.perf_counter()) - started, prompt_tokens

    def wait_idle(self) -> None:
        import httpx

        while True:
            rows = httpx.get(
                self.server.url + "lms/api/v0/ps", headers=self.server.headers, timeout=10
            ).json()["data"]
            if all(r["status"] == "idle" and r["queued"] == 0 for r in rows):
                return
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--context", type=int, default=1000, help="context size in tokens")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument(
        "--debounce",
        type=float,
        default=250,
        help="ms between the abort and the next request in B' (the setting)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="generation threads (0: the server's default, all cores)",
    )
    args = parser.parse_args()
    import httpx
    from conftest import JupyterServer

    root = Path(tempfile.mkdtemp())
    models = root / "models"
    models.mkdir()
    extra = [f"--ModelManager.n_threads={args.threads}"] if args.threads else []
    server = JupyterServer(root, models, extra)
    load_before = os.getloadavg()[0]
    typing, cold = [], []
    results: dict[str, list[float]] = {"A": [], "B": [], "B'": []}
    try:
        http = httpx.Client(timeout=120)
        r = http.post(
            server.url + "lms/api/v1/models/load",
            headers=server.headers,
            json={"model": DEFAULT_MODEL_KEY},
        )
        r.raise_for_status()
        bench = Bench(server, http)
        shared = context(args.context, "shared")  # the notebook: its cache stays warm
        _, n_tokens = bench.first_token(shared)
        print(
            f"model {DEFAULT_MODEL_KEY}, context {n_tokens} prompt tokens, "
            f"{args.runs} runs, threads {args.threads or 'default'}",
            flush=True,
        )
        for run in range(args.runs):
            if run < args.cold_runs:  # cold: a context no cache holds (prefill-bound)
                bench.wait_idle()
                cold.append(bench.first_token(context(args.context, f"cold {run}"))[0])
            base = shared + f"value_{run} = transform_{run}(frame)\n"
            bench.wait_idle()
            bench.first_token(base)
            # typing: one keystroke on from the request before (which finished)
            bench.wait_idle()
            typing.append(bench.first_token(base + "r")[0])
            # A/B, order rotating: the next keystroke's request after a finished
            # completion (A), right after an aborted one (B: the worst case, the abort
            # still crossing to the engine), or after an aborted one and the debounce,
            # as the editor sends it (B'); each from its own prefix
            kinds = ["A", "B", "B'"]
            for kind in kinds[run % 3 :] + kinds[: run % 3]:
                prefix = base + f"x_{kind[0]}{len(kind)} = "
                bench.wait_idle()
                if kind == "A":
                    bench.first_token(prefix, max_tokens=4)
                    bench.wait_idle()
                else:
                    bench.first_token(prefix, cancel_after=4, max_tokens=500)
                    if kind == "B'":
                        time.sleep(args.debounce / 1000)
                seconds, _ = bench.first_token(prefix + "t")
                results[kind].append(seconds)
        http.close()
    finally:
        server.stop()

    print(
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"({os.cpu_count()} cores)"
    )

    def ms(values):
        return statistics.median(values) * 1000

    def spread(values):
        q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), 0, max(values)]
        return f"{q[0] * 1000:6.1f} .. {q[2] * 1000:6.1f}"

    print(f"{'time to first token':44} {'median':>9} {'quartiles (ms)':>18}")
    print(f"{'typing (prompt cache warm)   target <=300':44} {ms(typing):7.1f}ms {spread(typing)}")
    print(f"{'cold (new context)':44} {ms(cold):7.1f}ms {spread(cold)}")
    after_done = results["A"]
    print(f"{'A: after a finished completion':44} {ms(after_done):7.1f}ms {spread(after_done)}")
    for kind, label in (
        ("B", "B: right after a cancelled one"),
        ("B'", "B': cancelled, then the debounce"),
    ):
        print(f"{label:44} {ms(results[kind]):7.1f}ms {spread(results[kind])}")
    for kind in ("B", "B'"):
        pairs = [b - a for a, b in zip(after_done, results[kind], strict=False)]
        print(
            f"cancel cost {kind:2} - A (median of the runs' differences) "
            f"{statistics.median(pairs) * 1000:+7.1f}ms   ratio {kind}/A "
            f"{ms(results[kind]) / ms(after_done):.2f} (target: ~1.00)"
        )


if __name__ == "__main__":
    main()
