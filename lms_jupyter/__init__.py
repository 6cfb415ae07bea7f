"""lms-jupyter: LM Studio's developer API inside Jupyter, on llama-cpp-python.

Importing this package is cheap: llama_cpp, tornado and jupyter_server are imported only
by the parts that need them.
"""

__version__ = "0.1.0"


def embed(texts, model=None, **options):
    """Embed ``texts`` with a local embedding model: a NumPy array with L2-normalised rows
    (2-D for a list of strings, 1-D for one string). ``dimensions``, ``truncate`` and
    ``api``: see :func:`lms_jupyter.kernel.embeddings.embed`. numpy and llama_cpp are
    imported on the first call, not with the package."""
    from lms_jupyter.kernel.embeddings import embed as _embed

    return _embed(texts, model, **options)


def find_server(url=None, token=None):
    """The LM Studio API to use over HTTP from here, found the way Jupyter tools find their
    server: ``url`` (or ``$LMS_JUPYTER_URL``) with ``token`` (or ``$LMS_JUPYTER_TOKEN`` /
    ``$JUPYTER_TOKEN``), else the Jupyter server running this kernel. The result has
    ``openai_base_url`` and ``api_key`` for ``openai.OpenAI(...)``, and ``root`` (where
    ``/v1`` and ``/api`` live). Raises ``DiscoveryError`` with what to do when none is found.
    """
    import os

    from lms_jupyter.client import discovery

    url = url or os.environ.get("LMS_JUPYTER_URL")
    return discovery.for_url(url, token) if url else discovery.for_kernel()


def batch(inputs, prompt=None, **options):
    """Run one chat turn per row of ``inputs`` (a list, pandas Series or DataFrame; ``prompt``
    a template with ``{column}`` fields) and get the answers as a DataFrame aligned with the
    input (a list of dicts without pandas), resumable from a local cache. Options
    (``model``, ``system``, ``schema``, ``max_tokens``, ``temperature``, ``seed``, ``tools``,
    ...): see :func:`lms_jupyter.kernel.mapping.batch.batch`. pandas and llama_cpp are imported on
    the first call, not with the package."""
    from lms_jupyter.kernel.mapping.batch import batch as _batch

    return _batch(inputs, prompt, **options)


def __getattr__(name):
    """``lms_jupyter.chat(prompt, ...)``: the ``chat`` subpackage is callable (one chat turn
    with notebook context, :func:`lms_jupyter.kernel.context.public.chat`); it is imported
    on first use, not with the package."""
    if name == "chat":
        import importlib

        return importlib.import_module(".chat", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points():
    from lms_jupyter.server.extension import LMSJupyterApp

    return [{"module": "lms_jupyter", "app": LMSJupyterApp}]


def _jupyter_labextension_paths():
    """The prebuilt JupyterLab sidebar (built from labextension/ into lms_jupyter/labextension)."""
    return [{"src": "labextension", "dest": "lms-jupyter"}]


def load_ipython_extension(ipython):
    from lms_jupyter.kernel.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):
    from lms_jupyter.kernel.magics import unload_ipython_extension as unload

    unload(ipython)
