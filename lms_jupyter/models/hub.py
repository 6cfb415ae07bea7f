"""``lms get``, the first half: what to download. A name (keyword, ``publisher/repo``,
``@quantization``, a Hub URL) becomes a :class:`DownloadPlan`: a repository, its GGUF
variants, the one LM Studio would pick, and the files to fetch.

What LM Studio does, on ``huggingface_hub`` (which honours ``HF_ENDPOINT`` and ``HF_TOKEN``):

- a keyword is searched on the Hub (GGUF repositories, best match by downloads then likes);
- the default variant is Q4_K_M, else another 4-bit quantization, else the one nearest to
  4 bits that fits the memory guardrail (the smallest when none fits);
- split GGUFs (``-00001-of-0000N.gguf``) are downloaded whole and load as one model; a
  multimodal projector (``mmproj-*``) is kept beside the model (the catalog skips it);
- files land as ``<models>/<publisher>/<repo>/<file>.gguf``.

Failures are :class:`DownloadError` with one clear message (offline, no such repository,
no GGUF files, gated repository without a token, not enough disk), never a traceback.
The transfer itself is :mod:`.downloads`. (About 600 lines: the Hub client, the file
and variant model and the resolution rules are one job, resolving a name.)
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lms_jupyter.models.catalog import default_models_dir
from lms_jupyter.models.download_plan import (  # noqa: F401 - re-exported
    _BITS,
    _QUANT,
    _SHARD,
    HUB_HOSTS,
    HUB_URL,
    PREFERRED_4BIT,
    DownloadCancelled,
    DownloadError,
    DownloadPlan,
    RemoteFile,
    RemoteVariant,
    RepoHit,
    default_variant,
    group_variants,
    parse_target,
    pick_projector,
)
from lms_jupyter.models.gguf import GGUFError, read_header
from lms_jupyter.models.memory import available_memory_bytes, estimate_memory

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def human_size(n_bytes: float | None) -> str:
    """LM Studio's 1000-based sizes with two decimals (4.92 GB)."""
    if n_bytes is None:
        return "-"
    value = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{value:.2f} TB"


