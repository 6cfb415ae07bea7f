"""Tokens a one-field forced tool call costs, before and after compact grammars (issue 26).

A forced call (tool_choice "required") on the embedded SmolLM2, which uses LM Studio's
generic [TOOL_REQUEST] format, is generated under the earlier grammar variant (optional
space or indented newline between JSON tokens, ``", "``/``": "`` separators) and under
the current compact one, same prompt, greedy. Prints, as medians over the prompts:
tokens up to the first argument's value, and tokens for the whole call.

Usage: python benchmarks/bench_forced_call_tokens.py [--prompts 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lms_jupyter.chat.grammar import tool_call_gbnf
from lms_jupyter.chat.toolcalls import generic_tool_system_prompt
from lms_jupyter.engine.options import default_threads
from lms_jupyter.models.catalog import embedded_model_path

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "yes_no",
            "description": "Answer a yes/no question.",
            "parameters": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
            },
        },
    }
]
QUESTIONS = [
    "Is the sky blue?",
    "Is fire cold?",
    "Do cats bark?",
    "Is water wet?",
    "Is Paris in France?",
    "Can fish fly?",
    "Is ice hot?",
    "Is two even?",
]


def cost(llm, grammar_text: str, question: str) -> tuple[int, int, str]:
    """(tokens before the first argument's value, tokens of the whole call, the text)."""
    from llama_cpp import LlamaGrammar

    grammar = LlamaGrammar.from_string(grammar_text, verbose=False)
    messages = [
        {"role": "system", "content": generic_tool_system_prompt(TOOLS)},
        {"role": "user", "content": question},
    ]
    result = llm.create_chat_completion(messages, grammar=grammar, temperature=0, max_tokens=96)
    text = result["choices"][0]["message"]["content"] or ""
    value_at = text.index('"answer"') + len('"answer"')
    value_at = text.index('"', value_at)  # the opening quote of the value
    before = len(llm.tokenize(text[:value_at].encode(), add_bos=False, special=False))
    return before, result["usage"]["completion_tokens"], text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=5)
    args = parser.parse_args()
    from llama_cpp import Llama

    llm = Llama(str(embedded_model_path()), n_ctx=2048, n_threads=default_threads(), verbose=False)
    rows = {}
    for label, compact in (("before (loose JSON)", False), ("after (compact JSON)", True)):
        grammar = tool_call_gbnf(TOOLS, "generic", "required", parallel=False, compact=compact)
        costs = [cost(llm, grammar, q) for q in QUESTIONS[: args.prompts]]
        rows[label] = costs
        print(f"{label}: example {costs[0][2]!r}")
    print(f"{'grammar':<22} {'tokens to 1st value':>20} {'tokens per call':>16}")
    for label, costs in rows.items():
        print(
            f"{label:<22} {statistics.median(c[0] for c in costs):>20} "
            f"{statistics.median(c[1] for c in costs):>16}"
        )


if __name__ == "__main__":
    main()
