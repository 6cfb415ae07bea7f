"""What llama.cpp offers on this machine (its version, GPU offload), asked once of a short-lived
process so that the server and the kernel never load native code themselves."""

from __future__ import annotations

import functools
import json
import subprocess
import sys


@functools.cache
def engine_runtime() -> dict:
    """llama-cpp-python's version and whether it offloads to a GPU, asked once of a
    short-lived process (the server and the kernel never load llama.cpp themselves)."""
    code = (
        "import json, llama_cpp; print(json.dumps({'version': getattr(llama_cpp, "
        "'__version__', 'unknown'), 'gpu': bool(llama_cpp.llama_supports_gpu_offload())}))"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {"version": "unknown", "gpu": False}


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    return bool(engine_runtime().get("gpu"))
