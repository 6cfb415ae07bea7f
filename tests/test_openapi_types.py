"""The sidebar's TypeScript types (``labextension/src/generated/api.ts``) are what
``scripts/gen_ts_types.py`` generates from the OpenAPI document, which is built from the
field declarations (``lms_jupyter/api/spec``) the parsers check: a declaration changed
without regenerating fails here (and so in CI). Also: the generator follows the document
(a field added to a declaration shows up as a typed property), and the file type-checks
with ``tsc --strict`` where a TypeScript compiler is installed."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from lms_jupyter.api.spec import openai as spec
from lms_jupyter.api.spec.field import Field
from lms_jupyter.server.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[1]
_loader = importlib.util.spec_from_file_location(
    "gen_ts_types", ROOT / "scripts" / "gen_ts_types.py"
)
gen = importlib.util.module_from_spec(_loader)
_loader.loader.exec_module(gen)


def test_checked_in_types_are_generated_from_the_document():
    assert gen.OUTPUT.exists(), "run python scripts/gen_ts_types.py"
    assert gen.OUTPUT.read_text() == gen.generate(), (
        "labextension/src/generated/api.ts is stale: run python scripts/gen_ts_types.py"
    )


def test_types_follow_the_field_declarations():
    text = gen.generate()
    chat = text.split("export interface ChatCompletionRequest {", 1)[1].split("\n}\n", 1)[0]
    assert "\n  model: string;" in chat  # required: no "?"
    assert "\n  temperature?: number | null;" in chat  # null counts as absent
    assert "\n  max_completion_tokens?: number | null;" in chat  # every alias
    assert '"none" | "auto" | "required"' in chat  # tool_choice's declared choices
    assert "/** A model key, publisher/key" in chat  # the declaration's description
    paths = text.split("export interface Paths {", 1)[1]
    assert '"/lms/v1/chat/completions": {' in paths
    assert "request: ChatCompletionRequest;" in paths


def test_a_changed_declaration_changes_the_types():
    doc = copy.deepcopy(openapi_document("lms"))
    added = Field("frobnicate", "enum", enum=("a", "b"), description="A new field")
    doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]["frobnicate"] = (
        added.schema()
    )
    text = gen.generate(doc)
    assert text != gen.generate()
    assert '/** A new field */\n  frobnicate?: "a" | "b" | null;' in text
    assert spec.CHAT["temperature"].read({"temperature": 1}) == 1  # the same declaration


def _tsc() -> str | None:
    local = ROOT / "labextension" / "node_modules" / ".bin" / "tsc"
    return str(local) if local.exists() else shutil.which("tsc")


def test_generated_types_compile_with_strict_typescript(tmp_path):
    tsc = _tsc()
    if tsc is None:
        pytest.skip("no TypeScript compiler (labextension/node_modules or tsc on PATH)")
    use = tmp_path / "use.ts"
    use.write_text(
        f'import type {{ ChatCompletionRequest, Paths }} from "{gen.OUTPUT.with_suffix("")}";\n'
        'const body: ChatCompletionRequest = {model: "m", messages: [{role: "user", '
        'content: "hi"}], max_tokens: 8};\n'
        'type Answer = Paths["/lms/v1/chat/completions"]["post"]["response"];\n'
        'export const ok: Answer["object"] = "chat.completion";\n'
        "export const sent = body;\n"
    )
    done = subprocess.run(
        [
            tsc,
            "--strict",
            "--noEmit",
            "--noUnusedLocals",
            "--target",
            "ES2020",
            "--lib",
            "ES2020",
            "--moduleResolution",
            "node",
            str(use),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
