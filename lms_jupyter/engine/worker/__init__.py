"""Local models in worker processes: one process per loaded instance.

The server and the kernel hold a :class:`~.proxy.WorkerModel`; the process it starts
(:mod:`.child`) holds the llama.cpp model, its scheduler, slots, prompt cache, embedding
context and draft models. A fault in native code ends that process only: its requests
fail with ``model_crashed`` and the manager reloads it on the next request.
"""

from lms_jupyter.engine.worker.crash import CrashReport
from lms_jupyter.engine.worker.proxy import WorkerModel

__all__ = ["CrashReport", "WorkerModel"]
