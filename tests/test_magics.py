"""%lms and %%chat in an in-process IPython, on the real models.

Display messages are captured by a display publisher, so streaming, in-place updates and
interrupts are observed exactly as a kernel would send them. The last test drives a real
ipykernel through jupyter_client and interrupts it mid-generation.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import EOS_ID, GEMMA, MODEL
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.kernel import runtime
from lms_jupyter.kernel.chat import DEFAULT_MAX_TOOL_ROUNDS, GenerationInterrupted
from lms_jupyter.kernel.display import METADATA_KEY
from lms_jupyter.models.catalog import ModelCatalog

pytestmark = pytest.mark.timeout(300)
LONG = {"logit_bias": {str(EOS_ID): -100}}  # SmolLM2 cannot stop: long answers on demand


class CapturingPublisher(DisplayPublisher):
    """Records every display message; ``hook(message)`` may raise (to simulate Ctrl+C)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.messages: list[dict] = []
        self.hook = None

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        message = {
            "data": data,
            "metadata": metadata or {},
            "transient": transient or {},
            "update": update,
            "time": time.perf_counter(),
        }
        self.messages.append(message)
        if self.hook is not None:
            self.hook(message)

    def clear_output(self, wait=False):
        pass


@pytest.fixture(scope="module")
def manager(models_dir):
    mgr = ModelManager(ModelCatalog(models_dir))
    previous = runtime.set_manager(mgr)
    yield mgr
    runtime.set_manager(previous)
    mgr.shutdown()


@pytest.fixture(scope="module")
def shell(manager):
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("lms_jupyter")
    yield ip
    ip.extension_manager.unload_extension("lms_jupyter")


@pytest.fixture()
def ip(shell, manager):
    """The shell with a fresh capture, a fresh conversation and default settings."""
    publisher = CapturingPublisher(shell=shell)
    original = shell.display_pub
    shell.display_pub = publisher
    magics = shell._lms_magics
    magics.conversation.reset()
    magics.conversation.model = None
    magics.chat_defaults = {}
    magics.show_stats = True
    magics.stream_mode = "auto"
    magics.max_tool_rounds = DEFAULT_MAX_TOOL_ROUNDS
    yield shell
    shell.display_pub = original
    magics.chat_defaults = {}


def answers(ip) -> dict[str, list[dict]]:
    """Display messages of streamed answers, grouped by display id."""
    groups: dict[str, list[dict]] = {}
    for message in ip.display_pub.messages:
        meta = message["metadata"].get(METADATA_KEY, {})
        if "model" in meta:
            groups.setdefault(message["transient"]["display_id"], []).append(message)
    return groups


def notes(ip, stage: str) -> list[str]:
    return [
        m["data"]["text/plain"]
        for m in ip.display_pub.messages
        if m["metadata"].get(METADATA_KEY, {}).get("stage") == stage
    ]


def one_line_error(ip, capsys, line: str) -> str:
    """Run ``line`` as a cell; the error must be one line without a traceback."""
    capsys.readouterr()
    ip.run_cell(line)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    error = err.strip()
    assert error.startswith("UsageError: "), (out, err)
    assert "\n" not in error, error
    return error[len("UsageError: ") :]


