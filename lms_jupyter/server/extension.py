"""The ExtensionApp: traitlets config, one shared model manager, unload on shutdown."""

from __future__ import annotations

import asyncio
import logging
import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, List, Unicode

from lms_jupyter import logs as logstream
from lms_jupyter.api.files_batches.batches import BatchesAPI
from lms_jupyter.api.files_batches.files import FilesAPI
from lms_jupyter.api.files_batches.runner import BatchRunner
from lms_jupyter.api.files_batches.store import BatchStore
from lms_jupyter.api.lmstudio.downloads import DownloadAPI
from lms_jupyter.api.lmstudio.rest import LMStudioAPI
from lms_jupyter.api.lmstudio.tokens import TokenAPI
from lms_jupyter.api.openai.endpoints import OpenAICompatAPI
from lms_jupyter.api.responses.endpoint import ResponsesAPI
from lms_jupyter.api.responses.mcp_tools import McpPolicy, url_list
from lms_jupyter.api.responses.store import ResponseStore
from lms_jupyter.client.discovery import SERVER_ENV
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.errors import APIError
from lms_jupyter.models.presets import PresetStore, default_presets_dir
from lms_jupyter.security.tokens import TokenStore
from lms_jupyter.server.routes import lms_handlers
from lms_jupyter.server.services import Services, batch_endpoints


