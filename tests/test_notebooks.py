"""Every example notebook, executed headless with nbclient against the real model.

The saved (re-read) notebook must hold the final answers: nbclient folds display
updates into the stored output, as nbconvert and papermill do.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import MODEL
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(300)
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str, tmp_path: Path, monkeypatch, env: dict | None = None):
    """Run a notebook in a fresh kernel, save it, and return the saved cells."""
    monkeypatch.setenv("LMS_JUPYTER_MODELS_DIR", str(tmp_path / "no-models"))
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    saved = tmp_path / name
    nbformat.write(nb, saved)
    return [c for c in nbformat.read(saved, as_version=4).cells if c.cell_type == "code"]


def cell(cells, startswith: str):
    """The first code cell whose source starts with ``startswith`` (or is exactly it)."""
    exact = [c for c in cells if c.source.strip() == startswith]
    return exact[0] if exact else next(c for c in cells if c.source.startswith(startswith))


def texts(c, mime="text/plain") -> list[str]:
    out = []
    for output in c.outputs:
        if output.output_type == "stream":
            out.append(output.text)
        elif mime in output.get("data", {}):
            out.append(output.data[mime])
    return out


def answer(c) -> str:
    """The streamed answer's final Markdown in a %%chat cell (the last one, with tools)."""
    finals = [
        o
        for o in c.outputs
        if o.output_type == "display_data"
        and o.metadata.get("lms_jupyter", {}).get("stage") == "finished"
    ]
    return finals[-1].data["text/markdown"]


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01_quickstart.ipynb",
        "02_structured_output.ipynb",
        "03_tools.ipynb",
        "04_openai_client.ipynb",
        "05_embeddings.ipynb",
        "06_responses.ipynb",
        "07_batch.ipynb",
    ]


def test_quickstart(tmp_path, monkeypatch):
    cells = execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    assert MODEL in texts(cell(cells, "%lms ls"))[0]
    (loaded,) = texts(cell(cells, "%lms load"))
    assert loaded.startswith("Model loaded successfully") and '"smol"' in loaded
    assert "smol" in texts(cell(cells, "%lms ps"))[0]

    first = cell(cells, "%%chat --model smol")
    assert "Paris" in answer(first)
    (stats,) = [t for t in texts(first) if " tokens · " in t]
    assert stats.startswith("smol · ")

    second = cell(cells, "%%chat --temperature 0 --max-tokens 40 --out answer")
    (printed,) = texts(cell(cells, "print(answer)"))
    assert answer(second) == printed.rstrip("\n") and answer(second)

    (history,) = texts(cell(cells, "%lms history"), "text/markdown")
    assert "What is the capital of France?" in history
    assert "And what is the capital of Germany?" in history  # {country} was expanded
    assert answer(second) in history

    poem = cell(cells, "%%chat --new")
    assert answer(poem) and not [t for t in texts(poem) if " tokens · " in t]

    (manager_view,) = cell(cells, "%lms widget").outputs
    assert "application/vnd.jupyter.widget-view+json" in manager_view.data
    assert manager_view.data["text/plain"].startswith("Model manager")
    (chat_view,) = cell(cells, "%lms chat-widget").outputs
    assert chat_view.data["text/plain"].startswith(f"Chat with {MODEL}")
    assert texts(cell(cells, "%lms unload"))[0].startswith("Unloaded 1 model")


def test_structured_output(tmp_path, monkeypatch):
    cells = execute("02_structured_output.ipynb", tmp_path, monkeypatch)
    data = json.loads(
        answer(cell(cells, "%%chat --new --schema City"))
        .removeprefix("```json\n")
        .removesuffix("\n```")
    )
    assert set(data) == {"name", "country", "population_millions"}
    (shown,) = texts(cell(cells, "city"))
    assert shown.startswith("City(name=")
    (kind,) = texts(cell(cells, "type(city)"))
    assert kind.startswith("('City', ")
    (palette,) = texts(cell(cells, "palette"))
    assert palette.startswith("{'colors': [")


