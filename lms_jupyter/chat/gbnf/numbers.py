"""Integer ranges as grammar alternatives: JSON Schema's minimum/maximum (exclusive too)
spelled out digit by digit, since GBNF has no arithmetic."""

from __future__ import annotations

import math

from lms_jupyter.chat.gbnf.rules import gbnf_literal

MAX_INT_DIGITS = 18  # keeps numbers finite and inside int64


def digits_between(low: str, high: str) -> list[str]:
    """GBNF sequences for every digit string of len(low) digits in [low, high]."""
    width = len(low)
    if low == high:
        return [gbnf_literal(low)]
    if width == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [f"{gbnf_literal(low[0])} {rest}" for rest in digits_between(low[1:], high[1:])]
    sequences = []
    low_rest_is_min = low[1:] == "0" * (width - 1)
    high_rest_is_max = high[1:] == "9" * (width - 1)
    first_full = int(low[0]) + (0 if low_rest_is_min else 1)
    last_full = int(high[0]) - (0 if high_rest_is_max else 1)
    if not low_rest_is_min:
        sequences += [
            f"{gbnf_literal(low[0])} {rest}" for rest in digits_between(low[1:], "9" * (width - 1))
        ]
    if first_full <= last_full:
        digit = (
            f"[{first_full}-{last_full}]"
            if first_full < last_full
            else gbnf_literal(str(first_full))
        )
        sequences.append(f"{digit} [0-9]{{{width - 1}}}")
    if not high_rest_is_max:
        sequences += [
            f"{gbnf_literal(high[0])} {rest}"
            for rest in digits_between("0" * (width - 1), high[1:])
        ]
    return sequences


def natural_range(low: int, high: int | None) -> list[str]:
    """Alternatives matching the decimal form of every integer in [low, high] (low >= 0)."""
    low_width = len(str(low))
    high_width = len(str(high)) if high is not None else low_width
    alternatives = []
    for width in range(low_width, high_width + 1):
        start = low if width == low_width else 10 ** (width - 1)
        end = high if (high is not None and width == high_width) else 10**width - 1
        alternatives += digits_between(str(start), str(end))
    if high is None and low_width < MAX_INT_DIGITS:
        alternatives.append(f"[1-9] [0-9]{{{low_width},{MAX_INT_DIGITS - 1}}}")
    return alternatives


def integer_range(low: int | None, high: int | None) -> str:
    alternatives = []
    if low is None or low < 0:
        closest = -1 if high is None or high >= 0 else high  # negative value nearest zero
        magnitudes = natural_range(-closest, None if low is None else -low)
        alternatives.append('"-" ( ' + " | ".join(magnitudes) + " )")
    if high is None or high >= 0:
        alternatives += natural_range(0 if low is None or low < 0 else low, high)
    return " | ".join(alternatives)


def integer_bound(schema: dict, inclusive_key: str, exclusive_key: str, lower: bool) -> int | None:
    """The tightest integer bound from minimum/exclusiveMinimum (or the maximum pair)."""
    candidates = []
    inclusive = schema.get(inclusive_key)
    exclusive = schema.get(exclusive_key)
    if isinstance(inclusive, (int, float)) and not isinstance(inclusive, bool):
        if exclusive is True:  # draft-4 boolean form
            candidates.append(math.floor(inclusive) + 1 if lower else math.ceil(inclusive) - 1)
        else:
            candidates.append(math.ceil(inclusive) if lower else math.floor(inclusive))
    if isinstance(exclusive, (int, float)) and not isinstance(exclusive, bool):
        candidates.append(math.floor(exclusive) + 1 if lower else math.ceil(exclusive) - 1)
    if not candidates:
        return None
    return max(candidates) if lower else min(candidates)
