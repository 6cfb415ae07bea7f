"""``lms-jupyter chat``: LM Studio's ``lms chat`` in a terminal (see :mod:`.main`)."""
from .main import main

__all__ = ["main"]
