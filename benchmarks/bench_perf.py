"""Speed on a CPU out of the box: the server with its defaults (no flags: the KV cache
type and flash attention the ModelManager picks for this device, every core) against raw
llama-cpp-python and its own server, in one run, on the same model (SmolLM2-135M Q4_1).

Prints the machine, its load, and a table of medians over --runs repetitions with the
goals of issue 23; A and B are measured interleaved, run by run, so a noisy machine
slows both alike:

* decode tokens/s of one stream through ``/lms/v1/completions`` (openai client, SSE) over
  raw ``Llama.create_completion(stream=True)`` with the same thread count, on one thread
  (a second server started with ``n_threads=1``) and on every core     goal >= 0.97
* four concurrent streams (4 clients) through ``/lms/v1``: aggregate tokens/s over one
  stream's                                                            goal >= 1.8
* the engine alone in a fresh process (no HTTP, no worker): one stream and four at once,
  whose ratio is what llama.cpp's batched decode gains here
* the same 4-client load against ``python -m llama_cpp.server`` (started here on
  127.0.0.1 with the same settings, ``interrupt_requests=False`` so its requests queue
  instead of cutting each other off)                                  goal >= 1.5
* two conversations interleaved turn by turn for 6 turns each (chat, streamed): time to
  first token at turn 6 over turn 1, while the prompt grows ~15x     goal <= 1.5
* decode tokens/s of ``response_format: json_schema`` and ``tool_choice: required``
  (grammar-constrained) over plain chat decoding                     goal >= 0.9
* ``import lms_jupyter`` (fresh interpreters)                         goal <= 0.3 s
* jupyter-server ``GET /api/status`` p99 while four streams generate  goal <= 50 ms
* resident memory of a 4096-token load with ``parallel`` 1 and 4 (after four requests)
  beside the estimate (the slots share one KV cache)                 goal within 5%
* resident memory of the jupyter server and of each model's worker process

Sampling is greedy with ``repeat_penalty`` 1.0 and EOS banned on every side, so every
request generates exactly ``--tokens`` tokens and both sides do the same work.
Usage: python benchmarks/bench_perf.py [--runs 5] [--tokens 128] [--no-peer]
(about 7 minutes with --runs 5 on a quiet 2-core machine, estimated; far longer on a loaded one)
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
# the server's defaults for this device (main() asks its ModelManager), applied alike to
# raw llama-cpp-python and llama_cpp.server so that all three do the same work
FLASH = True
KV = "q8_0"
NO_EOS = {str(EOS_ID): -100}
SAME = {"temperature": 0, "repeat_penalty": 1.0}  # greedy, no penalty: the same work
STORY = "Here is a long story about a dragon who learns to read:\n\n"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
    "required": ["title", "story"],
}
TOOL = {
    "type": "function",
    "function": {
        "name": "write_story",
        "description": "Write a story down.",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "text": {"type": "string"}},
            "required": ["title", "text"],
        },
    },
}
TOPICS = [
    "a dragon",
    "the sea",
    "a lighthouse",
    "a robot",
    "an old library",
    "winter",
    "a train",
    "a garden",
]


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
    for _chunk in llm.create_completion(
        prompt, max_tokens=tokens, stream=True, logit_bias={EOS_ID: -100.0}, **SAME
    ):
        timed.text()
    timed.tokens = timed.chunks
    return timed


def completion_stream(
    client, model: str, prompt: str, tokens: int, usage: bool = True, **extra
) -> Timed:
    timed = Timed()
    kwargs = dict(stream_options={"include_usage": True}) if usage else {}
    stream = client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=tokens,
        stream=True,
        temperature=0,
        logit_bias=NO_EOS,
        extra_body={"repeat_penalty": 1.0, **extra},
        **kwargs,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            timed.text()
        if getattr(chunk, "usage", None):
            timed.tokens = chunk.usage.completion_tokens
    return timed


def chat_stream(
    client, model: str, messages: list, tokens: int, **extra
) -> tuple[Timed, str, dict]:
    timed = Timed()
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=tokens,
        stream=True,
        temperature=0,
        stream_options={"include_usage": True},
        extra_body={"repeat_penalty": 1.0},
        **extra,
    )
    text, usage = [], {}
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            piece = (delta.content or "") + "".join(
                (call.function.arguments or "") for call in (delta.tool_calls or [])
            )
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
    code = (
        "import time; t = time.perf_counter(); import lms_jupyter; print(time.perf_counter() - t)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    inside, whole = [], []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        ).stdout
        whole.append(time.perf_counter() - started)
        inside.append(float(out))
    return median(inside), median(whole)


class RawLlama:
    """Raw llama-cpp-python in this process, with the server's settings."""

    def __init__(self, path: str, threads: int):
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=path,
            n_ctx=4096,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=FLASH,
            type_k=KV_TYPES[KV],
            type_v=KV_TYPES[KV],
            verbose=False,
        )
        raw_stream(self.llm, "Warm up.", 8)

    def stream(self, run: int, tokens: int) -> Timed:
        return raw_stream(self.llm, f"Story {run}. {STORY}", tokens)

    def close(self) -> None:
        self.llm.close()


