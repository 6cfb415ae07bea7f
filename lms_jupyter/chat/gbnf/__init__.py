"""GBNF grammars for llama.cpp, in pieces: rule building (rules.py), integer ranges
(numbers.py), JSON Schema compilation (json_schema.py), forced tool calls
(tool_calls.py) and operations on finished grammars (compose.py). The public names are
re-exported by lms_jupyter.chat.grammar, where callers import them from."""