def test_tools(tmp_path, monkeypatch):
    cells = execute("03_tools.ipynb", tmp_path, monkeypatch)
    (schema,) = texts(cell(cells, "from lms_jupyter.kernel.tools import function_tool"))
    assert "'name': 'add'" in schema and "The first number." in schema
    chat = cell(cells, "%%chat --new --tools add")
    assert any(t.startswith("🔧 add(a=17, b=25) → 42") for t in texts(chat))
    shown = answer(chat)
    assert '"total": 42' in shown, shown  # the tool's result, through the schema
    (parsed,) = texts(cell(cells, "_"))
    assert parsed == "Sum(a=17, b=25, total=42)"
    (calls,) = texts(cell(cells, "calls"))
    assert calls == "[(17, 25)]"


def test_openai_client_against_the_server(tmp_path, monkeypatch, server):
    cells = execute(
        "04_openai_client.ipynb",
        tmp_path,
        monkeypatch,
        env={"LMS_JUPYTER_URL": server.api_url, "LMS_JUPYTER_TOKEN": server.token},
    )
    assert texts(cells[0])[0].strip() == f"API at {server.api_url}"
    (ids,) = texts(cells[1])
    assert MODEL in ids
    reply_cell = cells[2]
    printed, usage = texts(reply_cell)
    assert "Paris" in printed and "CompletionUsage(" in usage
    stream_cell = cells[3]
    (streamed,) = [t for t in texts(stream_cell) if not t.startswith("<IPython")]
    markdown = [o for o in stream_cell.outputs if o.output_type == "display_data"]
    assert markdown[0].data["text/markdown"] == streamed.rstrip("\n") and streamed.strip()


def test_embeddings(tmp_path, monkeypatch):
    """The user's path: convert all-MiniLM-L6-v2 into an empty models folder, search, plot."""
    from lms_jupyter.models.convert import ConversionError, minilm_source

    try:
        minilm_source()
    except ConversionError as exc:
        pytest.skip(str(exc))
    cells = execute("05_embeddings.ipynb", tmp_path, monkeypatch)
    (converted,) = texts(cell(cells, "from lms_jupyter.models.convert import install_minilm"))
    assert converted.strip() == (
        "Embedding model: sentence-transformers/all-MiniLM-L6-v2-GGUF/all-MiniLM-L6-v2-F16.gguf"
    )
    assert (tmp_path / "no-models" / "sentence-transformers").is_dir()
    listing = texts(cell(cells, "%lms ls --embedding"))[0]
    assert "all-minilm-l6-v2" in listing and "bert" in listing and MODEL not in listing
    quick = texts(cell(cells, "%lms embed"))[0]
    assert quick.startswith("all-minilm-l6-v2 · 3 texts · 384 dims") and "cosine" in quick
    (shape,) = texts(cell(cells, "import numpy as np"))
    assert shape.startswith("(20, 384) float32 norm of a row: 1.0000")
    (found,) = texts(cell(cells, "[topics[texts.index("))
    assert found == "['gardening', 'football', 'programming', 'cooking']"
    plots = [c for c in cells if c.source.startswith(("import matplotlib", "fig, ax"))]
    assert len(plots) == 2
    for plot in plots:
        assert any("image/png" in o.get("data", {}) for o in plot.outputs), plot.outputs
    assert "all-minilm-l6-v2" in texts(cell(cells, "%lms ps"))[0]


