"""Runs stored batch jobs at low priority beside interactive requests.

One asyncio task on the server's event loop takes the active batches oldest first and
sends each request through the same API call its URL would reach over HTTP (the
``endpoints`` table: ``/v1/chat/completions`` -> ``OpenAICompatAPI.chat_completions``,
...), so a batch line behaves exactly like a request sent on its own, and a bad body
fails that line only.

**Priority.** Requests to one model queue FIFO on its worker (or share its ``parallel``
slots once the engine has them), so a batch that queued everything at once would make
an interactive request wait behind the whole batch. Instead a batch request is sent
only when its model has room:

- at most ``max(1, parallel - 1)`` batch requests are in flight per model, so with
  slots one stays free for interactive work, and
- a new one is sent only while the model's ``queued`` (waiting + running, everyone's) is
  below ``parallel``: with one slot, only when the model is idle.

So an interactive request waits for at most the batch request(s) already running, never
for the batch (in the race where both arrive together, one more). With no interactive
traffic the batch keeps the model busy back to back. The gate is re-checked when one
of the batch's requests finishes and every ``poll`` seconds (10 ms: a dictionary lookup,
a negligible cost, and at most that much idle time between two batch requests).

**One runner per folder.** Servers sharing a batch folder take an exclusive lock on it
before running anything (:meth:`~.batch_store.BatchStore.claim_runner`); the others keep
answering the API and take over when the holder stops.

**Persistence.** Every finished request's output line is committed to the store as it
finishes; a request that was cancelled (the batch was cancelled, or the server is
stopping) leaves no result, so after a restart the batch resumes with exactly the lines
that have none. A batch that was cancelling or finalizing when the server stopped is
finished on the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from lms_jupyter.api.files_batches.store import BatchRequestRow, BatchStore, Usage, new_id
from lms_jupyter.api.results import JSONResponse, StreamResponse
from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.errors import APIError

log = logging.getLogger(__name__)

Endpoint = Callable[[dict, EventChannel], Awaitable]
MAX_IN_FLIGHT = 64  # requests of one batch in flight at once, whatever the models allow
RESCAN_SECONDS = 5.0  # idle: look for batches another server on the same folder created
FINAL_AT = {
    "completed": "completed_at",
    "cancelled": "cancelled_at",
    "expired": "expired_at",
    "failed": "failed_at",
}
LINE_ERRORS = {
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}


def slots(instance) -> int:
    """A loaded instance's ``parallel`` slots (1 when unknown: a remote engine's model)."""
    value = instance.slots
    return value if isinstance(value, int) and value > 0 else 1


def usage_of(body: dict) -> Usage:
    """Token counts of a chat, completion, embedding or Responses body."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return Usage()
    details_in = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    details_out = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    return Usage(
        int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0),
        int(details_in.get("cached_tokens", 0) or 0),
        int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0),
        int(details_out.get("reasoning_tokens", 0) or 0),
    )


