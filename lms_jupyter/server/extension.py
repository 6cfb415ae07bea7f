"""The ExtensionApp: traitlets config, one shared model manager, unload on shutdown."""
from __future__ import annotations

import asyncio
import logging

from jupyter_server.extension.application import ExtensionApp
from traitlets import Enum, List, Unicode

from ..api.lmstudio import LMStudioAPI
from .. import logstream
from ..api.batch_runner import BatchRunner
from ..api.batch_store import BatchStore
from ..api.batches import BatchesAPI
from ..api.downloads import DownloadAPI
from ..api.files import FilesAPI
from ..api.openai_compat import OpenAICompatAPI
from ..engine.manager import ModelManager
from ..engine.options import LoadRequest
from ..errors import APIError
from ..models.presets import PresetStore, default_presets_dir
from .routes import lms_handlers
from .services import Services, batch_endpoints


class LMSJupyterApp(ExtensionApp):
    name = "lms_jupyter"
    description = "LM Studio's developer API on the Jupyter server port."
    classes = [ModelManager]  # c.ModelManager.* configures the models (see --help-all)

    url_prefix = Unicode("lms", config=True,
                         help="Path under the server's base_url where the API is mounted.")
    preload = List(Unicode(), config=True, help="Models to load when the server starts.")
    presets_dir = Unicode("", config=True,
                          help="Folder of preset JSON files (default: $LMS_JUPYTER_PRESETS_DIR "
                               "or ~/.lmstudio/config-presets).")
    batch_dir = Unicode("", config=True,
                        help="Folder for uploaded files and batch jobs (default: "
                             "<jupyter data dir>/lms_jupyter/batches).")
    reasoning_field = Enum(["both", "reasoning", "reasoning_content", "inline"], "both",
                           config=True,
                           help="Where chat responses put a model's reasoning: 'reasoning' "
                                "(OpenAI o-series style), 'reasoning_content' (DeepSeek style), "
                                "'both', or 'inline' (left in content as <think>...</think>).")

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
            downloads=DownloadAPI(manager))
        self._init_batches()
        self.settings[Services.SETTINGS_KEY] = self.services

    def _init_batches(self) -> None:
        """Files and batches share one store; the runner starts with the server."""
        store = BatchStore(self.batch_dir or None)
        self.batch_runner = BatchRunner(store, batch_endpoints(self.services),
                                        self.services.manager)
        self.services.files = FilesAPI(store)
        self.services.batches = BatchesAPI(store, self.batch_runner)

    def initialize_handlers(self):
        self.handlers.extend(lms_handlers(self.prefix))

    async def _start_jupyter_server_extension(self, serverapp):
        manager = self.services.manager
        folder = manager.catalog.models_dir
        models = manager.catalog.models()
        root = f"{serverapp.connection_url.rstrip('/')}/{self.prefix}"
        self.log.info("lms_jupyter: models folder %s (%s); %d model(s): %s", folder,
                      "exists" if folder.is_dir() else "does not exist yet", len(models),
                      ", ".join(m.key for m in models) or "none yet (the starter model is "
                      "fetched on first use)")
        token = getattr(serverapp.identity_provider, "token", "") or ""
        key = token if token else "(any string: this server has no token)"
        self.log.info("lms_jupyter: OpenAI-compatible API at %s/v1 and LM Studio's REST API at "
                      "%s/api/v0 and /api/v1; clients use api_key %s (the Jupyter token, sent as "
                      "'Authorization: Bearer <token>'). Stop the server with Ctrl+C twice.",
                      root, root, key)
        logstream.server_started(f"{serverapp.base_url}{self.prefix}/", folder, [token or None])
        self.batch_runner.start()  # resumes batches a previous run left unfinished
        if self.preload:
            # loads take seconds: run them off the event loop so the server answers meanwhile
            asyncio.get_running_loop().create_task(self._preload())

    async def _preload(self) -> None:
        manager = self.services.manager
        for model in self.preload:
            try:
                await asyncio.to_thread(manager.load, LoadRequest(model))
                self.log.info("lms_jupyter: preloaded %s", model)
            except APIError as exc:
                self.log.error("lms_jupyter: could not preload %r: %s", model, exc.message)
            except Exception:  # noqa: BLE001 - a bad preload must not stop the server
                self.log.exception("lms_jupyter: could not preload %r", model)

    async def stop_extension(self):
        # the batch runner first: its running requests are dropped, not recorded as
        # failures, so they run again after a restart
        await self.batch_runner.stop()
        self.services.batches.store.close()
        self.services.manager.shutdown()
