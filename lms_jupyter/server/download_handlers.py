"""LM Studio 0.4's download API: ``POST {base}lms/api/v1/models/download`` starts a job,
``GET .../models/download/status/{job_id}`` reports it.

Resolving a name asks the Hub for metadata, so it runs on a thread; the download itself
runs on the job's own thread, so several jobs proceed at once and the event loop never
waits on the network or the disk.
"""
from __future__ import annotations

from urllib.parse import unquote

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..engine.channel import run_blocking
from ..errors import APIError, bad_request
from ..models.downloads import DownloadError, DownloadJobs, memory_budget
from .base import LMSHandler

SETTINGS_KEY = "lms_jupyter_downloads"


def api_error(error: DownloadError) -> APIError:
    return APIError(error.message, error.status, "invalid_request_error", "model", error.code)


class _DownloadHandler(LMSHandler):
    """Errors in LM Studio's /api/v1 error object."""

    @property
    def jobs(self) -> DownloadJobs:
        jobs = self.settings.get(SETTINGS_KEY)
        if jobs is None:
            manager = self.services.manager
            jobs = self.settings.setdefault(SETTINGS_KEY, DownloadJobs(
                manager.catalog.models_dir, available_bytes=memory_budget(manager)))
        return jobs

    def error_body(self, error: APIError) -> dict:
        if error.code in ("model_not_found", "job_not_found"):
            kind = error.code
        elif error.status >= 500:
            kind = "internal_error"
        else:
            kind = "invalid_request"
        return {"error": {"type": kind, "message": error.message, "code": error.code,
                          "param": error.param}}


class DownloadHandler(_DownloadHandler):
    @web.authenticated
    @authorized
    async def post(self):
        async def call():
            body = self.read_json()
            model = body.get("model")
            if not isinstance(model, str) or not model.strip():
                raise bad_request("'model' is required: a model name, publisher/repo or a "
                                  "Hugging Face URL.", "model", "missing_required_parameter")
            quantization = body.get("quantization")
            if quantization is not None and not isinstance(quantization, str):
                raise bad_request("'quantization' must be a string.", "quantization")
            try:
                return await run_blocking(self.jobs.start, model.strip(), quantization)
            except DownloadError as exc:
                raise api_error(exc) from None

        await self.guarded(call)


class DownloadStatusHandler(_DownloadHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str):
        async def call():
            try:
                return self.jobs.status(unquote(job_id))
            except DownloadError as exc:
                raise APIError(exc.message, exc.status, "invalid_request_error", "job_id",
                               exc.code) from None

        await self.guarded(call)


def download_handlers(prefix: str) -> list[tuple]:
    v1 = rf"/{prefix}/api/v1"
    return [
        (rf"{v1}/models/download/?", DownloadHandler),
        (rf"{v1}/models/download/status/(?P<job_id>[^/]+)/?", DownloadStatusHandler),
    ]
