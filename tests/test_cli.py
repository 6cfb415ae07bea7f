"""The ``lms-jupyter`` console script, run as a user would, in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import GEMMA, MODEL

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def no_servers(tmp_path_factory) -> str:
    """An empty Jupyter runtime folder: the script finds no running server (it would act
    on one; see test_connect.py), whatever else runs on this machine."""
    return str(tmp_path_factory.mktemp("no-servers"))


@pytest.fixture(scope="module")
def run(models_dir, no_servers):
    env = dict(os.environ, LMS_JUPYTER_MODELS_DIR=str(models_dir), JUPYTER_RUNTIME_DIR=no_servers)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lms_jupyter.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
        )

    return run


def test_console_script_is_installed(models_dir, no_servers):
    script = shutil.which("lms-jupyter")
    assert script, "pip install -e . should have created the lms-jupyter script"
    result = subprocess.run(
        [script, "ls", "--llm"],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(
            os.environ, JUPYTER_RUNTIME_DIR=no_servers, LMS_JUPYTER_MODELS_DIR=str(models_dir)
        ),
    )
    assert result.returncode == 0, result.stderr
    assert MODEL in result.stdout and GEMMA in result.stdout


def test_ls_and_ps(run):
    result = run("ls", "--variants")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("You have 2 models, taking up ")
    assert any(line.startswith("LLM ") for line in lines)
    assert "* lmstudio-community/gemma-3-270m@q4_k_m" in result.stdout

    result = run("ls", "--json")
    assert result.returncode == 0
    keys = {m["modelKey"] for m in json.loads(result.stdout)}
    assert keys == {MODEL, GEMMA}
    assert json.loads(run("ls", "--embedding", "--json").stdout) == []

    result = run("ps")
    assert result.returncode == 0
    assert result.stdout.strip() == (
        "No models are currently loaded. To load a model, run: lms-jupyter load <model>"
    )
    assert json.loads(run("ps", "--json").stdout) == []


def test_load_reports_and_frees(run):
    result = run(
        "load",
        MODEL,
        "--context-length",
        "512",
        "--ttl",
        "60",
        "--identifier",
        "cli",
        "--gpu",
        "off",
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()
    assert first.startswith("Model loaded successfully in") and "context 512" in first
    assert second == 'To use the model, use the identifier "cli".'


def test_estimate_only(run):
    result = run("load", MODEL, "--estimate-only")
    from lms_jupyter.engine.manager import ModelManager

    if hasattr(ModelManager, "estimate"):
        assert result.returncode == 0, result.stderr
        assert "Estimated Total Memory:" in result.stdout
        data = json.loads(run("load", MODEL, "--estimate-only", "--json").stdout)
        assert "fits" in data
    else:
        assert result.returncode == 1
        assert "estimate" in result.stderr.lower() and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["load", "no-such-model"], 1, "Error: The model `no-such-model` does not exist"),
        (["load", MODEL, "--gpu", "lots"], 2, "Error: lms-jupyter load: argument --gpu"),
        (["ls", "--bogus"], 2, "Error: lms-jupyter: unrecognized arguments: --bogus"),
        (["unload"], 1, "Error: No models are loaded."),
        (["unload", "ghost"], 1, 'Error: No loaded model with identifier "ghost".'),
        (["get", "--mlx", "qwen/qwen3-4b"], 1, "Error: MLX models run only on Apple silicon"),
        (["log", "stream", "--filter", "x"], 1, "Error: --filter values must be 'input', "),
        (["history"], 1, "Error: `history` is only available in a Jupyter kernel"),
    ],
)
def test_mistakes_are_one_line(run, args, status, message):
    result = run(*args)
    assert result.returncode == status
    assert result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_help(run):
    result = run("--help")
    assert result.returncode == 0
    for command in ("ls", "ps", "load", "unload", "get", "log"):
        assert command in result.stdout
    result = run("load", "--help")
    assert result.returncode == 0 and "--estimate-only" in result.stdout
    assert run().returncode == 2