class BatchRunner:
    def __init__(
        self, store: BatchStore, endpoints: dict[str, Endpoint], manager, *, poll: float = 0.01
    ):
        self.store = store
        self.endpoints = endpoints
        self.manager = manager
        self.poll = poll
        self.current: str | None = None
        self._cancelled: set[str] = set()
        self._channels: set[EventChannel] = set()
        self._cut: set[EventChannel] = set()  # channels this runner cancelled
        self._busy: dict[str, int] = {}  # batch requests in flight per model
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._freed: asyncio.Event | None = None  # a batch request just finished
        self._task: asyncio.Task | None = None

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(self.endpoints)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start on the running loop; resumes the batches a previous run left active."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()
        self._task = self._loop.create_task(self._main())

    def wake(self) -> None:
        """Something changed (a new batch); callable from any thread."""
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: the server is stopping
                pass

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel in-flight requests without recording them (they run again on the next
        start) and wait for the task to finish."""
        self._stopping = True
        self._cut_all()
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass

    def cancel(self, batch_id: str) -> None:
        """The API marked ``batch_id`` cancelling: stop its requests. Called on the loop."""
        self._cancelled.add(batch_id)
        if self.current == batch_id:
            self._cut_all()
        else:
            self.finalize(batch_id, "cancelled")
        if self._wake is not None:
            self._wake.set()

    def _cut_all(self) -> None:
        for channel in list(self._channels):
            self._cut.add(channel)
            channel.cancel()

    # -- the loop ----------------------------------------------------------------------------
    async def _main(self) -> None:
        while not self._stopping:
            try:
                active = self.store.active_batches()
                if active and not self.store.claim_runner():
                    active = []  # another server runs this folder's batches for now
            except Exception:
                log.exception("lms_jupyter: cannot read the batch store")
                active = []
            if not active:
                assert self._wake is not None  # start() made it
                self._wake.clear()
                try:  # woken by a new batch; a rescan now and then sees another server's
                    await asyncio.wait_for(self._wake.wait(), RESCAN_SECONDS)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                await self._process(active[0])
            except Exception:
                log.exception("lms_jupyter: batch %s failed", active[0])
                self._fail(active[0])

    def _fail(self, batch_id: str) -> None:
        batch = self.store.get_batch(batch_id)
        if batch is not None and batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"] = "failed"
            batch["failed_at"] = int(time.time())
            batch["errors"] = {
                "object": "list",
                "data": [
                    {
                        "code": "server_error",
                        "line": None,
                        "param": None,
                        "message": "The server could not run this batch; see its log.",
                    }
                ],
            }
            self.store.save_batch(batch)

    async def _process(self, batch_id: str) -> None:
        batch = self.store.get_batch(batch_id)
        if batch is None:  # the store's folder went away since the scan: fail clearly
            raise LookupError(f"batch {batch_id} is no longer in the batch store")
        if batch["status"] == "cancelling" or batch_id in self._cancelled:
            self.finalize(batch_id, "cancelled")
            return
        if batch["status"] == "finalizing":
            self.finalize(batch_id, self._intended(batch))
            return
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
            batch["in_progress_at"] = int(time.time())
            self.store.save_batch(batch)
        call = self.endpoints.get(batch["endpoint"])
        pending = self.store.pending_requests(batch_id)
        total, completed, failed, _ = self.store.counts(batch_id)
        if completed or failed:
            log.info(
                "lms_jupyter: resuming batch %s: %d of %d requests already done",
                batch_id,
                completed + failed,
                total,
            )
        else:
            log.info(
                "lms_jupyter: running batch %s (%d requests, %s)",
                batch_id,
                total,
                batch["endpoint"],
            )
        self.current = batch_id
        tasks: set[asyncio.Task] = set()
        expired = False
        try:
            for request in pending:
                if self._expired(batch):
                    expired = True
                    break
                model = await self._slot(batch, request.body.get("model"))
                if model is None:
                    expired = self._expired(batch)
                    break
                tasks = {t for t in tasks if not t.done()}
                tasks.add(asyncio.ensure_future(self._execute(batch_id, call, request, model)))
                if len(tasks) >= MAX_IN_FLIGHT:
                    _done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.current = None
        if self._stopping:
            return  # what finished is stored; the rest runs after the restart
        final = (
            "cancelled" if batch_id in self._cancelled else "expired" if expired else "completed"
        )
        self.finalize(batch_id, final)

    @staticmethod
    def _expired(batch: dict) -> bool:
        expires = batch.get("expires_at")
        return bool(expires and time.time() >= expires)

    def _intended(self, batch: dict) -> str:
        if batch.get("cancelling_at"):
            return "cancelled"
        return (
            "expired"
            if self._expired(batch) and self.store.pending_requests(batch["id"])
            else "completed"
        )

    async def _slot(self, batch: dict, name) -> str | None:
        """Wait until ``name``'s model has room for a batch request (see the module
        docstring); the key its in-flight count is kept under, or None to stop."""
        while True:
            if self._stopping or batch["id"] in self._cancelled or self._expired(batch):
                return None
            instance = None
            if isinstance(name, str) and name:
                try:
                    instance = self.manager.get_loaded(name)
                except Exception:  # noqa: BLE001 - an odd name fails in the request itself
                    instance = None
            key = instance.identifier if instance is not None else str(name)
            mine = self._busy.get(key, 0)
            if instance is None:
                room = mine == 0  # not loaded: the first request loads it, the rest wait
            else:
                parallel = slots(instance)
                queued = instance.queued
                room = mine < max(1, parallel - 1) and queued < parallel
            if room:
                self._busy[key] = mine + 1
                return key
            assert self._freed is not None  # start() made it
            self._freed.clear()
            try:  # re-check as soon as one of ours finishes, else every `poll` seconds
                await asyncio.wait_for(self._freed.wait(), self.poll)
            except asyncio.TimeoutError:
                pass

    async def _execute(
        self, batch_id: str, call: Endpoint | None, request: BatchRequestRow, key: str
    ) -> None:
        channel = EventChannel.for_running_loop()
        self._channels.add(channel)
        try:
            status, body = await self._call(call, request.body, channel)
        finally:
            self._channels.discard(channel)
            self._busy[key] = max(0, self._busy.get(key, 1) - 1)
            assert self._freed is not None  # start() made it
            self._freed.set()
        if self._stopping or channel in self._cut:
            self._cut.discard(channel)
            return  # cut short: no result, so it runs again (or is marked cancelled)
        line = {
            "id": new_id("batch_req_"),
            "custom_id": request.custom_id,
            "response": {"status_code": status, "request_id": new_id("req_"), "body": body},
            "error": None,
        }
        ok = 200 <= status < 300
        await asyncio.to_thread(
            self.store.add_result, batch_id, request.line, ok, line, usage_of(body) if ok else None
        )  # the disk, off the loop

    @staticmethod
    async def _call(call: Endpoint | None, body: dict, channel: EventChannel) -> tuple[int, dict]:
        """(status, body) of one request, exactly as the endpoint answers it."""
        if call is None:
            error = APIError(
                "This server cannot run the batch's endpoint any more.",
                400,
                "invalid_request_error",
                "url",
                "unsupported_endpoint",
            )
            return error.status, error.to_dict()
        body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        try:
            result = await call(body, channel)
        except APIError as failure:
            return failure.status, failure.to_dict()
        except Exception as exc:
            log.exception("lms_jupyter: a batch request failed")
            error = APIError(f"Internal error: {exc}", 500, "server_error")
            return error.status, error.to_dict()
        if isinstance(result, JSONResponse):
            return result.status, result.body
        if isinstance(result, StreamResponse):
            result.cancel()
            error = APIError(
                "The endpoint answered with a stream; batch requests cannot stream.",
                400,
                "invalid_request_error",
                "stream",
            )
            return error.status, error.to_dict()
        return 200, result

    # -- the end -------------------------------------------------------------------------------
    def finalize(self, batch_id: str, final: str) -> None:
        """Write the output and error files and set the final status (one transaction;
        a stop in between leaves ``finalizing``, finished again on the next start)."""
        batch = self.store.get_batch(batch_id)
        if batch is None or batch["status"] in FINAL_AT:
            return
        now = int(time.time())
        if batch["status"] != "finalizing":
            batch["status"] = "finalizing"
            batch["finalizing_at"] = now
            self.store.save_batch(batch)
        lines = self.store.results(batch_id)
        unfinished = self.store.pending_requests(batch_id)
        if final == "completed" and unfinished:
            final = "expired"  # nothing else leaves requests without a result
        code, message = LINE_ERRORS.get(final, LINE_ERRORS["expired"])
        errors = [(line, result) for line, ok, result in lines if not ok]
        errors += [
            (
                r.line,
                {
                    "id": new_id("batch_req_"),
                    "custom_id": r.custom_id,
                    "response": None,
                    "error": {"code": code, "message": message},
                },
            )
            for r in unfinished
        ]
        outputs = [result for _line, ok, result in lines if ok]
        files = []
        if outputs:
            batch["output_file_id"] = new_id("file-")
            files.append((batch["output_file_id"], f"{batch_id}_output.jsonl", _jsonl(outputs)))
        if errors:
            batch["error_file_id"] = new_id("file-")
            files.append(
                (
                    batch["error_file_id"],
                    f"{batch_id}_error.jsonl",
                    _jsonl([result for _line, result in sorted(errors, key=lambda e: e[0])]),
                )
            )
        batch["status"] = final
        batch[FINAL_AT[final]] = now
        self.store.save_batch(batch, files)
        self._cancelled.discard(batch_id)
        total, completed, failed, _ = self.store.counts(batch_id)
        log.info(
            "lms_jupyter: batch %s %s: %d of %d requests succeeded, %d failed",
            batch_id,
            final,
            completed,
            total,
            failed,
        )


def _jsonl(objects: list[dict]) -> bytes:
    import json

    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode("utf-8")
