"""Reasoning split: <think> tags, gpt-oss harmony channels, template inspection."""

from __future__ import annotations

import pytest

from lms_jupyter.chat.reasoning import (
    HarmonySplitter,
    ReasoningSplitter,
    detect_reasoning,
    make_reasoning_splitter,
    reasoning_template_kwargs,
)


def _split(make, text, chunks=None):
    splitter = make()
    pieces = []
    for chunk in chunks if chunks is not None else [text]:
        pieces += splitter.feed(chunk)
    pieces += splitter.finish()
    reasoning = "".join(t for k, t in pieces if k == "reasoning")
    content = "".join(t for k, t in pieces if k == "content")
    assert all(k in ("reasoning", "content") and t for k, t in pieces)
    return reasoning, content


def _all_splits(make, text):
    """Same result whole, char by char and split at every boundary."""
    expected = _split(make, text)
    assert _split(make, text, list(text)) == expected
    for cut in range(1, len(text)):
        assert _split(make, text, [text[:cut], text[cut:]]) == expected, cut
    return expected


THINK_CASES = [
    # (splitter kwargs, output, reasoning, content)
    ({}, "<think>\nTwo plus two.\n</think>\n\nIt is 4.", "Two plus two.", "It is 4."),
    ({}, "  <think>short</think>answer", "short", "answer"),
    ({}, "No thinking here.", "", "No thinking here."),
    ({}, "Text then <think>not reasoning</think>", "", "Text then <think>not reasoning</think>"),
    ({}, "<think>\nunfinished thought", "unfinished thought", ""),
    ({}, "<think></think>Direct.", "", "Direct."),
    ({}, "<thin", "", "<thin"),
    (
        {"starts_in_reasoning": True},
        "Opened by the prompt.\n</think>\n\nAnswer.",
        "Opened by the prompt.",
        "Answer.",
    ),
    ({"starts_in_reasoning": True}, "<think>\nrepeated tag</think>A", "repeated tag", "A"),
    ({"starts_in_reasoning": True}, "cut off", "cut off", ""),
    (
        {"start_tag": "<seed:think>", "end_tag": "</seed:think>"},
        "<seed:think>budget ok</seed:think>Done.",
        "budget ok",
        "Done.",
    ),
]


@pytest.mark.parametrize("kwargs,text,reasoning,content", THINK_CASES)
def test_reasoning_splitter(kwargs, text, reasoning, content):
    assert _all_splits(lambda: ReasoningSplitter(**kwargs), text) == (reasoning, content)


def test_reasoning_streams_before_the_end_tag():
    splitter = ReasoningSplitter()
    assert splitter.feed("<think>I am ") == [("reasoning", "I am")]
    assert splitter.feed("thinking</th") == [("reasoning", " thinking")]
    assert splitter.feed("ink>Hi") == [("content", "Hi")]
    assert splitter.finish() == []


def test_tool_call_text_inside_reasoning_stays_reasoning():
    text = '<think>maybe <tool_call>{"name": "x", "arguments": {}}</tool_call></think>Plain answer.'
    reasoning, content = _all_splits(ReasoningSplitter, text)
    assert "<tool_call>" in reasoning and content == "Plain answer."


HARMONY_CASES = [
    (
        "<|channel|>analysis<|message|>User says hi.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello!<|return|>",
        "User says hi.",
        "Hello!",
    ),
    (
        "<|channel|>analysis<|message|>Need a tool.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
        "Need a tool.",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>',
    ),
    (  # recipient in the role part, call token cut by EOS handling: no <|call|> added,
        # so the parser sees where the output ended (issue 26)
        "<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{}",
        "",
        "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}",
    ),
    (  # a preamble on the commentary channel is user-visible
        "<|channel|>commentary<|message|>Checking now.<|end|>",
        "",
        "Checking now.",
    ),
    ("Plain text from a model ignoring harmony.", "", "Plain text from a model ignoring harmony."),
    ("<|channel|>analysis<|message|>thinking without end", "thinking without end", ""),
    ("<|channel|>final<|message|>answer<|return|><|start|>assistant<|chan", "", "answer"),
]


@pytest.mark.parametrize("text,reasoning,content", HARMONY_CASES)
def test_harmony_splitter(text, reasoning, content):
    assert _all_splits(HarmonySplitter, text) == (reasoning, content)


def test_harmony_starting_inside_a_channel():
    assert _split(lambda: HarmonySplitter(starts_in_channel="final"), "Hi<|return|>") == ("", "Hi")


