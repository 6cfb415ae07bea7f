"""Pure parts of the token loop and request validation."""

from __future__ import annotations

import pytest

from lms_jupyter.api import fields
from lms_jupyter.chat.templates import normalise_messages, render_chat
from lms_jupyter.engine.local.generation import StopStringMatcher
from lms_jupyter.errors import APIError


def feed_all(matcher, pieces):
    out, hit = [], False
    for piece in pieces:
        text, hit = matcher.push(piece)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(matcher.flush())
    return "".join(out), hit


@pytest.mark.parametrize(
    "pieces", [["Hello END world"], list("Hello END world"), ["Hel", "lo E", "N", "D wor", "ld"]]
)
def test_stop_string_cut_at_any_split(pieces):
    assert feed_all(StopStringMatcher(["END"]), pieces) == ("Hello ", True)


def test_stop_string_holds_back_only_prefixes():
    m = StopStringMatcher(["###"])
    assert m.push("a#") == ("a", False)
    assert m.push("b") == ("#b", False)
    assert feed_all(StopStringMatcher([]), ["x", "y"]) == ("xy", False)


def test_params_validation():
    with pytest.raises(APIError) as e:
        fields.sampling_params({"temperature": "hot"})
    assert e.value.param == "temperature" and e.value.status == 400
    with pytest.raises(APIError):
        fields.sampling_params({"top_p": 2})
    with pytest.raises(APIError):
        fields.logit_bias({"abc": 1})
    assert fields.logit_bias({"2": -100}) == {2: -100.0}
    assert fields.max_tokens({"max_tokens": -1}) is None
    assert fields.max_tokens({"max_tokens": 5}) == 5
    with pytest.raises(APIError):
        fields.max_tokens({"max_tokens": 0})
    assert fields.stop_strings({"stop": "x"}) == ["x"]
    with pytest.raises(APIError):
        fields.stop_strings({"stop": [1]})
    assert fields.stream_flags({"stream": True, "stream_options": {"include_usage": True}}) == (
        True,
        True,
    )
    with pytest.raises(APIError):
        fields.single_choice({"n": 2})


def test_messages_and_templates():
    msgs = normalise_messages(
        [
            {
                "role": "developer",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "user", "content": "hi"},
        ]
    )
    assert msgs[0] == {"role": "system", "content": "ab"}
    for bad in (
        None,
        [],
        [{"role": "wizard", "content": "x"}],
        ["x"],
        [{"role": "user", "content": 5}],
    ):
        with pytest.raises(APIError):
            normalise_messages(bad)
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% endif %}"
    )
    assert render_chat(chatml, msgs) == (
        "<|im_start|>system\nab<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(None, msgs).endswith("User: hi\nAssistant:")
    with pytest.raises(APIError):
        render_chat("{{ raise_exception('no system role') }}", msgs)


def test_held_logprobs_travel_with_the_text_they_produced():
    from lms_jupyter.engine.events import TokenLogprob
    from lms_jupyter.engine.local.logprobs import HeldLogprobs

    def entry(name):
        return TokenLogprob(name, -1.0, ())

    held = HeldLogprobs()
    held.add(entry("Hel"), 3)
    held.release(3)
    assert [t.token for t in held.take()] == ["Hel"]
    held.add(entry("lo E"), 4)  # "lo " released, "E" held: it may begin "END"
    held.release(3)
    assert held.take() == []  # the token's text is not all out yet
    held.add(entry("X"), 1)  # "EX": not a stop string after all
    held.release(2)
    assert [t.token for t in held.take()] == ["lo E", "X"]
    held.add(entry("<partial utf-8>"), 0)  # bytes that end inside a character
    held.release(0)
    assert held.take() == []
    held.add(entry("é"), 1)
    held.release(1)
    assert [t.token for t in held.take()] == ["<partial utf-8>", "é"]
    held.add(entry(" E"), 2)  # " " released, "E" held
    held.release(1)
    held.add(entry("ND"), 2)  # "END" found: nothing more released, the stop's tokens dropped
    held.release(0, stopped=True)
    assert [t.token for t in held.take()] == [" E"]  # part of its text went out
    held.release_all()
    assert held.take() == []
