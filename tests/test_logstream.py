"""``lms log stream``: the bus, LM Studio's renderings, the kernel magic, the console script
and the SSE endpoint, with real generations on SmolLM2."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import MODEL, wait_for
from IPython.core.error import UsageError

from lms_jupyter import logs as logstream
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.kernel import runtime
from lms_jupyter.models.catalog import ModelCatalog

pytestmark = pytest.mark.timeout(180)
INPUT, OUTPUT = logstream.MODEL_INPUT, logstream.MODEL_OUTPUT


def chat_body(text: str = "Say hi", max_tokens: int = 3) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


# -- the bus and the renderings ----------------------------------------------------------------
def test_a_slow_reader_loses_the_oldest_events_counted():
    bus = logstream.LogBus()
    slow = bus.subscribe("model", maxlen=10)
    server = bus.subscribe("server")
    for i in range(25):  # nobody reads: publishing still returns at once
        bus.publish({"type": OUTPUT, "output": str(i), "modelIdentifier": "m"})
    assert slow.dropped == 15
    assert [slow.get_nowait()["data"]["output"] for _ in range(10)] == [
        str(i) for i in range(15, 25)
    ]
    assert slow.get_nowait() is None and server.get_nowait() is None  # by source
    slow.close()
    assert not bus.has_subscribers("model") and bus.has_subscribers("server")
    server.close()


def test_readers_report_what_they_lost():
    bus_events = []
    sub = logstream.bus().subscribe("model", maxlen=3)
    for i in range(5):
        logstream.bus().publish({"type": OUTPUT, "output": str(i), "modelIdentifier": "m"})
    lost = []
    for event in logstream.follow(
        logstream.LogFilter.parse("model", "output"),
        timeout=0.2,
        subscription=sub,
        on_dropped=lost.append,
    ):
        bus_events.append(event["data"]["output"])
    assert lost == [2] and bus_events == ["2", "3", "4"]
    assert sub.closed and not logstream.bus().has_subscribers("model")


def test_sse_reader_parses_events_and_drop_notices():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = (
        ": comment\n\n"
        'data: {"timestamp": 1, "data": {"type": "server.log", "content": "a"}}\n\n'
        'event: dropped\ndata: {"dropped": 7}\n\n'
        'data: {"timestamp": 2,\ndata:  "data": {"type": "server.log", "content": "b"}}\n\n'
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            assert self.headers["Authorization"] == "Bearer tok"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lost = []
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        events = list(logstream.read_sse(url, "tok", timeout=30, on_dropped=lost.append))
    finally:
        server.shutdown()
        server.server_close()
    assert [e["data"]["content"] for e in events] == ["a", "b"] and lost == [7]


@pytest.mark.parametrize(
    "source, filter_text, stats, message",
    [
        ("model", "foo", False, "--filter values must be 'input', 'output', or 'input,output'"),
        ("model", " ", False, "--filter cannot be empty"),
        ("server", "input", False, "--filter can only be used with --source model"),
        ("server", None, True, "--stats can only be used with --source model"),
        ("runtime", None, False, "--source must be one of: model, server (got 'runtime')."),
    ],
)
def test_bad_options_use_lm_studios_words(source, filter_text, stats, message):
    with pytest.raises(logstream.LogOptionsError) as err:
        logstream.LogFilter.parse(source, filter_text, stats)
    assert str(err.value) == message


def test_text_and_json_renderings():
    when = 1757949399000
    stamp = datetime.datetime.fromtimestamp(when / 1000)
    local = (
        f"{stamp.month}/{stamp.day}/{stamp.year}, {stamp.hour % 12 or 12}:"
        f"{stamp.minute:02d}:{stamp.second:02d} {'AM' if stamp.hour < 12 else 'PM'}"
    )
    event_in = {
        "timestamp": when,
        "data": {
            "type": INPUT,
            "input": "<|im_start|>user\nhi",
            "modelPath": "pub/repo/file.gguf",
            "modelIdentifier": "smol",
        },
    }
    assert logstream.render_text(event_in) == (
        f"timestamp: {local}\ntype: llm.prediction.input\nmodelIdentifier: smol\n"
        "modelPath: pub/repo/file.gguf\ninput:\n<|im_start|>user\nhi\n\n"
    )
    event_out = {
        "timestamp": when,
        "data": {
            "type": OUTPUT,
            "output": "Hello",
            "modelIdentifier": "smol",
            "stats": {"stopReason": "eosFound", "tokensPerSecond": 50.5, "numGpuLayers": 0},
        },
    }
    assert logstream.render_text(event_out) == (
        f"timestamp: {local}\ntype: llm.prediction.output\nmodelIdentifier: smol\n"
        "output:\nHello\n\n"
    )
    assert logstream.render_text(event_out, stats=True).endswith(
        "output:\nHello\nstopReason: eosFound\ntokensPerSecond: 50.5\nnumGpuLayers: 0\n\n"
    )
    line = logstream.render_json(event_out)
    assert "\n" not in line and " " not in line.replace("Hello", "")
    assert json.loads(line) == event_out
    server = {
        "timestamp": when,
        "data": {
            "type": "server.log",
            "level": "info",
            "content": "2025-09-15 15:16:39 [INFO] hello",
        },
    }
    assert logstream.render_text(server) == "2025-09-15 15:16:39 [INFO] hello"
    kept = logstream.LogFilter.parse("model", "output", stats=False).apply(event_out)
    assert "stats" not in kept["data"] and "stats" in event_out["data"]
    assert logstream.LogFilter.parse("model", "input").apply(event_out) is None


def test_core_logging_feeds_the_server_source_with_secrets_masked():
    logger = logging.getLogger("lms_jupyter")
    level = logger.level
    with logstream.bus().subscribe("server") as sub:
        assert logger.getEffectiveLevel() <= logging.INFO
        logging.getLogger("lms_jupyter.models.downloads").info(
            "fetching with Authorization: Bearer sk-live-123456 and ?token=abcdef123456 "
            "hf_abcdefghijklmnopqrstu"
        )
        logstream.bus().add_secret("my-jupyter-token-42")
        logstream.server_log("warn", "client used my-jupyter-token-42")
        first, second = sub.get(1), sub.get(1)
    assert logger.level == level  # restored once nobody listens
    content = first["data"]["content"]
    assert first["data"]["type"] == "server.log" and first["data"]["level"] == "info"
    assert "[INFO] fetching with Authorization: Bearer ***" in content
    for secret in ("sk-live-123456", "abcdef123456", "hf_abcdefghijklmnopqrstu"):
        assert secret not in content
    assert second["data"]["level"] == "warn"
    assert second["data"]["content"].endswith("[WARN] client used ***")


# -- the kernel magic ---------------------------------------------------------------------------
class Tee(io.StringIO):
    """stdout for the magic: records text and says when ``marker`` has been printed."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.done = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        if text == "\n" and self.marker in self.getvalue():
            self.done.set()
        return n


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    from IPython.core.interactiveshell import InteractiveShell

    manager = ModelManager(ModelCatalog(tmp_path_factory.mktemp("no_models")))
    previous = runtime.set_manager(manager)
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("lms_jupyter")
    ip._lms_magics.stream_mode = "print"
    yield ip
    ip.extension_manager.unload_extension("lms_jupyter")
    runtime.set_manager(previous)
    manager.shutdown()