def iso_time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the Hub ------------------------------------------------------------------------------------
def _hub_error(exc: Exception, endpoint: str, what: str) -> DownloadError:
    """huggingface_hub's and httpx2's exceptions as one clear message."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.HFValidationError):  # not a repository name at all
        return DownloadError(
            f'"{what}" is not a Hugging Face repository id '
            "(publisher/name: letters, digits, '-', '_', '.').",
            "invalid_model_name",
            400,
        )
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return DownloadError("Downloads are disabled: HF_HUB_OFFLINE is set.", "offline", 503)
    if isinstance(exc, hf_errors.GatedRepoError):
        return DownloadError(
            f"{what} is a gated repository: accept its terms on {HUB_URL}/{what} and set "
            "HF_TOKEN to a token of that account.",
            "gated_repo",
            getattr(exc.response, "status_code", 403) or 403,
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return DownloadError(
            f"{what}: no such revision on the Hugging Face Hub.", "revision_not_found", 404
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return DownloadError(
            f'No model repository "{what}" on the Hugging Face Hub (if it is '
            "private, set HF_TOKEN).",
            "model_not_found",
            404,
        )
    if isinstance(exc, (hf_errors.EntryNotFoundError, hf_errors.RemoteEntryNotFoundError)):
        return DownloadError(f"{what} is not on the Hugging Face Hub.", "file_not_found", 404)
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(exc.response, "status_code", None) or 502
        detail = getattr(exc, "server_message", None) or str(exc).strip().splitlines()[0]
        return DownloadError(
            f"The Hugging Face Hub answered {status} for {what}: {detail}", "hub_error", 502
        )
    if isinstance(exc, (httpx2.TransportError, OSError)):
        return DownloadError(
            f"Cannot reach the Hugging Face Hub at {endpoint} (offline?): "
            f"{exc or type(exc).__name__}",
            "offline",
            503,
        )
    return DownloadError(f"Hub request for {what} failed: {exc}", "hub_error", 502)


class Hub:
    """The few Hub calls ``lms get`` makes, through huggingface_hub.

    ``endpoint`` defaults to ``$HF_ENDPOINT`` read now (huggingface_hub reads it once at
    import); ``token`` to huggingface_hub's own lookup (``$HF_TOKEN``, then ``hf auth
    login``'s file).
    """

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or HUB_URL).rstrip("/")
        self.token = token

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    def has_token(self) -> bool:
        if self.token:
            return True
        from huggingface_hub import get_token

        return bool(get_token())

    def search(self, keyword: str, limit: int = 20) -> list[RepoHit]:
        """GGUF model repositories matching ``keyword``, most downloads (then likes) first."""
        self.check_reachable()
        try:
            found = list(
                self._api().list_models(
                    search=keyword, filter="gguf", sort="downloads", limit=limit
                )
            )
        except Exception as exc:  # noqa: BLE001 - mapped to one message
            raise _hub_error(exc, self.endpoint, f'the search for "{keyword}"') from None
        hits = [RepoHit(m.id, int(m.downloads or 0), int(m.likes or 0)) for m in found]
        hits.sort(key=lambda h: (-h.downloads, -h.likes, h.repo_id.lower()))
        return hits

    def check_reachable(self) -> None:
        """Fail fast when offline: huggingface_hub's search retries a refused connection
        for about 20 seconds. One HEAD through its session (proxies apply); any HTTP
        answer means the Hub is reachable."""
        from huggingface_hub.utils import get_session

        try:
            get_session().head(self.endpoint, timeout=10.0, follow_redirects=False)
        except Exception as exc:  # noqa: BLE001 - mapped to one message
            raise _hub_error(exc, self.endpoint, self.endpoint) from None

    def files(
        self, repo_id: str, revision: str | None = None
    ) -> tuple[str, list[RemoteFile], bool]:
        """(commit sha, files with sizes and checksums, gated) of a model repository."""
        api = self._api()
        try:
            info = api.model_info(repo_id, revision=revision, files_metadata=True)
            commit = info.sha or revision or "main"
            files = []
            for sibling in info.siblings or []:
                lfs = sibling.lfs
                files.append(
                    RemoteFile(
                        sibling.rfilename,
                        int(lfs.size if lfs else (sibling.size or -1)),
                        lfs.sha256 if lfs else None,
                        sibling.blob_id,
                    )
                )
            if any(f.size < 0 for f in files if f.path.lower().endswith(".gguf")):
                files = self._tree(api, repo_id, commit)
        except DownloadError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _hub_error(exc, self.endpoint, repo_id) from None
        return commit, files, bool(getattr(info, "gated", False))

    @staticmethod
    def _tree(api, repo_id: str, commit: str) -> list[RemoteFile]:
        """Sizes from the file tree, when the repo info left them out."""
        from huggingface_hub.hf_api import RepoFile

        files = []
        for entry in api.list_repo_tree(repo_id, recursive=True, revision=commit):
            if isinstance(entry, RepoFile):
                lfs = entry.lfs
                files.append(
                    RemoteFile(
                        entry.path, int(entry.size), lfs.sha256 if lfs else None, entry.blob_id
                    )
                )
        return files

    def url(self, repo_id: str, revision: str, path: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo_id, path, revision=revision, endpoint=self.endpoint)

    def headers(self, start: int = 0, end: int | None = None) -> dict:
        from huggingface_hub.utils import build_hf_headers

        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        return headers

    def stream(
        self, repo_id: str, revision: str, path: str, start: int = 0, end: int | None = None
    ):
        """An open streaming GET of one file from byte ``start`` (a context manager)."""
        import httpx2
        from huggingface_hub.utils import get_session

        return get_session().stream(
            "GET",
            self.url(repo_id, revision, path),
            headers=self.headers(start, end),
            follow_redirects=True,
            timeout=httpx2.Timeout(30.0, read=60.0),
        )

    def raise_for_status(self, response, what: str) -> None:
        if response.status_code < 400:
            return
        from huggingface_hub.utils import hf_raise_for_status

        response.read()
        try:
            hf_raise_for_status(response)
        except Exception as exc:  # noqa: BLE001
            raise _hub_error(exc, self.endpoint, what) from None

    def header(self, repo_id: str, revision: str, file: RemoteFile, limit: int = 64 << 20):
        """The GGUF header of a remote file, read with growing Range requests."""
        size = 4 << 20
        while True:
            end = min(size, file.size, limit) - 1
            with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
                with self.stream(repo_id, revision, file.path, 0, end) as response:
                    self.raise_for_status(response, file.path)
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        tmp.write(chunk)
                tmp.flush()
                try:
                    return read_header(tmp.name)
                except GGUFError:
                    if end + 1 >= min(file.size, limit):
                        raise
            size *= 4


# -- resolving ----------------------------------------------------------------------------------
def resolve(
    spec: str,
    quantization: str | None = None,
    *,
    models_dir: str | Path | None = None,
    hub: Hub | None = None,
    available_bytes: int | Callable[[], int] | None = None,
    context_length: int = 4096,
    search_limit: int = 20,
) -> DownloadPlan:
    """Turn what the user typed into a :class:`DownloadPlan` (network: Hub metadata only)."""
    hub = hub or Hub()
    models_dir = Path(models_dir).expanduser() if models_dir else default_models_dir()
    target = parse_target(spec, hub.endpoint)
    wanted = (quantization or "").strip() or target.quantization
    hits: list[RepoHit] = []
    if target.kind == "keyword":
        hits = hub.search(target.text, search_limit)
        if not hits:
            raise DownloadError(
                f'No GGUF models on the Hugging Face Hub match "{target.text}".',
                "model_not_found",
                404,
            )
        repo_id = None
        for hit in hits[:5]:  # the best match that really has GGUF files
            revision, files, gated = hub.files(hit.repo_id)
            variants, projectors = group_variants(files)
            if variants:
                repo_id = hit.repo_id
                break
        if repo_id is None:
            raise DownloadError(
                f'The best matches for "{target.text}" have no GGUF files.', "no_gguf", 404
            )
    else:
        repo_id = target.text
        revision, files, gated = hub.files(repo_id, target.revision)
        variants, projectors = group_variants(files)
        if not variants:
            kind = (
                "safetensors / MLX"
                if any(f.path.endswith(".safetensors") for f in files)
                else "model"
            )
            raise DownloadError(
                f"{repo_id} has no GGUF files (only {kind} files); lms-jupyter runs GGUF models.",
                "no_gguf",
                400,
            )

    def fits(variant: RemoteVariant) -> bool:
        return variant.size + _overhead() <= _available()

    overhead: list[int] = []

    def _overhead() -> int:
        if not overhead:
            overhead.append(_runtime_overhead(hub, repo_id, revision, variants[0], context_length))
        return overhead[0]

    def _available() -> int:
        if available_bytes is None:
            return available_memory_bytes()
        return available_bytes() if callable(available_bytes) else int(available_bytes)

    default, note = default_variant(variants, fits)
    plan = DownloadPlan(
        repo_id,
        revision,
        variants,
        default,
        default,
        pick_projector(projectors),
        models_dir,
        hub.endpoint,
        hits,
        note,
        gated,
    )
    if target.file:
        for variant in variants:
            if any(f.path == target.file for f in variant.files):
                plan = plan.with_variant(variant)
                break
        else:
            if any(f.path == target.file for f in projectors):
                raise DownloadError(
                    f"{target.file} is a multimodal projector, not a model; "
                    "name the model file or the repository.",
                    "invalid_request",
                )
            if any(f.path == target.file for f in files):
                raise DownloadError(f"{target.file} is not a GGUF model file.", "invalid_request")
            raise DownloadError(f"{repo_id} has no file {target.file}.", "file_not_found", 404)
    elif wanted:
        plan = plan.choose(wanted)
    if gated and not hub.has_token():
        raise DownloadError(
            f"{repo_id} is a gated repository: accept its terms on "
            f"{HUB_URL}/{repo_id} and set HF_TOKEN to a token of that account.",
            "gated_repo",
            401,
        )
    return plan


def memory_budget(manager) -> Callable[[], int]:
    """What a ModelManager lets a new model use, for the default variant; unlimited when
    its memory guardrail is off."""
    if not getattr(manager, "memory_guardrail", True):
        return lambda: 1 << 62
    return manager.available_bytes


def _runtime_overhead(
    hub: Hub, repo_id: str, revision: str, variant: RemoteVariant, context_length: int
) -> int:
    """KV cache and compute memory at ``context_length``, from the smallest variant's
    header (they do not depend on the quantization); 0 when it cannot be read."""
    try:
        header = hub.header(repo_id, revision, variant.primary)
    except (DownloadError, GGUFError, OSError) as exc:
        log.info("No memory estimate for %s: %s", repo_id, exc)
        return 0
    arch = header.get("general.architecture", "llama")
    n_ctx = min(
        context_length, int(header.get(f"{arch}.context_length", context_length) or context_length)
    )
    return estimate_memory(repo_id, header, 0, n_ctx).total_bytes
