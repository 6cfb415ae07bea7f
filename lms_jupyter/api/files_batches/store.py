"""Uploaded files and batch jobs on disk, so batches outlive the server.

One folder (``LMSJupyterApp.batch_dir``, default ``<jupyter data dir>/lms_jupyter/
batches``) holds ``batches.sqlite`` and ``files/<file id>`` (each file written to a
temporary name and renamed, so a file is whole or absent). The database has the file
metadata, each batch's object, its requests (parsed once when the batch is created, so
deleting the input file later changes nothing) and one result row per finished request,
committed as the request finishes: after a restart a batch resumes with exactly the
requests that have no result. WAL journal with ``synchronous=NORMAL``: a commit survives
the process being killed (a server crash or restart loses nothing committed) without an
fsync per request; only an OS crash or power cut may lose the last few results, which are
then simply computed again (the database itself stays consistent). Every change is one
transaction. Created on first use: a server that never sees a batch writes nothing.
Thread-safe (one connection behind a lock); the runner writes results from a thread,
uploads and batch creation run on one (their routes are blocking), the short reads run
on the event loop.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, seq INTEGER NOT NULL,
    status TEXT NOT NULL, object TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    batch_id TEXT NOT NULL, line INTEGER NOT NULL, custom_id TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (batch_id, line)
);
CREATE TABLE IF NOT EXISTS batch_results (
    batch_id TEXT NOT NULL, line INTEGER NOT NULL, ok INTEGER NOT NULL,
    result TEXT NOT NULL, input_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (batch_id, line)
);
"""
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def default_dir() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "lms_jupyter" / "batches"


@dataclass
class BatchRequestRow:
    line: int  # 1-based line of the input file
    custom_id: str
    body: dict


