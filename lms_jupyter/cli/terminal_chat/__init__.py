"""``lms-jupyter chat``: LM Studio's ``lms chat`` in a terminal (see :mod:`.main`)."""

from lms_jupyter.cli.terminal_chat.main import main

__all__ = ["main"]
