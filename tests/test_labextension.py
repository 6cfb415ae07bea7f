"""The JupyterLab sidebar as a package: its front-end unit tests (vitest, run here so CI runs
them), the prebuilt extension's metadata, and the install that enables it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lms_jupyter

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "labextension"
BUILT = Path(lms_jupyter.__file__).parent / "labextension"


def _jlpm() -> str:
    jlpm = shutil.which("jlpm")
    if jlpm is None or shutil.which("node") is None:
        message = "jlpm (from jupyterlab / jupyter-builder) and Node.js are needed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return jlpm


def test_frontend_unit_tests():
    """vitest: the SSE parser, stream interpretation, state logic and the chat controller."""
    jlpm = _jlpm()
    if not (SOURCE / "node_modules" / ".bin" / "vitest").exists():
        # The wheel build installs them; a checkout built some other way may lack them.
        subprocess.run([jlpm, "install"], cwd=SOURCE, check=True, capture_output=True, timeout=600)
    result = subprocess.run(
        [jlpm, "test"],
        cwd=SOURCE,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1", "CI": "true"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    passed = re.search(r"Tests\s+(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 30, out


def test_prebuilt_extension_metadata():
    """What `jupyter-builder build` wrote: the federated entry point, the settings schema."""
    assert (BUILT / "package.json").exists(), f"the sidebar is not built in {BUILT}"
    meta = json.loads((BUILT / "package.json").read_text())
    assert meta["name"] == "lms-jupyter"
    build = meta["jupyterlab"]["_build"]
    assert (BUILT / build["load"]).exists()
    assert build["extension"] == "./extension" and build["style"] == "./style"
    schema = json.loads((BUILT / "schemas" / "lms-jupyter" / "plugin.json").read_text())
    assert {"defaultModel", "systemPrompt", "ttl"} <= set(schema["properties"])
    source = json.loads((SOURCE / "package.json").read_text())
    assert source["jupyterlab"]["outputDir"] == "../lms_jupyter/labextension"
    assert source["version"] == lms_jupyter.__version__


def test_sidebar_enabled_by_install():
    """`pip install` (also editable) puts the prebuilt sidebar in
    share/jupyter/labextensions: JupyterLab lists it enabled with no build step."""
    result = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    line = next(
        (line for line in out.splitlines() if line.strip().startswith("lms-jupyter ")), None
    )
    assert line is not None, out
    assert "enabled" in line and "OK" in line and "(python, lms-jupyter)" in line, line
