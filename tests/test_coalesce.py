"""The worker's stream interval (engine/worker/coalesce.py): which of a step's messages go
now, which wait, and how held text is merged. Plain data in, plain data out; the real
model's streams under the default interval are checked in test_server_openai.py."""

from __future__ import annotations

from lms_jupyter.engine.events import Finished, Started, TextDelta, TokenLogprob
from lms_jupyter.engine.worker.coalesce import Coalescer, merged


def text(rid: int, value: str, logprobs=None):
    return ("event", rid, TextDelta(value, logprobs))


def finished(rid: int):
    return ("event", rid, Finished("eos", 3, 2, 0.01, 0.1))


def lp(token: str) -> TokenLogprob:
    return TokenLogprob(token=token, logprob=-0.5, bytes=tuple(token.encode()))


def texts(messages) -> list:
    return [(m[1], m[2].text) for m in messages if m[0] == "event" and type(m[2]) is TextDelta]


def test_merged_joins_each_requests_consecutive_text():
    out = merged([text(1, "a"), text(2, "x"), text(1, "b"), text(2, "y"), text(1, "c")])
    assert texts(out) == [(1, "abc"), (2, "xy")]


def test_merged_never_joins_across_a_requests_end():
    out = merged([text(1, "a"), finished(1), ("closed", 1), text(1, "b")])
    assert [m[0] for m in out] == ["event", "event", "closed", "event"]
    assert texts(out) == [(1, "a"), (1, "b")]
    # another request's end does not stop request 1's text from joining
    out = merged([text(1, "a"), finished(2), ("closed", 2), text(1, "b")])
    assert texts(out) == [(1, "ab")]


def test_merged_keeps_one_logprob_entry_per_token():
    out = merged([text(1, "a", [lp("a")]), text(1, "b", [lp("b")]), text(1, "c", [lp("c")])])
    (delta,) = [m[2] for m in out]
    assert delta.text == "abc" and [e.token for e in delta.logprobs] == ["a", "b", "c"]
    plain = merged([text(1, "a"), text(1, "b")])[0][2]
    assert plain.logprobs is None


def test_the_first_text_goes_at_once_and_later_text_waits_out_the_interval():
    c = Coalescer(0.020)
    start = [("event", 1, Started(prompt_tokens=3))]
    assert c.step(start, now=0.000) == start
    assert texts(c.step([text(1, "a")], now=0.001)) == [(1, "a")]  # time to first token
    assert c.step([text(1, "b")], now=0.010) is None
    assert c.step([text(1, "c")], now=0.015) is None
    out = c.step([text(1, "d")], now=0.022)
    assert texts(out) == [(1, "bcd")]
    assert c.step([], now=0.100) == []  # nothing was left behind


def test_an_end_releases_everything_held_before_it():
    c = Coalescer(0.020)
    c.step([text(1, "a"), text(2, "x")], now=0.0)
    assert c.step([text(1, "b"), text(2, "y")], now=0.005) is None
    out = c.step([finished(1), ("closed", 1), text(2, "z")], now=0.010)
    assert texts(out) == [(1, "b"), (2, "yz")]
    assert out.index(("closed", 1)) > next(i for i, m in enumerate(out) if m[1] == 1)


def test_a_new_requests_first_text_is_not_held_beside_a_streaming_one():
    c = Coalescer(0.020)
    c.step([text(1, "a")], now=0.0)
    out = c.step([text(1, "b"), text(2, "first")], now=0.005)
    assert texts(out) == [(1, "b"), (2, "first")]


def test_a_tick_releases_what_a_stalled_step_left_held():
    c = Coalescer(0.020)
    c.step([text(1, "a")], now=0.0)
    assert c.step([text(1, "b")], now=0.005) is None
    assert c.step([], now=0.010) is None  # a tick inside the interval
    assert texts(c.step([], now=0.250)) == [(1, "b")]
    assert c.step([], now=0.500) == []  # nothing held: nothing to send


def test_a_slow_model_and_interval_zero_are_never_held():
    slow = Coalescer(0.020)
    slow.step([text(1, "a")], now=0.0)
    assert texts(slow.step([text(1, "b")], now=0.030)) == [(1, "b")]
    assert texts(slow.step([text(1, "c")], now=0.060)) == [(1, "c")]
    off = Coalescer(0.0)
    off.step([text(1, "a")], now=0.0)
    assert texts(off.step([text(1, "b")], now=0.0001)) == [(1, "b")]


def test_a_closed_request_starts_over_with_its_first_text_unheld():
    c = Coalescer(0.020)
    c.step([text(1, "a")], now=0.0)
    c.step([finished(1), ("closed", 1)], now=0.001)
    # request ids are not reused, but a closed one is forgotten all the same
    assert texts(c.step([text(1, "again")], now=0.002)) == [(1, "again")]
