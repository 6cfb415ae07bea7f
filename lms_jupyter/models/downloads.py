"""``lms get``, the second half: the transfer of a :class:`~.hub.DownloadPlan`, and the
download jobs behind the HTTP API.

Safety: each file is written to ``<file>.part`` in its target folder, resumed with an HTTP
``Range`` request after an interruption (within a run, or the next time), checked against
the Hub's size and sha256 (git blob sha1 for small non-LFS files), and only then renamed;
the first shard, the one the catalog lists, is renamed last. So nothing half-written ever
appears as a model.

Why our own ``Range`` download rather than ``hf_hub_download``: it writes the temporary
file in the target folder (same filesystem: an atomic rename, no second copy in the HF
cache), hashes while writing, reports progress through a plain callback, and can pause
between chunks. Requests go through ``huggingface_hub``'s own HTTP session, headers and
error mapping, and never through hf-xet. No transport here: the fronts draw progress from
the callback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from lms_jupyter.models.download_plan import DownloadPlan, RemoteFile
from lms_jupyter.models.hub import (
    CHUNK_BYTES,
    DownloadCancelled,
    DownloadError,
    Hub,
    human_size,
    iso_time,
    resolve,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # consecutive failed attempts (without new bytes) before giving up
RETRY_WAIT = 0.5  # seconds before the 2nd retry without progress; doubles after that
DISK_MARGIN = 16 << 20

# -- downloading ----------------------------------------------------------------------------------
Progress = Callable[[int, int, float], None]  # (bytes done, total bytes, bytes per second)


class _Meter:
    """Bytes done and a speed over the last few seconds."""

    def __init__(self, total: int, done: int, callback: Progress | None):
        self.total = total
        self.done = done
        self.callback = callback
        self.samples = [(time.monotonic(), done)]
        self.speed = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.pop(0)
        first_time, first_done = self.samples[0]
        if now > first_time:
            self.speed = (self.done - first_done) / (now - first_time)
        if self.callback is not None:
            self.callback(self.done, self.total, self.speed)

    def rewind(self, n: int) -> None:
        self.done -= n
        self.samples = [(time.monotonic(), self.done)]


_active_lock = threading.Lock()
_active: set[str] = set()


def _claim(paths: list[Path]) -> None:
    """One download per target file in this process (another would share its .part)."""
    keys = [str(p) for p in paths]
    with _active_lock:
        busy = [k for k in keys if k in _active]
        if busy:
            raise DownloadError(
                f"{Path(busy[0]).name} is already being downloaded.", "download_in_progress", 409
            )
        _active.update(keys)


def _release(paths: list[Path]) -> None:
    with _active_lock:
        _active.difference_update(str(p) for p in paths)


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _hasher(file: RemoteFile):
    if file.sha256:
        return hashlib.sha256(), file.sha256.lower()
    if file.blob_id:
        digest = hashlib.sha1()
        digest.update(f"blob {file.size}\0".encode())
        return digest, file.blob_id.lower()
    return None, None


def check_disk(plan: DownloadPlan) -> None:
    need = 0
    for f in plan.files:
        if plan.present(f):
            continue
        part = part_path(plan.target(f))
        have = part.stat().st_size if part.is_file() else 0
        need += max(0, f.size - have)
    probe = plan.folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + DISK_MARGIN > free:
        raise DownloadError(
            f"Not enough disk space in {plan.models_dir}: the download needs "
            f"{human_size(need)} but only {human_size(free)} is free.",
            "not_enough_disk",
            507,
        )


def download(
    plan: DownloadPlan,
    hub: Hub | None = None,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    on_response: Callable[[object], None] | None = None,
) -> list[Path]:
    """Download ``plan``'s files (resuming ``.part`` files), verify, then rename them into
    place, the first shard last. Returns the final paths.

    Raises DownloadError, or DownloadCancelled when ``cancel`` is set (the ``.part`` files
    stay and the next call resumes them). ``on_response(response)`` sees each open HTTP
    response, so that a pause can close it.
    """
    hub = hub or Hub(plan.endpoint)
    cancel = cancel or threading.Event()
    targets = [plan.target(f) for f in plan.files]
    _claim(targets)
    try:
        check_disk(plan)
        plan.folder.mkdir(parents=True, exist_ok=True)
        done = 0
        for f in plan.files:
            if plan.present(f):
                done += f.size
            else:
                part = part_path(plan.target(f))
                done += min(part.stat().st_size, f.size) if part.is_file() else 0
        meter = _Meter(plan.total_size, done, progress)
        if progress is not None:
            progress(meter.done, meter.total, 0.0)
        log.info(
            "Downloading %s %s (%s) into %s",
            plan.repo_id,
            plan.variant.quantization,
            human_size(plan.total_size),
            plan.folder,
        )
        ready: list[tuple[Path, Path]] = []
        for f in plan.files:
            target = plan.target(f)
            if plan.present(f):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = part_path(target)
            _fetch(hub, plan, f, part, meter, cancel, on_response)
            ready.append((part, target))
        # every file is verified: move them into place, the one the catalog lists last
        primary = plan.target(plan.variant.primary)
        ready.sort(key=lambda pair: pair[1] == primary)
        for part, target in ready:
            os.replace(part, target)
        log.info("Downloaded %s %s to %s", plan.repo_id, plan.variant.quantization, plan.folder)
        return [plan.target(f) for f in plan.files]
    finally:
        _release(targets)


def _lock_part(handle, f: RemoteFile) -> None:
    """Another process appending to the same ``.part`` would corrupt it: refuse instead."""
    try:
        import fcntl
    except ImportError:  # Windows: the in-process claim is all we have
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise DownloadError(
            f"{f.name} is already being downloaded by another process.", "download_in_progress", 409
        ) from None


def _fetch(
    hub: Hub,
    plan: DownloadPlan,
    f: RemoteFile,
    part: Path,
    meter: _Meter,
    cancel: threading.Event,
    on_response,
) -> None:
    """One file into ``part``, resumed from what is there, then verified."""
    import httpx2

    have = part.stat().st_size if part.is_file() else 0
    if have > f.size:
        meter.rewind(f.size)
        part.unlink()
        have = 0
    attempts = 0
    with open(part, "ab") as out:
        _lock_part(out, f)
        digest, expected = _hasher(f)
        if digest is not None and have:
            with open(part, "rb") as existing:
                for block in iter(lambda: existing.read(CHUNK_BYTES), b""):
                    digest.update(block)
        while have < f.size:
            if cancel.is_set():
                raise DownloadCancelled()
            before = have
            try:
                with hub.stream(plan.repo_id, plan.revision, f.path, have) as response:
                    if on_response is not None:
                        on_response(response)
                    hub.raise_for_status(response, f"{plan.repo_id}/{f.path}")
                    if have and response.status_code == 200:  # the server ignored Range
                        out.seek(0)
                        out.truncate()
                        meter.rewind(have)
                        have = 0
                        digest, expected = _hasher(f)
                    for chunk in response.iter_bytes():  # as received: a cut keeps its bytes
                        if cancel.is_set():
                            raise DownloadCancelled()
                        if have + len(chunk) > f.size:
                            chunk = chunk[: f.size - have]
                        out.write(chunk)
                        if digest is not None:
                            digest.update(chunk)
                        have += len(chunk)
                        meter.add(len(chunk))
                        if have >= f.size:
                            break
            except DownloadCancelled:
                out.flush()
                raise
            except (httpx2.TransportError, httpx2.StreamError, OSError) as exc:
                out.flush()
                if cancel.is_set():
                    raise DownloadCancelled() from None
                attempts = 1 if have > before else attempts + 1
                if attempts >= MAX_ATTEMPTS:
                    raise DownloadError(
                        f"The download of {f.name} stopped at {human_size(have)} of "
                        f"{human_size(f.size)} ({exc or type(exc).__name__}); run the same "
                        "command again to resume.",
                        "interrupted",
                        503,
                    ) from None
                log.info(
                    "Download of %s interrupted at %d bytes (%s); resuming",
                    f.name,
                    have,
                    exc or type(exc).__name__,
                )
                time.sleep(0.0 if attempts == 1 else RETRY_WAIT * 2 ** (attempts - 2))
                continue
            if have < f.size:  # the body ended early without a transport error
                attempts = 1 if have > before else attempts + 1
                if attempts >= MAX_ATTEMPTS:
                    raise DownloadError(
                        f"The Hub sent only {human_size(have)} of {f.name} "
                        f"({human_size(f.size)}); run the same command again "
                        "to resume.",
                        "interrupted",
                        503,
                    )
        out.flush()
        os.fsync(out.fileno())
    if part.stat().st_size != f.size:
        part.unlink()
        raise DownloadError(
            f"{f.name} has the wrong size after download; it was removed.", "checksum_mismatch", 502
        )
    if digest is not None and digest.hexdigest() != expected:
        part.unlink()
        raise DownloadError(
            f"{f.name} does not match the Hub's checksum (corrupted in "
            "transit?); it was removed, nothing was installed. Try again.",
            "checksum_mismatch",
            502,
        )


# -- jobs ------------------------------------------------------------------------------------------
DOWNLOADING, PAUSED, COMPLETED, FAILED = "downloading", "paused", "completed", "failed"


class DownloadJob:
    """One download on its own thread: LM Studio's job with status, bytes and speed."""

    def __init__(self, plan: DownloadPlan, hub: Hub | None = None):
        self.id = "job_" + uuid.uuid4().hex[:10]
        self.plan = plan
        self.hub = hub or Hub(plan.endpoint)
        self.status = DOWNLOADING
        self.total_bytes = plan.total_size
        self.downloaded_bytes = 0
        self.bytes_per_second = 0.0
        self.error: DownloadError | None = None
        self.started_at = time.time()
        self.completed_at: float | None = None
        self.paths: list[Path] = []
        self.done = threading.Event()
        self._cancel = threading.Event()
        self._response = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _progress(self, done: int, total: int, speed: float) -> None:
        self.downloaded_bytes, self.total_bytes, self.bytes_per_second = done, total, speed

    def _run(self) -> None:
        try:
            self.paths = download(
                self.plan,
                self.hub,
                progress=self._progress,
                cancel=self._cancel,
                on_response=lambda r: setattr(self, "_response", r),
            )
            self.status, self.completed_at = COMPLETED, time.time()
            self.downloaded_bytes = self.total_bytes
        except DownloadCancelled:
            self.status = PAUSED
        except DownloadError as exc:
            self.status, self.error = FAILED, exc
        except Exception as exc:
            log.exception("Download of %s failed", self.plan.repo_id)
            self.status, self.error = FAILED, DownloadError(f"Download failed: {exc}")
        finally:
            self.bytes_per_second = 0.0
            self._response = None
            self.done.set()

    def start(self) -> DownloadJob:
        with self._lock:
            self._cancel.clear()
            self.done.clear()
            self.status, self.error = DOWNLOADING, None
            self._thread = threading.Thread(target=self._run, name=f"lms-{self.id}", daemon=True)
            self._thread.start()
        return self

    def run(self) -> DownloadJob:
        """Download on the calling thread (same states as a started job)."""
        self._cancel.clear()
        self.done.clear()
        self._run()
        return self

    def pause(self, wait: float | None = 30.0) -> None:
        """Stop between two chunks (or abort the open request); ``.part`` files stay."""
        self._cancel.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001
                pass
        if wait is not None:
            self.done.wait(wait)

    def resume(self) -> DownloadJob:
        if self.status != PAUSED and not (
            self.status == FAILED and self.error and self.error.code == "interrupted"
        ):
            return self
        return self.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self.status in (COMPLETED, FAILED)

    def start_response(self) -> dict:
        return {
            "job_id": self.id,
            "status": self.status,
            "total_size_bytes": self.total_bytes,
            "started_at": iso_time(self.started_at),
        }

    def as_status(self) -> dict:
        """``GET /api/v1/models/download/status/:job_id``."""
        status = {
            "job_id": self.id,
            "status": self.status,
            "total_size_bytes": self.total_bytes,
            "downloaded_bytes": self.downloaded_bytes,
            "bytes_per_second": round(self.bytes_per_second, 1),
            "started_at": iso_time(self.started_at),
            "model": self.plan.repo_id,
            "quantization": self.plan.variant.quantization,
        }
        if self.status == DOWNLOADING and self.bytes_per_second > 0:
            left = max(0, self.total_bytes - self.downloaded_bytes) / self.bytes_per_second
            status["estimated_completion"] = iso_time(time.time() + left)
        if self.completed_at is not None:
            status["completed_at"] = iso_time(self.completed_at)
        if self.error is not None:
            status["error"] = self.error.message
        return status


