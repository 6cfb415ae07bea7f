"""What ``lms get`` downloads: a repository's GGUF files grouped into variants (quantization, shards,
vision projector), the default pick for this machine, and the plan a download job carries out.
Plain data from a file listing; :mod:`.hub` fetches the listing."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from lms_jupyter.models.catalog import model_key_from_repo

log = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co"
HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
PREFERRED_4BIT = (
    "Q4_K_M",
    "Q4_K_S",
    "Q4_K_L",
    "Q4_K_XL",
    "IQ4_XS",
    "IQ4_NL",
    "Q4_1",
    "Q4_0",
    "MXFP4",
)
_QUANT = re.compile(
    r"(?i)(?:^|[._-])((?:I?Q|TQ)\d(?:_[A-Z0-9]+)*|[BF]F?16|F32|MXFP4|NVFP4)(?=\.gguf$|[._-])"
)
_BITS = re.compile(r"(?i)(?:MXFP|NVFP)(\d+)|(?:I?Q|TQ)(\d+)|B?F(\d+)")
_SHARD = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


class DownloadError(Exception):
    """A user-facing download failure: one message, an HTTP status and a short code."""

    def __init__(self, message: str, code: str = "download_failed", status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class DownloadCancelled(Exception):
    """The download was paused; its ``.part`` files stay for a later resume."""


# -- what to download ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repo
    size: int
    sha256: str | None = None  # LFS files
    blob_id: str | None = None  # git blob sha1 (non-LFS files)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def quantization_of(filename: str) -> str | None:
    match = _QUANT.search(filename.rsplit("/", 1)[-1])
    return match.group(1).upper() if match else None


def quant_bits(label: str) -> int | None:
    match = _BITS.search(label or "")
    if not match:
        return None
    return int(next(g for g in match.groups() if g is not None))


@dataclass
class RemoteVariant:
    """One quantization of a model: a GGUF file, or every shard of a split GGUF."""

    quantization: str
    files: list[RemoteFile]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def primary(self) -> RemoteFile:
        return self.files[0]

    @property
    def bits(self) -> int | None:
        return quant_bits(self.quantization)

    def matches(self, wanted: str) -> bool:
        wanted = wanted.strip().lower()
        return wanted in (
            self.quantization.lower(),
            self.primary.path.lower(),
            self.primary.name.lower(),
        )


@dataclass
class RepoHit:
    """A search result."""

    repo_id: str
    downloads: int = 0
    likes: int = 0


def group_variants(files: list[RemoteFile]) -> tuple[list[RemoteVariant], list[RemoteFile]]:
    """GGUF files as variants (shards grouped, smallest first) and the mmproj files."""
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    projectors = [f for f in ggufs if f.name.lower().startswith("mmproj")]
    shards: dict[tuple[str, int], dict[int, RemoteFile]] = {}
    variants = []
    for f in ggufs:
        if f in projectors:
            continue
        match = _SHARD.match(f.path)
        if match:
            key = (match.group("stem"), int(match.group("count")))
            shards.setdefault(key, {})[int(match.group("index"))] = f
            continue
        variants.append(RemoteVariant(quantization_of(f.path) or f.name[:-5], [f]))
    for (stem, count), parts in shards.items():
        if sorted(parts) != list(range(1, count + 1)):
            log.warning(
                "Skipping incomplete split GGUF %s (%d of %d shards)", stem, len(parts), count
            )
            continue
        ordered = [parts[i] for i in range(1, count + 1)]
        variants.append(
            RemoteVariant(quantization_of(ordered[0].path) or stem.rsplit("/", 1)[-1], ordered)
        )
    variants.sort(key=lambda v: (v.size, v.primary.path))
    return variants, projectors


def pick_projector(projectors: list[RemoteFile]) -> RemoteFile | None:
    """The projector to keep beside a vision model: f16 when there is one."""
    if not projectors:
        return None
    for wanted in ("f16", "bf16"):
        for f in projectors:
            if quantization_of(f.name) == wanted.upper():
                return f
    return min(projectors, key=lambda f: f.size)


def default_variant(
    variants: list[RemoteVariant], fits: Callable[[RemoteVariant], bool] | None = None
) -> tuple[RemoteVariant, str | None]:
    """LM Studio's pick, and why when it is not a plain 4-bit choice.

    Q4_K_M; else another 4-bit quantization (LM Studio's order, then the biggest); else
    among the variants that fit the memory guardrail the one nearest to 4 bits (ties: more
    bits); else, when none fits, the smallest.
    """
    by_label = {v.quantization.upper(): v for v in reversed(variants)}
    for label in PREFERRED_4BIT:
        if label in by_label:
            return by_label[label], None
    four = [v for v in variants if v.bits == 4]
    if four:
        return max(four, key=lambda v: v.size), None
    fitting = [v for v in variants if fits is None or fits(v)]
    if fitting:

        def distance(v):
            bits = v.bits if v.bits is not None else 16
            return (abs(bits - 4), -bits, v.size)

        best = min(fitting, key=distance)
        return best, f"no 4-bit variant; {best.quantization} is the nearest that fits"
    smallest = variants[0]
    return smallest, (
        f"no variant fits the memory guardrail; {smallest.quantization} is the smallest"
    )


@dataclass
class Target:
    """What the user named: a keyword, a repo, or a URL (maybe of one file)."""

    kind: str  # keyword | repo | url
    text: str  # the keyword or the repo id
    quantization: str | None = None
    revision: str | None = None
    file: str | None = None


def parse_target(spec: str, endpoint: str = HUB_URL) -> Target:
    spec = (spec or "").strip()
    if not spec:
        raise DownloadError(
            "Name a model: a keyword, publisher/repo, or a Hugging Face URL.", "invalid_request"
        )
    if "://" in spec:
        return _parse_url(spec, endpoint)
    quant: str | None
    name, _, quant = spec.partition("@")
    name, quant = name.strip(), quant.strip() or None
    if "/" in name:
        parts = [p for p in name.split("/") if p]
        if len(parts) != 2:
            raise DownloadError(
                f'"{spec}" is not a repository name (publisher/repo).', "invalid_request"
            )
        return Target("repo", "/".join(parts), quant)
    if not name:
        raise DownloadError(f'"{spec}" names no model.', "invalid_request")
    return Target("keyword", name, quant)


def _parse_url(url: str, endpoint: str) -> Target:
    parsed = urlparse(url)
    hosts = set(HUB_HOSTS)
    own = urlparse(endpoint)
    if own.netloc:
        hosts.add(own.netloc.lower())
    if parsed.scheme not in ("http", "https") or parsed.netloc.lower() not in hosts:
        raise DownloadError("Only https://huggingface.co URLs are supported.", "invalid_request")
    parts = [unquote(p) for p in parsed.path.split("/") if p]
    if parts and parts[0] in ("datasets", "spaces", "buckets"):
        raise DownloadError(f"{url} is not a model repository.", "invalid_request")
    if len(parts) < 2:
        raise DownloadError(
            f"{url} does not name a repository (publisher/repo).", "invalid_request"
        )
    repo, _, quant = "/".join(parts[:2]).partition("@")
    rest = parts[2:]
    if not rest:
        return Target("url", repo, quant or None)
    if rest[0] == "tree" and len(rest) >= 2:
        return Target("url", repo, quant or None, revision=rest[1])
    if rest[0] in ("blob", "resolve") and len(rest) >= 3:
        return Target("url", repo, None, revision=rest[1], file="/".join(rest[2:]))
    raise DownloadError(f"Cannot tell which model {url} points to.", "invalid_request")


@dataclass
class DownloadPlan:
    """A resolved download: which repo, which variant, where the files go."""

    repo_id: str
    revision: str
    variants: list[RemoteVariant]
    variant: RemoteVariant
    default: RemoteVariant
    projector: RemoteFile | None
    models_dir: Path
    endpoint: str = HUB_URL
    hits: list[RepoHit] = field(default_factory=list)  # search results, best first
    note: str | None = None  # why the default is what it is
    gated: bool = False

    @property
    def publisher(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def repo_name(self) -> str:
        return self.repo_id.split("/", 1)[1]

    @property
    def folder(self) -> Path:
        return self.models_dir / self.publisher / self.repo_name

    @property
    def model_key(self) -> str:
        """What ``lms load`` takes for the downloaded variant."""
        key = f"{self.publisher.lower()}/{model_key_from_repo(self.repo_name)}"
        return f"{key}@{self.variant.quantization.lower()}" if len(self.variants) > 1 else key

    @property
    def files(self) -> list[RemoteFile]:
        extra = [self.projector] if self.projector is not None else []
        return [*extra, *self.variant.files]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def target(self, file: RemoteFile) -> Path:
        return self.folder.joinpath(*file.path.split("/"))

    def present(self, file: RemoteFile) -> bool:
        path = self.target(file)
        return path.is_file() and path.stat().st_size == file.size

    @property
    def already_downloaded(self) -> bool:
        return all(self.present(f) for f in self.variant.files)

    def with_variant(self, variant: RemoteVariant) -> DownloadPlan:
        return replace(self, variant=variant)

    def choose(self, wanted: str) -> DownloadPlan:
        for variant in self.variants:
            if variant.matches(wanted):
                return self.with_variant(variant)
        labels = ", ".join(v.quantization for v in self.variants)
        raise DownloadError(
            f"{self.repo_id} has no {wanted} variant. Available: {labels}.", "no_such_variant"
        )

    def describe(self) -> dict:
        """The plan as JSON (for fronts and the REST API)."""
        return {
            "repo": self.repo_id,
            "revision": self.revision,
            "variant": self.variant.quantization,
            "default": self.default.quantization,
            "total_size_bytes": self.total_size,
            "files": [f.path for f in self.files],
            "model_key": self.model_key,
            "variants": [
                {
                    "quantization": v.quantization,
                    "size_bytes": v.size,
                    "files": [f.path for f in v.files],
                }
                for v in self.variants
            ],
        }
