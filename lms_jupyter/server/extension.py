"""The ExtensionApp: traitlets config, one shared model manager, unload on shutdown."""
from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, Int, List, Unicode

from ..api import OpenAICompatAPI
from ..models.catalog import ModelCatalog, default_models_dir
from ..engine.manager import DEFAULT_CONTEXT_LENGTH, DEFAULT_JIT_TTL, ModelManager
from ..models.presets import PresetStore, default_presets_dir
from ..api.lmstudio import LMStudioAPI
from .. import logstream
from .download_handlers import download_handlers
from .lmstudio_handlers import lmstudio_handlers
from .log_handlers import log_handlers
from .openai_handlers import openai_handlers
from .services import Services


class LMSJupyterApp(ExtensionApp):
    name = "lms_jupyter"
    description = "LM Studio's developer API on the Jupyter server port."

    url_prefix = Unicode("lms", config=True,
                         help="Path under the server's base_url where the API is mounted.")
    models_dir = Unicode("", config=True,
                         help="LM Studio-style models folder (default: $LMS_JUPYTER_MODELS_DIR "
                              "or ~/.lmstudio/models).")
    jit_loading = Bool(True, config=True, help="Load models on first request.")
    auto_evict = Bool(True, config=True, help="Keep at most one JIT-loaded model.")
    jit_ttl = Float(DEFAULT_JIT_TTL, config=True,
                    help="Idle seconds before a JIT-loaded model is unloaded.")
    default_context_length = Int(DEFAULT_CONTEXT_LENGTH, config=True,
                                 help="Context length for loads that do not name one.")
    flash_attention = Bool(True, config=True, help="Use flash attention where supported.")
    n_threads = Int(0, config=True, help="Threads for generation (0: all cores).")
    gpu_layers = Int(0, config=True, help="Layers to offload to a GPU (-1: all).")
    preload = List(Unicode(), config=True, help="Models to load when the server starts.")
    presets_dir = Unicode("", config=True,
                          help="Folder of preset JSON files (default: $LMS_JUPYTER_PRESETS_DIR "
                               "or ~/.lmstudio/config-presets).")
    memory_guardrail = Bool(True, config=True,
                            help="Refuse loads whose memory estimate exceeds what is available "
                                 "(a load with force=true still goes ahead).")
    reasoning_field = Enum(["both", "reasoning", "reasoning_content", "inline"], "both",
                           config=True,
                           help="Where chat responses put a model's reasoning: 'reasoning' "
                                "(OpenAI o-series style), 'reasoning_content' (DeepSeek style), "
                                "'both', or 'inline' (left in content as <think>...</think>).")
    memory_limit_mb = Int(0, config=True,
                          help="Memory budget in MiB for all loaded models together "
                               "(0: only the system's available memory limits loads).")

    def initialize_settings(self):
        catalog = ModelCatalog(self.models_dir or default_models_dir())
        manager = ModelManager(
            catalog, jit=self.jit_loading, auto_evict=self.auto_evict, default_ttl=self.jit_ttl,
            default_context_length=self.default_context_length,
            flash_attention=self.flash_attention, n_threads=self.n_threads or None,
            n_gpu_layers=self.gpu_layers, memory_guardrail=self.memory_guardrail,
            memory_limit_bytes=self.memory_limit_mb * 2**20 if self.memory_limit_mb > 0 else None)
        self.presets = PresetStore(self.presets_dir or default_presets_dir())
        services = Services(manager=manager, openai=OpenAICompatAPI(manager, self.presets),
                            lmstudio=LMStudioAPI(manager, self.presets))
        services.openai.reasoning_field = self.reasoning_field
        services.lmstudio.v0.reasoning_field = self.reasoning_field
        self.services = services
        self.settings[Services.SETTINGS_KEY] = services

    def initialize_handlers(self):
        prefix = self.url_prefix.strip("/") or "lms"
        self.handlers.extend(openai_handlers(prefix))
        self.handlers.extend(lmstudio_handlers(prefix))
        self.handlers.extend(download_handlers(prefix) + log_handlers(prefix))

    async def _start_jupyter_server_extension(self, serverapp):
        for model in self.preload:
            self.services.manager.load(model)
        self.log.info("lms_jupyter: LM Studio API at %slms/v1 (models from %s)",
                      serverapp.base_url, self.services.manager.catalog.models_dir)
        logstream.server_started(f"{serverapp.base_url}{self.url_prefix.strip('/') or 'lms'}/",
                                 self.services.manager.catalog.models_dir,
                                 [getattr(serverapp.identity_provider, "token", None)])

    async def stop_extension(self):
        self.services.manager.shutdown()