def test_loading_the_extension_imports_no_server_or_llama():
    code = textwrap.dedent("""
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.extension_manager.load_extension("lms_jupyter")
        assert "lms" in ip.magics_manager.magics["line"]
        assert "chat" in ip.magics_manager.magics["cell"]
        heavy = [m for m in ("tornado", "jupyter_server", "llama_cpp") if m in sys.modules]
        print(heavy)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- %lms ---------------------------------------------------------------------------------
def test_ls_table_filters_variants_and_json(ip, capsys):
    ip.run_line_magic("lms", "ls")
    out = capsys.readouterr().out
    assert out.startswith("You have 2 models")
    assert "LLM" in out and "PARAMS" in out and "DEVICE" in out and "Local" in out
    assert f"{MODEL} (1 variant)" in out and GEMMA in out and "135M" in out
    assert "EMBEDDING" not in out

    ip.run_line_magic("lms", "ls --embedding")
    out = capsys.readouterr().out
    assert out == "You have 2 models, but none of them match the filter.\n"

    ip.run_line_magic("lms", "ls --llm --variants")
    out = capsys.readouterr().out
    assert "* huggingfacetb/smollm2-135m-instruct@q4_1" in out
    assert "* lmstudio-community/gemma-3-270m@q4_k_m" in out
    assert "EMBEDDING" not in out and "embedding" not in out

    ip.run_line_magic("lms", "ls --json")
    data = json.loads(capsys.readouterr().out)
    by_key = {m["modelKey"]: m for m in data}
    assert set(by_key) == {MODEL, GEMMA}
    gemma = by_key[GEMMA]
    assert gemma["type"] == "llm" and gemma["format"] == "gguf"
    assert gemma["quantization"] == {"name": "Q4_K_M", "bits": 4}
    assert gemma["variants"] == ["lmstudio-community/gemma-3-270m@q4_k_m"]
    assert gemma["maxContextLength"] >= 2048 and gemma["sizeBytes"] > 0


def test_load_ps_unload_cycle_with_every_flag(ip, capsys, manager):
    manager.unload_all()
    ip.run_line_magic("lms", "ps")
    assert capsys.readouterr().out.startswith(
        "No models are currently loaded. To load a model, run: %lms load <model>"
    )
    ip.run_line_magic("lms", "ps --json")
    assert json.loads(capsys.readouterr().out) == []

    ip.run_line_magic(
        "lms", f"load {MODEL} --identifier t1 --context-length 512 --ttl 600 --gpu off --parallel 2"
    )
    progress = ip.display_pub.messages
    assert (
        not progress[0]["update"]
        and "Loading smollm2-135m-instruct" in progress[0]["data"]["text/plain"]
    )
    assert "<progress" in progress[0]["data"]["text/html"]
    final = progress[-1]
    assert final["update"] and final["transient"] == progress[0]["transient"]
    assert final["data"]["text/plain"].startswith("Model loaded successfully in")
    assert 'identifier "t1"' in final["data"]["text/plain"]
    model = manager.get_loaded("t1")
    assert model.config.context_length == 512 and model.ttl == 600
    assert model.config.n_gpu_layers == 0 and not model.jit
    assert model.config.parallel == 2 and len(model.engine_stats()["slots"]) == 2

    ip.run_line_magic("lms", f"load {MODEL} -c 256 --gpu max")
    capsys.readouterr()
    assert manager.get_loaded(MODEL).identifier == MODEL
    assert manager.get_loaded(MODEL).config.n_gpu_layers == -1
    ip.run_line_magic("lms", "ps")
    out = capsys.readouterr().out
    header, *rows = out.strip().splitlines()
    assert header.split()[:9] == [
        "IDENTIFIER",
        "MODEL",
        "STATUS",
        "QUEUED",
        "SIZE",
        "CONTEXT",
        "PARALLEL",
        "KV",
        "TTL",
    ]
    assert len(rows) == 2
    row = next(r for r in rows if r.startswith("t1 "))
    assert "IDLE" in row and " 512 " in row and re.search(r" 512 +2 ", row), row
    default = next(r for r in rows if r.startswith(f"{MODEL} "))
    assert re.search(r" 256 +4 +q8_0 ", default), default  # parallel's and the CPU's KV default
    assert re.search(r"(10m|9m 5\ds) / 10m", row), row  # the idle TTL countdown

    ip.run_line_magic("lms", "ps --json")
    data = {m["identifier"]: m for m in json.loads(capsys.readouterr().out)}
    assert data["t1"]["status"] == "idle" and data["t1"]["queued"] == 0
    assert data["t1"]["contextLength"] == 512 and data["t1"]["ttlMs"] == 600_000
    assert data["t1"]["parallel"] == 2 and data[MODEL]["parallel"] == 4
    assert data["t1"]["modelKey"] == MODEL

    ip.run_line_magic("lms", "unload t1")
    assert capsys.readouterr().out.strip() == 'Model "t1" unloaded.'
    assert manager.get_loaded("t1") is None
    ip.run_line_magic("lms", f"load {MODEL} --identifier t2 -c 256")
    ip.run_line_magic("lms", "unload --all")
    out = capsys.readouterr().out
    assert out.strip().startswith("Unloaded 2 models:") and "t2" in out
    assert manager.list_loaded() == []


def test_ctrl_c_cancels_a_load(ip, capsys, manager):
    manager.unload_all()

    def interrupt_first_progress_update(message):
        if message["update"] and "Loading" in message["data"].get("text/plain", ""):
            ip.display_pub.hook = None
            raise KeyboardInterrupt

    ip.display_pub.hook = interrupt_first_progress_update
    assert (
        one_line_error(ip, capsys, f"%lms load {GEMMA} --identifier cancelled") == "Load cancelled."
    )
    assert ip.display_pub.messages[-1]["data"]["text/plain"] == "Load cancelled."
    assert manager.get_loaded("cancelled") is None and manager.list_loaded() == []


def test_user_mistakes_are_one_line(ip, capsys, manager):
    assert one_line_error(ip, capsys, "%lms load no-such-model").startswith(
        "The model `no-such-model` does not exist"
    )
    assert "--gpu" in one_line_error(ip, capsys, f"%lms load {MODEL} --gpu 2")
    assert "--context-length" in one_line_error(ip, capsys, f"%lms load {MODEL} -c lots")
    assert "unrecognized arguments: --bogus" in one_line_error(ip, capsys, "%lms ls --bogus")
    assert "not allowed with argument" in one_line_error(ip, capsys, "%lms ls --llm --embedding")
    assert "invalid choice: 'frob'" in one_line_error(ip, capsys, "%lms frob")
    assert "No models are loaded" in one_line_error(ip, capsys, "%lms unload")
    assert 'No loaded model with identifier "ghost"' in one_line_error(
        ip, capsys, "%lms unload ghost"
    )
    assert "MLX models run only on Apple silicon" in one_line_error(
        ip, capsys, "%lms get --mlx qwen/qwen3-4b"
    )
    assert "--stats can only be used with --source model" in one_line_error(
        ip, capsys, "%lms log stream -s server --stats"
    )
    assert "No closing quotation" in one_line_error(ip, capsys, "%lms load 'oops")
    chat_errors = {
        "%%chat --model no-such-model\nhi": "The model `no-such-model` does not exist",
        "%%chat --temperature hot\nhi": "--temperature",
        "%%chat --max-tokens 0\nhi": "--max-tokens",
        "%%chat --temperature 9\nhi": "'temperature' must be between 0 and 5",
        "%%chat\n   ": "write the message",
        "%%chat --schema Nothing\nhi": "No variable named 'Nothing'",
        "%%chat --tools nothing\nhi": "No function named 'nothing'",
        "%%chat --out 1x\nhi": "--out needs a variable name",
    }
    for cell, expected in chat_errors.items():
        assert expected in one_line_error(ip, capsys, cell), cell
    assert len(ip._lms_magics.conversation) == 0  # failed requests leave no trace


def test_estimate_only(ip, capsys, manager):
    manager.unload_all()
    if not hasattr(ModelManager, "estimate"):
        message = one_line_error(ip, capsys, f"%lms load {MODEL} --estimate-only")
        assert "estimate" in message.lower()
        return
    ip.run_line_magic("lms", f"load {MODEL} --estimate-only --context-length 1024")
    out = capsys.readouterr().out
    assert "Estimated GPU Memory:" in out and "Estimated Total Memory:" in out
    assert "Estimate: This model" in out
    assert manager.list_loaded() == []
    ip.run_line_magic("lms", f"load {MODEL} --estimate-only --json")
    data = json.loads(capsys.readouterr().out)
    assert {"estimated_total_bytes", "estimated_gpu_bytes", "fits"} <= set(data)


def test_reserved_help_and_bare_lms(ip, capsys):
    ip.run_line_magic("lms", "")
    assert "usage: %lms" in capsys.readouterr().out
    ip.run_line_magic("lms", "load -h")
    out = capsys.readouterr().out
    assert "--estimate-only" in out and "--identifier" in out


# -- %%chat -------------------------------------------------------------------------------
def test_chat_streams_markdown_in_place(ip, capsys, manager):
    magics = ip._lms_magics
    magics.chat_defaults = dict(LONG)
    start = time.perf_counter()
    result = ip.run_cell_magic(
        "chat", "--max-tokens 48 --temperature 0", "Tell me about the history of Rome."
    )
    elapsed = time.perf_counter() - start
    assert result is None
    groups = answers(ip)
    assert len(groups) == 1
    (messages,) = groups.values()
    first, *updates = messages
    assert not first["update"] and all(m["update"] for m in updates)
    final = updates[-1]
    content = magics.last_result.content
    assert final["data"]["text/markdown"] == content == final["data"]["text/plain"]
    assert final["metadata"][METADATA_KEY]["stage"] == "finished"
    assert final["metadata"][METADATA_KEY]["model"] == MODEL
    assert magics.last_result.stats.completion_tokens == 48
    streaming = [m for m in updates if m["metadata"][METADATA_KEY]["stage"] == "generating"]
    assert len(streaming) >= 2, "a long answer must be shown while it is generated"
    for earlier, later in zip(streaming, streaming[1:], strict=False):
        assert later["time"] - earlier["time"] >= 1 / 15 - 0.005  # throttled
        assert later["data"]["text/plain"].startswith(earlier["data"]["text/plain"])
    rate = (len(streaming) - 1) / max(1e-9, streaming[-1]["time"] - streaming[0]["time"])
    print(
        f"\n{len(streaming)} display updates for 48 tokens in {elapsed:.2f} s "
        f"({rate:.1f} updates/s)"
    )
    assert rate <= 16
    (stats,) = notes(ip, "stats")
    assert stats.startswith(f"{MODEL} · 48 tokens · ") and "tok/s" in stats
    assert "s to first token" in stats and "finish: length" in stats
    assert magics.conversation.messages[-1] == {"role": "assistant", "content": content}


def test_conversation_continues_history_and_new(ip, capsys):
    magics = ip._lms_magics
    ip.run_cell_magic("chat", "--max-tokens 8 --temperature 0", "My name is Ada.")
    first = magics.last_result.stats
    ip.run_cell_magic("chat", "--max-tokens 8 --temperature 0 --no-stats", "What is my name?")
    second = magics.last_result.stats
    assert len(magics.conversation) == 4
    assert second.prompt_tokens > first.prompt_tokens + 8  # the first exchange was sent
    assert len(notes(ip, "stats")) == 1  # --no-stats hid the second

    ip.display_pub.messages.clear()
    ip.run_line_magic("lms", "history")
    (shown,) = ip.display_pub.messages
    markdown = shown["data"]["text/markdown"]
    assert markdown.count("**user**") == 2 and markdown.count("**assistant**") == 2
    assert "My name is Ada." in markdown and "What is my name?" in markdown
    ip.run_line_magic("lms", "history --json")
    entries = json.loads(capsys.readouterr().out)
    assert [e["role"] for e in entries] == ["user", "assistant", "user", "assistant"]

    ip.run_cell_magic(
        "chat", "--new --system 'You are terse.' --max-tokens 4 --temperature 0", "Hello"
    )
    entries = magics.conversation.entries()
    assert [e["role"] for e in entries] == ["system", "user", "assistant"]
    assert entries[0]["content"] == "You are terse."
    ip.run_line_magic("lms", "history --clear")
    assert "Conversation cleared." in capsys.readouterr().out
    assert len(magics.conversation) == 0


def test_variables_out_and_stats_config(ip):
    magics = ip._lms_magics
    ip.user_ns.update(city="Paris", facts={"river": "Seine"}, numbers=[3, 4])
    magics.show_stats = False
    ip.run_cell_magic(
        "chat",
        "--max-tokens 4 --temperature 0 --seed 1 --out reply",
        "About {city} on the {facts[river]} ({numbers[1]}, {len(numbers)}): "
        '{{city}} \\{missing} {"json": true}',
    )
    user = magics.conversation.messages[0]["content"]
    assert user == 'About Paris on the Seine (4, 2): {city} {missing} {"json": true}'
    assert ip.user_ns["reply"] == magics.last_result.content
    assert notes(ip, "stats") == []


def test_unknown_name_is_one_line_error_before_any_model_call(ip, capsys, manager):
    """Issue 25: an unknown name no longer passes through as text (as it did before):
    it is a one-line error naming it, and nothing reaches a model."""
    magics = ip._lms_magics
    magics.last_result = None
    error = one_line_error(ip, capsys, "%%chat --max-tokens 4\nAbout {city} and {missing}")
    assert error == (
        "%%chat: {missing}: name 'missing' is not defined. Write \\{ for a literal brace."
    )
    assert magics.last_result is None and len(magics.conversation) == 0
    assert answers(ip) == {}
    # --no-context sends the text as written
    ip.run_cell_magic(
        "chat", "--max-tokens 2 --temperature 0 --no-context --no-stats", "About {missing}"
    )
    assert magics.conversation.messages[0]["content"] == "About {missing}"


def test_interpolation_rules_kept_from_expand_variables():
    from lms_jupyter.kernel.context.interpolate import expand

    ns = {"a": 1, "obj": type("O", (), {"x": "X"})(), "d": {"k": "v"}}
    assert expand("{a}{obj.x}{d[k]}", ns).text == "1Xv"
    assert expand("{{a}} {a!r} {}", ns).text == "{a} {a!r} {}"
    assert expand('{"a": {"b": 1}}', ns).text == '{"a": {"b": 1}}'


def test_terminal_ipython_prints_deltas(ip, capsys):
    ip.display_pub = DisplayPublisher(shell=ip)  # what terminal IPython has
    magics = ip._lms_magics
    assert magics.mode == "print"
    ip.run_cell_magic("chat", "--max-tokens 12 --temperature 0", "Say hello.")
    out = capsys.readouterr().out
    content = magics.last_result.content
    assert content and out.startswith(content + "\n")
    assert f"{MODEL} · " in out.splitlines()[-1]  # the stats line, printed


def test_schema_pydantic_and_dict(ip):
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    ip.user_ns["City"] = City
    ip.user_ns["Colors"] = {
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["colors"],
    }
    ip.run_cell_magic(
        "chat",
        "--schema City --out city --max-tokens 60 --temperature 0",
        "Describe Paris as JSON.",
    )
    city = ip.user_ns["city"]
    assert isinstance(city, City) and ip.user_ns["_"] is city
    (messages,) = answers(ip).values()
    assert messages[-1]["data"]["text/markdown"].startswith("```json\n")
    assert json.loads(ip._lms_magics.last_result.content) == city.model_dump()

    ip.run_cell_magic(
        "chat", "--new --schema Colors --max-tokens 60 --temperature 0", "Name two colors."
    )
    data = ip.user_ns["_"]
    assert isinstance(data, dict) and isinstance(data["colors"], list)


def test_tools_run_kernel_functions(ip):
    calls = []

    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        calls.append((a, b))
        return a + b

    ip.user_ns["add"] = add
    magics = ip._lms_magics
    magics.max_tool_rounds = 1  # one round of calls, then the model must answer
    ip.run_cell_magic(
        "chat",
        "--tools add --tool-choice required --max-tokens 60 --temperature 0",
        "What is 17 plus 25? Use the add tool.",
    )
    result = magics.last_result
    assert calls == [(17, 25)], "the model did not call the tool as asked"
    assert result.tool_results[0].name == "add" and result.tool_results[0].result == 42
    assert result.requests == 2 and result.content
    assert any(n.startswith("🔧 add(") for n in notes(ip, "tool_call"))
    roles = [m["role"] for m in magics.conversation.messages]
    assert roles[:3] == ["user", "assistant", "tool"] and roles[-1] == "assistant"
    assert magics.conversation.messages[1]["tool_calls"][0]["function"]["name"] == "add"


def test_interrupt_keeps_partial_answer_and_model_ready(ip, manager):
    magics = ip._lms_magics
    magics.chat_defaults = dict(LONG)
    publisher = ip.display_pub
    state = {"n": 0, "at": None}

    def interrupt_on_third_update(message):
        meta = message["metadata"].get(METADATA_KEY, {})
        if meta.get("stage") == "generating":
            state["n"] += 1
            if state["n"] == 3 and state["at"] is None:
                state["at"] = time.perf_counter()
                raise KeyboardInterrupt

    publisher.hook = interrupt_on_third_update
    with pytest.raises(GenerationInterrupted) as info:
        ip.run_cell_magic(
            "chat", "--max-tokens 400 --temperature 0", "Write a long story about a dragon."
        )
    publisher.hook = None
    assert "partial answer is kept" in info.value._render_traceback_()[0]
    model = manager.get_loaded(MODEL)
    while model.queued:  # the worker notices the cancel within a token
        time.sleep(0.005)
    latency = time.perf_counter() - state["at"]
    print(f"\nworker idle {latency * 1000:.0f} ms after the interrupt")
    assert latency < 3.0
    (messages,) = answers(ip).values()
    final = messages[-1]
    assert final["metadata"][METADATA_KEY]["stage"] == "interrupted"
    partial = final["data"]["text/plain"]
    assert partial and magics.last_result.interrupted
    assert magics.last_result.stats.completion_tokens < 400
    assert magics.conversation.messages[-1]["content"] == partial
    assert "interrupted" in magics.conversation.entries()[-1]["note"]
    magics.chat_defaults = {}
    ip.run_cell_magic("chat", "--max-tokens 4 --temperature 0", "Thanks!")
    assert not magics.last_result.interrupted and magics.last_result.content
    assert len(magics.conversation) == 4


def test_widget_magics_return_widgets(ip):
    from lms_jupyter.kernel.widgets import ChatWidget, ModelManagerWidget

    manager_widget = ip.run_line_magic("lms", "widget")
    chat_widget = ip.run_line_magic("lms", f"chat-widget --model {MODEL} --system 'Be brief.'")
    assert isinstance(manager_widget, ModelManagerWidget)
    assert isinstance(chat_widget, ChatWidget)
    assert chat_widget.model == MODEL and chat_widget.conversation.system == "Be brief."
    assert "Model manager" in manager_widget._repr_mimebundle_()["text/plain"]
    manager_widget.close()
    chat_widget.close()


def test_real_kernel_interrupt(tmp_path):
    """Ctrl+C in a real ipykernel: generation stops, the partial answer stays."""
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ, LMS_JUPYTER_MODELS_DIR=str(tmp_path))
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:

        def execute(code, until_updates=None, timeout=120):
            msg_id = kc.execute(code)
            updates, outputs, reply = [], [], None
            deadline = time.monotonic() + timeout
            while reply is None:
                try:
                    msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise AssertionError(f"no reply to {code!r}") from None
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "update_display_data":
                    updates.append((time.perf_counter(), msg["content"]))
                    if until_updates and len(updates) == until_updates:
                        return msg_id, updates, outputs
                elif kind in ("display_data", "stream", "error", "execute_result"):
                    outputs.append(msg["content"] | {"msg_type": kind})
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    reply = True
            return msg_id, updates, outputs

        execute(f"%load_ext lms_jupyter\n%config LMSMagics.chat_defaults = {LONG!r}")
        msg_id = kc.execute(
            "%%chat --max-tokens 500 --temperature 0\nWrite a very long story about a lighthouse."
        )
        updates = []
        while len(updates) < 4:
            msg = kc.get_iopub_msg(timeout=120)
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "update_display_data"
                and "model" in msg["content"]["metadata"].get(METADATA_KEY, {})
            ):
                updates.append(msg)  # the answer's updates (not the load's progress)
        interrupted_at = time.perf_counter()
        km.interrupt_kernel()
        error, last_update = None, updates[-1]
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "update_display_data":
                last_update = msg
            elif msg["msg_type"] == "error":
                error = msg["content"]
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        latency = time.perf_counter() - interrupted_at
        print(f"\nreal kernel: cell finished {latency * 1000:.0f} ms after the interrupt")
        assert error is not None and error["ename"] == "GenerationInterrupted", "\n".join(
            error["traceback"]
        )
        assert len(error["traceback"]) == 1
        meta = last_update["content"]["metadata"][METADATA_KEY]
        assert meta["stage"] == "interrupted"
        partial = last_update["content"]["data"]["text/plain"]
        assert partial
        assert latency < 5.0

        while True:  # the worker stops at its next token
            _, _, outputs = execute("%lms ps --json")
            # stdout may arrive in several stream messages: join them before parsing
            ps = json.loads("".join(o["text"] for o in outputs if o["msg_type"] == "stream"))
            if ps[0]["status"] == "idle" and ps[0]["queued"] == 0:
                break
            assert time.perf_counter() - interrupted_at < 10, ps
        print(
            f"real kernel: model idle {(time.perf_counter() - interrupted_at) * 1000:.0f} "
            f"ms after the interrupt"
        )
        execute("%config LMSMagics.chat_defaults = {}")
        _, _, outputs = execute("%%chat --max-tokens 4 --temperature 0 --no-stats\nThanks!")
        assert not [o for o in outputs if o["msg_type"] == "error"]
        _, _, outputs = execute("len(get_ipython()._lms_magics.conversation)")
        (count,) = [o for o in outputs if o["msg_type"] == "execute_result"]
        assert count["data"]["text/plain"] == "4"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