# -- template inspection ------------------------------------------------------------------------

R1_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<｜User｜>{{ message['content'] }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
)
QWEN3_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}{%- endif %}"
)
QWEN3_THINKING_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
    "{# assistant turns strip '</think>' #}"
)
GPT_OSS_TEMPLATE = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{% for message in messages %}{% if message.role == 'assistant' %}"
    "<|start|>assistant<|channel|>final<|message|>{{ message.content }}<|end|>"
    "{% else %}<|start|>{{ message.role }}<|message|>{{ message.content }}<|end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)
SEED_TEMPLATE = (
    "{%- if not thinking_budget is defined %}{%- set thinking_budget = -1 -%}{%- endif -%}"
    "{% for message in messages %}<seed:bos>{{ message.role }}\n{{ message.content }}<seed:eos>{% endfor %}"
    "{% if add_generation_prompt %}<seed:bos>assistant\n{% if thinking_budget == 0 %}"
    "<seed:think><seed:cot_budget_reflect>no thinking</seed:cot_budget_reflect></seed:think>{% endif %}{% endif %}"
)
PLAIN_TEMPLATE = "{% for message in messages %}{{ message.content }}{% endfor %}"


def test_detect_reasoning_r1_opens_in_prompt():
    info = detect_reasoning(R1_TEMPLATE)
    assert info["format"] == "tags" and info["thinks"] and info["opens_in_prompt"]
    assert (info["start_tag"], info["end_tag"]) == ("<think>", "</think>")


def test_detect_reasoning_qwen3_hybrid():
    info = detect_reasoning(QWEN3_TEMPLATE)
    assert info["thinks"] and not info["opens_in_prompt"]
    assert info["variables"] == ["enable_thinking"]
    assert not detect_reasoning(QWEN3_TEMPLATE, {"enable_thinking": False})["opens_in_prompt"]


def test_detect_reasoning_qwen3_thinking_only():
    assert detect_reasoning(QWEN3_THINKING_TEMPLATE)["opens_in_prompt"]


def test_detect_reasoning_harmony_and_seed_and_plain():
    harmony = detect_reasoning(GPT_OSS_TEMPLATE)
    assert harmony["format"] == "harmony" and harmony["variables"] == ["reasoning_effort"]
    seed = detect_reasoning(SEED_TEMPLATE)
    assert seed["start_tag"] == "<seed:think>" and not seed["opens_in_prompt"]
    assert detect_reasoning(PLAIN_TEMPLATE)["thinks"] is False
    assert detect_reasoning(None)["format"] is None


def test_detect_reasoning_survives_broken_templates():
    info = detect_reasoning("<think>{% if %}")
    assert info["format"] == "tags" and info["opens_in_prompt"] is False


def test_make_reasoning_splitter():
    assert isinstance(make_reasoning_splitter(GPT_OSS_TEMPLATE), HarmonySplitter)
    r1 = make_reasoning_splitter(R1_TEMPLATE)
    assert isinstance(r1, ReasoningSplitter)
    assert r1.feed("thought</think>answer") + r1.finish() == [
        ("reasoning", "thought"),
        ("content", "answer"),
    ]
    assert make_reasoning_splitter(PLAIN_TEMPLATE) is None


@pytest.mark.parametrize(
    "template,effort,expected",
    [
        (GPT_OSS_TEMPLATE, "high", {"reasoning_effort": "high"}),
        (GPT_OSS_TEMPLATE, "none", {"reasoning_effort": "low"}),
        (QWEN3_TEMPLATE, "none", {"enable_thinking": False}),
        (QWEN3_TEMPLATE, "low", {"enable_thinking": True}),
        (SEED_TEMPLATE, "none", {"thinking_budget": 0}),
        (SEED_TEMPLATE, "high", {"thinking_budget": -1}),
        (PLAIN_TEMPLATE, "high", {}),
        (QWEN3_TEMPLATE, None, {}),
    ],
)
def test_reasoning_template_kwargs(template, effort, expected):
    assert reasoning_template_kwargs(template, effort) == expected


def test_reasoning_effort_is_validated():
    with pytest.raises(ValueError, match="reasoning effort"):
        reasoning_template_kwargs(QWEN3_TEMPLATE, "extreme")


def test_effort_none_closes_qwen3_thinking_in_the_prompt():
    kwargs = reasoning_template_kwargs(QWEN3_TEMPLATE, "none")
    assert not detect_reasoning(QWEN3_TEMPLATE, kwargs)["opens_in_prompt"]
