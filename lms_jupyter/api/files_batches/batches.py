"""OpenAI's Batch API (``/v1/batches``): create, retrieve, list, cancel.

A batch names an uploaded JSONL file (purpose ``batch``) of requests to one endpoint.
Creating it checks every line's envelope (``custom_id``, ``method``, ``url``, ``body``)
and stores the requests; :class:`~.batch_runner.BatchRunner` runs them at low priority
and writes the output and error files when it is done. The objects follow the
``openai`` client's ``Batch`` type: ``status`` (validating, failed, in_progress,
finalizing, completed, expired, cancelling, cancelled), the timestamps of each step,
``request_counts``, ``usage``, ``output_file_id``, ``error_file_id``.

Cancelling: a running batch goes to ``cancelling`` (its running requests stop within a
token) and then ``cancelled``, with the finished requests in the output file and the
others in the error file as ``batch_cancelled``; cancelling a finished batch is a 409.
"""

from __future__ import annotations

import time

from lms_jupyter.api.files_batches import requests as wire
from lms_jupyter.api.files_batches.files import file_not_found, page
from lms_jupyter.api.files_batches.runner import BatchRunner
from lms_jupyter.api.files_batches.store import BatchRequestRow, BatchStore, new_id
from lms_jupyter.api.results import JSONResponse
from lms_jupyter.errors import APIError, bad_request

MAX_LIST_LIMIT = 100
FIELDS = (
    "id",
    "object",
    "endpoint",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "metadata",
    "model",
)


def batch_not_found(batch_id: str) -> APIError:
    return APIError(
        f"No such batch: {batch_id}", 404, "invalid_request_error", "batch_id", "batch_not_found"
    )


class BatchesAPI:
    def __init__(self, store: BatchStore, runner: BatchRunner):
        self.store = store
        self.runner = runner

    def view(self, batch: dict) -> dict:
        """The stored object with its live ``request_counts`` and ``usage``."""
        out = {name: batch.get(name) for name in FIELDS}
        total, completed, failed, usage = self.store.counts(batch["id"])
        out["request_counts"] = {"total": total, "completed": completed, "failed": failed}
        out["usage"] = usage.as_openai()
        return out

    def create(self, body) -> JSONResponse:
        """POST /v1/batches (blocking: reads the input file; the route runs it on a thread)."""
        checked = wire.batch_create(body, self.runner.available)
        file = self.store.get_file(checked.input_file_id)
        if file is None:
            raise file_not_found(checked.input_file_id)
        if file["purpose"] != "batch":
            raise bad_request(
                f"The file {checked.input_file_id} has purpose "
                f"{file['purpose']!r}; a batch needs a file uploaded with "
                "purpose 'batch'.",
                "input_file_id",
            )
        content = self.store.file_content(checked.input_file_id) or b""
        lines, errors = wire.batch_lines(content, checked.endpoint)
        now = int(time.time())
        batch: dict[str, object] = {name: None for name in FIELDS}
        batch.update(
            id=new_id("batch_"),
            object="batch",
            endpoint=checked.endpoint,
            input_file_id=checked.input_file_id,
            completion_window=checked.completion_window,
            status="validating",
            created_at=now,
            expires_at=now + checked.window_seconds,
            metadata=checked.metadata,
        )
        if lines:
            model = lines[0][2].get("model")
            batch["model"] = model if isinstance(model, str) else None
        if errors or not lines:
            batch.update(
                status="failed",
                failed_at=now,
                errors={
                    "object": "list",
                    "data": errors
                    or [
                        {
                            "code": "empty_file",
                            "line": None,
                            "param": None,
                            "message": "The input file has no requests.",
                        }
                    ],
                },
            )
            self.store.add_batch(batch, [])
            return JSONResponse(self.view(batch))
        self.store.add_batch(batch, [BatchRequestRow(n, cid, b) for n, cid, b in lines])
        self.runner.wake()
        return JSONResponse(self.view(batch))

    def retrieve(self, batch_id: str) -> dict:
        batch = self.store.get_batch(batch_id)
        if batch is None:
            raise batch_not_found(batch_id)
        return self.view(batch)

    def list(self, query: dict) -> dict:
        checked = wire.list_query(query, max_limit=MAX_LIST_LIMIT)
        if not query.get("limit"):
            checked.limit = wire.DEFAULT_LIST_LIMIT
        return page([self.view(b) for b in self.store.list_batches()], checked)

    def cancel(self, batch_id: str) -> dict:
        """POST /v1/batches/{id}/cancel (on the event loop, like the runner)."""
        batch = self.store.get_batch(batch_id)
        if batch is None:
            raise batch_not_found(batch_id)
        status = batch["status"]
        if status in ("cancelling", "cancelled"):
            return self.view(batch)
        if status in ("completed", "failed", "expired", "finalizing"):
            raise APIError(
                f"Cannot cancel a batch with status '{status}'.",
                409,
                "invalid_request_error",
                "batch_id",
                "batch_not_cancellable",
            )
        batch["status"] = "cancelling"
        batch["cancelling_at"] = int(time.time())
        self.store.save_batch(batch)
        self.runner.cancel(batch_id)
        saved = self.store.get_batch(batch_id)
        if saved is None:  # the store's folder went away meanwhile
            raise batch_not_found(batch_id)
        return self.view(saved)
