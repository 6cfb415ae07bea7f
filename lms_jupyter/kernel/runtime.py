"""The kernel's one ModelManager (and the OpenAI-style API over it), created on first use.

Magics, widgets and the terminal commands of one process all share it, so a model loaded
by ``%lms load`` is the one ``%%chat`` and the widgets see.

A kernel that a Jupyter server with the extension started (it finds
``$LMS_JUPYTER_SERVER`` in its environment) uses that server's models by default, through
HTTP (:mod:`.remote_api`): one model set shared by every kernel, the sidebar and HTTP
clients. ``%lms connect`` (or ``$LMS_JUPYTER_CONNECT=auto|<url>``) attaches to a server
explicitly; ``%lms disconnect`` or ``$LMS_JUPYTER_CONNECT=off`` choose the kernel's own
manager, which is also what plain IPython, papermill and kernels without such a server
get. Either way, the kernel's own models run in worker processes, never in the kernel.
"""

from __future__ import annotations

import atexit
import threading

_lock = threading.Lock()
_manager = None
_api = None
_atexit_registered = False
_connection = None  # remote_api.ConnectedManager while connected
_env_checked = False


def get_manager():
    """The process-wide ModelManager (JIT loading on), created lazily; the server's
    models (a ConnectedManager) while connected."""
    global _manager, _atexit_registered
    _connect_from_env()
    if _connection is not None:
        return _connection
    with _lock:
        if _manager is None:
            from lms_jupyter.engine.manager import ModelManager

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
            if _connection is not None and manager is _connection:
                from lms_jupyter.client.connected import ConnectedAPI

                _api = ConnectedAPI(manager)
            else:
                from lms_jupyter.api import OpenAICompatAPI

                _api = OpenAICompatAPI(manager)
        return _api


# -- connecting to a server -------------------------------------------------------------------
def connect(url: str | None = None, token: str | None = None):
    """Use a server's models from now on: ``url`` (any LM Studio REST API root, or a
    Jupyter server's URL), or the Jupyter server running this kernel. Returns the
    ConnectedManager; a ``discovery.DiscoveryError`` says why it could not connect."""
    global _connection, _api, _env_checked
    from lms_jupyter.client import discovery
    from lms_jupyter.client.connected import ConnectedManager

    target = discovery.for_url(url, token) if url else discovery.for_kernel()
    connection = ConnectedManager(target)
    with _lock:
        previous, _connection, _api, _env_checked = _connection, connection, None, True
    if previous is not None:
        previous.shutdown()
    return connection


def disconnect() -> bool:
    """Back to the in-kernel manager; False if not connected."""
    global _connection, _api, _env_checked
    with _lock:
        previous, _connection, _api, _env_checked = _connection, None, None, True
    if previous is not None:
        previous.shutdown()
    return previous is not None


def connection():
    """The ConnectedManager while connected, else None."""
    _connect_from_env()
    return _connection


def status() -> str:
    """Which backend the kernel uses, in one line or two."""
    current = connection()
    if current is not None:
        return current.describe()
    with _lock:
        manager = _manager
    loaded = manager.list_loaded() if manager is not None else []
    names = ", ".join(m.identifier for m in loaded) or "none loaded"
    return (
        f"Using this kernel's own models (each in a worker process; {names}). "
        "%lms connect attaches to the Jupyter server's models."
    )


def _connect_from_env() -> None:
    """``$LMS_JUPYTER_CONNECT``: ``auto`` (the Jupyter server running this kernel, if it
    has the extension; otherwise the in-kernel models, with a note) or a URL (with
    ``$LMS_JUPYTER_TOKEN`` or ``$JUPYTER_TOKEN``); once per process."""
    global _env_checked
    if _env_checked:
        return
    import os
    import sys

    with _lock:
        if _env_checked:
            return
        _env_checked = True
    wanted = os.environ.get("LMS_JUPYTER_CONNECT", "").strip()
    if wanted.lower() in ("0", "off", "no", "none", "false"):
        return
    from lms_jupyter.client.discovery import SERVER_ENV, DiscoveryError

    if not wanted:
        root = os.environ.get(SERVER_ENV, "").strip()
        if root:
            _connect_to_parent_server(root)
        return

    try:
        connect(None if wanted.lower() == "auto" else wanted)
    except DiscoveryError as exc:
        if wanted.lower() != "auto":
            raise
        print(
            f"lms_jupyter: LMS_JUPYTER_CONNECT=auto: {exc} Using this kernel's own models.",
            file=sys.stderr,
        )


def _connect_to_parent_server(root: str) -> None:
    """The default in a kernel that a server with the extension started: its models."""
    import sys

    from lms_jupyter.client.discovery import DiscoveryError

    try:
        connect(None)  # the server that started this kernel (its runtime file has the token)
        return
    except DiscoveryError:
        pass
    try:
        connect(root)  # found by the URL it gave us ($JUPYTER_TOKEN / $LMS_JUPYTER_TOKEN)
    except DiscoveryError as exc:
        print(
            f"lms_jupyter: the Jupyter server's models at {root} are out of reach ({exc}); "
            "using this kernel's own models.",
            file=sys.stderr,
        )


def set_manager(manager):
    """Use ``manager`` from now on (embedding apps, tests); returns the previous one."""
    global _manager, _api, _env_checked
    _env_checked = True  # an explicit manager wins over $LMS_JUPYTER_CONNECT
    with _lock:
        previous, _manager, _api = _manager, manager, None
    return previous


def shutdown() -> None:
    """Free every loaded model (registered with atexit)."""
    global _manager, _api, _connection
    with _lock:
        manager, _manager, _api = _manager, None, None
        connected, _connection = _connection, None
    if manager is not None:
        manager.shutdown()
    if connected is not None:
        connected.shutdown()
