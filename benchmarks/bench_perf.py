"""Batching, the prompt cache and grammar sampling, against raw llama-cpp-python and its
own server: one command, one run, the same model (SmolLM2-135M Q4_1) and thread count.

Prints a table of medians over --runs repetitions, with ratios and their goals:

* decode tokens/s of one stream through ``/lms/v1/completions`` (openai client, SSE) over
  raw ``Llama.create_completion(stream=True)``, with ``--threads`` (default: cores - 1)
  and with every core                                                goal >= 0.97
* four concurrent streams (4 clients) through ``/lms/v1``: aggregate tokens/s over one
  stream's                                                            goal >= 1.5
* the same 4-client load against ``python -m llama_cpp.server`` (started here on
  127.0.0.1, ``interrupt_requests=False`` so its requests queue instead of cutting
  each other off)                                                     goal >= 1.5
* two conversations interleaved turn by turn for 6 turns each (chat, streamed): time to
  first token at turn 6 over turn 1, while the prompt grows ~10x      goal <= 2
* decode tokens/s of ``response_format: json_schema`` and ``tool_choice: required``
  (grammar-constrained) over plain chat decoding                     goal >= 0.8
* ``import lms_jupyter`` (fresh interpreters)                         goal <= 0.3 s
* jupyter-server ``GET /api/status`` p99 while four streams generate  goal <= 50 ms
* resident memory of a 4096-token load with ``parallel`` 1 and 4 (after four requests)
  beside the estimate (the slots share one KV cache)

Sampling is greedy with ``repeat_penalty`` 1.0 and EOS banned on every side, so every
request generates exactly ``--tokens`` tokens and both sides do the same work.
Usage: python benchmarks/bench_perf.py [--runs 5] [--tokens 128] [--threads N] [--no-peer]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lms_jupyter.engine.options import KV_CACHE_TYPES as KV_TYPES  # noqa: E402
from lms_jupyter.engine.options import default_threads  # noqa: E402
from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY, embedded_model_path  # noqa: E402

EOS_ID = 2  # SmolLM2's <|im_end|>
# flash attention on every side alike (so that all three do the same work); main() sets
# it from --flash-attention (default on, as the server)
FLASH = True
KV = "f16"  # the KV cache's cell type on every side alike (--kv-cache)
NO_EOS = {str(EOS_ID): -100}
SAME = {"temperature": 0, "repeat_penalty": 1.0}  # greedy, no penalty: the same work
STORY = "Here is a long story about a dragon who learns to read:\n\n"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"},
                                           "story": {"type": "string"}},
          "required": ["title", "story"]}
TOOL = {"type": "function", "function": {
    "name": "write_story", "description": "Write a story down.",
    "parameters": {"type": "object", "properties": {"title": {"type": "string"},
                                                    "text": {"type": "string"}},
                   "required": ["title", "text"]}}}
TOPICS = ["a dragon", "the sea", "a lighthouse", "a robot", "an old library", "winter",
          "a train", "a garden"]


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one stream, timed -------------------------------------------------------------------------

class Timed:
    """One streamed request: time to first token, decode rate, tokens, wall time."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first = self.last = None
        self.chunks = 0
        self.tokens = 0

    def text(self) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.chunks += 1

    @property
    def ttft(self) -> float:
        return self.first - self.started

    @property
    def decode(self) -> float:
        n = self.tokens or self.chunks
        return (n - 1) / (self.last - self.first) if self.last > self.first else float("nan")

    @property
    def wall(self) -> float:
        return self.last - self.started


def raw_stream(llm, prompt: str, tokens: int) -> Timed:
    timed = Timed()
    for _chunk in llm.create_completion(prompt, max_tokens=tokens, stream=True,
                                        logit_bias={EOS_ID: -100.0}, **SAME):
        timed.text()
    timed.tokens = timed.chunks
    return timed


def completion_stream(client, model: str, prompt: str, tokens: int, usage: bool = True,
                      **extra) -> Timed:
    timed = Timed()
    kwargs = dict(stream_options={"include_usage": True}) if usage else {}
    stream = client.completions.create(model=model, prompt=prompt, max_tokens=tokens,
                                       stream=True, temperature=0, logit_bias=NO_EOS,
                                       extra_body={"repeat_penalty": 1.0, **extra}, **kwargs)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            timed.text()
        if getattr(chunk, "usage", None):
            timed.tokens = chunk.usage.completion_tokens
    return timed


