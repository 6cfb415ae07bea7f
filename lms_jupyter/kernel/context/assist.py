"""``%lms fix`` and ``%lms explain``: the requests they send and what is taken from the
answer. Plain Python; the kernel adapter streams the request and offers the code.

The fix is only ever *offered* (a new cell below, through ``set_next_input``): code a
model wrote never runs unless the user runs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lms_jupyter.kernel.context.history import CellError
from lms_jupyter.kernel.context.render import Limits, fit

DEFAULT_ASSIST_MAX_TOKENS = 1024

FIX_SYSTEM = (
    "You fix Python code in Jupyter notebooks. Reply with the corrected cell as "
    "one ```python code block, then at most two sentences on what was wrong."
)
EXPLAIN_SYSTEM = (
    "You explain Python code in Jupyter notebooks to a data scientist: "
    "what it does and, when it failed, why and how to fix it. Be brief."
)

_FENCE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True)
class AssistRequest:
    system: str
    user: str


def fix_request(error: CellError, limits: Limits | None = None) -> AssistRequest:
    limits = limits or Limits()
    source = fit(error.source, limits, "cell")
    trace = fit(error.traceback, limits, "traceback")
    user = (
        f"This notebook cell (cell {error.execution_count}) fails.\n\n"
        f"```python\n{source}\n```\n\nThe error:\n\n```\n{trace}\n```\n\n"
        "Write the corrected cell."
    )
    return AssistRequest(FIX_SYSTEM, user)


def explain_request(
    count: int, source: str, error: CellError | None, limits: Limits | None = None
) -> AssistRequest:
    limits = limits or Limits()
    user = (
        f"Explain this notebook cell (cell {count}):\n\n```python\n"
        f"{fit(source, limits, 'cell')}\n```"
    )
    if error is not None:
        user += (
            f"\n\nIt failed with:\n\n```\n{fit(error.traceback, limits, 'traceback')}"
            "\n```\n\nExplain the error and how to fix it."
        )
    return AssistRequest(EXPLAIN_SYSTEM, user)


def first_code_block(answer: str) -> str | None:
    """The code of the answer's first fenced block (an unclosed one at the end counts: the
    answer may have hit max_tokens), or None when it has none."""
    match = _FENCE.search(answer)
    if match is None:
        return None
    code = match.group(3).rstrip()
    return code if code.strip() else None
