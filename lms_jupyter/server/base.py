"""Shared handler plumbing: JSON in, OpenAI-format errors out, SSE streaming."""
from __future__ import annotations

import json

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado.iostream import StreamClosedError

from .. import logstream
from ..api.batch_requests import Upload
from ..api.results import BytesResponse, JSONResponse, StreamResponse
from ..errors import APIError, bad_request
from .services import Services

AUTH_RESOURCE = "lms_jupyter"


class LMSHandler(ExtensionHandlerMixin, APIHandler):
    """Base for every lms_jupyter endpoint."""

    auth_resource = AUTH_RESOURCE
    _cancel = None

    @property
    def services(self) -> Services:
        return self.settings[Services.SETTINGS_KEY]

    def read_json(self) -> dict:
        raw = self.request.body
        if not raw:
            raise bad_request("The request body is empty; send a JSON object.")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        self._log_model = body.get("model") if isinstance(body.get("model"), str) else None
        return body

    def read_upload(self) -> Upload:
        """A multipart/form-data body (Tornado parses it): the ``file`` part and the
        other fields. Anything else gives an Upload without content (the API's 400)."""
        parts = self.request.files.get("file") or []
        fields = {name: values[0].decode("utf-8", "replace")
                  for name, values in self.request.body_arguments.items() if values}
        if not parts:
            return Upload(None, None, fields)
        return Upload(parts[0].filename, parts[0].body, fields)

    def on_finish(self) -> None:
        """Every request on ``lms log stream --source server`` (path only: no secrets)."""
        super().on_finish()
        logstream.log_request(self.request.method, self.request.path, self.get_status(),
                              self.request.request_time(), getattr(self, "_log_model", None))

    def error_body(self, error: APIError) -> dict:
        return error.to_dict()

    def write_api_error(self, error: APIError) -> None:
        self.set_status(error.status if 400 <= error.status < 600 else 500)
        self.finish(json.dumps(self.error_body(error)))

    def write_error(self, status_code: int, **kwargs) -> None:
        """Tornado's own errors (auth, XSRF, 404, crashes) in the API's error format."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = getattr(exc, "log_message", None) or self._reason
        if status_code == 403 and not self.current_user:
            self.set_status(401)
            error = APIError("Authentication required: send the Jupyter token as "
                             "'Authorization: Bearer <token>'.", 401, "invalid_request_error",
                             None, "invalid_api_key")
        elif status_code >= 500:
            error = APIError("Internal server error.", status_code, "server_error")
        else:
            error = APIError(str(reason), status_code, "invalid_request_error")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.error_body(error)))

    async def send_response(self, result) -> None:
        if isinstance(result, JSONResponse):
            self.set_status(result.status)
            self.finish(json.dumps(result.body))
        elif isinstance(result, StreamResponse):
            await self.send_stream(result)
        elif isinstance(result, BytesResponse):
            self.set_status(result.status)
            self.set_header("Content-Type", result.media_type)
            self.finish(result.content)
        else:
            self.finish(json.dumps(result))

    async def send_stream(self, stream: StreamResponse) -> None:
        self._cancel = stream.cancel
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        events = stream.events
        try:
            async for batch in events:
                if isinstance(batch, dict):
                    batch = [batch]
                if not batch:
                    continue
                self.write("".join(self.format_event(event) for event in batch))
                await self.flush()
            if stream.done_marker:
                self.write(f"data: {stream.done_marker}\n\n")
            await self.flush()
        except StreamClosedError:
            stream.cancel()
            return
        except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band
            stream.cancel()
            error = exc if isinstance(exc, APIError) else APIError(
                f"Generation failed: {exc}", 500, "server_error")
            self.log.warning("lms_jupyter stream failed: %s", exc)
            try:
                self.write(f"data: {json.dumps(self.error_body(error))}\n\n")
                self.write("data: [DONE]\n\n")
                await self.flush()
            except StreamClosedError:
                return
        finally:
            await events.aclose()
        self.finish(set_content_type="text/event-stream; charset=utf-8")

    @staticmethod
    def format_event(event: dict) -> str:
        name = event.pop("__event__", None) if isinstance(event, dict) else None
        prefix = f"event: {name}\n" if name else ""
        return f"{prefix}data: {json.dumps(event)}\n\n"

    def on_connection_close(self) -> None:
        if self._cancel is not None:
            self._cancel()

    async def guarded(self, make_result) -> None:
        """Run an API call, turning every failure into a clean API error response."""
        try:
            result = await make_result()
        except APIError as error:
            self.write_api_error(error)
            return
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client
            self.log.exception("lms_jupyter request failed")
            self.write_api_error(APIError(f"Internal error: {exc}", 500, "server_error"))
            return
        await self.send_response(result)