class OurServer:
    """A jupyter server with the extension and its defaults (``n_threads`` only when
    given), SmolLM2 loaded with 4 slots and a 4096-token context."""

    def __init__(self, threads: int | None = None):
        from conftest import JupyterServer
        from openai import OpenAI

        root = Path(tempfile.mkdtemp())
        (root / "models").mkdir()
        flags = [f"--ModelManager.n_threads={threads}"] if threads else []
        self.server = JupyterServer(root, root / "models", flags)
        self.http = httpx.Client(headers=self.server.headers, timeout=600)
        self.http.post(
            self.server.url + "lms/api/v1/models/load",
            json={
                "model": DEFAULT_MODEL_KEY,
                "identifier": "bench",
                "parallel": 4,
                "context_length": 4096,
            },
        ).raise_for_status()
        self.client = OpenAI(
            base_url=self.server.api_url, api_key=self.server.token, max_retries=0, timeout=600
        )
        completion_stream(self.client, "bench", "Warm up.", 8)

    def row(self) -> dict:
        return self.http.get(self.server.url + "lms/api/v0/ps").json()["data"][0]

    def stream(self, run: int, tokens: int) -> Timed:
        return completion_stream(self.client, "bench", f"Story {run}. {STORY}", tokens)

    def four(self, run: int, tokens: int) -> float:
        return concurrent(
            lambda i: completion_stream(self.client, "bench", f"Tale {run}-{i}. {STORY}", tokens), 4
        )[0]

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def multi_turn(client, model: str, run: int, tokens: int = 80) -> list[tuple[float, int, int]]:
    """Two conversations interleaved for 6 turns each: (ttft, prompt, cached) per turn of
    the first conversation... and the second (12 entries, in order)."""
    histories = [
        [{"role": "system", "content": f"You are storyteller number {run}-{c}."}] for c in range(2)
    ]
    out = []
    for turn in range(6):
        for c in range(2):
            messages = histories[c] + [
                {
                    "role": "user",
                    "content": f"Part {turn + 1}: continue the story about "
                    f"{TOPICS[(turn + 3 * c) % len(TOPICS)]}, please.",
                }
            ]
            timed, text, usage = chat_stream(client, model, messages, tokens, logit_bias=NO_EOS)
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
    workers = [
        threading.Thread(target=generate, args=(i, stop), daemon=True) for i in range(streams)
    ]
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