def stream_in_kernel(ip, line: str, source: str, action, marker: str) -> str:
    """Run ``%lms <line>``; once it listens, ``action()`` runs on a thread, and after
    ``marker`` is printed the thread stops the stream with ``logstream.stop_streams()``
    (not SIGINT, which background jobs ignore: issue 26)."""
    out = Tee(marker)
    failures = []
    finished = threading.Event()

    def driver():
        try:
            wait_for(lambda: logstream.bus().has_subscribers(source), "a subscriber", poll=0.01)
            action()
            assert out.done.wait(60), "the event never showed up"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)
        finally:
            if not finished.is_set():
                assert logstream.stop_streams() >= 1, "no stream to stop"

    thread = threading.Thread(target=driver, daemon=True)
    with contextlib.redirect_stdout(out):
        thread.start()
        try:
            ip.run_line_magic("lms", line)
        except KeyboardInterrupt:
            failures.append("a KeyboardInterrupt escaped the log stream")
        finally:
            finished.set()
    thread.join(10)
    assert not failures, failures
    return out.getvalue()


def kernel_chat() -> tuple[str, dict]:
    """A chat through the kernel's API; returns (the templated prompt, the response)."""
    api = runtime.get_api()
    prep = api.prepare_chat(chat_body())
    return prep.request.prompt, api.run_sync(prep)


