"""Issue 26: what a newcomer meets first (``ls`` with no models, the README's claims)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ls_without_models_names_the_folder_and_the_exact_command(tmp_path):
    env = dict(
        os.environ,
        LMS_JUPYTER_MODELS_DIR=str(tmp_path),
        LMS_JUPYTER_NO_EMBEDDED="1",
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    env.pop("LMS_JUPYTER_CONNECT", None)
    result = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path) in result.stdout
    assert "lms-jupyter get --starter" in result.stdout
    assert "fetch the starter model by themselves" in result.stdout
    assert "run get <model>" not in result.stdout