def the_rest(ours: OurServer, args) -> dict:
    """Interleaved chats, grammar modes, /api/status under load, resident memory."""
    client, http, server = ours.client, ours.http, ours.server
    result: dict = {"turns": [multi_turn(client, "bench", run) for run in range(min(args.runs, 3))]}
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    modes = {
        "plain": {},
        "json_schema": {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "story", "schema": SCHEMA},
            }
        },
        "tool_choice required": {"tools": [TOOL], "tool_choice": "required"},
    }
    rates: dict = {name: [] for name in modes}
    for _run in range(args.runs):  # the modes interleaved inside each run
        for name, extra in modes.items():
            # /api/v0's stats: the engine's decode rate (a tool call's arguments reach
            # a stream in bursts, so chunk timings would flatter the grammar modes)
            body = http.post(
                server.url + "lms/api/v0/chat/completions",
                json={
                    "model": "bench",
                    "messages": messages,
                    "max_tokens": args.tokens,
                    "temperature": 0,
                    "repeat_penalty": 1.0,
                    **extra,
                },
            ).json()
            rates[name].append(body["stats"]["tokens_per_second"])
    result["grammar"] = {name: median(values) for name, values in rates.items()}
    result["status_p99"] = status_p99(server, client, "bench", 32)
    rows = http.get(server.url + "lms/api/v0/ps").json()["data"]
    result["rss"] = {
        "server": rss_of(server.proc.pid),
        "workers": {r["identifier"]: r.get("residentBytes") for r in rows},
    }
    return result


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


class PeerServer:
    """llama-cpp-python's own server with the same settings."""

    def __init__(self, path: str, threads: int):
        from openai import OpenAI

        port = free_port()
        self.log = open(Path(tempfile.mkdtemp()) / "llama_cpp_server.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                path,
                "--model_alias",
                "peer",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "4096",
                "--n_threads",
                str(threads),
                "--n_threads_batch",
                str(threads),
                "--flash_attn",
                str(FLASH),
                "--type_k",
                str(KV_TYPES[KV]),
                "--type_v",
                str(KV_TYPES[KV]),
                "--interrupt_requests",
                "False",
                "--verbose",
                "False",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited; see {self.log.name}")
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.3)
        self.client = OpenAI(base_url=base, api_key="none", max_retries=0, timeout=600)
        completion_stream(self.client, "peer", "Warm up.", 8, usage=False)

    def stream(self, run: int, tokens: int) -> Timed:
        return completion_stream(self.client, "peer", f"Story {run}. {STORY}", tokens, usage=False)

    def four(self, run: int, tokens: int) -> float:
        return concurrent(
            lambda i: completion_stream(
                self.client, "peer", f"Tale {run}-{i}. {STORY}", tokens, usage=False
            ),
            4,
        )[0]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


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

parallel, root = int(sys.argv[1]), sys.argv[2]
manager = ModelManager(ModelCatalog(root), reaper_interval=3600, prestart_worker=False)
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
print(json.dumps({"resident": model.resident_bytes() - before,
                  "estimate": estimate["estimated_total_bytes"],
                  "kv": estimate["breakdown"]["kv_cache"], "kv_type": model.config.kv_cache_type}))
