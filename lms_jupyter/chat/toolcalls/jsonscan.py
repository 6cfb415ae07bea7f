"""An incremental JSON syntax checker, fed one character at a time.

Stream parsers use it to pass argument text on as it arrives while knowing, without
look-ahead, whether the text is still a valid JSON prefix and where the value ends.
"""

from __future__ import annotations

# Results of JsonScanner.push
ACCEPT = 0  # the character belongs to the value, which goes on
DONE = 1  # the character belongs to the value and ends it
DONE_BEFORE = 2  # the value had already ended (a bare number); the character is not part of it
REJECT = 3  # the character cannot continue a valid JSON value

_WHITESPACE = " \t\n\r"
_HEX = "0123456789abcdefABCDEF"
_DIGITS = "0123456789"
_LITERALS = {"t": "true", "f": "false", "n": "null"}

# number sub-states; the ones in _NUMBER_CAN_END may end the number
_N_SIGN, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_EXP, _N_EXP_SIGN, _N_EXP_DIGITS = range(8)
_NUMBER_CAN_END = {_N_ZERO, _N_INT, _N_FRAC, _N_EXP_DIGITS}


class JsonScanner:
    """Checks that characters form one JSON value (leading whitespace allowed).

    ``first_char`` tells what kind of value it is ('{', '[', '"', ...) once known.
    """

    def __init__(self) -> None:
        self._containers: list[str] = []  # '{' or '[' for each open container
        self._state = "value"
        self._in_key = False
        self._literal_rest = ""
        self._number_state = 0
        self._unicode_left = 0
        self.first_char: str | None = None
        self.finished = False

    def push(self, ch: str) -> int:
        if self.finished:
            return DONE_BEFORE
        handler = getattr(self, "_on_" + self._state)
        return handler(ch)

    def can_end_here(self) -> bool:
        """True when the text so far is a whole value if the input stops now."""
        if self.finished:
            return True
        return (
            self._state == "number"
            and not self._containers
            and self._number_state in _NUMBER_CAN_END
        )

    # -- helpers -----------------------------------------------------------------

    def _value_ended(self) -> int:
        if not self._containers:
            self.finished = True
            return DONE
        self._state = "after_value"
        return ACCEPT

    # -- states ------------------------------------------------------------------

    def _on_value(self, ch: str) -> int:
        if ch in _WHITESPACE:
            return ACCEPT
        if self.first_char is None:
            self.first_char = ch
        if ch == "{":
            self._containers.append("{")
            self._state = "key_or_close"
            return ACCEPT
        if ch == "[":
            self._containers.append("[")
            self._state = "value_or_close"
            return ACCEPT
        if ch == '"':
            self._in_key = False
            self._state = "string"
            return ACCEPT
        if ch == "-" or ch in _DIGITS:
            self._state = "number"
            self._number_state = _N_SIGN if ch == "-" else (_N_ZERO if ch == "0" else _N_INT)
            return ACCEPT
        if ch in _LITERALS:
            self._literal_rest = _LITERALS[ch][1:]
            self._state = "literal"
            return ACCEPT
        return REJECT

    def _on_value_or_close(self, ch: str) -> int:
        if ch in _WHITESPACE:
            return ACCEPT
        if ch == "]":
            self._containers.pop()
            return self._value_ended()
        return self._on_value(ch)

    def _on_key_or_close(self, ch: str) -> int:
        if ch in _WHITESPACE:
            return ACCEPT
        if ch == "}":
            self._containers.pop()
            return self._value_ended()
        return self._on_key(ch)

    def _on_key(self, ch: str) -> int:
        if ch in _WHITESPACE:
            return ACCEPT
        if ch == '"':
            self._in_key = True
            self._state = "string"
            return ACCEPT
        return REJECT

    def _on_colon(self, ch: str) -> int:
        if ch in _WHITESPACE:
            return ACCEPT
        if ch == ":":
            self._state = "value"
            return ACCEPT
        return REJECT

    def _on_after_value(self, ch: str) -> int:
        if ch in _WHITESPACE:
            return ACCEPT
        top = self._containers[-1]
        if ch == ",":
            self._state = "key" if top == "{" else "value"
            return ACCEPT
        if (ch == "}" and top == "{") or (ch == "]" and top == "["):
            self._containers.pop()
            return self._value_ended()
        return REJECT

    def _on_string(self, ch: str) -> int:
        if ch == '"':
            if self._in_key:
                self._state = "colon"
                return ACCEPT
            return self._value_ended()
        if ch == "\\":
            self._state = "escape"
            return ACCEPT
        if ord(ch) < 0x20:
            return REJECT
        return ACCEPT

    def _on_escape(self, ch: str) -> int:
        if ch in '"\\/bfnrt':
            self._state = "string"
            return ACCEPT
        if ch == "u":
            self._unicode_left = 4
            self._state = "unicode"
            return ACCEPT
        return REJECT

    def _on_unicode(self, ch: str) -> int:
        if ch not in _HEX:
            return REJECT
        self._unicode_left -= 1
        if self._unicode_left == 0:
            self._state = "string"
        return ACCEPT

    def _on_literal(self, ch: str) -> int:
        if not self._literal_rest or ch != self._literal_rest[0]:
            return REJECT
        self._literal_rest = self._literal_rest[1:]
        if not self._literal_rest:
            return self._value_ended()
        return ACCEPT

    def _on_number(self, ch: str) -> int:
        state = self._number_state
        if ch in _DIGITS:
            if state == _N_SIGN:
                self._number_state = _N_ZERO if ch == "0" else _N_INT
            elif state == _N_ZERO:
                return REJECT  # no leading zeros
            elif state in (_N_DOT, _N_FRAC):
                self._number_state = _N_FRAC
            elif state in (_N_EXP, _N_EXP_SIGN, _N_EXP_DIGITS):
                self._number_state = _N_EXP_DIGITS
            return ACCEPT
        if ch == "." and state in (_N_ZERO, _N_INT):
            self._number_state = _N_DOT
            return ACCEPT
        if ch in "eE" and state in (_N_ZERO, _N_INT, _N_FRAC):
            self._number_state = _N_EXP
            return ACCEPT
        if ch in "+-" and state == _N_EXP:
            self._number_state = _N_EXP_SIGN
            return ACCEPT
        if state not in _NUMBER_CAN_END:
            return REJECT
        # the number ended just before this character
        if not self._containers:
            self.finished = True
            return DONE_BEFORE
        self._state = "after_value"
        return self._on_after_value(ch)