class LMSJupyterApp(ExtensionApp):
    name = "lms_jupyter"
    description = "LM Studio's developer API on the Jupyter server port."
    classes = [ModelManager]  # c.ModelManager.* configures the models (see --help-all)

    url_prefix = Unicode(
        "lms", config=True, help="Path under the server's base_url where the API is mounted."
    )
    preload = List(Unicode(), config=True, help="Models to load when the server starts.")
    presets_dir = Unicode(
        "",
        config=True,
        help="Folder of preset JSON files (default: $LMS_JUPYTER_PRESETS_DIR "
        "or ~/.lmstudio/config-presets).",
    )
    batch_dir = Unicode(
        "",
        config=True,
        help="Folder for uploaded files and batch jobs (default: "
        "<jupyter data dir>/lms_jupyter/batches).",
    )
    reasoning_field = Enum(
        ["both", "reasoning", "reasoning_content", "inline"],
        "both",
        config=True,
        help="Where chat responses put a model's reasoning: 'reasoning' "
        "(OpenAI o-series style), 'reasoning_content' (DeepSeek style), "
        "'both', or 'inline' (left in content as <think>...</think>).",
    )
    responses_db = Unicode(
        "",
        config=True,
        help="SQLite file of stored responses (/v1/responses, "
        "previous_response_id); default: <jupyter data dir>/"
        "lms_jupyter/responses.sqlite.",
    )
    allow_remote_mcp = Bool(
        False,
        config=True,
        help="Let /v1/responses requests name remote MCP servers "
        '({"type": "mcp", "server_url": ...} tools) that this '
        "server then calls. Off by default: the server would fetch "
        "URLs chosen by any client holding the token.",
    )
    remote_mcp_allowed_urls = List(
        Unicode(),
        config=True,
        help="URL prefixes of MCP servers allowed even though they "
        "resolve to loopback, private or link-local addresses "
        "(e.g. ['http://127.0.0.1:8001/mcp']); other such URLs "
        "are refused. A prefix without a port allows every "
        "port of its host.",
    )
    remote_mcp_timeout = Float(
        30.0,
        min=0.5,
        config=True,
        help="Seconds one MCP operation (connect, list tools or call "
        "a tool) may take before it fails.",
    )
    max_request_mb = Float(
        16,
        config=True,
        help="Largest request body in MiB; a larger one gets 413 before it is read.",
    )
    api_tokens_file = Unicode(
        "",
        config=True,
        help="Where scoped API tokens are kept, hashed (default: "
        "<jupyter data dir>/lms_jupyter/api_tokens.json).",
    )

    @property
    def prefix(self) -> str:
        return self.url_prefix.strip("/") or "lms"

    def initialize_settings(self):
        # the core's module loggers (lms_jupyter.*) write to the server's log, at its level,
        # as jupyter_server does for tornado's loggers
        package_log = logging.getLogger("lms_jupyter")
        package_log.parent = self.log
        package_log.propagate = True
        package_log.setLevel(self.log.level)
        manager = ModelManager(parent=self, log=self.log)
        self.presets = PresetStore(self.presets_dir or default_presets_dir())
        self.services = Services(
            manager=manager,
            openai=OpenAICompatAPI(manager, self.presets, reasoning_field=self.reasoning_field),
            lmstudio=LMStudioAPI(manager, self.presets, reasoning_field=self.reasoning_field),
            downloads=DownloadAPI(manager),
            responses=ResponsesAPI(
                manager,
                self.presets,
                ResponseStore(self.responses_db or None),
                McpPolicy(
                    self.allow_remote_mcp,
                    url_list(self.remote_mcp_allowed_urls),
                    self.remote_mcp_timeout,
                ),
            ),
            tokens=TokenAPI(TokenStore(self.api_tokens_file or None)),
            max_request_bytes=int(self.max_request_mb * 2**20),
        )
        from lms_jupyter.api.anthropic import AnthropicAPI
        from lms_jupyter.api.lmstudio.chat import LMStudioChatAPI

        self.services.anthropic = AnthropicAPI(manager)
        self.services.lmstudio_chat = LMStudioChatAPI(self.services.responses)
        from lms_jupyter.server.openapi import openapi_document

        self.services.openapi = openapi_document(self.prefix)
        self._init_batches()
        self.settings[Services.SETTINGS_KEY] = self.services

    def _init_batches(self) -> None:
        """Files and batches share one store; the runner starts with the server."""
        store = BatchStore(self.batch_dir or None)
        self.batch_runner = BatchRunner(
            store, batch_endpoints(self.services), self.services.manager
        )
        self.services.files = FilesAPI(store)
        self.services.batches = BatchesAPI(store, self.batch_runner)

    def initialize_handlers(self):
        self.handlers.extend(lms_handlers(self.prefix))

    async def _start_jupyter_server_extension(self, serverapp):
        manager = self.services.manager
        folder = manager.catalog.models_dir
        models = manager.catalog.models()
        root = f"{serverapp.connection_url.rstrip('/')}/{self.prefix}"
        self.log.info(
            "lms_jupyter: models folder %s (%s); %d model(s): %s",
            folder,
            "exists" if folder.is_dir() else "does not exist yet",
            len(models),
            ", ".join(m.key for m in models)
            or "none yet (the starter model is fetched on first use)",
        )
        token = getattr(serverapp.identity_provider, "token", "") or ""
        key = token if token else "(any string: this server has no token)"
        self.log.info(
            "lms_jupyter: OpenAI-compatible API at %s/v1 and LM Studio's REST API at "
            "%s/api/v0 and /api/v1; clients use api_key %s (the Jupyter token, sent as "
            "'Authorization: Bearer <token>'). Stop the server with Ctrl+C twice.",
            root,
            root,
            key,
        )
        logstream.server_started(f"{serverapp.base_url}{self.prefix}/", folder, [token or None])
        # kernels (and terminals) this server starts inherit its environment: this tells
        # their lms_jupyter to use this server's models, one model set (kernel.runtime)
        os.environ[SERVER_ENV] = root
        self.batch_runner.start()  # resumes batches a previous run left unfinished
        if self.preload or (not models and manager.fetch_starter):
            # loads and the starter model's first fetch take seconds: run them off the event
            # loop so the server answers meanwhile
            asyncio.get_running_loop().create_task(self._preload())

    async def _preload(self) -> None:
        manager = self.services.manager
        if not self.preload:  # an empty models folder: have the starter model ready
            try:
                await asyncio.to_thread(manager.ensure_starter)
            except APIError as exc:
                self.log.warning("lms_jupyter: %s", exc.message)
        for model in self.preload:
            try:
                await asyncio.to_thread(manager.load, LoadRequest(model))
                self.log.info("lms_jupyter: preloaded %s", model)
            except APIError as exc:
                self.log.error("lms_jupyter: could not preload %r: %s", model, exc.message)
            except Exception:
                self.log.exception("lms_jupyter: could not preload %r", model)

    async def stop_extension(self):
        """Unload every model (off the event loop: workers are joined), then let the
        streams in flight write their error event and [DONE] before the loop stops."""
        services = self.services
        # the batch runner first: its running requests are dropped, not recorded as
        # failures, so they run again after a restart
        await self.batch_runner.stop()
        if services.batches is not None:  # None if initialization failed before it
            services.batches.store.close()
        await asyncio.to_thread(services.manager.shutdown)
        streams = [s for s in services.streams if not s.done()]
        if streams:
            await asyncio.wait(streams, timeout=10)
        services.tokens.store.flush()
        services.responses.store.close()
