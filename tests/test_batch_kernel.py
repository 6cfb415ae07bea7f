"""``lms_jupyter.batch`` on the real model: DataFrames with a schema, isolated bad rows,
tools, the resume cache, lists without pandas, and an interrupted batch in a real kernel
(jupyter_client) that resumes without recomputing what it had finished.

Generations are counted on the log bus (``llm.prediction.input`` events: one per request
the model's worker starts), not by the code under test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from conftest import MODEL
from pydantic import BaseModel

import lms_jupyter
from lms_jupyter import logs as logstream
from lms_jupyter.kernel.mapping.batch import model_slots
from lms_jupyter.kernel.mapping.data import BatchInputError

REPO = Path(__file__).resolve().parent.parent
# ONE_THREAD: these tests run the model with one thread. On this shared 2-core machine,
# llama.cpp's two compute threads slow down some 30x when other jobs load the CPUs
# (measured: 0.4 vs 13 tokens/s for the same request), and a batch test makes dozens of
# requests. What is tested (rows, cache, interrupts) does not depend on the thread count.
pytestmark = pytest.mark.timeout(600)


class Review(BaseModel):
    sentiment: Literal["positive", "negative"]
    stars: int


class Sum(BaseModel):
    total: int


@pytest.fixture()
def generations():
    """A counter of requests the model starts from now on."""
    sub = logstream.bus().subscribe("model", maxlen=100_000)
    seen: list[dict] = []

    def count() -> int:
        while (event := sub.get_nowait()) is not None:
            if event["data"]["type"] == logstream.MODEL_INPUT:
                seen.append(event["data"])
        return len(seen)

    count.inputs = seen
    yield count
    sub.close()


@pytest.fixture(scope="module", autouse=True)
def kernel_manager(tmp_path_factory):
    """The process-wide manager (as in a kernel), on an empty models folder: SmolLM2 is the
    embedded model and the default for batch()."""
    from lms_jupyter.engine.manager import ModelManager
    from lms_jupyter.kernel import runtime

    os.environ["LMS_JUPYTER_MODELS_DIR"] = str(tmp_path_factory.mktemp("no-models"))
    manager = ModelManager(n_threads=1)  # see ONE_THREAD
    previous = runtime.set_manager(manager)
    yield manager
    runtime.shutdown()
    runtime.set_manager(previous)
    os.environ.pop("LMS_JUPYTER_MODELS_DIR", None)


def test_dataframe_with_schema_then_resumed_from_cache(tmp_path, generations, capsys):
    reviews = pd.DataFrame(
        {
            "product": ["kettle", "headphones", "backpack"],
            "text": [
                "It broke after two days and leaked everywhere.",
                "Wonderful sound, I use them every day.",
                "Strong zips and lots of room, I love it.",
            ],
        },
        index=["r1", "r2", "r3"],
    )
    template = "Product: {product}\nReview: {text}\nGive the review's sentiment and stars (1-5)."
    cache = tmp_path / "cache.sqlite"
    out = lms_jupyter.batch(
        reviews, template, schema=Review, max_tokens=40, cache=cache, progress=False
    )
    assert list(out.index) == ["r1", "r2", "r3"]
    assert list(out.columns) == [
        "sentiment",
        "stars",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "error",
    ]
    assert out["error"].isna().all(), out["error"].tolist()
    assert set(out["sentiment"]) <= {"positive", "negative"}
    assert all(isinstance(v, int) for v in out["stars"])
    assert (out["finish_reason"] == "stop").all()
    assert (out["prompt_tokens"] > 0).all() and (out["completion_tokens"] > 0).all()
    # one request per row, each with its row's fields in the prompt
    assert generations() == 3
    for _label, row in reviews.iterrows():  # rows run side by side in the model's slots
        wanted = f"Product: {row['product']}\nReview: {row['text']}"
        assert sum(wanted in data["input"] for data in generations.inputs) == 1
    report = out.attrs["lms_batch"]
    assert report["computed"] == 3 and report["cached"] == 0 and report["errors"] == 0
    assert report["items_per_second"] > 0 and report["tokens_per_second"] > 0
    assert report["completion_tokens"] == int(out["completion_tokens"].sum())
    assert "3/3 rows · 3 computed in" in capsys.readouterr().out

    again = lms_jupyter.batch(
        reviews, template, schema=Review, max_tokens=40, cache=cache, progress=False
    )
    assert generations() == 3  # nothing recomputed
    pd.testing.assert_frame_equal(again, out, check_like=False)
    assert again.attrs["lms_batch"]["cached"] == 3
    assert again.attrs["lms_batch"]["computed"] == 0
    # another parameter is another key
    lms_jupyter.batch(
        reviews.head(1), template, schema=Review, max_tokens=41, cache=cache, progress=False
    )
    assert generations() == 4


def test_a_bad_row_is_isolated(generations, capsys):
    too_long = "word " * 5000  # more tokens than the 4096-token context
    out = lms_jupyter.batch(
        pd.Series(
            ["Say hello.", too_long, "Say goodbye.", "Say hello."],
            index=[10, 20, 30, 40],
            name="text",
        ),
        max_tokens=6,
        cache=False,
        progress=False,
    )
    assert list(out.index) == [10, 20, 30, 40]
    assert out.loc[20, "error"].startswith("context_length_exceeded:")
    assert pd.isna(out.loc[20, "answer"])
    for label in (10, 30):
        assert pd.isna(out.loc[label, "error"]) and out.loc[label, "answer"]
        assert out.loc[label, "finish_reason"] in ("stop", "length")
    # the bad row never reached the model, and the repeated row was computed once
    assert generations() == 2
    assert out.loc[40].tolist() == out.loc[10].tolist()
    assert out.attrs["lms_batch"]["computed"] == 3 and out.attrs["lms_batch"]["done"] == 4
    assert capsys.readouterr().out.strip().endswith("1 error")


def test_an_answer_cut_by_max_tokens_is_a_row_error_without_retries(tmp_path, generations):
    options = dict(
        schema=Review,
        max_tokens=3,
        temperature=0.7,
        seed=1,
        retries=2,
        cache=tmp_path / "c.sqlite",
        progress=False,
    )
    out = lms_jupyter.batch(["Review: great kettle."], **options)
    (error,) = out["error"]
    assert "not valid JSON" in error and out["finish_reason"][0] == "length"
    assert generations() == 1  # a retry would be cut off again
    # a row error is finished: kept, unless asked to compute errors again
    again = lms_jupyter.batch(["Review: great kettle."], **options)
    assert again["error"][0] == error and generations() == 1
    lms_jupyter.batch(["Review: great kettle."], refresh="errors", **options)
    assert generations() == 2


def test_tools_are_called_per_row(generations):
    calls = []

    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        calls.append((a, b))
        return a + b

    out = lms_jupyter.batch(
        pd.DataFrame({"a": [17, 3], "b": [25, 4]}),
        "What is {a} plus {b}? Use the add tool.",
        tools=[add],
        tool_choice="required",
        max_tool_rounds=1,
        schema=Sum,
        max_tokens=60,
        cache=False,
        progress=False,
    )
    assert len(calls) == 2  # one forced call per row
    assert generations() == 4  # the call, then the answer, for each row
    assert out["error"].isna().all(), out["error"].tolist()
    assert all(isinstance(v, int) for v in out["total"])
    # the tokens of both requests of a row are counted
    assert (out["prompt_tokens"] > 60).all()


def test_template_errors_name_the_columns_before_anything_runs(generations):
    frame = pd.DataFrame({"text": ["a"], "lang": ["en"]})
    with pytest.raises(BatchInputError, match=r"\{title\}.*\{text\}, \{lang\}"):
        lms_jupyter.batch(frame, "Translate {title}", cache=False, progress=False)
    with pytest.raises(BatchInputError, match="needs prompt="):
        lms_jupyter.batch(frame, cache=False, progress=False)
    with pytest.raises(BatchInputError, match="not a single string"):
        lms_jupyter.batch("just text", cache=False, progress=False)
    assert generations() == 0


def test_slots_come_from_the_loaded_instance(kernel_manager):
    from types import SimpleNamespace

    from lms_jupyter.kernel.runtime import get_api

    api = get_api()
    kernel_manager.acquire(MODEL)
    loaded = kernel_manager.get_loaded(MODEL)
    assert model_slots(api, MODEL) == loaded.config.parallel == kernel_manager.parallel == 4
    assert model_slots(api, "not-loaded") == 1
    # any ModelInstance declares its slots (a server's `ps` row says 3, an engine nothing)
    row = SimpleNamespace(manager=SimpleNamespace(get_loaded=lambda name: SimpleNamespace(slots=3)))
    assert model_slots(row, MODEL) == 3
    unknown = SimpleNamespace(
        manager=SimpleNamespace(get_loaded=lambda name: SimpleNamespace(slots=None))
    )
    assert model_slots(unknown, MODEL) == 1


def test_lists_in_and_out_without_pandas(tmp_path):
    code = (
        "import sys; sys.modules['pandas'] = None  # as if pandas were not installed\n"
        "import json, lms_jupyter\n"
        "from lms_jupyter.engine.manager import ModelManager\n"
        "from lms_jupyter.kernel import runtime\n"
        "runtime.set_manager(ModelManager(n_threads=1))  # see ONE_THREAD\n"
        "out = lms_jupyter.batch(['Say yes.', 'Say no.'], max_tokens=4, progress=False,\n"
        "                        cache=False)\n"
        "print(json.dumps({'type': type(out).__name__, 'rows': out, 'report': out.report}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "LMS_JUPYTER_MODELS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["type"] == "BatchRows"
    assert [sorted(r) for r in data["rows"]] == [
        sorted(["answer", "finish_reason", "prompt_tokens", "completion_tokens", "error"])
    ] * 2
    assert all(r["answer"] and r["error"] is None for r in data["rows"])
    assert data["report"]["computed"] == 2


# -- a real kernel: interrupt, then resume ---------------------------------------------------

SETUP = """
import json, lms_jupyter
from lms_jupyter import logs as logstream
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.kernel import runtime
runtime.set_manager(ModelManager(n_threads=1))  # see ONE_THREAD
sub = logstream.bus().subscribe("model", maxlen=100000)
def generations():
    n = 0
    while (e := sub.get_nowait()) is not None:
        n += e["data"]["type"] == "llm.prediction.input"
    return n
