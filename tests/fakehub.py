"""A small Hugging Face Hub on loopback, answering the routes huggingface_hub 2.x calls.

Real HTTP (stdlib ThreadingHTTPServer on 127.0.0.1), so ``huggingface_hub`` and our
downloader run their real code paths against it (point ``HF_ENDPOINT`` at ``endpoint``):

- ``GET /api/models?search=&filter=&sort=&limit=`` with ``Link: <...>; rel="next"`` pages;
- ``GET /api/models/{repo}[/revision/{rev}]?blobs=true``: siblings with sizes, blob ids
  and LFS sha256 (``sizes=False`` leaves them out, as a mirror might);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=true``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``,
  ``Content-Length`` and ``Range`` (206, 416);
- errors as the Hub sends them: 404 + ``X-Error-Code`` (RepoNotFound, RevisionNotFound,
  EntryNotFound), gated repos 401 without a token and 403 with a wrong one (GatedRepo).

Fault injection: ``cut(path, after, times)`` ends the next ``times`` GETs of a file after
``after`` bytes (the client sees a broken connection); ``corrupt=True`` on a file serves
bytes that do not match its advertised sha256. ``requests`` records every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit


@dataclass
class FakeFile:
    path: str
    data: bytes | None = None
    source: Path | None = None
    declared_size: int | None = None  # advertise a size without serving it (disk checks)
    corrupt: bool = False
    lfs: bool = True
    throttle: float = 0.0  # seconds to wait after each 64 KiB sent (downloads in progress)

    def __post_init__(self):
        content = self.content()
        self.size = self.declared_size if self.declared_size is not None else len(content)
        self.sha256 = hashlib.sha256(content).hexdigest()
        self.blob_id = hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.source is not None:
            return self.source.read_bytes()
        return b""

    def read(self, start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) as served (flipped when ``corrupt``)."""
        if self.source is not None:
            with open(self.source, "rb") as f:
                f.seek(start)
                chunk = f.read(end - start + 1)
        else:
            chunk = (self.data or b"")[start : end + 1]
        if self.corrupt and chunk:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        return chunk


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    downloads: int = 0
    likes: int = 0
    tags: tuple[str, ...] = ("gguf",)
    gated: bool = False
    sizes: bool = True  # sizes and checksums in the repo info (else only in the tree)
    sha: str = field(default="")

    def __post_init__(self):
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode()).hexdigest()


