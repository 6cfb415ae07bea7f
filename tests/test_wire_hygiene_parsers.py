"""Issue 26, points 1 and 2, at the parser: an output cut off anywhere inside a call, in
every family's wire format, never puts markup into content, and the call is reported as
far as it got (the end-to-end versions run the real model in test_wire_hygiene_e2e.py)."""

from __future__ import annotations

import pytest

from lms_jupyter.chat.output import ChatOutput
from lms_jupyter.chat.toolcalls import ContentDelta, make_parser
from lms_jupyter.chat.toolcalls.parsers import PARSERS

ARGS = '{"answer": "yes"}'
# one complete call per family, as its grammar forces it
CALLS = {
    "hermes": '<tool_call>\n{"name": "yes_no", "arguments": ' + ARGS + "}\n</tool_call>",
    "llama3": '<|python_tag|>{"name": "yes_no", "parameters": ' + ARGS + "}",
    "mistral": "[TOOL_CALLS]yes_no[ARGS]" + ARGS,
    "generic": '[TOOL_REQUEST]{"name": "yes_no", "arguments": ' + ARGS + "}[END_TOOL_REQUEST]",
    "harmony": "<|channel|>commentary to=functions.yes_no <|constrain|>json<|message|>"
    + ARGS
    + "<|call|>",
    "nemotron": '<TOOLCALL>[{"name": "yes_no", "arguments": ' + ARGS + "}]</TOOLCALL>",
    "seed_oss": "<seed:tool_call>\n<function=yes_no>\n<parameter=answer>yes</parameter>\n"
    "</function>\n</seed:tool_call>",
}
CLOSERS = ("</tool_call>", "[END_TOOL_REQUEST]", "</TOOLCALL>", "</seed:tool_call>", "<|call|>")


def _fragments(family: str) -> list[str]:
    """Pieces of the format that must never be content: markers, their starts, closers."""
    pieces = list(PARSERS[family].markers) + [c for c in CLOSERS if c in CALLS[family]]
    return [p[:n] for p in pieces for n in range(2, len(p) + 1)] + ["yes_no"]


def _run(family: str, text: str, stream: bool, chunked: bool):
    parser = make_parser(family, ["yes_no"], stream_arguments=stream)
    output = ChatOutput(parser=parser, name_map={"yes_no": "YesNo"})
    events = []
    for piece in list(text) if chunked else [text]:
        events += output.feed(piece)
    events += output.finish()
    return output, events


def test_every_family_is_covered():
    assert set(CALLS) == set(PARSERS)


@pytest.mark.parametrize("family", sorted(CALLS))
@pytest.mark.parametrize("stream", [False, True])
def test_cut_anywhere_inside_a_call_leaks_no_markup(family, stream):
    text = CALLS[family]
    first_arg = text.index("yes_no") + len("yes_no")
    for cut in range(1, len(text) + 1):
        prefix = text[:cut]
        for chunked in (False, True):
            output, _ = _run(family, prefix, stream, chunked)
            answer = output.answer()
            content = answer.content
            assert not any(f in content for f in _fragments(family)), (prefix, content)
            if family != "llama3" or cut > len("<|python_tag|>"):
                assert content == "", (prefix, content)
            if cut >= first_arg + 1 and family != "seed_oss" or cut == len(text):
                assert [c.name for c in answer.tool_calls] == ["YesNo"], prefix
            if cut == len(text):
                assert output.finish_reason_override == "tool_calls"
                assert answer.tool_calls[0].arguments.replace(" ", "") == ARGS.replace(" ", "")


@pytest.mark.parametrize("family", sorted(CALLS))
def test_cut_in_the_closing_marker_is_a_complete_call(family):
    text = CALLS[family]
    closer = next((c for c in CLOSERS if text.endswith(c)), None)
    if closer is None:
        pytest.skip("this format has no closing marker")
    for keep in range(1, len(closer)):
        for stream in (False, True):
            output, events = _run(family, text[: len(text) - len(closer) + keep], stream, False)
            answer = output.answer()
            assert answer.content == ""
            assert [c.name for c in answer.tool_calls] == ["YesNo"]
            assert output.finish_reason_override == "tool_calls"


@pytest.mark.parametrize("family", sorted(CALLS))
@pytest.mark.parametrize("stream", [False, True])
def test_cut_inside_the_arguments_reports_the_call_as_far_as_it_got(family, stream):
    text = CALLS[family]
    cut = text.index("yes", text.index("yes_no") + 6) + 2  # ... "ye
    output, _ = _run(family, text[:cut], stream, True)
    answer = output.answer()
    assert answer.content == ""
    assert [c.name for c in answer.tool_calls] == ["YesNo"]
    assert output.finish_reason_override is None  # the engine's "length" stands
    assert output.tool_calls == []  # no complete call
    if family != "seed_oss":
        assert answer.tool_calls[0].arguments == text[text.index("{", text.index("yes_no")) : cut]


# -- Llama 3's bare-JSON calls (no marker) --------------------------------------------------
# what the forced-call grammar writes (issue 26 point 3: compact), and the model's own form
BARE_CALLS = [
    '{"name":"yes_no","parameters":{"answer":"yes"}}',
    ' {"name": "yes_no", "parameters": {"answer": "yes"}}',
    '[{"name": "yes_no", "parameters": {"answer": "yes"}}]',
]


@pytest.mark.parametrize("text", BARE_CALLS)
@pytest.mark.parametrize("stream", [False, True])
def test_llama3_bare_call_cut_before_its_name_is_complete_leaks_nothing(text, stream):
    """Issue 26: a bare-JSON call cut off (max_tokens) inside its name gave the text so far,
    part of the normalised name included, back as content."""
    name_end = text.index("yes_no") + len("yes_no") + 1  # the name's closing quote
    for cut in range(1, len(text) + 1):
        for chunked in (False, True):
            output, _ = _run("llama3", text[:cut], stream, chunked)
            answer = output.answer()
            assert answer.content.strip() == "", (text[:cut], answer.content)
            names = [c.name for c in answer.tool_calls]
            assert names == (["YesNo"] if cut >= name_end else []), (text[:cut], names)


@pytest.mark.parametrize("text", BARE_CALLS)
def test_llama3_bare_call_streams_no_content_while_it_could_still_be_a_call(text):
    """The streaming state: while the output could still become a bare call, every feed
    holds it back (no content delta), whatever the chunking."""
    parser = make_parser("llama3", ["yes_no"], stream_arguments=True)
    for ch in text:
        events = parser.feed(ch)
        assert not [e for e in events if isinstance(e, ContentDelta)], (ch, events)
    assert not [e for e in parser.finish() if isinstance(e, ContentDelta)]


@pytest.mark.parametrize(
    "text", ['{"answer": "ye', '{"name": "Bob', '{"name": "yes_nope', '{"nombre": "x']
)
def test_llama3_cut_off_json_that_cannot_be_a_known_call_stays_content(text):
    """Only text that could still become a call to a known tool is withheld."""
    for stream in (False, True):
        output, _ = _run("llama3", text, stream, True)
        assert output.answer().content == text
        assert output.answer().tool_calls == []