manager.shutdown()
"""


def resident(parallel: int) -> dict:
    """Resident memory a 4096-token load of SmolLM2 with the defaults adds to its worker
    process (over an idle worker's) after four concurrent requests."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _RESIDENT, str(parallel), tempfile.mkdtemp()],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- report ------------------------------------------------------------------------------------


def turn_figures(runs) -> tuple[float, float, int, int, int]:
    """Median TTFT of turn 1 and turn 6 (both conversations), their prompt sizes, and the
    cached tokens at turn 6."""
    first = [run[i] for run in runs for i in (0, 1)]
    last = [run[i] for run in runs for i in (10, 11)]
    return (
        median(t for t, _p, _c in first),
        median(t for t, _p, _c in last),
        int(median(p for _t, p, _c in first)),
        int(median(p for _t, p, _c in last)),
        int(median(c for _t, _p, c in last)),
    )


def machine() -> str:
    """The CPU model, its cores and the memory, for the table's caption."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"{name}, {default_threads()} cores, {memory:.0f} GiB"


def server_defaults() -> tuple[bool, str]:
    """(flash attention, KV cell type) a server's load gets when nothing says."""
    from lms_jupyter.engine.manager import ModelManager
    from lms_jupyter.models.catalog import ModelCatalog

    manager = ModelManager(ModelCatalog(None), prestart_worker=False)
    try:
        from lms_jupyter.engine.load_settings import flash_attention_for, kv_cache_type_for

        flash = flash_attention_for(manager, None, manager.gpu_layers, "llm")
        return flash, kv_cache_type_for(manager, "llm", flash, manager.gpu_layers)
    finally:
        manager.shutdown()


def engine_alone(path: str, cores: int, runs: int, tokens: int) -> dict:
    """The batching engine in this process, no HTTP and no worker boundary: tokens/s of one
    stream (tokens / wall) and of four at once (aggregate), interleaved run by run. Their
    ratio is what llama.cpp's batched decode gives on this machine, the ceiling of the
    4-clients ratio over HTTP."""
    from lms_jupyter.engine.channel import EventChannel
    from lms_jupyter.engine.events import TextDelta
    from lms_jupyter.engine.local.generation import GenerationRequest, SamplingParams
    from lms_jupyter.engine.local.model import LoadedModel
    from lms_jupyter.engine.options import LoadConfig
    from lms_jupyter.models.catalog import ModelCatalog

    info, variant = ModelCatalog(None).resolve(DEFAULT_MODEL_KEY)
    config = LoadConfig(4096, FLASH, n_threads=cores, parallel=4, kv_cache_type=KV)
    model = LoadedModel(info, variant, "engine", config).load()

    def streams(n: int, run: int) -> float:
        channels = [EventChannel() for _ in range(n)]
        started = time.perf_counter()
        for i, channel in enumerate(channels):
            sampling = SamplingParams(temperature=0, repeat_penalty=1.0, logit_bias={EOS_ID: -100})
            request = GenerationRequest(f"Tale {run}-{i}. {STORY}", sampling, max_tokens=tokens)
            model.generate(request, channel)
        counts = [0] * n

        def drain(i: int) -> None:
            counts[i] = sum(isinstance(event, TextDelta) for event in channels[i])

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.perf_counter() - started)

    try:
        streams(1, -1)  # warm up
        figures: dict = {"one": [], "four": []}
        for run in range(runs):
            figures["one"].append(streams(1, run))
            figures["four"].append(streams(4, run))
        return {name: median(values) for name, values in figures.items()}
    finally:
        model.close()


