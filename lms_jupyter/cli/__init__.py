"""``lms-jupyter``: LM Studio's ``lms`` subcommands in a terminal (and, through ``%lms``, in a kernel).

``main`` lives in :mod:`lms_jupyter.cli.main`; it is re-exported here because the console script
(``lms_jupyter.cli:main``) and ``python -m lms_jupyter.cli`` name this package.
"""

from lms_jupyter.cli.main import main

__all__ = ["main"]