class FakeHub:
    PAGE = 2  # small pages, so that search results need Link pagination

    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.token = "hf_faketoken0123456789abcdef"
        self._cuts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add_repo(
        self, repo_id: str, files: dict[str, bytes | Path | FakeFile], **kwargs
    ) -> FakeRepo:
        entries = {}
        for path, value in files.items():
            if isinstance(value, FakeFile):
                entries[path] = value
            elif isinstance(value, Path):
                entries[path] = FakeFile(path, source=value)
            else:
                entries[path] = FakeFile(path, data=value)
        repo = FakeRepo(repo_id, entries, **kwargs)
        self.repos[repo_id] = repo
        return repo

    def cut(self, path: str, after: int, times: int = 1) -> None:
        """End the next ``times`` downloads of ``path`` after ``after`` bytes."""
        with self._lock:
            self._cuts[path] = [after, times]

    def take_cut(self, path: str) -> int | None:
        with self._lock:
            cut = self._cuts.get(path)
            if not cut or cut[1] <= 0:
                return None
            cut[1] -= 1
            return cut[0]

    def downloads_of(self, path: str) -> list[dict]:
        """Headers of the GET requests for one file."""
        return [
            h
            for m, p, h in self.requests
            if m == "GET" and "/resolve/" in p and unquote(p.split("?")[0]).endswith("/" + path)
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing ------------------------------------------------------------------------
    def _json(self, value, status: int = 200, headers: dict | None = None) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, val in (headers or {}).items():
            self.send_header(key, val)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, status, headers)

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        self.hub.requests.append(
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if parts[:2] == ["api", "models"]:
            if len(parts) == 2:
                return self._search(query)
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            repo = self.hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            if not rest:
                return self._info(repo, query)
            if rest[0] == "revision" and len(rest) == 2:
                if rest[1] not in ("main", repo.sha):
                    return self._error(404, "RevisionNotFound", "Invalid rev id")
                return self._info(repo, query)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, "/".join(rest[2:]), query)
            return self._error(404, None, "Not found")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self.hub.repos.get("/".join(parts[:2]))
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            return self._resolve(repo, parts[3], "/".join(parts[4:]))
        return self._error(404, None, "Not found")

    # -- routes --------------------------------------------------------------------------
    def _search(self, query: dict) -> None:
        found = list(self.hub.repos.values())
        if query.get("search"):
            found = [r for r in found if query["search"].lower() in r.repo_id.lower()]
        if query.get("filter"):
            found = [r for r in found if query["filter"] in r.tags]
        if query.get("sort") in ("downloads", "likes"):
            found.sort(key=lambda r: getattr(r, query["sort"]), reverse=True)
        start = int(query.get("cursor", 0))
        page = min(self.hub.PAGE, int(query.get("limit", self.hub.PAGE)))
        items = [
            {
                "id": r.repo_id,
                "modelId": r.repo_id,
                "author": r.repo_id.split("/")[0],
                "downloads": r.downloads,
                "likes": r.likes,
                "tags": list(r.tags),
                "private": False,
                "library_name": "gguf",
            }
            for r in found[start : start + page]
        ]
        headers = {}
        if start + page < len(found):
            nxt = dict(query, cursor=str(start + page))
            headers["Link"] = f'<{self.hub.endpoint}/api/models?{urlencode(nxt)}>; rel="next"'
        self._json(items, headers=headers)

    def _info(self, repo: FakeRepo, query: dict) -> None:
        siblings = []
        for f in repo.files.values():
            entry = {"rfilename": f.path}
            if repo.sizes and query.get("blobs") in ("true", "True", "1"):
                entry["size"] = f.size
                entry["blobId"] = f.blob_id
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(entry)
        self._json(
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "author": repo.repo_id.split("/")[0],
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "downloads": repo.downloads,
                "likes": repo.likes,
                "tags": list(repo.tags),
                "siblings": siblings,
            }
        )

    def _tree(self, repo: FakeRepo, under: str, query: dict) -> None:
        recursive = query.get("recursive") in ("true", "True", "1")
        prefix = under.strip("/") + "/" if under.strip("/") else ""
        entries, folders = [], set()
        for f in repo.files.values():
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix) :]
            if "/" in rest:
                folder = prefix + rest.split("/", 1)[0]
                if folder not in folders:
                    folders.add(folder)
                    entries.append({"type": "directory", "oid": "0" * 40, "path": folder})
                if not recursive:
                    continue
            entry = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    def _resolve(self, repo: FakeRepo, revision: str, path: str) -> None:
        if repo.gated:
            auth = self.headers.get("Authorization", "")
            if not auth:
                return self._error(401, "GatedRepo", "Access to this model is restricted.")
            if auth != f"Bearer {self.hub.token}":
                return self._error(403, "GatedRepo", "Access to this model is restricted.")
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        f = repo.files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        start, end, status = 0, f.size - 1, 200
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            first, _, last = ranged[6:].partition("-")
            start = int(first or 0)
            end = min(int(last), f.size - 1) if last else f.size - 1
            if start >= f.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("ETag", f'"{f.sha256 if f.lfs else f.blob_id}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            self._send_body(f, path, start, end)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a pause)
            self.close_connection = True

    def _send_body(self, f: FakeFile, path: str, start: int, end: int) -> None:
        cut = self.hub.take_cut(path)
        position = start
        step = (1 << 16) if f.throttle else (1 << 20)
        while position <= end:
            if f.throttle and position > start:
                time.sleep(f.throttle)
            stop = min(end, position + step - 1)
            if cut is not None and stop >= cut:
                stop = cut - 1
                if stop >= position:
                    self.wfile.write(f.read(position, stop))
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(f.read(position, stop))
            position = stop + 1


# -- small real GGUF files --------------------------------------------------------------------
def tiny_gguf(
    path: Path, quantization: str = "Q4_K_M", n_values: int = 64, name: str = "Tiny"
) -> Path:
    """A valid GGUF (llama metadata, one padding tensor) whose size grows with n_values."""
    import gguf
    import numpy as np

    from lms_jupyter.models.gguf import FILE_TYPES

    ftype = {v: k for k, v in FILE_TYPES.items()}.get(quantization.upper(), 15)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_file_type(ftype)
    writer.add_context_length(256)
    writer.add_block_count(1)
    writer.add_embedding_length(16)
    writer.add_feed_forward_length(32)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_tensor("padding", np.arange(n_values, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def split_gguf(source: Path, target: Path, shards: int = 2) -> list[Path]:
    """Re-write a real GGUF as ``shards`` files (``<stem>-0000i-of-0000n.gguf``)."""
    import gguf

    target.parent.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    per_shard = -(-len(reader.tensors) // shards)
    writer = gguf.GGUFWriter(str(target), arch, split_max_tensors=per_shard)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, fld.contents(), vtype, sub_type=sub)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(target.parent.glob(f"{target.stem}-*-of-*.gguf"))
