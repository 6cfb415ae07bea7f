"""Which generated tokens belong to the answer's content, for OpenAI's ``logprobs``.

The engine reports log-probabilities per token with the raw text each piece of output
released; :class:`~.output.ChatOutput` then turns that raw text into content, reasoning
and tool calls. OpenAI's chat ``logprobs.content`` covers the content only, so the raw
pieces are lined up with the content (and reasoning) text they became:

- a content piece is found in the raw text not yet accounted for; the tokens of the raw
  pieces it overlaps are its tokens, and tokens of raw text before it (reasoning, think
  tags, tool-call markup) are dropped;
- reasoning pieces are lined up the same way and their tokens dropped, so reasoning
  text that happens to equal later content cannot steal the content's tokens;
- tool calls (whose arguments a parser may re-serialise) have no tokens reported: their
  markup and arguments are raw text no content piece overlaps;
- a content piece that is not in the raw text (the "inline" reasoning setting re-spells
  think tags) takes every token not yet accounted for.

Attribution is per raw piece (the engine's text deltas, usually one token each), so a
delta that mixes content with markup reports its tokens with the content.
"""

from __future__ import annotations

from collections import deque

from lms_jupyter.chat.events import ContentDelta, ReasoningDelta


class ContentLogprobs:
    """Lines up raw generated pieces (with their tokens) against the content and
    reasoning text the chat output made of them."""

    def __init__(self):
        self._raw = ""  # raw text not yet accounted for
        self._base = 0  # offset of ``_raw`` in the whole raw output
        self._pieces: deque = deque()  # (start, end, tokens) of raw pieces with tokens
        self.content: list = []  # every content token so far, in order

    def add(self, text: str, tokens) -> None:
        """A raw piece of output and its tokens' log-probabilities."""
        start = self._base + len(self._raw)
        self._raw += text
        if tokens:
            self._pieces.append((start, start + len(text), tuple(tokens)))

    def take(self, text: str, content: bool = True) -> tuple:
        """The tokens of a content piece (``content=False``: of a reasoning piece, which
        are dropped and returned as ``()``)."""
        if not text:
            return ()
        at, length = self._find(text)
        if at < 0:  # not in the raw text: everything pending goes with it
            start, end = self._base, self._base + len(self._raw)
        else:
            start, end = self._base + at, self._base + at + length
        tokens: list = []
        while self._pieces:
            a, b, piece = self._pieces[0]
            if a >= end and not (a == b == end):
                break
            self._pieces.popleft()
            if content and (b > start or a == b >= start):
                tokens.extend(piece)
        self._raw = self._raw[end - self._base :]
        self._base = end
        if not content:
            return ()
        self.content.extend(tokens)
        return tuple(tokens)

    def attach(self, events: list) -> list:
        """The chat output's events, content ones carrying their tokens (reasoning pieces
        are lined up, and their tokens dropped)."""
        out = []
        for event in events:
            if isinstance(event, ContentDelta):
                event = ContentDelta(event.text, self.take(event.text))
            elif isinstance(event, ReasoningDelta):
                self.take(event.text, content=False)
            out.append(event)
        return out

    def _find(self, text: str) -> tuple[int, int]:
        for candidate in (text, text.strip()):
            if candidate:
                at = self._raw.find(candidate)
                if at >= 0:
                    return at, len(candidate)
        return -1, 0
