"""One model set: a kernel started by a real jupyter server attaches to that server's
models with ``%lms connect`` (found through Jupyter's runtime files), and the
``lms-jupyter`` script acts on the same server.

The kernel is driven over the server's own kernel websocket, as JupyterLab drives it, so
the kernel's parent process is the server, exactly as for a user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import GEMMA, MODEL, TOKEN, JupyterServer

pytestmark = pytest.mark.timeout(300)
LONG = {"logit_bias": {"2": -100}}  # SmolLM2's EOS banned: it keeps talking


@pytest.fixture(scope="module")
def hub(tmp_path_factory, models_dir):
    """A server whose runtime files (jpserver-*.json) live in a folder of its own."""
    runtime_dir = tmp_path_factory.mktemp("runtime")
    srv = JupyterServer(
        tmp_path_factory.mktemp("hub"), models_dir, env={"JUPYTER_RUNTIME_DIR": str(runtime_dir)}
    )
    srv.runtime_dir = runtime_dir
    yield srv
    srv.stop()


class Kernel:
    """A kernel started by the server, executed through its websocket."""

    def __init__(self, srv):
        import websocket

        self.srv = srv
        reply = httpx.post(
            srv.url + "api/kernels", headers=srv.headers, json={"name": "python3"}, timeout=60
        )
        reply.raise_for_status()
        self.id = reply.json()["id"]
        ws_url = srv.url.replace("http://", "ws://") + f"api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {TOKEN}"], timeout=120
        )
        self.session = uuid.uuid4().hex

    def send(self, code: str) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "test",
                        "session": self.session,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        return msg_id

    def messages(self, msg_id: str):
        """This request's iopub messages until the kernel is idle again."""
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    return
                continue
            yield msg

    def run(self, code: str) -> tuple[str, list]:
        """(stdout, every output message) of one cell; errors are raised."""
        text, outputs = [], []
        for msg in self.messages(self.send(code)):
            outputs.append(msg)
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
        return "".join(text), outputs

    def close(self):
        self.ws.close()
        httpx.delete(self.srv.url + f"api/kernels/{self.id}", headers=self.srv.headers, timeout=60)


def ps(srv) -> list:
    return httpx.get(srv.url + "lms/api/v0/ps", headers=srv.headers).json()["data"]


RSS = "int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) * 1024"


