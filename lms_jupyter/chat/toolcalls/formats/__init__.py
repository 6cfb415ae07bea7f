"""One stream parser per tool-call wire format (see toolcalls/families.py), on a shared
driver (base.py) and reading primitives (reading.py). The registry, ``PARSERS`` and
``make_parser``, is lms_jupyter.chat.toolcalls.parsers."""