def chat_stream(client, model: str, messages: list, tokens: int, **extra) -> tuple[Timed, str,
                                                                                  dict]:
    timed = Timed()
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=tokens, stream=True, temperature=0,
        stream_options={"include_usage": True}, extra_body={"repeat_penalty": 1.0},
        **extra)
    text, usage = [], {}
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            piece = (delta.content or "") + "".join(
                (call.function.arguments or "") for call in (delta.tool_calls or []))
            if piece:
                timed.text()
                text.append(piece)
        if getattr(chunk, "usage", None):
            timed.tokens = chunk.usage.completion_tokens
            usage = chunk.usage.model_dump()
    return timed, "".join(text), usage


def concurrent(fn, n: int) -> tuple[float, list[Timed]]:
    """Run ``fn(i)`` in ``n`` threads at once: (aggregate tokens/s, their timings)."""
    results: list = [None] * n
    barrier = threading.Barrier(n + 1)

    def work(i):
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return sum(r.tokens or r.chunks for r in results) / wall, results


# -- measurements ------------------------------------------------------------------------------

def import_time(runs: int) -> tuple[float, float]:
    """(``import lms_jupyter`` in a fresh interpreter, the whole ``python -c "import
    lms_jupyter"`` process including the interpreter's own start)."""
    code = ("import time; t = time.perf_counter(); import lms_jupyter; "
            "print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    inside, whole = [], []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout
        whole.append(time.perf_counter() - started)
        inside.append(float(out))
    return median(inside), median(whole)


def raw(path: str, threads: int, args) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                flash_attn=FLASH, type_k=KV_TYPES[KV], type_v=KV_TYPES[KV], verbose=False)
    try:
        raw_stream(llm, "Warm up.", 8)
        one = [raw_stream(llm, f"Story {run}. {STORY}", args.tokens) for run in range(args.runs)]
    finally:
        llm.close()
    # four clients: one Llama serves them one after another, at its one-client rate
    return {"decode": median(t.decode for t in one), "ttft": median(t.ttft for t in one),
            "one_aggregate": median(t.tokens / t.wall for t in one)}


def multi_turn(client, model: str, run: int, tokens: int = 80) -> list[tuple[float, int, int]]:
    """Two conversations interleaved for 6 turns each: (ttft, prompt, cached) per turn of
    the first conversation... and the second (12 entries, in order)."""
    histories = [[{"role": "system", "content": f"You are storyteller number {run}-{c}."}]
                 for c in range(2)]
    out = []
    for turn in range(6):
        for c in range(2):
            messages = histories[c] + [{"role": "user", "content":
                                        f"Part {turn + 1}: continue the story about "
                                        f"{TOPICS[(turn + 3 * c) % len(TOPICS)]}, please."}]
            timed, text, usage = chat_stream(client, model, messages, tokens,
                                             logit_bias=NO_EOS)
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            out.append((timed.ttft, usage.get("prompt_tokens", 0), cached))
            histories[c] = messages + [{"role": "assistant", "content": text}]
    return out


def status_p99(server, client, model: str, tokens: int, seconds: float = 8.0) -> float:
    def generate(i, stop):
        run = 0
        while not stop.is_set():
            run += 1
            completion_stream(client, model, f"Load {i}-{run}. {STORY}", tokens)

    return status_p99_while(server, generate, 4, seconds)