def test_magic_streams_model_input_and_output_with_stats(shell):
    seen = {}
    text = stream_in_kernel(
        shell,
        "log stream --stats",
        "model",
        lambda: seen.update(zip(("prompt", "response"), kernel_chat(), strict=False)),
        "predictedTokensCount:",
    )
    answer = seen["response"]["choices"][0]["message"]["content"]
    assert text.startswith("Streaming logs from lms-jupyter\n")
    assert (
        f"type: llm.prediction.input\nmodelIdentifier: {MODEL}\n"
        f"modelPath: HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf\n"
        f"input:\n{seen['prompt']}\n\n"
    ) in text
    assert "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n" in seen["prompt"]
    output = text[text.index("type: llm.prediction.output") :]
    assert output.startswith(
        f"type: llm.prediction.output\nmodelIdentifier: {MODEL}\n"
        f"output:\n{answer}\nstopReason: maxPredictedTokensReached\n"
    )
    for key in (
        "tokensPerSecond: ",
        "timeToFirstTokenSec: ",
        "promptTokensCount: ",
        "predictedTokensCount: 3",
        "totalTokensCount: ",
    ):
        assert f"\n{key}" in output


def test_magic_json_with_filters(shell):
    seen = {}
    text = stream_in_kernel(
        shell,
        "log stream --json --filter output",
        "model",
        lambda: seen.update(zip(("prompt", "response"), kernel_chat(), strict=False)),
        '"llm.prediction.output"',
    )
    lines = text.splitlines()
    assert len(lines) == 1, lines  # no banner in JSON mode, no input event
    event = json.loads(lines[0])
    assert (
        set(event) == {"timestamp", "data"} and abs(event["timestamp"] - time.time() * 1000) < 60e3
    )
    assert event["data"] == {
        "type": OUTPUT,
        "modelIdentifier": MODEL,
        "modelPath": "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf",
        "output": seen["response"]["choices"][0]["message"]["content"],
    }

    text = stream_in_kernel(
        shell,
        "log stream --json --filter input --stats",
        "model",
        lambda: seen.update(zip(("prompt", "response"), kernel_chat(), strict=False)),
        '"llm.prediction.input"',
    )
    (line,) = text.splitlines()
    data = json.loads(line)["data"]
    assert data == {
        "type": INPUT,
        "input": seen["prompt"],
        "modelIdentifier": MODEL,
        "modelPath": "HuggingFaceTB/SmolLM2-135M-Instruct.Q4_1.gguf",
    }


def test_magic_server_source_and_timeout(shell):
    def log_something():
        logging.getLogger("lms_jupyter.engine.manager").warning(
            "evicting a model (token=supersecret99)"
        )

    text = stream_in_kernel(
        shell, "log stream -s server", "server", log_something, "evicting a model"
    )
    (line,) = [t for t in text.splitlines() if "evicting" in t]
    assert line.endswith("[WARN] evicting a model (token=***)")

    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        shell.run_line_magic("lms", "log stream --timeout 0.3")
    assert time.monotonic() - started < 10
    assert out.getvalue() == "Streaming logs from lms-jupyter\n\n"
    assert not logstream.bus().has_subscribers("model")


def test_magic_option_errors_are_one_line(shell):
    with pytest.raises(
        UsageError, match="^--filter values must be 'input', 'output', or 'input,output'$"
    ):
        shell.run_line_magic("lms", "log stream --filter inputs")
    with pytest.raises(UsageError, match="^--filter can only be used with --source model$"):
        shell.run_line_magic("lms", "log stream -s server --filter input")
    with pytest.raises(UsageError, match="argument -s/--source: invalid choice"):
        shell.run_line_magic("lms", "log stream -s runtime")