def engine_alone_in_a_fresh_process(cores: int, args) -> dict:
    """:func:`engine_alone` in a new interpreter: this one has run raw llama-cpp-python on
    one thread and on all, and a model loaded after those decoded at a third of its speed."""
    out = subprocess.run(
        [sys.executable, __file__, "--engine-alone", str(cores), str(args.runs), str(args.tokens)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def engine_alone_child(cores: int, runs: int, tokens: int) -> None:
    global FLASH, KV
    FLASH, KV = server_defaults()
    print(json.dumps(engine_alone(str(embedded_model_path()), cores, runs, tokens)))


def stream_interval_ms() -> int:
    """The server's default ``c.ModelManager.stream_interval_ms`` (README: Streaming)."""
    from lms_jupyter.engine.manager_config import ManagerConfig

    return int(ManagerConfig.class_traits()["stream_interval_ms"].default_value)


def main() -> None:
    if sys.argv[1:2] == ["--engine-alone"]:  # engine_alone_in_a_fresh_process's child
        engine_alone_child(*(int(value) for value in sys.argv[2:5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--no-peer", action="store_true", help="skip llama-cpp-python's server")
    args = parser.parse_args()
    global FLASH, KV
    FLASH, KV = server_defaults()
    cores = default_threads()
    path = str(embedded_model_path())
    print(f"$ python benchmarks/bench_perf.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"{machine()}; model {Path(path).name}; server defaults: KV cache {KV}, flash "
        f"attention {'on' if FLASH else 'off'}, {cores} threads, stream interval "
        f"{stream_interval_ms()} ms; {args.tokens} tokens; "
        f"{args.runs} runs; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )

    figures: dict = {"import": import_time(max(args.runs, 5)), "kv": KV, "flash": FLASH}
    # one stream, A and B interleaved run by run: all cores, then one thread
    sides = {"raw_all": RawLlama(path, cores), "ours_all": OurServer()}
    if cores > 1:
        sides.update(raw_1=RawLlama(path, 1), ours_1=OurServer(1))
    streams: dict = {name: [] for name in sides}
    for run in range(args.runs):
        for name, side in sides.items():
            streams[name].append(side.stream(run, args.tokens))
    for name in ("raw_all", "raw_1", "ours_1"):
        if name in sides:
            sides.pop(name).close()
    ours = sides["ours_all"]
    figures["one"] = {
        name: {
            "decode": median(t.decode for t in timed),
            "ttft": median(t.ttft for t in timed),
            "aggregate": median(t.tokens / t.wall for t in timed),
        }
        for name, timed in streams.items()
    }
    if cores == 1:
        figures["one"]["raw_1"], figures["one"]["ours_1"] = (
            figures["one"]["raw_all"],
            figures["one"]["ours_all"],
        )
    print("one stream done", flush=True)
    # four clients: ours and llama_cpp.server interleaved run by run
    peer = None if args.no_peer else PeerServer(path, cores)
    four: dict = {"ours": [], "peer": []}
    peer_one = []
    try:
        for run in range(args.runs):
            four["ours"].append(ours.four(run, args.tokens))
            if peer is not None:
                four["peer"].append(peer.four(run, args.tokens))
                timed = peer.stream(run, args.tokens)
                peer_one.append(timed.chunks / timed.wall)
        figures["four"] = {name: median(values) for name, values in four.items()}
        figures["peer_one"] = median(peer_one)
        figures["peer_turns"] = (
            [multi_turn(peer.client, "peer", run) for run in range(min(args.runs, 2))]
            if peer
            else None
        )
    finally:
        if peer is not None:
            peer.close()
    print("four clients done", flush=True)
    figures["engine"] = engine_alone_in_a_fresh_process(cores, args)
    try:
        figures.update(the_rest(ours, args))
    finally:
        ours.close()
    figures["memory"] = {p: resident(p) for p in (1, 4)}
    report(figures, cores, peer is not None)
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    out = os.environ.get("LMS_JUPYTER_BENCH_JSON")
    if out:
        Path(out).write_text(json.dumps(figures, indent=1, default=str))


def report(f: dict, cores: int, with_peer: bool) -> None:
    one, four = f["one"], f["four"]
    t1, t6, p1, p6, c6 = turn_figures(f["turns"])
    mib = 1 << 20

    def ratio(a: float, b: float) -> str:
        return f"**{a / b:.2f}**"

    rows = [
        (
            "`import lms_jupyter` (whole `python -c` process, interpreter start included)",
            "<= 0.3 s",
            f"{f['import'][0] * 1000:.1f} ms ({f['import'][1] * 1000:.0f} ms)",
        ),
        (
            "decode tok/s, 1 stream, raw llama-cpp-python / `/lms/v1` (1 thread)",
            "",
            f"{one['raw_1']['decode']:.1f} / {one['ours_1']['decode']:.1f}",
        ),
        (
            "ratio `/lms/v1` / raw (1 thread)",
            ">= 0.97",
            ratio(one["ours_1"]["decode"], one["raw_1"]["decode"]),
        ),
        (
            f"decode tok/s, 1 stream, raw / `/lms/v1` (all {cores} cores, the default)",
            "",
            f"{one['raw_all']['decode']:.1f} / {one['ours_all']['decode']:.1f}",
        ),
        (
            "ratio `/lms/v1` / raw (all cores)",
            ">= 0.97",
            ratio(one["ours_all"]["decode"], one["raw_all"]["decode"]),
        ),
        (
            "time to first token, `/lms/v1` - raw (all cores)",
            "",
            f"{(one['ours_all']['ttft'] - one['raw_all']['ttft']) * 1000:+.1f} ms",
        ),
        (
            "tokens/s, 1 client / 4 concurrent clients (aggregate), `/lms/v1`",
            "",
            f"{one['ours_all']['aggregate']:.1f} / {four['ours']:.1f}",
        ),
        ("ratio 4 clients / 1 client", ">= 1.8", ratio(four["ours"], one["ours_all"]["aggregate"])),
        (
            "tokens/s, 1 stream / 4 streams (aggregate), the engine alone in a fresh process "
            "(no HTTP, no worker): llama.cpp's batching gain",
            "",
            f"{f['engine']['one']:.1f} / {f['engine']['four']:.1f} "
            f"(x{f['engine']['four'] / f['engine']['one']:.2f})",
        ),
    ]
    if with_peer:
        rows += [
            (
                "tokens/s, 1 client / 4 clients, `llama_cpp.server`",
                "",
                f"{f['peer_one']:.1f} / {four['peer']:.1f}",
            ),
            (
                "ratio `/lms/v1` / `llama_cpp.server`, 4 clients",
                ">= 1.5",
                ratio(four["ours"], four["peer"]),
            ),
        ]
    rows += [
        (
            "2 interleaved chats: TTFT turn 1 / turn 6 (prompt tokens)",
            "",
            f"{t1 * 1000:.0f} ms ({p1}) / {t6 * 1000:.0f} ms ({p6}, {c6} cached)",
        ),
        (
            f"ratio TTFT turn 6 / turn 1 (prompt x{p6 / max(p1, 1):.1f})",
            "<= 1.5",
            f"**{t6 / t1:.2f}**",
        ),
    ]
    if with_peer:
        pt1, pt6, _pp1, _pp6, _pc6 = turn_figures(f["peer_turns"])
        rows.append(
            (
                "same chats on `llama_cpp.server`: TTFT turn 1 / turn 6",
                "",
                f"{pt1 * 1000:.0f} ms / {pt6 * 1000:.0f} ms (x{pt6 / pt1:.1f})",
            )
        )
    grammar = f["grammar"]
    rows += [
        (
            "decode tok/s, chat (engine stats): plain / json_schema / tool_choice required",
            "",
            f"{grammar['plain']:.1f} / {grammar['json_schema']:.1f} / "
            f"{grammar['tool_choice required']:.1f}",
        ),
        ("ratio json_schema / plain", ">= 0.9", ratio(grammar["json_schema"], grammar["plain"])),
        (
            "ratio tool_choice required / plain",
            ">= 0.9",
            ratio(grammar["tool_choice required"], grammar["plain"]),
        ),
        ("`GET /api/status` p99 while 4 streams generate", "<= 50 ms", f"{f['status_p99']:.1f} ms"),
    ]
    for parallel, memory in f["memory"].items():
        rows.append(
            (
                f"resident memory of a 4096-token load after 4 requests, parallel "
                f"{parallel} ({memory['kv_type']} KV cache): measured / estimate",
                "within 5%",
                f"{memory['resident'] / mib:.0f} / "
                f"{memory['estimate'] / mib:.0f} MiB "
                f"(**{(memory['estimate'] - memory['resident']) / memory['resident']:+.1%}**)",
            )
        )
    memory = f["rss"]
    rows.append(
        (
            "resident memory: the jupyter server / each model's worker process",
            "",
            f"{memory['server'] / mib:.0f} MiB / "
            + ", ".join(
                f"{name} {value / mib:.0f} MiB"
                for name, value in memory["workers"].items()
                if value
            ),
        )
    )
    print()
    print("| measure | goal | value |")
    print("| --- | --- | --- |")
    for measure, goal, value in rows:
        print(f"| {measure} | {goal} | {value} |")
    print()


if __name__ == "__main__":
    main()