texts = [f"Write one short sentence about the number {i}." for i in range(8)]
"""
RUN = "r{n} = lms_jupyter.batch(texts, max_tokens=12, seed=3)"
SHOW = (
    "print(json.dumps({{'report': r{n}.attrs['lms_batch'], 'answers': [a if isinstance(a, "
    "str) else None for a in r{n}.answer], 'finish': [f if isinstance(f, str) else None "
    "for f in r{n}.finish_reason], 'generations': generations()}}))"
)


def _cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(str(path), timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # created but no table yet
        return 0


def _run(kc, code: str, timeout: float = 300) -> dict:
    """Execute and return the reply content plus everything printed."""
    printed: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            printed.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return {"status": reply["content"]["status"], "out": "".join(printed)}


def _last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def test_interrupt_in_a_kernel_then_resume(tmp_path):
    from jupyter_client.manager import start_new_kernel

    data_dir = tmp_path / "jupyter-data"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JUPYTER_DATA_DIR": str(data_dir),
        "LMS_JUPYTER_MODELS_DIR": str(tmp_path / "models"),
    }
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        assert _run(kc, SETUP)["status"] == "ok"
        cache = data_dir / "lms_jupyter" / "batch_cache.sqlite"  # the default location
        msg_id = kc.execute(RUN.format(n=1))
        deadline = time.monotonic() + 300
        while _cached_rows(cache) < 2:  # some rows are finished and stored
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.2)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=120)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"  # the partial result was returned
        first = _last_json(_run(kc, SHOW.format(n=1))["out"])
        report = first["report"]
        assert report["interrupted"] and 2 <= report["done"] < 8, report
        done = [i for i, f in enumerate(first["finish"]) if f in ("stop", "length")]
        assert len(done) == report["done"] == _cached_rows(cache)
        assert all(first["answers"][i] for i in done)
        unfinished = [i for i in range(8) if i not in done]
        assert all(first["answers"][i] is None for i in unfinished)

        second_run = _run(kc, RUN.format(n=2))
        assert second_run["status"] == "ok", second_run["out"]
        second = _last_json(_run(kc, SHOW.format(n=2))["out"])
        assert second["generations"] == 8 - report["done"]  # only what was missing
        assert second["report"]["cached"] == report["done"]
        assert second["report"]["computed"] == 8 - report["done"]
        assert not second["report"]["interrupted"] and second["report"]["done"] == 8
        for i in done:
            assert second["answers"][i] == first["answers"][i]
        assert all(second["answers"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