def status_p99_while(server, generate, streams: int, seconds: float = 8.0) -> float:
    """p99 (ms) of jupyter's ``GET /api/status`` while ``streams`` threads run
    ``generate(i, stop)`` until ``stop`` is set (also used by bench_server.py)."""
    stop = threading.Event()
    workers = [threading.Thread(target=generate, args=(i, stop), daemon=True)
               for i in range(streams)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    latencies = []
    with httpx.Client(headers=server.headers) as http:
        deadline = time.time() + seconds
        while time.time() < deadline:
            t0 = time.perf_counter()
            http.get(server.url + "api/status").raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    stop.set()
    for w in workers:
        w.join(300)
    latencies.sort()
    return latencies[max(0, int(len(latencies) * 0.99) - 1)]


def ours(threads: int, args, full: bool) -> dict:
    from openai import OpenAI

    from conftest import JupyterServer

    root = Path(tempfile.mkdtemp())
    (root / "models").mkdir()
    server = JupyterServer(root, root / "models", [f"--ModelManager.n_threads={threads}",
                                                   f"--ModelManager.flash_attention={FLASH}",
                                                   f"--ModelManager.kv_cache_type={KV}"])
    result: dict = {}
    try:
        http = httpx.Client(headers=server.headers, timeout=600)
        http.post(server.url + "lms/api/v1/models/load",
                  json={"model": DEFAULT_MODEL_KEY, "identifier": "bench", "parallel": 4,
                        "context_length": 4096}).raise_for_status()
        client = OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0,
                        timeout=600)
        completion_stream(client, "bench", "Warm up.", 8)
        one = [completion_stream(client, "bench", f"Story {run}. {STORY}", args.tokens)
               for run in range(args.runs)]
        result.update(decode=median(t.decode for t in one), ttft=median(t.ttft for t in one),
                      one_aggregate=median(t.tokens / t.wall for t in one))
        if not full:
            return result
        four = [concurrent(lambda i, run=run: completion_stream(
            client, "bench", f"Tale {run}-{i}. {STORY}", args.tokens), 4)
            for run in range(args.runs)]
        result["four_aggregate"] = median(agg for agg, _ in four)
        result["four_decode"] = median(t.decode for _, timed in four for t in timed)
        turns = [multi_turn(client, "bench", run) for run in range(min(args.runs, 3))]
        result["turns"] = turns
        messages = [{"role": "user", "content": "Write a long story about a dragon."}]
        modes = {"plain": {},
                 "json_schema": {"response_format": {"type": "json_schema", "json_schema": {
                     "name": "story", "schema": SCHEMA}}},
                 "tool_choice required": {"tools": [TOOL], "tool_choice": "required"}}
        rates: dict = {name: [] for name in modes}
        for _run in range(args.runs):  # the modes interleaved inside each run
            for name, extra in modes.items():
                # /api/v0's stats: the engine's decode rate (a tool call's arguments reach
                # a stream in bursts, so chunk timings would flatter the grammar modes)
                body = http.post(server.url + "lms/api/v0/chat/completions", json={
                    "model": "bench", "messages": messages, "max_tokens": args.tokens,
                    "temperature": 0, "repeat_penalty": 1.0, **extra}).json()
                rates[name].append(body["stats"]["tokens_per_second"])
        result["grammar"] = {name: median(values) for name, values in rates.items()}
        result["status_p99"] = status_p99(server, client, "bench", 32)
        rows = http.get(server.url + "lms/api/v0/ps").json()["data"]
        result["rss"] = {"server": rss_of(server.proc.pid),
                         "workers": {r["identifier"]: r.get("residentBytes") for r in rows}}
        http.close()
    finally:
        server.stop()
    return result


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def peer(path: str, threads: int, args) -> dict:
    """llama-cpp-python's own server on the same load."""
    from openai import OpenAI

    port = free_port()
    log = open(Path(tempfile.mkdtemp()) / "llama_cpp_server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", path, "--model_alias", "peer",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
         "--n_threads", str(threads), "--n_threads_batch", str(threads),
         "--flash_attn", str(FLASH), "--type_k", str(KV_TYPES[KV]), "--type_v",
         str(KV_TYPES[KV]), "--interrupt_requests", "False", "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited; see {log.name}")
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.3)
        client = OpenAI(base_url=base, api_key="none", max_retries=0, timeout=600)
        completion_stream(client, "peer", "Warm up.", 8, usage=False)
        one = [completion_stream(client, "peer", f"Story {run}. {STORY}", args.tokens,
                                 usage=False) for run in range(args.runs)]
        four = [concurrent(lambda i, run=run: completion_stream(
            client, "peer", f"Tale {run}-{i}. {STORY}", args.tokens, usage=False), 4)[0]
            for run in range(args.runs)]
        turns = [multi_turn(client, "peer", run) for run in range(min(args.runs, 2))]
        return {"decode": median(t.decode for t in one),
                "one_aggregate": median(t.chunks / t.wall for t in one),
                "four_aggregate": median(four), "turns": turns}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


