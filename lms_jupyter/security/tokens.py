"""Scoped API tokens: what an app gets instead of the Jupyter token.

The Jupyter token lets its holder start kernels and so run any code as the user; an app
that only needs the LM Studio API gets a token of its own (LM Studio 0.4's API tokens),
honoured by the ``/lms`` routes only and revocable at once.

A token is ``sk-lmj-<id>:<secret>``: the id finds the record without scanning, the
secret (32 random bytes) is never stored, only ``HMAC-SHA256(salt, secret)`` with a
per-token random salt, and it is compared with :func:`hmac.compare_digest`. A fast hash
is right here: the secret is random and long, so there is nothing to brute-force, and a
slow KDF would cost every request. Records live in one JSON file in Jupyter's data
directory (``jupyter_core.paths.jupyter_data_dir()/lms_jupyter/api_tokens.json``), mode
0600 in a 0700 folder, replaced atomically (temp file + fsync + rename) under an
``flock``, and re-read when another process (a second server on the same data dir)
changed it. ``last_used`` is kept in memory and written at most every
``flush_interval`` seconds (and at shutdown), so traffic does not hammer the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: one process per data dir is assumed there
    # the optional-module idiom (the one use checks for None)
    fcntl = None  # type: ignore[assignment]

PREFIX = "sk-lmj-"
TOKEN_PATTERN = re.compile(r"^sk-lmj-([0-9a-f]{16}):([A-Za-z0-9_-]{43})$")
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
FILE_NAME = "api_tokens.json"
MAX_NAME_LENGTH = 200
MAX_EXPIRES_IN = 100 * 365 * 24 * 3600  # seconds; beyond this a date overflows nothing useful


def default_store_path() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "lms_jupyter" / FILE_NAME


def iso_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return (
        datetime.fromtimestamp(seconds, timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def looks_scoped(token: str) -> bool:
    """Whether a credential is in this module's format (and so must be judged here)."""
    return token.startswith(PREFIX)


def _digest(salt: bytes, secret: str) -> str:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass
class TokenRecord:
    id: str
    name: str
    salt: str  # hex
    hash: str  # hex HMAC-SHA256(salt, secret)
    created_at: float
    expires_at: float | None = None
    last_used: float | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def public(self) -> dict:
        """What listing shows: never the salt or the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": iso_time(self.created_at),
            "last_used_at": iso_time(self.last_used),
            "expires_at": iso_time(self.expires_at),
            "expired": self.expired(),
        }


class TokenStoreError(Exception):
    """The token file cannot be read or written (its message says which file)."""


class TokenStore:
    """The scoped tokens of one Jupyter user, in one JSON file."""

    def __init__(self, path: str | Path | None = None, flush_interval: float = 60.0):
        self.path = Path(path) if path else default_store_path()
        self.flush_interval = flush_interval
        self._lock = threading.RLock()
        self._records: dict[str, TokenRecord] = {}
        self._stamp: tuple | None = None  # (inode, size, mtime_ns) of the file we read
        self._dirty_used: dict[str, float] = {}  # id -> last_used not yet on disk
        self._last_flush = time.monotonic()

    # -- file --------------------------------------------------------------------------
    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload_if_changed(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._records = self._read()
        self._stamp = stamp
        for token_id, used in self._dirty_used.items():  # our newer last_used wins
            record = self._records.get(token_id)
            if record is not None and (record.last_used or 0) < used:
                record.last_used = used

    def _read(self) -> dict[str, TokenRecord]:
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TokenStoreError(f"Cannot read the API token file {self.path}: {exc}") from None
        try:
            data = json.loads(raw)
            return {item["id"]: TokenRecord(**item) for item in data.get("tokens", [])}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TokenStoreError(
                f"The API token file {self.path} is damaged ({exc}); move it away to start over."
            ) from None

    @contextlib.contextmanager
    def _file_lock(self):
        """One writer at a time across processes (two servers may share a data dir)."""
        if not self.path.parent.is_dir():  # a folder we create: only the user may list it
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(OSError):
                os.chmod(self.path.parent, 0o700)  # whatever the umask
        if fcntl is None:
            yield
            return
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self) -> None:
        data = {"version": 1, "tokens": [asdict(r) for r in self._records.values()]}
        fd, tmp = tempfile.mkstemp(prefix=".api_tokens.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._stamp = self._file_stamp()
        self._dirty_used.clear()
        self._last_flush = time.monotonic()

    @contextlib.contextmanager
    def _transaction(self):
        """Read the newest file, change the records, write them back, all under the lock."""
        with self._lock:
            try:
                with self._file_lock():
                    self._reload_if_changed()
                    yield
                    self._write()
            except OSError as exc:
                raise TokenStoreError(
                    f"Cannot write the API token file {self.path}: {exc}"
                ) from None

    # -- management (a full Jupyter identity only; the server checks that) -----------------
    def create(self, name: str, expires_in: float | None = None) -> tuple[TokenRecord, str]:
        """A new token: its record and the full token string (shown once)."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        now = time.time()
        record = TokenRecord(
            token_id,
            name,
            salt.hex(),
            _digest(salt, secret),
            now,
            now + expires_in if expires_in else None,
        )
        with self._transaction():
            self._records[token_id] = record
        return record, f"{PREFIX}{token_id}:{secret}"

    def list(self) -> list[TokenRecord]:
        with self._lock:
            self._reload_if_changed()
            return sorted(self._records.values(), key=lambda r: r.created_at)

    def get(self, token_id: str) -> TokenRecord | None:
        if not isinstance(token_id, str) or not ID_PATTERN.match(token_id):
            return None
        with self._lock:
            self._reload_if_changed()
            return self._records.get(token_id)

    def revoke(self, token_id: str) -> TokenRecord | None:
        """Delete a token at once; None when there is no such token."""
        if not isinstance(token_id, str) or not ID_PATTERN.match(token_id):
            return None
        with self._transaction():
            return self._records.pop(token_id, None)

    # -- authentication (every request that carries a scoped token) ---------------------------
    def verify(self, token: str) -> TokenRecord | None:
        """The record of a valid, unexpired token, else None. Marks it used."""
        match = TOKEN_PATTERN.match(token or "")
        with self._lock:
            self._reload_if_changed()
            record = self._records.get(match.group(1)) if match else None
            if record is None:
                # same work as a real check, so timing does not tell ids apart
                _digest(b"\0" * 16, match.group(2) if match else "x")
                return None
            assert match is not None  # a record was found under the token's id
            ok = hmac.compare_digest(
                _digest(bytes.fromhex(record.salt), match.group(2)), record.hash
            )
            if not ok or record.expired():
                return None
            now = time.time()
            record.last_used = now
            self._dirty_used[record.id] = now
            if time.monotonic() - self._last_flush >= self.flush_interval:
                self._flush_locked()
            return record

    def flush(self) -> None:
        """Write pending ``last_used`` times (the server calls this at shutdown)."""
        with self._lock:
            if self._dirty_used:
                self._flush_locked()

    def _flush_locked(self) -> None:
        pending = dict(self._dirty_used)
        try:
            with self._file_lock():
                self._reload_if_changed()
                for token_id, used in pending.items():
                    record = self._records.get(token_id)
                    if record is not None:
                        record.last_used = max(record.last_used or 0, used)
                self._write()
        except OSError:
            self._last_flush = time.monotonic()  # try again later; never fail a request
