"""The kernel's one ModelManager (and the OpenAI-style API over it), created on first use.

Magics, widgets and the terminal commands of one process all share it, so a model loaded
by ``%lms load`` is the one ``%%chat`` and the widgets see.
"""
from __future__ import annotations

import atexit
import threading

_lock = threading.Lock()
_manager = None
_api = None
_atexit_registered = False


def get_manager():
    """The process-wide ModelManager (JIT loading on), created lazily."""
    global _manager, _atexit_registered
    with _lock:
        if _manager is None:
            from ..engine.manager import ModelManager

            # the IPython shell as parent: c.ModelManager.* in ipython_config.py applies
            _manager = ModelManager(parent=_shell())
            if not _atexit_registered:
                atexit.register(shutdown)
                _atexit_registered = True
        return _manager


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def get_api():
    """The chat/embeddings API bound to :func:`get_manager`'s manager."""
    global _api
    manager = get_manager()
    with _lock:
        if _api is None or _api.manager is not manager:
            from ..api import OpenAICompatAPI

            _api = OpenAICompatAPI(manager)
        return _api


def set_manager(manager):
    """Use ``manager`` from now on (embedding apps, tests); returns the previous one."""
    global _manager, _api
    with _lock:
        previous, _manager, _api = _manager, manager, None
    return previous


def shutdown() -> None:
    """Free every loaded model (registered with atexit)."""
    global _manager, _api
    with _lock:
        manager, _manager, _api = _manager, None, None
    if manager is not None:
        manager.shutdown()
