"""``python -m lms_jupyter.cli``: the same as the ``lms-jupyter`` script."""

import sys

from lms_jupyter.cli.main import main

sys.exit(main())