class DownloadJobs:
    """The downloads of one server: several at once, each on its own thread."""

    def __init__(
        self,
        models_dir: str | Path | None = None,
        available_bytes: int | Callable[[], int] | None = None,
    ):
        self.models_dir = models_dir
        self.available_bytes = available_bytes
        self._jobs: dict[str, DownloadJob] = {}
        self._lock = threading.Lock()

    def start(self, model: str, quantization: str | None = None) -> dict:
        """Resolve (blocking: Hub metadata) and start a job; LM Studio's answer."""
        hub = Hub()
        plan = resolve(
            model,
            quantization,
            models_dir=self.models_dir,
            hub=hub,
            available_bytes=self.available_bytes,
        )
        if plan.already_downloaded:
            return {
                "status": "already_downloaded",
                "total_size_bytes": plan.total_size,
                "model_key": plan.model_key,
            }
        wanted = {str(plan.target(f)) for f in plan.files}
        with self._lock:
            for job in self._jobs.values():
                same = {str(job.plan.target(f)) for f in job.plan.files} == wanted
                if same and job.status == DOWNLOADING:
                    return job.start_response()
                if same and job.status == PAUSED:
                    return job.resume().start_response()
            job = DownloadJob(plan, hub)
            self._jobs[job.id] = job
        return job.start().start_response()

    def get(self, job_id: str) -> DownloadJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise DownloadError(f'No download job "{job_id}".', "job_not_found", 404)
        return job

    def status(self, job_id: str) -> dict:
        return self.get(job_id).as_status()

    def jobs(self) -> list[DownloadJob]:
        return list(self._jobs.values())

    def pause_all(self) -> None:
        for job in self.jobs():
            if job.status == DOWNLOADING:
                job.pause(wait=5.0)