def test_kernel_connects_to_its_server_and_shares_its_model(hub):
    loaded = httpx.post(
        hub.url + "lms/api/v1/models/load",
        headers=hub.headers,
        timeout=120,
        json={"model": MODEL, "identifier": "shared", "context_length": 1024},
    )
    assert loaded.status_code == 200, loaded.text
    kernel = Kernel(hub)
    try:
        kernel.run("%load_ext lms_jupyter\nimport sys, json")
        out, _ = kernel.run("%lms connect")
        assert out.startswith("Connected to the Jupyter server at ") and "shared" in out
        out, _ = kernel.run("%lms status")
        assert "Connected to the Jupyter server" in out and "/lms" in out

        out, _ = kernel.run("%lms ps")
        assert "shared" in out and MODEL in out and "IDLE" in out
        out, _ = kernel.run("%lms ls")
        assert MODEL in out and GEMMA in out and "✓ LOADED" in out
        out, _ = kernel.run("%lms ps --json")
        assert [row["identifier"] for row in json.loads(out)] == ["shared"]
        # from here the kernel only chats and embeds (numpy is the embed's own import)
        kernel.run("import numpy\nrss_before = " + RSS)

        # %%chat streams the server's answer: the same text the server gives over HTTP
        _, outputs = kernel.run(
            "%%chat --model shared --max-tokens 8 --temperature 0\nSay hello to Paris."
        )
        finals = [
            m["content"]
            for m in outputs
            if m["msg_type"] in ("display_data", "update_display_data")
            and m["content"]["metadata"].get("lms_jupyter", {}).get("stage") == "finished"
        ]
        answer = finals[-1]["data"]["text/plain"]
        direct = httpx.post(
            hub.api_url + "/chat/completions",
            headers=hub.headers,
            timeout=60,
            json={
                "model": "shared",
                "max_tokens": 8,
                "temperature": 0,
                "messages": [{"role": "user", "content": "Say hello to Paris."}],
            },
        ).json()
        assert answer == direct["choices"][0]["message"]["content"] and answer
        stats = [
            m["content"].get("text") or m["content"].get("data", {}).get("text/plain", "")
            for m in outputs
        ]
        assert any(line.startswith("shared · 8 tokens") for line in stats), stats

        # structured output goes through the server too (a tiny schema: a few tokens)
        kernel.run(
            "Verdict = {'type': 'object', 'properties': {'ok': {'type': 'boolean'}}, "
            "'required': ['ok']}"
        )
        kernel.run(
            "%%chat --model shared --schema Verdict --max-tokens 20 --temperature 0 "
            "--new --out verdict\nIs the sky blue?"
        )
        out, _ = kernel.run("print(json.dumps(verdict))")
        assert isinstance(json.loads(out)["ok"], bool)

        out, _ = kernel.run('%lms embed shared "red apple" "green pear"')
        assert out.startswith("shared · 2 texts · 576 dims")

        # lms_jupyter.batch goes through the connected API: the server's slots run the rows
        before = httpx.get(hub.url + "lms/api/v0/ps", headers=hub.headers).json()["data"]
        out, _ = kernel.run(
            "import lms_jupyter\nrows = lms_jupyter.batch(['Paris', 'Rome', "
            "'Oslo'], 'Say hello to {input}.', model='shared', max_tokens=4, "
            "cache=False, progress=False)\n"
            "print(json.dumps([rows['finish_reason'].tolist(), "
            "rows['answer'].tolist(), rows['error'].isna().all().item()]))"
        )
        reasons, answers, no_errors = json.loads(out.strip().splitlines()[-1])
        assert no_errors and all(answers) and set(reasons) <= {"length", "stop"}
        after = httpx.get(hub.url + "lms/api/v0/ps", headers=hub.headers).json()["data"]
        assert after[0]["lastUsedTime"] > before[0]["lastUsedTime"]  # the server's instance

        # one copy: the server holds the model, the kernel never loaded llama.cpp
        out, _ = kernel.run(
            "import json\nfrom lms_jupyter.kernel import runtime\n"
            "print(json.dumps({'llama': 'llama_cpp' in sys.modules, "
            "'own': runtime._manager is not None, "
            "'grew': " + RSS + " - rss_before}))"
        )
        facts = json.loads(out)
        model_bytes = ps(hub)[0]["sizeBytes"]
        print(
            f"\nkernel RSS grew {facts['grew'] / 2**20:.1f} MiB chatting and embedding "
            f"(model file {model_bytes / 2**20:.1f} MiB)"
        )
        assert facts["llama"] is False and facts["own"] is False
        assert facts["grew"] < model_bytes / 2
        assert [row["identifier"] for row in ps(hub)] == ["shared"]

        # the stop button: interrupting the kernel stops generation on the server
        kernel.run(f"%config LMSMagics.chat_defaults = {LONG!r}")
        msg_id = kernel.send("%%chat --model shared --max-tokens 400\nTell a long story.")
        updates, error = 0, None
        for msg in kernel.messages(msg_id):
            if msg["msg_type"] == "update_display_data":
                updates += 1
                if updates == 3:
                    httpx.post(
                        hub.url + f"api/kernels/{kernel.id}/interrupt",
                        headers=hub.headers,
                        timeout=30,
                    ).raise_for_status()
            elif msg["msg_type"] == "error":
                error = msg["content"]
        assert error is not None and error["ename"] == "GenerationInterrupted"
        deadline = time.monotonic() + 30
        while (row := ps(hub)[0])["status"] != "idle" or row["queued"]:
            assert time.monotonic() < deadline, row
            time.sleep(0.2)

        out, _ = kernel.run("%lms disconnect\n%lms status")
        assert out.startswith("Disconnected; using this kernel's own models.")
        assert "own models" in out.splitlines()[-1]
    finally:
        kernel.close()


