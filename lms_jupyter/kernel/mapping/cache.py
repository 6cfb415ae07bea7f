"""The answers ``lms_jupyter.batch`` has already computed, so a rerun resumes.

One SQLite file in Jupyter's data directory (``jupyter_data_dir()/lms_jupyter/
batch_cache.sqlite``): a row per finished item, keyed by a hash of everything that
decides its answer (the model, the whole chat request: messages with the system prompt
and the rendered prompt, schema, tools, max_tokens, temperature, seed, ...). Each answer
is written in its own statement as soon as it is finished (atomic, WAL journal), so an
interrupted or crashed batch loses nothing it had finished and a rerun computes only the
rest. Several kernels may share the file (SQLite's locking; a 30 s busy timeout).

Why SQLite and not a file per answer: thousands of small rows, atomic writes, and
concurrent kernels, with nothing to install.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

CACHE_VERSION = 1


def default_path() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "lms_jupyter" / "batch_cache.sqlite"


def cache_key(model: str, body: dict, extra: dict | None = None) -> str:
    """A stable hash of the model and the request body (``stream`` fields left out)."""
    request = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "model")}
    blob = json.dumps(
        {"v": CACHE_VERSION, "model": model, "request": request, "extra": extra or {}},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class BatchCache:
    """Finished rows by key. Use from one thread (the batch's dispatcher)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
            "row TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, row in self._db.execute(
                f"SELECT key, row FROM results WHERE key IN ({marks})", chunk
            ):
                found[key] = json.loads(row)
        return found

    def put(self, key: str, row: dict) -> None:
        """Store one finished row (one atomic statement)."""
        self._db.execute(
            "INSERT OR REPLACE INTO results (key, row, created) VALUES (?, ?, ?)",
            (key, json.dumps(row, ensure_ascii=False, default=str), time.time()),
        )

    def delete(self, keys: list[str]) -> None:
        self._db.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in keys])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._db.close()
