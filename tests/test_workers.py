"""Models in worker processes: real workers killed with real signals, under a real server
and in real kernels. Nothing here mocks the worker; every crash is a ``kill`` of its pid.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
from conftest import EOS_ID, GEMMA, MODEL, JupyterServer, wait_for

from lms_jupyter.engine.worker.crash import REBUILD_COMMAND, CrashReport

pytestmark = pytest.mark.timeout(300)
LONG = {"logit_bias": {str(EOS_ID): -100}}  # SmolLM2 cannot stop: it streams until killed


def ps(srv) -> list[dict]:
    return httpx.get(srv.url + "lms/api/v0/ps", headers=srv.headers, timeout=30).json()["data"]


def row(srv, identifier: str) -> dict | None:
    return next((r for r in ps(srv) if r["identifier"] == identifier), None)


def load(srv, model: str, **fields) -> dict:
    r = httpx.post(
        srv.url + "lms/api/v1/models/load",
        json={"model": model, **fields},
        headers=srv.headers,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def unload(srv, identifier: str) -> None:
    httpx.post(
        srv.url + "lms/api/v1/models/unload",
        headers=srv.headers,
        timeout=60,
        json={"instance_id": identifier},
    )


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def stream_lines(srv, body: dict, on_chunk=None) -> list[str]:
    """The SSE data lines of a streamed chat completion; ``on_chunk(n)`` after each."""
    lines = []
    with httpx.stream(
        "POST",
        srv.api_url + "/chat/completions",
        headers=srv.headers,
        json={**body, "stream": True},
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])
                if on_chunk is not None:
                    on_chunk(len(lines))
    return lines


@pytest.fixture(scope="module")
def srv(tmp_path_factory, models_dir):
    server = JupyterServer(
        tmp_path_factory.mktemp("workers"), models_dir, ["--ModelManager.max_queued_requests=8"]
    )
    yield server
    server.stop()


CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 400,
    **LONG,
}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["kill-9", "SEGV"])
def test_a_killed_worker_ends_its_stream_and_the_server_goes_on(srv, sig):
    load(srv, MODEL, identifier=MODEL)
    load(srv, GEMMA)
    victim = row(srv, MODEL)
    assert victim["pid"] and victim["pid"] != srv.proc.pid
    killed = []

    def kill_after_five(n):
        if n == 5 and not killed:
            os.kill(victim["pid"], sig)
            killed.append(time.perf_counter())

    lines = stream_lines(srv, CHAT, kill_after_five)
    assert killed and lines[-1] == "[DONE]"
    error = json.loads(lines[-2])["error"]
    assert error["code"] == "model_crashed" and error["type"] == "server_error"
    assert MODEL in error["message"] and sig.name in error["message"]
    # the crash shows in ps with its reason, until the next request reloads the model
    crashed = row(srv, MODEL)
    assert crashed["status"] == "crashed" and sig.name in crashed["crash"]["reason"]
    # another model on the same server keeps answering, meanwhile
    other = httpx.post(
        srv.api_url + "/completions",
        headers=srv.headers,
        timeout=120,
        json={"model": GEMMA, "prompt": "Once upon", "max_tokens": 3},
    )
    assert other.status_code == 200, other.text
    # and the crashed one is loaded again (JIT) by the next request naming it
    again = httpx.post(
        srv.api_url + "/chat/completions",
        headers=srv.headers,
        timeout=120,
        json={**CHAT, "max_tokens": 5},
    )
    assert again.status_code == 200, again.text
    reloaded = row(srv, MODEL)
    assert reloaded["status"] == "idle" and reloaded["crash"] is None
    assert reloaded["pid"] != victim["pid"] and reloaded["contextLength"] == victim["contextLength"]
    unload(srv, MODEL)
    unload(srv, GEMMA)


def test_every_request_waiting_on_a_killed_worker_fails_with_model_crashed(srv):
    load(srv, MODEL, identifier="one-slot", parallel=1)
    victim = row(srv, "one-slot")
    results: dict[int, httpx.Response] = {}

    def ask(i: int) -> None:
        results[i] = httpx.post(
            srv.api_url + "/chat/completions",
            headers=srv.headers,
            timeout=120,
            json={**CHAT, "model": "one-slot"},
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: (row(srv, "one-slot") or {}).get("queued") == 3, what="3 queued")
    os.kill(victim["pid"], signal.SIGKILL)
    for thread in threads:
        thread.join(60)
    for response in results.values():
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "model_crashed"
        assert "SIGKILL" in response.json()["error"]["message"]
    assert len(results) == 3
    unload(srv, "one-slot")


def test_three_crashes_in_a_minute_stop_the_automatic_reload(srv):
    load(srv, MODEL, identifier="fragile", context_length=512)
    for attempt in range(3):
        pid = row(srv, "fragile")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: (row(srv, "fragile") or {}).get("status") == "crashed", what="the crash to show"
        )
        r = httpx.post(
            srv.api_url + "/completions",
            headers=srv.headers,
            timeout=120,
            json={"model": "fragile", "prompt": "Hi", "max_tokens": 2},
        )
        if attempt < 2:
            assert r.status_code == 200, r.text  # reloaded with its settings
            assert row(srv, "fragile")["contextLength"] == 512
        else:
            assert r.status_code == 503
            error = r.json()["error"]
            assert (
                error["code"] == "model_crashed" and "3 times within a minute" in error["message"]
            )
    # an explicit load tries again
    load(srv, MODEL, identifier="fragile", context_length=512)
    assert row(srv, "fragile")["status"] == "idle"
    unload(srv, "fragile")


def test_a_fault_before_the_first_answer_names_the_build(srv):
    load(srv, MODEL, identifier="fresh-build", context_length=512)
    os.kill(row(srv, "fresh-build")["pid"], signal.SIGSEGV)  # before it ever decoded
    crashed = wait_for(
        lambda: (r := row(srv, "fresh-build")) and r["status"] == "crashed" and r, what="the crash"
    )
    assert crashed["crash"]["faultyBuild"] is True
    assert crashed["crash"]["phase"] == "first decode"
    report = CrashReport("m", -signal.SIGILL, ["GGML_ASSERT(...) failed"], "load")
    assert REBUILD_COMMAND in report.message and "-mno-amx-tile" in report.message
    assert "GGML_ASSERT" in report.message
    late = CrashReport("m", -signal.SIGSEGV, [], "generation")
    assert not late.faulty_build and REBUILD_COMMAND not in late.message
    r = httpx.post(
        srv.url + "lms/api/v1/models/unload",
        headers=srv.headers,
        timeout=60,
        json={"instance_id": "fresh-build"},
    )
    assert r.status_code == 200, r.text  # unloading a crashed instance forgets it
    assert row(srv, "fresh-build") is None


def test_the_server_never_loads_llama_cpp_and_unloads_give_memory_back(srv):
    """Load + unload 20 times: no leaked worker, descriptor or memory in the server."""
    server_pid = srv.proc.pid

    def fds() -> int:
        return len(os.listdir(f"/proc/{server_pid}/fd"))

    load(srv, MODEL, identifier="warmup", context_length=512)
    # every kind of work once: chat (v1 and LM Studio's v0 with its runtime info),
    # embeddings, tools, structured output, Responses
    for path, body in (
        ("lms/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("lms/api/v0/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("lms/v1/embeddings", {"input": ["a sentence"]}),
        ("lms/v1/completions", {"prompt": [1, 2, 3]}),
        (
            "lms/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "Hi"}],
                "response_format": {"type": "json_object"},
            },
        ),
        ("lms/v1/responses", {"input": "Hi"}),
    ):
        r = httpx.post(
            srv.url + path,
            headers=srv.headers,
            timeout=120,
            json={"model": "warmup", "max_tokens": 4, **body},
        )
        assert r.status_code == 200, (path, r.text)
    httpx.post(
        srv.url + "lms/api/v1/models/unload",
        headers=srv.headers,
        timeout=60,
        json={"instance_id": "warmup"},
    )
    time.sleep(1)
    before_children = children(server_pid)
    before_fds, before_rss = fds(), rss(server_pid)
    for i in range(20):
        load(srv, MODEL, identifier=f"cycle-{i}", context_length=512)
        r = httpx.post(
            srv.url + "lms/api/v1/models/unload",
            headers=srv.headers,
            timeout=60,
            json={"instance_id": f"cycle-{i}"},
        )
        assert r.status_code == 200, r.text
    wait_for(lambda: len(children(server_pid)) <= len(before_children), "the workers to exit")
    time.sleep(0.5)
    after_rss = rss(server_pid)
    print(
        f"\nserver RSS {before_rss / 2**20:.1f} -> {after_rss / 2**20:.1f} MiB, fds "
        f"{before_fds} -> {fds()}, children {len(before_children)} -> "
        f"{len(children(server_pid))}"
    )
    assert fds() <= before_fds + 2
    assert after_rss - before_rss < 15 * 2**20
    with open(f"/proc/{server_pid}/maps", encoding="utf-8") as maps:
        mapped = maps.read()
    assert "libllama" not in mapped and "libggml" not in mapped


def test_responses_stream_reports_response_failed_on_a_crash(srv):
    load(srv, MODEL, identifier="resp", context_length=1024)
    pid = row(srv, "resp")["pid"]
    events = []
    with httpx.stream(
        "POST",
        srv.api_url + "/responses",
        headers=srv.headers,
        timeout=120,
        json={
            "model": "resp",
            "input": "Tell me a long story.",
            "stream": True,
            "max_output_tokens": 400,
            **LONG,
        },
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
                if (
                    events[-1] == "response.output_text.delta"
                    and events.count("response.output_text.delta") == 3
                ):
                    os.kill(pid, signal.SIGKILL)
    assert "response.failed" in events
    assert "response.completed" not in events
    unload(srv, "resp")


# -- kernels ------------------------------------------------------------------------------------
_KERNEL_LOAD = f"""
%load_ext lms_jupyter
%lms load {MODEL} -c 512
from lms_jupyter.kernel import runtime
print("WORKER", runtime.get_manager().get_loaded("{MODEL}").pid)
"""


@pytest.mark.parametrize("how", ["shutdown", "kill"])
def test_a_kernels_workers_end_with_the_kernel(tmp_path, how):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(
        kernel_name="python3", env={**os.environ, "LMS_JUPYTER_CONNECT": "off"}
    )
    try:
        output = []
        kc.execute_interactive(
            _KERNEL_LOAD,
            timeout=180,
            output_hook=lambda m: output.append(m["content"].get("text", "")),
        )
        text = "".join(output)
        worker = int(text.split("WORKER", 1)[1].split()[0])
        kernel_pid = km.provisioner.process.pid
        assert worker in children(kernel_pid)
        with open(f"/proc/{kernel_pid}/maps", encoding="utf-8") as maps:
            assert "libllama" not in maps.read()  # the model runs in the worker only
    finally:
        if how == "shutdown":
            km.shutdown_kernel(now=False)
        else:
            os.kill(km.provisioner.process.pid, signal.SIGKILL)
            km.cleanup_resources()
        kc.stop_channels()
    wait_for(
        lambda: (
            not os.path.exists(f"/proc/{worker}")
            or open(f"/proc/{worker}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        ),
        "the worker to exit",
        timeout=20,
    )


def test_a_kernel_the_server_started_uses_the_servers_models(tmp_path_factory, models_dir):
    from test_connect import Kernel

    server = JupyterServer(
        tmp_path_factory.mktemp("one-set"), models_dir, env={"LMS_JUPYTER_CONNECT": ""}
    )
    kernel = None
    try:
        kernel = Kernel(server)
        kernel.run("%load_ext lms_jupyter")
        kernel.run("%%chat --model smollm2-135m-instruct --max-tokens 8 --temperature 0\nSay hi.")
        assert row(server, MODEL) is not None  # the server's instance answered
        probe, _ = kernel.run(
            "import os\nfrom lms_jupyter.kernel import runtime\n"
            "print('CONNECTED', runtime.connection() is not None)\n"
            "print('CHILDREN', [p for p in os.listdir('/proc') if p.isdigit() and "
            "open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == str(os.getpid())])"
        )
        assert "CONNECTED True" in probe
        assert "CHILDREN []" in probe  # no worker, no copy of the model in the kernel
    finally:
        if kernel is not None:
            kernel.close()
        server.stop()


def test_a_crash_under_a_chat_cell_is_a_short_error_and_the_next_cell_works():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(
        kernel_name="python3", env={**os.environ, "LMS_JUPYTER_CONNECT": "off"}
    )
    try:
        kc.execute_interactive(
            _KERNEL_LOAD
            + (
                "import os, signal, threading\n"
                "get_ipython()._lms_magics.chat_defaults = {'logit_bias': {'2': -100}}\n"
                f"pid = runtime.get_manager().get_loaded('{MODEL}').pid\n"
            ),
            timeout=180,
        )
        errors = []

        def keep_errors(message):  # IPython prints a UsageError as one line on stderr
            if message["msg_type"] == "error" or (
                message["msg_type"] == "stream" and message["content"]["name"] == "stderr"
            ):
                errors.append(message["content"])

        kc.execute_interactive(
            "threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()", timeout=30
        )
        kc.execute_interactive(
            f"%%chat --model {MODEL} --max-tokens 2000\nTell a long story.",
            timeout=120,
            output_hook=keep_errors,
        )
        text = "".join(e.get("text", "") for e in errors)
        assert not any("traceback" in e for e in errors), errors  # no traceback
        assert text.startswith("UsageError: ") and "crashed" in text and "SIGKILL" in text
        assert text.count("\n") <= 1, text
        answers = []
        kc.execute_interactive(
            f"%%chat --model {MODEL} --max-tokens 5\nSay hi.",
            timeout=120,
            output_hook=lambda m: answers.append(m["msg_type"]),
        )
        assert "error" not in answers  # reloaded by the next cell
    finally:
        km.shutdown_kernel(now=True)
        kc.stop_channels()


def test_llama_cpp_lines_reach_the_parent_and_a_crash_report(models_dir):
    """A worker holds llama.cpp's info lines and writes them in one go (after "loaded",
    at each status tick): they still reach the parent, so a crash report carries them."""
    from lms_jupyter.engine.manager import ModelManager
    from lms_jupyter.engine.options import LoadRequest
    from lms_jupyter.models.catalog import ModelCatalog

    manager = ModelManager(ModelCatalog(models_dir), prestart_worker=False)
    try:
        model = manager.load(LoadRequest(MODEL, identifier="lines", context_length=1024))
        # among the last lines of a load: the compute buffer, as llama.cpp wrote it
        wait_for(
            lambda: any("compute buffer size" in line for line in model._stderr),
            "llama.cpp's lines in the parent",
            timeout=5,
        )
        os.kill(model.pid, signal.SIGKILL)
        wait_for(lambda: model.crash is not None, "the crash report", timeout=10)
        assert any("compute buffer size" in line for line in model.crash.stderr_tail)
        assert "SIGKILL" in model.crash.message
    finally:
        manager.shutdown()