# -- over HTTP -------------------------------------------------------------------------------
def sse_events(server, params: dict, action, until, timeout: float = 60.0) -> list[dict]:
    """Open the SSE stream, run ``action`` once it is open, collect events until
    ``until(events)`` holds."""
    events: list[dict] = []
    errors = []

    def run():
        try:
            action()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    url = server.url + "lms/api/v0/logs/stream"
    with httpx.stream(
        "GET", url, params=params, headers=server.headers, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if until(events):
                    break
    worker.join(60)
    assert not errors, errors
    return events


def types(events) -> list[str]:
    return [e["data"]["type"] for e in events]


def http_chat(server, **auth) -> dict:
    r = httpx.post(server.api_url + "/chat/completions", json=chat_body(), timeout=120, **auth)
    assert r.status_code == 200, r.text
    return r.json()


def test_sse_model_events_with_filter_and_stats(server):
    seen = {}
    events = sse_events(
        server,
        {"source": "model", "filter": "input,output", "stats": "true"},
        lambda: seen.update(http_chat(server, headers=server.headers)),
        lambda found: OUTPUT in types(found),
    )
    (first, second) = [e["data"] for e in events]
    assert first["type"] == INPUT and first["modelIdentifier"] == MODEL
    assert first["input"].endswith("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert second["type"] == OUTPUT
    assert second["output"] == seen["choices"][0]["message"]["content"]
    assert second["stats"]["predictedTokensCount"] == seen["usage"]["completion_tokens"]
    assert second["stats"]["promptTokensCount"] == seen["usage"]["prompt_tokens"]
    assert second["stats"]["stopReason"] == "maxPredictedTokensReached"

    events = sse_events(
        server,
        {"source": "model", "filter": "output"},
        lambda: http_chat(server, headers=server.headers),
        lambda found: bool(found),
    )
    assert types(events) == [OUTPUT] and "stats" not in events[0]["data"]


def test_sse_server_source_logs_requests_without_secrets(server):
    token = server.token
    events = sse_events(
        server,
        {"source": "server"},
        lambda: http_chat(server, params={"token": token}),  # token in the query string
        lambda found: any("chat/completions" in e["data"]["content"] for e in found),
    )
    assert set(types(events)) == {"server.log"}
    (event,) = [e for e in events if "chat/completions" in e["data"]["content"]]
    content = event["data"]["content"]
    assert event["data"]["level"] == "info"
    assert f"[INFO] POST {server.base_url}lms/v1/chat/completions 200 " in content
    assert content.endswith(f"ms model={MODEL}")
    assert token not in json.dumps(events)

    r = httpx.get(
        server.url + "lms/api/v0/logs/stream", params={"source": "runtime"}, headers=server.headers
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "--source must be one of: model, server (got 'runtime')."
    )
    r = httpx.get(server.url + "lms/api/v0/logs/stream")
    assert r.status_code in (401, 403)
    assert "Traceback" not in server.log_path.read_text()


def test_console_script_follows_the_server(server):
    env = dict(os.environ, JUPYTER_TOKEN=server.token)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lms_jupyter.cli",
            "log",
            "stream",
            "--json",
            "--stats",
            "--server",
            server.url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        banner = proc.stderr.readline()
        assert banner == f"Streaming logs from lms-jupyter server at {server.url}\n"
        response = http_chat(server, headers=server.headers)
        first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)  # SIGTERM stops it cleanly too (issue 26)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert first["data"]["type"] == INPUT and "Say hi" in first["data"]["input"]
    assert second["data"]["type"] == OUTPUT
    assert second["data"]["output"] == response["choices"][0]["message"]["content"]
    assert second["data"]["stats"]["predictedTokensCount"] == 3

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lms_jupyter.cli",
            "log",
            "stream",
            "-s",
            "server",
            "--server",
            server.url,
            "--token",
            "wrong",
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: The server answered 40")

    # without --server: this process's own events, until the timeout
    proc = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "log", "stream", "--timeout", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr == "Streaming logs from lms-jupyter\n\n"


def test_console_script_stops_in_a_background_job(server):
    """Issue 26: started as ``nohup ... &`` does (SIGINT ignored from the start), the
    stream still stops on SIGINT and on SIGTERM, exit status 0."""
    env = dict(os.environ, JUPYTER_TOKEN=server.token)
    for stop_with in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen(
            [sys.executable, "-m", "lms_jupyter.cli", "log", "stream", "--server", server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            assert proc.stderr.readline().startswith("Streaming logs from lms-jupyter")
            proc.send_signal(stop_with)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.stderr.close()
