"""lms-jupyter: LM Studio's developer API inside Jupyter, on llama-cpp-python.

Importing this package is cheap: llama_cpp, tornado and jupyter_server are imported only
by the parts that need them.
"""
__version__ = "0.1.0"


def _jupyter_server_extension_points():
    from .server.extension import LMSJupyterApp

    return [{"module": "lms_jupyter", "app": LMSJupyterApp}]


def _jupyter_labextension_paths():
    """The prebuilt JupyterLab sidebar (built from labextension/ into lms_jupyter/labextension)."""
    return [{"src": "labextension", "dest": "lms-jupyter"}]


def load_ipython_extension(ipython):
    from .kernel.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):
    from .kernel.magics import unload_ipython_extension as unload

    unload(ipython)
