"""The two handler classes behind every route in :mod:`.routes`.

``EndpointHandler`` serves whatever API call its route names: it reads the JSON body,
runs blocking calls on a thread, and sends the result as JSON or SSE. Authentication
and authorisation are jupyter_server's (``@web.authenticated`` + ``@authorized``), so
every route accepts exactly what the rest of Jupyter accepts, plus scoped API tokens
(resolved in :class:`.base.LMSHandler`), which an ``Endpoint(scoped=False)`` refuses.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from lms_jupyter.api.files_batches.requests import MAX_FILE_BYTES
from lms_jupyter.engine.channel import EventChannel, run_blocking
from lms_jupyter.errors import APIError
from lms_jupyter.server.base import LMSHandler


class EndpointHandler(LMSHandler):
    """Serves the ``Endpoint`` of its route for each HTTP method."""

    # Tornado passes each route's own keyword arguments: initialize() differs by design
    def initialize(  # type: ignore[override]
        self,
        endpoints: dict,
        error_body,
        name: str | None = None,
    ) -> None:
        super().initialize(name=name)  # type: ignore[arg-type]  # see NotFoundHandler
        self.endpoints = endpoints
        self._error_body = error_body

    def error_body(self, error: APIError) -> dict:
        return self._error_body(error)

    @web.authenticated
    @authorized
    async def get(self, *args, **kwargs):
        await self._serve("get", kwargs)

    @web.authenticated
    @authorized
    async def post(self, *args, **kwargs):
        await self._serve("post", kwargs)

    @web.authenticated
    @authorized
    async def delete(self, *args, **kwargs):
        await self._serve("delete", kwargs)

    def body_limit(self) -> int:
        """Uploads (``/v1/files``) may be as large as a batch input file."""
        endpoint = self.endpoints.get(self.request.method.lower())
        if endpoint is not None and endpoint.upload:
            return max(self.services.max_request_bytes, MAX_FILE_BYTES)
        return super().body_limit()

    async def _serve(self, method: str, path_args: dict) -> None:
        endpoint = self.endpoints.get(method)
        if endpoint is None:
            raise web.HTTPError(405)
        if self.scoped_token is not None and not endpoint.scoped:
            self.write_api_error(
                APIError(
                    "A scoped API token cannot manage API tokens: use the Jupyter token or a "
                    "logged-in Jupyter session.",
                    403,
                    "invalid_request_error",
                    None,
                    "insufficient_permissions",
                )
            )
            return
        channel = None
        if endpoint.stream:
            channel = EventChannel.for_running_loop()
            self._cancel = channel.cancel

        async def call():
            args = [self.services, *path_args.values()]
            if endpoint.body:
                args.append(self.read_json())
            if endpoint.upload:
                args.append(self.read_upload())
            if endpoint.query:
                args.append({k: self.get_query_argument(k) for k in self.request.query_arguments})
            if endpoint.blocking:
                return await run_blocking(endpoint.call, *args)
            result = (
                endpoint.call(*args, channel=channel) if endpoint.stream else endpoint.call(*args)
            )
            if hasattr(result, "__await__"):
                result = await result
            return result

        await self.guarded(call)


class NotFoundHandler(LMSHandler):
    """Any other path under the prefix: a JSON 404 that SDKs can show, not Jupyter's
    HTML page."""

    def initialize(  # type: ignore[override]  # Tornado's route kwargs
        self,
        error_body,
        name: str | None = None,
    ) -> None:
        # jupyter_server's ExtensionApp always passes its name; None only outside one
        super().initialize(name=name)  # type: ignore[arg-type]
        self._error_body = error_body

    def error_body(self, error: APIError) -> dict:
        return self._error_body(error)

    @web.authenticated
    def _not_found(self, *args, **kwargs) -> None:
        self.write_api_error(
            APIError(
                f"Unknown URL {self.request.method} {self.request.path}. The routes are listed "
                "in the lms-jupyter README.",
                404,
                "invalid_request_error",
                None,
                "unknown_url",
            )
        )

    get = post = put = delete = patch = _not_found