_RESIDENT = """
import json, sys, threading
from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.engine.request import GenerationRequest, SamplingParams
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.engine.worker.proxy import WorkerProcess
from lms_jupyter.models.catalog import ModelCatalog

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

parallel, threads, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
manager = ModelManager(ModelCatalog(root), n_threads=threads, reaper_interval=3600,
                       flash_attention=sys.argv[4] == "True", kv_cache_type=sys.argv[5],
                       prestart_worker=False)
estimate = manager.estimate("smollm2-135m-instruct", context_length=4096, parallel=parallel)
idle = WorkerProcess()  # the baseline: a worker with Python, numpy and llama.cpp imported
idle.wait_ready(120)
before = rss(idle.process.pid)
idle.discard()
model = manager.load(LoadRequest("smollm2-135m-instruct", context_length=4096,
                                 parallel=parallel))
channels = []
for i in range(4):  # four requests at once, a prompt longer than one micro-batch each
    channel = EventChannel()
    model.generate(GenerationRequest(f"Text {i}: " + "The quick brown fox. " * 120,
                                     SamplingParams(temperature=0), max_tokens=16), channel)
    channels.append(channel)
for channel in channels:
    list(channel)
print(json.dumps({"resident": model.resident_bytes() - before, "estimate": estimate["estimated_total_bytes"],
                  "kv": estimate["breakdown"]["kv_cache"]}))
manager.shutdown()
"""