@dataclass
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def as_openai(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


class BatchStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_dir()
        self.files_dir = self.root / "files"
        self.db_path = self.root / "batches.sqlite"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._runner_lock: IO[str] | None = None  # the lock file while this process runs batches

    # -- connection ------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.db_path.exists()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.db_path), timeout=10, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn = conn
        return self._conn

    def _transaction(self):
        return _Transaction(self)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._runner_lock is not None:
                self._runner_lock.close()  # releases the flock
                self._runner_lock = None

    def claim_runner(self) -> bool:
        """Whether this process may run the folder's batches: an exclusive ``flock`` on
        ``runner.lock``, held until :meth:`close`, so two servers sharing the folder never
        run the same requests twice (the other one takes over when this one stops)."""
        if self._runner_lock is not None:
            return True
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one server per folder is assumed
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "runner.lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._runner_lock = handle
        return True

    # -- files ---------------------------------------------------------------------------------
    def _write_file(self, file_id: str, content: bytes) -> None:
        """The file's bytes whole or not at all: a temporary name, fsync, then rename (a
        crash leaves a ``.part`` that no row names, never a short file)."""
        target = self.files_dir / file_id
        temporary = target.with_name(f".{file_id}.part")
        with open(temporary, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict:
        """Write ``content`` whole (temporary name, then rename), then record it."""
        file_id = new_id("file-")
        with self._lock:
            self._db()
            self._write_file(file_id, content)
            row = (file_id, filename, purpose, len(content), int(time.time()))
            with self._transaction() as db:
                db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)", row)
        return self._file_object(row)

    @staticmethod
    def _file_object(row) -> dict:
        file_id, filename, purpose, size, created = row
        return {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": created,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def get_file(self, file_id: str) -> dict | None:
        with self._lock:
            if not self.exists():
                return None
            row = self._db().execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return self._file_object(row) if row else None

    def file_content(self, file_id: str) -> bytes | None:
        if self.get_file(file_id) is None:
            return None
        try:
            return (self.files_dir / file_id).read_bytes()
        except FileNotFoundError:
            return None

    def list_files(self, purpose: str | None = None) -> list[dict]:
        """Newest first."""
        with self._lock:
            if not self.exists():
                return []
            args: tuple[str, ...]
            query, args = "SELECT * FROM files", ()
            if purpose:
                query, args = query + " WHERE purpose = ?", (purpose,)
            rows = (
                self._db().execute(query + " ORDER BY created_at DESC, rowid DESC", args).fetchall()
            )
        return [self._file_object(r) for r in rows]

    def delete_file(self, file_id: str) -> bool:
        with self._lock:
            if self.get_file(file_id) is None:
                return False
            with self._transaction() as db:
                db.execute("DELETE FROM files WHERE id = ?", (file_id,))
            try:
                (self.files_dir / file_id).unlink()
            except FileNotFoundError:
                pass
        return True

    # -- batches -------------------------------------------------------------------------------
    def add_batch(self, batch: dict, requests: list[BatchRequestRow]) -> None:
        with self._lock:
            seq = self._db().execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM batches").fetchone()[0]
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                    (batch["id"], batch["created_at"], seq, batch["status"], json.dumps(batch)),
                )
                db.executemany(
                    "INSERT INTO batch_requests VALUES (?, ?, ?, ?)",
                    [(batch["id"], r.line, r.custom_id, json.dumps(r.body)) for r in requests],
                )

    def get_batch(self, batch_id: str) -> dict | None:
        with self._lock:
            if not self.exists():
                return None
            row = (
                self._db()
                .execute("SELECT object FROM batches WHERE id = ?", (batch_id,))
                .fetchone()
            )
        return json.loads(row[0]) if row else None

    def save_batch(self, batch: dict, files: Sequence[tuple[str, str, bytes]] = ()) -> dict:
        """Update a batch's object; ``files`` (id, filename, content) are output files
        written and recorded in the same transaction as the object that names them."""
        with self._lock:
            self._db()
            rows = []
            for file_id, filename, content in files:
                self._write_file(file_id, content)
                rows.append((file_id, filename, "batch_output", len(content), int(time.time())))
            with self._transaction() as db:
                db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)", rows)
                db.execute(
                    "UPDATE batches SET status = ?, object = ? WHERE id = ?",
                    (batch["status"], json.dumps(batch), batch["id"]),
                )
        return batch

    def list_batches(self) -> list[dict]:
        """Newest first."""
        with self._lock:
            if not self.exists():
                return []
            rows = self._db().execute("SELECT object FROM batches ORDER BY seq DESC").fetchall()
        return [json.loads(r[0]) for r in rows]

    def active_batches(self) -> list[str]:
        """Batches not finished yet, oldest first (the order they run in)."""
        with self._lock:
            if not self.exists():
                return []
            marks = ",".join("?" * len(ACTIVE))
            rows = (
                self._db()
                .execute(f"SELECT id FROM batches WHERE status IN ({marks}) ORDER BY seq", ACTIVE)
                .fetchall()
            )
        return [r[0] for r in rows]

    # -- requests and results --------------------------------------------------------------
    def pending_requests(self, batch_id: str) -> list[BatchRequestRow]:
        """The requests with no result yet, in file order."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT r.line, r.custom_id, r.body FROM batch_requests r LEFT JOIN "
                    "batch_results s ON s.batch_id = r.batch_id AND s.line = r.line "
                    "WHERE r.batch_id = ? AND s.line IS NULL ORDER BY r.line",
                    (batch_id,),
                )
                .fetchall()
            )
        return [
            BatchRequestRow(line, custom_id, json.loads(body)) for line, custom_id, body in rows
        ]

    def add_result(
        self, batch_id: str, line: int, ok: bool, result: dict, usage: Usage | None = None
    ) -> None:
        usage = usage or Usage()
        with self._lock:
            with self._transaction() as db:
                db.execute(
                    "INSERT OR REPLACE INTO batch_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        batch_id,
                        line,
                        int(ok),
                        json.dumps(result),
                        usage.input_tokens,
                        usage.cached_tokens,
                        usage.output_tokens,
                        usage.reasoning_tokens,
                    ),
                )

    def counts(self, batch_id: str) -> tuple[int, int, int, Usage]:
        """(total, completed, failed, usage) from the stored rows."""
        with self._lock:
            db = self._db()
            total = db.execute(
                "SELECT COUNT(*) FROM batch_requests WHERE batch_id = ?", (batch_id,)
            ).fetchone()[0]
            row = db.execute(
                "SELECT COALESCE(SUM(ok), 0), COALESCE(SUM(1 - ok), 0), "
                "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cached_tokens), 0), "
                "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(reasoning_tokens), 0) "
                "FROM batch_results WHERE batch_id = ?",
                (batch_id,),
            ).fetchone()
        return total, row[0], row[1], Usage(*row[2:])

    def results(self, batch_id: str) -> list[tuple[int, bool, dict]]:
        """(line, ok, output line) for every finished request, in file order."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT line, ok, result FROM batch_results WHERE batch_id = ? ORDER BY line",
                    (batch_id,),
                )
                .fetchall()
            )
        return [(line, bool(ok), json.loads(result)) for line, ok, result in rows]


class _Transaction:
    def __init__(self, store: BatchStore):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        db = self.store._db()
        db.execute("BEGIN IMMEDIATE")
        return db

    def __exit__(self, kind, exc, tb) -> None:
        try:
            assert self.store._conn is not None  # opened by __enter__, under the lock
            self.store._conn.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.store._lock.release()
