"""Which tool-call wire format a model speaks, read from its Jinja chat template.

Templates are matched on marker strings they must contain to render tool calls in
their native format; anything we cannot parse falls back to LM Studio's default
("generic") tool use, which works with any template.
"""

from __future__ import annotations

import re

HERMES = "hermes"
LLAMA3 = "llama3"
MISTRAL = "mistral"
NEMOTRON = "nemotron"
SEED_OSS = "seed_oss"
HARMONY = "harmony"
GENERIC = "generic"

FAMILIES = (HERMES, LLAMA3, MISTRAL, NEMOTRON, SEED_OSS, HARMONY, GENERIC)

# Words a template uses when it renders tool definitions, calls or results.
_TOOL_REFERENCES = re.compile(r"\btools\b|\btool_calls\b|\btool_call\b|['\"]tool['\"]")


def template_supports_tools(chat_template: str | None) -> bool:
    """True when the template renders tool definitions or tool messages itself."""
    if not chat_template:
        return False
    return bool(_TOOL_REFERENCES.search(chat_template))


def detect_family(chat_template: str | None) -> str:
    """Names the tool-call format of the template (one of FAMILIES).

    Order matters: gpt-oss and Seed-OSS templates are checked before the looser
    markers. A template that references tools in a format we do not parse (DeepSeek,
    Command-R, Granite, ...) also gets "generic", so its calls are still understood.
    """
    if not chat_template:
        return GENERIC
    text = chat_template
    if "<|channel|>" in text and "<|start|>" in text:
        return HARMONY
    if "<seed:tool_call>" in text:
        return SEED_OSS
    if "<TOOLCALL>" in text:
        return NEMOTRON
    if "[TOOL_CALLS]" in text:
        return MISTRAL
    if "<tool_call>" in text:
        return HERMES
    if (
        "<|start_header_id|>" in text
        and ("<|python_tag|>" in text or "ipython" in text)
        and template_supports_tools(text)
    ):
        return LLAMA3
    return GENERIC
