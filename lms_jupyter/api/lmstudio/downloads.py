"""LM Studio 0.4's download API as plain Python: start a download job, report its status.

Resolving a name asks the Hub for metadata (blocking: the server runs :meth:`start` on a
thread); the download itself runs on the job's own thread, so several jobs proceed at
once and the event loop never waits on the network or the disk.
"""

from __future__ import annotations

from lms_jupyter.api import fields
from lms_jupyter.api.spec import lmstudio as lms_spec
from lms_jupyter.errors import APIError, bad_request
from lms_jupyter.models.downloads import DownloadJobs
from lms_jupyter.models.hub import DownloadError, memory_budget


class DownloadAPI:
    """``POST /api/v1/models/download`` and ``GET .../download/status/{job_id}``."""

    def __init__(self, manager):
        self.jobs = DownloadJobs(manager.catalog.models_dir, available_bytes=memory_budget(manager))

    def start(self, body) -> dict:
        body = fields.require_object(body)
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise bad_request(
                "'model' is required: a model name, publisher/repo or a Hugging Face URL.",
                "model",
                "missing_required_parameter",
            )
        quantization = lms_spec.DOWNLOAD["quantization"].read(body)
        try:
            return self.jobs.start(model.strip(), quantization)
        except DownloadError as exc:
            raise APIError(
                exc.message, exc.status, "invalid_request_error", "model", exc.code
            ) from None

    def status(self, job_id: str) -> dict:
        try:
            return self.jobs.status(job_id)
        except DownloadError as exc:
            raise APIError(
                exc.message, exc.status, "invalid_request_error", "job_id", exc.code
            ) from None