def test_connect_by_url_env_and_outside_a_server(hub, monkeypatch, tmp_path):
    from lms_jupyter.client import discovery
    from lms_jupyter.kernel import runtime

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no server here
    with pytest.raises(discovery.DiscoveryError, match="does not run under a Jupyter server"):
        runtime.connect()
    try:
        for url in (hub.url, hub.url + "lms", hub.url + "lms/v1"):  # all understood
            manager = runtime.connect(url, TOKEN)
            assert manager.target.root == hub.url + "lms"
            assert MODEL in [info.key for info in manager.catalog.models()]
        runtime.disconnect()
        with pytest.raises(discovery.DiscoveryError, match="refused the token"):
            runtime.connect(hub.url, "wrong-token")
        monkeypatch.setenv("LMS_JUPYTER_CONNECT", hub.url)
        monkeypatch.setenv("LMS_JUPYTER_TOKEN", TOKEN)
        runtime._env_checked = False
        assert runtime.get_manager().target.root == hub.url + "lms"
        assert type(runtime.get_api()).__name__ == "ConnectedAPI"
    finally:
        runtime.disconnect()
    assert type(runtime.get_manager()).__name__ == "ModelManager"


def test_console_script_acts_on_the_running_server(hub, tmp_path, models_dir):
    env = dict(
        os.environ, JUPYTER_RUNTIME_DIR=str(hub.runtime_dir), LMS_JUPYTER_MODELS_DIR=str(models_dir)
    )
    env.pop("LMS_JUPYTER_CONNECT", None)  # (conftest turns discovery off for other tests)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "lms_jupyter.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = run(
        "load", GEMMA, "--identifier", "from-cli", "--context-length", "512", "--parallel", "2"
    )
    assert result.returncode == 0, result.stderr
    assert 'use the identifier "from-cli"' in result.stdout and result.stderr == ""
    (row,) = [row for row in ps(hub) if row["identifier"] == "from-cli"]  # loaded there
    assert row["parallel"] == 2 and row["contextLength"] == 512  # every flag went along
    result = run("ps", "--json")
    assert "from-cli" in [row["identifier"] for row in json.loads(result.stdout)]
    table = run("ps").stdout.splitlines()  # issue 26: the connected table shows PARALLEL
    header = next(line for line in table if "PARALLEL" in line)
    line = next(line for line in table if line.startswith("from-cli"))
    assert line[header.index("PARALLEL") :].split()[0] == "2", table
    assert line[header.index("KV") :].split()[0] == "q8_0", table  # the server's CPU default
    assert "Connected to the Jupyter server" in run("status").stdout
    logs = run("log", "stream", "--timeout", "1")
    assert logs.returncode == 0 and f"server at {hub.url}lms" in logs.stderr
    estimate = run("load", GEMMA, "--estimate-only", "--json")
    assert json.loads(estimate.stdout)["model"] == GEMMA
    assert run("unload", "from-cli").stdout.strip() == 'Model "from-cli" unloaded.'
    assert "from-cli" not in [row["identifier"] for row in ps(hub)]
    local = run("--local", "ps")
    assert local.stdout.startswith("No models are currently loaded")
    alone = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "ls", "--json"],
        env=dict(env, JUPYTER_RUNTIME_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert GEMMA in [m["modelKey"] for m in json.loads(alone.stdout)]  # no server needed


def test_notebook_04_finds_the_server_it_runs_under(hub, monkeypatch):
    """The openai-client notebook, run as in JupyterLab: a kernel the server started, no
    URL or token set anywhere; ``lms_jupyter.find_server()`` finds both."""
    import nbformat

    for name in ("LMS_JUPYTER_URL", "LMS_JUPYTER_TOKEN", "JUPYTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(
        Path(__file__).resolve().parent.parent / "notebooks" / "04_openai_client.ipynb",
        as_version=4,
    )
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    kernel = Kernel(hub)
    try:
        printed, _ = kernel.run(code[0])
        assert printed.strip() == f"API at {hub.api_url}"
        _, outputs = kernel.run(code[1])
        ids = [
            m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"
        ]
        assert ids and MODEL in ids[0]
        printed, _ = kernel.run(code[2])
        assert printed.strip()  # the model's answer, through the server
    finally:
        kernel.close()