def resident(parallel: int, threads: int) -> dict:
    """Resident memory a 4096-token load of SmolLM2 adds to its worker process (over an
    idle worker's) after four concurrent requests."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _RESIDENT, str(parallel), str(threads),
                          tempfile.mkdtemp(), str(FLASH), KV], env=env, check=True, capture_output=True,
                         text=True, timeout=1200)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- report ------------------------------------------------------------------------------------

def turn_figures(runs) -> tuple[float, float, int, int, int]:
    """Median TTFT of turn 1 and turn 6 (both conversations), their prompt sizes, and the
    cached tokens at turn 6."""
    first = [run[i] for run in runs for i in (0, 1)]
    last = [run[i] for run in runs for i in (10, 11)]
    return (median(t for t, _p, _c in first), median(t for t, _p, _c in last),
            int(median(p for _t, p, _c in first)), int(median(p for _t, p, _c in last)),
            int(median(c for _t, _p, c in last)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0,
                        help="generation threads on every side (default: cores - 1)")
    parser.add_argument("--flash-attention", choices=("on", "off"), default="on",
                        help="flash attention on every side (default: on, as the server)")
    parser.add_argument("--kv-cache", choices=sorted(KV_TYPES), default="f16",
                        help="the KV cache's cell type on every side (default: f16, as the "
                             "server; quantized types need flash attention)")
    parser.add_argument("--no-peer", action="store_true",
                        help="skip llama-cpp-python's server")
    args = parser.parse_args()
    global FLASH, KV
    FLASH = args.flash_attention == "on"
    KV = args.kv_cache
    cores = default_threads()
    threads = args.threads or max(1, cores - 1)
    path = str(embedded_model_path())
    print(f"$ python benchmarks/bench_perf.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"model {Path(path).name}; {cores} cores; threads {threads} (and {cores}); "
          f"{args.tokens} tokens; {args.runs} runs; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    figures: dict = {"import": import_time(max(args.runs, 5))}
    figures["raw"] = raw(path, threads, args)
    figures["raw_all"] = raw(path, cores, args) if cores != threads else figures["raw"]
    print("raw done", flush=True)
    figures["ours"] = ours(threads, args, full=True)
    figures["ours_all"] = ours(cores, args, full=False) if cores != threads \
        else figures["ours"]
    print("lms-jupyter done", flush=True)
    figures["peer"] = None if args.no_peer else peer(path, threads, args)
    figures["memory"] = {p: resident(p, threads) for p in (1, 4)}
    report(figures, threads, cores)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    out = os.environ.get("LMS_JUPYTER_BENCH_JSON")
    if out:
        Path(out).write_text(json.dumps(figures, indent=1, default=str))


def report(f: dict, threads: int, cores: int) -> None:
    raw_, ours_, peer_ = f["raw"], f["ours"], f["peer"]
    t1, t6, p1, p6, c6 = turn_figures(ours_["turns"])
    rows = [
        ("`import lms_jupyter` (whole `python -c` process, interpreter start included)",
         "<= 0.3 s", f"{f['import'][0] * 1000:.1f} ms ({f['import'][1] * 1000:.0f} ms)"),
        (f"decode tok/s, 1 stream, raw llama-cpp-python ({threads} thr.)", "",
         f"{raw_['decode']:.1f}"),
        (f"decode tok/s, 1 stream, `/lms/v1` ({threads} thr.)", "", f"{ours_['decode']:.1f}"),
        ("ratio `/lms/v1` / raw", ">= 0.97", f"**{ours_['decode'] / raw_['decode']:.2f}**"),
        (f"decode tok/s, 1 stream, raw / `/lms/v1` (all {cores} cores)", "",
         f"{f['raw_all']['decode']:.1f} / {f['ours_all']['decode']:.1f}"),
        ("ratio `/lms/v1` / raw (all cores)", ">= 0.97",
         f"**{f['ours_all']['decode'] / f['raw_all']['decode']:.2f}**"),
        ("time to first token, `/lms/v1` - raw", "",
         f"{(ours_['ttft'] - raw_['ttft']) * 1000:+.1f} ms"),
        ("tokens/s, 1 client (tokens / wall), `/lms/v1`", "", f"{ours_['one_aggregate']:.1f}"),
        ("tokens/s, 4 concurrent clients, `/lms/v1` (aggregate)", "",
         f"{ours_['four_aggregate']:.1f} ({ours_['four_decode']:.1f} per stream)"),
        ("ratio 4 clients / 1 client", ">= 1.5",
         f"**{ours_['four_aggregate'] / ours_['one_aggregate']:.2f}**"),
        ("tokens/s, 1 client = 4 clients one after another, raw llama-cpp-python", "",
         f"{raw_['one_aggregate']:.1f}"),
    ]
    if peer_:
        rows += [
            ("tokens/s, 1 client / 4 clients, `llama_cpp.server`", "",
             f"{peer_['one_aggregate']:.1f} / {peer_['four_aggregate']:.1f}"),
            ("ratio `/lms/v1` / `llama_cpp.server`, 4 clients", ">= 1.5",
             f"**{ours_['four_aggregate'] / peer_['four_aggregate']:.2f}**"),
        ]
    rows += [
        ("2 interleaved chats: TTFT turn 1 / turn 6 (prompt tokens)", "",
         f"{t1 * 1000:.0f} ms ({p1}) / {t6 * 1000:.0f} ms ({p6}, {c6} cached)"),
        ("ratio TTFT turn 6 / turn 1 (prompt x{:.1f})".format(p6 / max(p1, 1)), "<= 2",
         f"**{t6 / t1:.2f}**"),
    ]
    if peer_:
        pt1, pt6, _pp1, _pp6, _pc6 = turn_figures(peer_["turns"])
        rows.append(("same chats on `llama_cpp.server`: TTFT turn 1 / turn 6", "",
                     f"{pt1 * 1000:.0f} ms / {pt6 * 1000:.0f} ms (x{pt6 / pt1:.1f})"))
    grammar = ours_["grammar"]
    rows += [
        ("decode tok/s, chat (engine stats): plain / json_schema / tool_choice required", "",
         f"{grammar['plain']:.1f} / {grammar['json_schema']:.1f} / "
         f"{grammar['tool_choice required']:.1f}"),
        ("ratio json_schema / plain", ">= 0.8",
         f"**{grammar['json_schema'] / grammar['plain']:.2f}**"),
        ("ratio tool_choice required / plain", ">= 0.8",
         f"**{grammar['tool_choice required'] / grammar['plain']:.2f}**"),
        ("`GET /api/status` p99 while 4 streams generate", "<= 50 ms",
         f"{ours_['status_p99']:.1f} ms"),
    ]
    mib = 1 << 20
    one, four = f["memory"][1], f["memory"][4]
    rows.append(("resident memory of a 4096-token load after 4 requests, parallel 1 / 4 "
                 "(estimate)", "",
                 f"{one['resident'] / mib:.0f} MiB ({one['estimate'] / mib:.0f}) / "
                 f"{four['resident'] / mib:.0f} MiB ({four['estimate'] / mib:.0f})"))
    memory = ours_["rss"]
    rows.append(("resident memory: the jupyter server / each model's worker process", "",
                 f"{memory['server'] / mib:.0f} MiB / " + ", ".join(
                     f"{name} {value / mib:.0f} MiB" for name, value in memory["workers"].items()
                     if value)))
    print()
    print("| measure | goal | value |")
    print("| --- | --- | --- |")
    for measure, goal, value in rows:
        print(f"| {measure} | {goal} | {value} |")
    print()


if __name__ == "__main__":
    main()
