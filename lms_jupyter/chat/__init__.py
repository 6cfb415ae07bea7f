"""Chat formats: Jinja chat templates, reasoning splitters, JSON-schema grammars,
tool-call formats per model family, and the typed events an answer is made of.

Pure text processing: no llama_cpp, no transport.
"""

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """``lms_jupyter.chat(prompt, ...)`` is also a function (one chat turn from code, with
    notebook context): the package name is taken by this subpackage, so the module itself
    is callable. The call imports the kernel side lazily; this package stays pure."""

    def __call__(self, prompt, *args, **kwargs):
        from lms_jupyter.kernel.context.public import chat

        return chat(prompt, *args, _depth=2, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
