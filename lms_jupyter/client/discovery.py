"""Find the server to talk to, the way Jupyter tools do.

A running jupyter server writes ``jpserver-<pid>.json`` into Jupyter's runtime folder
(its URL with the base path, its token, its pid); ``jupyter server list`` and
``jupyter_server.serverapp.list_running_servers`` read them. A kernel picks the server
that started it: the one whose pid is among the kernel's parent processes, else the one
that knows the kernel's id (from the kernel's connection file, asked over
``/api/kernels/<id>``). The ``lms-jupyter`` script takes the first server that runs the
extension. A URL given by hand may be any LM Studio REST API root (``.../lms`` of an
lms-jupyter, ``http://localhost:1234`` of LM Studio) or a Jupyter server's own URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

PREFIX = "lms"  # LMSJupyterApp.url_prefix's default
# set by a jupyter server running the extension, for the kernels it starts: its API root
SERVER_ENV = "LMS_JUPYTER_SERVER"
PROBE_TIMEOUT = 5.0


class DiscoveryError(Exception):
    """No server could be found or reached; the message says what to do."""


@dataclass
class Target:
    """An API root (``/v1`` and ``/api/v0`` live under it) and the token it wants."""

    root: str
    token: str | None = None
    server: dict | None = None  # the jpserver runtime file, when found that way

    @property
    def openai_base_url(self) -> str:
        """What ``openai.OpenAI(base_url=...)`` takes."""
        return f"{self.root}/v1"

    @property
    def api_key(self) -> str:
        """What ``openai.OpenAI(api_key=...)`` takes (the token; any string without one)."""
        return self.token or "none"

    @property
    def description(self) -> str:
        if self.server:
            return (
                f"the Jupyter server at {self.server.get('url')} (pid "
                f"{self.server.get('pid')}), API {self.root}"
            )
        return self.root


def running_servers() -> list[dict]:
    """Every running jupyter server's runtime file (stale files are skipped)."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    try:
        return list(list_running_servers())
    except OSError:
        return []


def _parent_pids(pid: int | None = None, depth: int = 6) -> list[int]:
    """This process's parent, grandparent, ... (from /proc where there is one)."""
    pids, current = [], pid or os.getpid()
    for _ in range(depth):
        try:
            with open(f"/proc/{current}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            parent = int(fields[1])
        except (OSError, IndexError, ValueError):
            parent = os.getppid() if current == os.getpid() else 0
        if parent <= 1:
            break
        pids.append(parent)
        current = parent
    return pids


def _kernel_id() -> str | None:
    """This kernel's id, from its connection file name (``kernel-<id>.json``)."""
    try:
        from ipykernel.connect import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:  # noqa: BLE001 - not in a kernel
        return None
    match = re.match(r"kernel-(.+)\.json$", name)
    return match.group(1) if match else None


def _get(url: str, token: str | None, timeout: float = PROBE_TIMEOUT):
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=timeout)


def _token(server: dict) -> str | None:
    return server.get("token") or os.environ.get("JUPYTER_TOKEN") or None


def server_root(server: dict, prefix: str = PREFIX) -> str:
    return server["url"].rstrip("/") + "/" + prefix


def has_extension(server: dict, prefix: str = PREFIX) -> bool:
    try:
        response = _get(server_root(server, prefix) + "/v1/models", _token(server))
    except Exception:  # noqa: BLE001 - not answering
        return False
    return response.status_code == 200 and _is_json(response)


def _is_json(response) -> bool:
    try:
        response.json()
        return True
    except ValueError:
        return False


def kernel_server() -> dict:
    """The jupyter server that runs this kernel (a DiscoveryError when there is none)."""
    servers = running_servers()
    if not servers:
        raise DiscoveryError(
            "This kernel does not run under a Jupyter server (no running server was found "
            "in Jupyter's runtime folder). Use %lms connect <url> --token <token>, or keep "
            "the models in this kernel."
        )
    parents = set(_parent_pids())
    for server in servers:
        if server.get("pid") in parents:
            return server
    kernel = _kernel_id()
    if kernel:
        for server in servers:
            try:
                response = _get(f"{server['url'].rstrip('/')}/api/kernels/{kernel}", _token(server))
            except Exception:  # noqa: BLE001
                continue
            if response.status_code == 200:
                return server
    raise DiscoveryError(
        "This kernel was not started by any of the running Jupyter servers "
        f"({', '.join(s.get('url', '?') for s in servers)}). Use %lms connect <url> "
        "--token <token>."
    )


def for_kernel(prefix: str = PREFIX) -> Target:
    """``%lms connect`` with no URL: the server running this kernel, with the extension."""
    server = kernel_server()
    if not has_extension(server, prefix):
        raise DiscoveryError(
            f"The Jupyter server at {server.get('url')} does not serve lms-jupyter's API at "
            f"{server_root(server, prefix)} (enable it with `jupyter server extension enable "
            "lms_jupyter` and restart the server)."
        )
    return Target(server_root(server, prefix), _token(server), server)


def first_server(prefix: str = PREFIX) -> Target | None:
    """The ``lms-jupyter`` script's default: the first running server with the extension
    (None when there is none)."""
    for server in running_servers():
        if has_extension(server, prefix):
            return Target(server_root(server, prefix), _token(server), server)
    return None


def for_url(url: str, token: str | None = None, prefix: str = PREFIX) -> Target:
    """An API root for what the user typed: ``http://host:8888/lms``, LM Studio's
    ``http://localhost:1234`` (``/v1`` may be added), or a Jupyter server's own URL
    (``http://host:8888/``: its ``/lms`` is used)."""
    from lms_jupyter.engine.remote.engine import api_root

    if not re.match(r"https?://", url or ""):
        raise DiscoveryError(f"Not an http(s) URL: {url!r}.")
    token = token or os.environ.get("LMS_JUPYTER_TOKEN") or os.environ.get("JUPYTER_TOKEN")
    root = api_root(url)
    candidates = [root] if root.endswith("/" + prefix) else [root, f"{root}/{prefix}"]
    problems = []
    for candidate in candidates:
        try:
            response = _get(candidate + "/v1/models", token)
        except Exception as exc:  # noqa: BLE001
            raise DiscoveryError(f"Cannot reach {candidate}: {exc}") from None
        if response.status_code in (401, 403):
            raise DiscoveryError(
                f"{candidate} refused the token (HTTP {response.status_code})"
                "; pass --token (the Jupyter token, or LM Studio's API token)."
            )
        if response.status_code == 200 and _is_json(response) and "data" in response.json():
            return Target(candidate, token)
        problems.append(f"{candidate}/v1/models: HTTP {response.status_code}")
    raise DiscoveryError(f"No LM Studio API found at {url} ({'; '.join(problems)}).")
