"""Stored responses: one SQLite file, so ``previous_response_id`` outlives the server.

Each row holds a response object and its conversation (every item of the earlier turns,
this turn's input and this response's output), so continuing needs one read and deleting
one response never breaks another's chain. The database is in WAL mode with
``synchronous=FULL`` and each save is one transaction: a response is acknowledged only
after its row is committed, and a kill mid-write loses nothing committed before. It is
created on first use (a server that never sees a Responses request writes nothing).
Nothing secret is stored: MCP ``headers`` never reach the response object.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from lms_jupyter.errors import APIError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    response TEXT NOT NULL,
    conversation TEXT NOT NULL
)"""


def default_path() -> Path:
    """``<jupyter data dir>/lms_jupyter/responses.sqlite``."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "lms_jupyter" / "responses.sqlite"


class ResponseStore:
    """Responses by id. Thread-safe; callers run it off the event loop."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=10, check_same_thread=False, isolation_level=None
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(SCHEMA)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                elif version > SCHEMA_VERSION:
                    conn.close()
                    raise sqlite3.DatabaseError(
                        f"schema version {version} is newer than this "
                        f"lms-jupyter's ({SCHEMA_VERSION})"
                    )
            except (OSError, sqlite3.Error) as exc:
                raise self._unusable(exc) from None
            log.info("Responses are stored in %s", self.path)
            self._conn = conn
        return self._conn

    def _unusable(self, exc: Exception) -> APIError:
        return APIError(
            f"The response store {self.path} cannot be used: {exc}. Set "
            "--LMSJupyterApp.responses_db to another file.",
            500,
            "server_error",
        )

    def _run(self, sql: str, args: tuple = ()) -> list:
        with self._lock:
            try:
                return self._db().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None

    def save(self, response: dict, conversation: list[dict]) -> None:
        """Insert or replace ``response`` (one committed transaction)."""
        row = (
            response["id"],
            int(response.get("created_at") or time.time()),
            json.dumps(response),
            json.dumps(conversation),
        )
        with self._lock:
            try:
                db = self._db()
                with db:  # BEGIN ... COMMIT, or ROLLBACK on error
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", row)
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None

    def get(self, response_id: str) -> dict | None:
        rows = self._run("SELECT response FROM responses WHERE id = ?", (response_id,))
        return json.loads(rows[0][0]) if rows else None

    def conversation(self, response_id: str) -> list[dict] | None:
        """The items a continuation of ``response_id`` starts from."""
        rows = self._run("SELECT conversation FROM responses WHERE id = ?", (response_id,))
        return json.loads(rows[0][0]) if rows else None

    def delete(self, response_id: str) -> bool:
        with self._lock:
            try:
                db = self._db()
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    gone = db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None
        return gone > 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
