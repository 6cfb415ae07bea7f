"""Shared handler plumbing: JSON in, OpenAI-format errors out, SSE streaming, and the
two things every /lms request passes first: the body-size limit and scoped API tokens.

Scoped tokens (``Authorization: Bearer sk-lmj-...``, see :mod:`..security.tokens`) are
resolved here, in ``prepare()`` before jupyter_server's own authentication, to a
restricted :class:`~jupyter_server.auth.User` marked token-authenticated (so XSRF and
origin checks treat it like the Jupyter token, as bearer clients need). Only handlers
derived from this class do that, so every other Jupyter route (contents, kernels,
sessions, terminals, ...) never honours a scoped token. ``@web.authenticated`` and
``@authorized`` then run as usual: the user goes through Jupyter's Authorizer like any
other. A credential in our format that is unknown, revoked or expired is a 401 at once,
whatever cookie comes with it; so is any other bearer token that Jupyter did not accept.

Bodies are streamed in (``stream_request_body``) so that ``prepare()`` sees the headers
before the body: a Content-Length over ``LMSJupyterApp.max_request_mb`` is a 413 without
reading a byte of it, and a chunked body is cut off with a 413 once it passes the limit
(Tornado's own ``max_body_size`` is server-wide and answers with a bare 400).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

from jupyter_server.auth import User
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import httputil, web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from lms_jupyter import logs as logstream
from lms_jupyter.api.files_batches.requests import Upload
from lms_jupyter.api.results import BytesResponse, JSONResponse, StreamResponse
from lms_jupyter.errors import APIError, bad_request, invalid_api_key
from lms_jupyter.security.tokens import TokenRecord, TokenStoreError, looks_scoped
from lms_jupyter.server import sse
from lms_jupyter.server.services import Services

AUTH_RESOURCE = "lms_jupyter"
# jupyter_server's own pattern (IdentityProvider.auth_header_pat)
AUTH_HEADER = re.compile(r"(token|bearer)\s+(.+)", re.IGNORECASE)
SCOPED_USER_PREFIX = "lms-api-token:"
DRAIN_LIMIT = 2**20  # bodies up to this size are read before an early error is answered


def _reject_constant(name: str):
    """NaN and Infinity are not JSON (Python's parser accepts them)."""
    raise ValueError(f"{name} is not a JSON value")


class AuthFailed(web.HTTPError):
    """401 with a message for the client (OpenAI's ``invalid_api_key``)."""

    def __init__(self, message: str):
        super().__init__(401, message)


@web.stream_request_body
class LMSHandler(ExtensionHandlerMixin, APIHandler):
    """Base for every lms_jupyter endpoint."""

    auth_resource = AUTH_RESOURCE
    _cancel: Callable[[], None] | None = None
    scoped_token: TokenRecord | None = None  # set when a scoped API token authenticated
    _body_parts: list | None = None
    _body_size = 0
    _body_refused = False

    @property
    def services(self) -> Services:
        return self.settings[Services.SETTINGS_KEY]

    # -- first: size limit, then who is asking -------------------------------------------------
    async def prepare(self):  # type: ignore[override]  # as jupyter_server's APIHandler does
        try:
            await self._prepare()
        except web.HTTPError:
            await self._drain_small_body()
            raise

    async def _drain_small_body(self) -> None:
        """Read (and drop) a small body before answering an error found in ``prepare()``.

        With a streamed body, Tornado reads it only after ``prepare()``; answering first
        makes Tornado close the connection (even with no body at all), so a keep-alive
        client's next request, or our answer itself, meets a reset. So unless the body is
        large or chunked, let Tornado read it first (Tornado's private
        ``_prepared_future``/``_body_future`` pair, stable since Tornado 4), then answer.
        """
        headers = self.request.headers
        declared = headers.get("Content-Length", "0").strip()
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if self._body_refused or chunked or not declared.isdigit() or int(declared) > DRAIN_LIMIT:
            return
        prepared = getattr(self, "_prepared_future", None)
        body_done = getattr(self.request, "_body_future", None)
        if prepared is None or body_done is None:
            return
        self._body_parts = None  # drop what arrives
        if not prepared.done():
            prepared.set_result(None)
        try:
            await body_done
        except Exception:  # noqa: BLE001 - the client left: nothing to answer anyway
            pass

    async def _prepare(self):
        self._check_declared_size()
        credential = self._header_credential()
        scoped_user = None
        if credential is not None and looks_scoped(credential):
            scoped_user = self._scoped_user(credential)
            # jupyter_server's IdentityProvider returns an already-set user as is
            self.current_user = self._jupyter_current_user = scoped_user
            self._token_authenticated = True
        await super().prepare()
        if scoped_user is not None:
            self.current_user = self._jupyter_current_user = scoped_user
        elif credential is not None and self._header_token_ignored():
            raise AuthFailed(
                "The bearer token is not valid for this server: send the "
                "Jupyter token or a scoped API token (sk-lmj-...)."
            )

    def _header_credential(self) -> str | None:
        self._api_key_as_bearer()
        match = AUTH_HEADER.match(self.request.headers.get("Authorization", ""))
        return match.group(2).strip() if match else None

    def _api_key_as_bearer(self) -> None:
        """Anthropic clients send ``x-api-key``: with no Authorization header, it counts as
        ``Authorization: Bearer <key>`` (the Jupyter token or a scoped token), for these
        routes only, so Jupyter's own check and ours see one credential."""
        headers = self.request.headers
        key = headers.get("x-api-key", "").strip()
        if key and not headers.get("Authorization"):
            headers["Authorization"] = f"Bearer {key}"

    def _scoped_user(self, credential: str) -> User:
        try:
            record = self.services.tokens.store.verify(credential)
        except TokenStoreError as exc:
            self.log.error("lms_jupyter: %s", exc)
            raise web.HTTPError(500, "The API token store cannot be read.") from None
        if record is None:
            raise AuthFailed("The API token is unknown, revoked or expired.")
        self.scoped_token = record
        return User(
            username=f"{SCOPED_USER_PREFIX}{record.id}",
            name=record.name,
            display_name=f"API token {record.name}",
        )

    def _header_token_ignored(self) -> bool:
        """A token in the Authorization header that Jupyter did not accept, while the
        request got in anyway (a login cookie): the explicit credential is wrong, say so.
        Judged only for jupyter_server's own identity providers, whose token check we know."""
        provider = self.identity_provider
        if not type(provider).__module__.startswith("jupyter_server.") or not provider.auth_enabled:
            return False
        return bool(self.current_user) and not self.token_authenticated

    # -- body: streamed in, bounded ---------------------------------------------------------
    def body_limit(self) -> int:
        """The largest body this request may send (an upload route allows more)."""
        return self.services.max_request_bytes

    def _check_declared_size(self) -> None:
        limit = self.body_limit()
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            self._body_refused = True
            raise web.HTTPError(413, self._too_large_message(int(declared)))
        # Tornado's own check as a backstop for chunked bodies
        if isinstance(self.request.connection, HTTP1Connection):  # what Tornado serves
            self.request.connection.set_max_body_size(limit + 2**16)
        self._body_parts = []

    def _too_large_message(self, size: int | None = None) -> str:
        limit = self.body_limit()
        got = f" ({size} bytes)" if size is not None else ""
        setting = (
            " (LMSJupyterApp.max_request_mb)" if limit == self.services.max_request_bytes else ""
        )
        return f"The request body is too large{got}: the limit is {limit} bytes{setting}."

    def data_received(self, chunk: bytes) -> None:
        if self._body_refused or self._body_parts is None:
            return
        self._body_size += len(chunk)
        if self._body_size > self.body_limit():
            self._body_refused = True
            self._body_parts = None
            self.send_error(
                413, exc_info=(web.HTTPError, web.HTTPError(413, self._too_large_message()), None)
            )
            return
        self._body_parts.append(chunk)

    def body_bytes(self) -> bytes:
        if self._body_parts is not None and not self.request.body:
            self.request.body = b"".join(self._body_parts)
            self._body_parts = []
        return self.request.body

    def read_json(self) -> dict:
        raw = self.body_bytes()
        if not raw:
            raise bad_request("The request body is empty; send a JSON object.")
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        self._log_model = body.get("model") if isinstance(body.get("model"), str) else None
        return body

    def read_upload(self) -> Upload:
        """A multipart/form-data body (Tornado parses it): the ``file`` part and the
        other fields. Anything else gives an Upload without content (the API's 400)."""
        # the body was streamed in (for the size limit), so Tornado did not parse it
        arguments: dict = {}
        files: dict = {}
        try:
            httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""),
                self.body_bytes(),
                arguments,
                files,
                self.request.headers,
            )
        except httputil.HTTPInputError as exc:
            raise bad_request(f"The multipart body cannot be read: {exc}", "file") from None
        parts = files.get("file") or []
        fields = {
            name: values[0].decode("utf-8", "replace")
            for name, values in arguments.items()
            if values
        }
        if not parts:
            return Upload(None, None, fields)
        return Upload(parts[0].filename, parts[0].body, fields)

    def on_finish(self) -> None:
        """Every request on ``lms log stream --source server`` (path only: no secrets)."""
        super().on_finish()
        logstream.log_request(
            self.request.method,
            self.request.path,
            self.get_status(),
            self.request.request_time(),
            getattr(self, "_log_model", None),
        )

    def error_body(self, error: APIError) -> dict:
        return error.to_dict()

    def write_api_error(self, error: APIError) -> None:
        self.set_status(error.status if 400 <= error.status < 600 else 500)
        for name, value in getattr(error, "headers", {}).items():
            self.set_header(name, value)
        self.finish(json.dumps(self.error_body(error)))

    def write_error(self, status_code: int, **kwargs) -> None:
        """Tornado's own errors (auth, XSRF, 404, crashes) in the API's error format."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = getattr(exc, "log_message", None) or self._reason
        user = getattr(self, "_jupyter_current_user", None)  # None before authentication
        if isinstance(exc, AuthFailed) or status_code == 403 and not user:
            self.set_status(401)
            message = (
                exc.log_message
                if isinstance(exc, AuthFailed)
                else (
                    "Authentication required: send the Jupyter token or a scoped API token as "
                    "'Authorization: Bearer <token>'."
                )
            )
            error = invalid_api_key(str(message))
        elif status_code >= 500:
            message = (
                reason if isinstance(exc, web.HTTPError) and reason else "Internal server error."
            )
            error = APIError(str(message), status_code, "server_error")
        else:
            codes = {413: "request_too_large", 405: "method_not_allowed", 403: "forbidden"}
            error = APIError(
                str(reason), status_code, "invalid_request_error", None, codes.get(status_code)
            )
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
        finished = asyncio.get_running_loop().create_future()
        self.services.streams.add(finished)  # shutdown waits for it to end cleanly
        try:
            await self._send_stream(stream)
        finally:
            self.services.streams.discard(finished)
            finished.set_result(None)

    async def _send_stream(self, stream: StreamResponse) -> None:
        self._cancel = stream.cancel
        sse.open_stream(self)
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
                self.write(sse.frame(stream.done_marker))
            await self.flush()
        except StreamClosedError:
            stream.cancel()
            return
        except Exception as exc:  # noqa: BLE001 - headers are sent: report in-band
            stream.cancel()
            error = (
                exc
                if isinstance(exc, APIError)
                else APIError(f"Generation failed: {exc}", 500, "server_error")
            )
            self.log.warning("lms_jupyter stream failed: %s", exc)
            try:
                self.write(sse.frame(self.error_body(error)) + sse.frame("[DONE]"))
                await self.flush()
            except StreamClosedError:
                return
        finally:
            await events.aclose()
        self.finish(set_content_type=sse.CONTENT_TYPE)

    @staticmethod
    def format_event(event: dict) -> str:
        """One SSE event: ``{"__event__": name, ...}`` adds ``event: name``; and
        ``{"__comment__": text}`` is a comment line (a heartbeat that clients ignore)."""
        if isinstance(event, dict) and "__comment__" in event:
            return f": {event['__comment__']}\n\n"
        name = event.pop("__event__", None) if isinstance(event, dict) else None
        return sse.frame(event, name)

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
        except Exception as exc:
            self.log.exception("lms_jupyter request failed")
            self.write_api_error(APIError(f"Internal error: {exc}", 500, "server_error"))
            return
        await self.send_response(result)