def test_responses_conversation_and_mcp_tool(tmp_path, monkeypatch, server_factory):
    """A server with remote MCP on and loopback allow-listed; the notebook starts its own
    MCP server on 127.0.0.1."""
    srv = server_factory(
        "--LMSJupyterApp.allow_remote_mcp=True",
        "--LMSJupyterApp.remote_mcp_allowed_urls=http://127.0.0.1",
        f"--LMSJupyterApp.responses_db={tmp_path / 'responses.sqlite'}",
    )
    cells = execute(
        "06_responses.ipynb",
        tmp_path,
        monkeypatch,
        env={"LMS_JUPYTER_URL": srv.api_url, "LMS_JUPYTER_TOKEN": srv.token},
    )
    assert texts(cells[0])[0].strip() == f"API at {srv.api_url}"
    first, first_id = texts(cell(cells, "RULES = "))[0].rstrip("\n").rsplit("\n", 1)
    assert first.strip() and first_id.startswith("id: resp_")
    second = texts(cell(cells, "second = "))[0]
    (usage,) = [line for line in second.splitlines() if line.startswith("prompt: ")]
    reused = int(usage.split(", ")[1].split()[0])
    assert reused > 0
    assert texts(cell(cells, "again = "))[0].startswith("retrieved: True ")
    streamed = "".join(texts(cell(cells, "with client.responses.stream(")))
    assert streamed.rstrip().splitlines()[-1].startswith("final: ")
    started = texts(cell(cells, "import json"))[0]
    assert started.startswith("MCP server at http://127.0.0.1:")
    lines = texts(cell(cells, "response = client.responses.create("))[0].splitlines()
    assert lines[0] == "listed: ['add']"  # shutdown_everything is not in allowed_tools
    call = lines[1]
    assert call.startswith("called: add(")
    arguments = json.loads(call[len("called: add(") : call.rindex(") -> ")])
    assert call.endswith(f" -> {arguments['a'] + arguments['b']}")
    assert lines[2].startswith("answer: {'sum': ")


def test_batch(tmp_path, monkeypatch):
    """Classification and extraction over the bundled tickets, on 8 of them
    (``LMS_BATCH_ROWS``); the model runs on one thread (``c.ModelManager.n_threads`` in
    the kernel's ipython_config.py: see ONE_THREAD in test_batch_kernel.py)."""
    import shutil

    shutil.copytree(NOTEBOOKS / "data", tmp_path / "data")
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text("c.ModelManager.n_threads = 1\n")
    cells = execute(
        "07_batch.ipynb",
        tmp_path,
        monkeypatch,
        env={
            "LMS_BATCH_ROWS": "8",
            "IPYTHONDIR": str(tmp_path / "ipython"),
            "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        },
    )

    def printed(c) -> list[str]:
        return [o.text for o in c.outputs if o.output_type == "stream"]

    def result(c) -> str:
        (value,) = [o.data["text/plain"] for o in c.outputs if o.output_type == "execute_result"]
        return value

    assert printed(cells[0]) == ["8 of 300 tickets\n"]
    routes = cell(cells, "from typing import Literal")
    (summary,) = printed(routes)
    assert summary.startswith("8/8 rows · 8 computed in ") and "items/s" in summary
    assert any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in routes.outputs
    )  # the progress bar
    assert result(cell(cells, "routes.head()")).split()[:3] == [
        "team",
        "finish_reason",
        "prompt_tokens",
    ]
    chart = cell(cells, "import matplotlib.pyplot as plt")
    assert any("image/png" in o.get("data", {}) for o in chart.outputs), chart.outputs
    again = cell(cells, "again = ")
    (line,) = printed(again)
    assert "0 computed" in line and "8 from cache" in line and result(again) == "True"
    extraction = cell(cells, "from pydantic import Field")
    (line,) = printed(extraction)
    assert line.startswith("8/8 rows · 8 computed")
    assert result(extraction).split()[:3] == ["product", "order_number", "wants_refund"]
    assert result(cell(cells, "scores = ")).splitlines()[0].startswith("order number")
    (report,) = printed(cell(cells, "report = "))
    assert report.startswith("8 rows in ") and "items/s" in report
    assert (tmp_path / "jupyter-data" / "lms_jupyter" / "batch_cache.sqlite").exists()
