"""Notebook context through a real kernel (nbclient), on the real SmolLM2.

One notebook exercises what issue 25 asks of the kernel: ``{df}`` within the cap (the
prompt as sent, measured with the model's own tokenizer), ``{Err}`` after a failing cell,
``{In[n]}``/``{Out[n]}``, ``\\{``, an unknown name's one-line error with no model call,
``%lms fix`` offering its code through ``set_next_input`` (the execute_reply payload)
and ``%lms explain``. Every answer is bounded by max_tokens so the 135M model stops.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import MODEL
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(600)

BUGGY = "def mean(xs):\n    return sum(xs) / len(x)\n\nmean([1, 2, 3])"
CELLS = [
    "%load_ext lms_jupyter",  # 1
    (
        "import pandas as pd\n"
        "df = pd.DataFrame({'city': ['Paris', 'Rome', 'Oslo', 'Lima'] * 500,\n"
        "                   'temp': [21.5, 25.0, 9.5, 18.0] * 500,\n"
        "                   'note': ['a rather long free-text note about the weather'] * 2000})"
    ),
    "df.shape",  # 3
    (
        "%%chat --max-tokens 4 --temperature 0 --no-stats --show-prompt --context-tokens 120\n"
        "Summarise this table: {df}"
    ),  # 4
    (
        "import json\n"  # 5: the prompt as sent, measured with the model's tokenizer
        "from lms_jupyter.kernel import runtime\n"
        "m = get_ipython()._lms_magics\n"
        "sent = m.conversation.messages[-2]['content']\n"
        f"tok = runtime.get_manager().get_loaded({MODEL!r})\n"
        "table = sent.removeprefix('Summarise this table: ')\n"
        "print(json.dumps({'sent': sent, 'tokens': len(tok.tokenize(table, False, False))}))"
    ),
    "1 / 0",  # 6
    (
        "%%chat --new --max-tokens 4 --temperature 0 --no-stats --show-prompt\n"
        "Why did this fail? {Err}\nCell 2 was:\n{In[2]}\nIts shape: {Out[3]}"
    ),  # 7
    "%%chat --max-tokens 4\nAbout {df} and {missing_name}",  # 8
    "print(len(m.conversation), m.conversation.messages[-2]['content'][:9])",  # 9
    (
        '%%chat --max-tokens 2 --temperature 0 --no-stats\nLiteral \\{df} and {"a": 1} and {{x}}'
    ),  # 10
    "print(m.conversation.messages[-2]['content'])",  # 11
    BUGGY,  # 12
    "%lms fix --max-tokens 120 --temperature 0",  # 13
    "%lms explain 6 --max-tokens 24 --temperature 0 --show-prompt",  # 14
    "%lms fix 3",  # 15: cell 3 raised nothing
    (
        "import lms_jupyter\n"  # 16
        "answer = lms_jupyter.chat('Describe {df.head(2)}', max_tokens=4, temperature=0, "
        "show_prompt=True)\nprint(type(answer).__name__)"
    ),
    "print(m.context.history.last_error.execution_count)",  # 17: usage errors not kept
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("context")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    replies: dict[int, dict] = {}

    def on_cell_executed(cell, cell_index, execute_reply):
        replies[cell_index + 1] = execute_reply["content"]

    mp = pytest.MonkeyPatch()
    mp.setenv("LMS_JUPYTER_MODELS_DIR", str(tmp / "no-models"))
    try:
        NotebookClient(
            nb,
            kernel_name="python3",
            timeout=300,
            allow_errors=True,
            on_cell_executed=on_cell_executed,
            resources={"metadata": {"path": str(tmp)}},
        ).execute()
    finally:
        mp.undo()
    nbformat.write(nb, tmp / "context.ipynb")
    (tmp / "replies.json").write_text(json.dumps(replies, default=str))
    cells = {i + 1: c for i, c in enumerate(nb.cells)}
    return cells, replies


def stream(cell) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


def errors(cell) -> list:
    return [o for o in cell.outputs if o.output_type == "error"]


def usage_error(cells, replies, n: int) -> str:
    """A magic's UsageError: one stderr line (no traceback), and the reply's evalue."""
    reply = replies[n]
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    (line,) = [o.text for o in cells[n].outputs if o.output_type == "stream"]
    assert line == f"UsageError: {reply['evalue']}\n"
    return reply["evalue"]


def answer(cell) -> str:
    finals = [
        o
        for o in cell.outputs
        if o.output_type == "display_data"
        and o.metadata.get("lms_jupyter", {}).get("stage") == "finished"
    ]
    return finals[-1].data["text/plain"] if finals else ""


def test_execution_counts_match_the_cell_numbers(run):
    cells, _ = run
    assert [c.execution_count for c in cells.values()] == list(range(1, len(CELLS) + 1))


def test_dataframe_is_rendered_within_the_cap(run):
    cells, _ = run
    assert not errors(cells[4]), errors(cells[4])
    shown = stream(cells[4])
    assert shown.startswith(f"Prompt sent to {MODEL} (user message, ")
    assert "{df}: pandas.DataFrame, " in shown and "tokens (tokenizer)" in shown
    measured = json.loads(stream(cells[5]))
    sent, tokens = measured["sent"], measured["tokens"]
    assert sent.startswith(
        "Summarise this table: pandas DataFrame: 2,000 rows × 3 columns\ndtypes: city: "
    )
    assert "| city | temp | note |" in sent or "| city | temp |" in sent  # a markdown head
    assert "| 0 | Paris | 21.5" in sent
    assert tokens <= 120, (tokens, sent)
    assert sent in shown  # --show-prompt printed exactly what was sent


def test_err_in_and_out_of_earlier_cells(run):
    cells, _ = run
    assert errors(cells[6])[0].ename == "ZeroDivisionError"
    assert not errors(cells[7]), errors(cells[7])
    shown = stream(cells[7])
    assert "Why did this fail? Traceback (most recent call last):" in shown
    assert "ZeroDivisionError: division by zero" in shown
    assert "Cell 2 was:\nimport pandas as pd\ndf = pd.DataFrame(" in shown
    assert "Its shape: (2000, 3)" in shown
    assert "{Err}: Err[6] ZeroDivisionError, " in shown and "{In[2]}: In[2], " in shown
    assert "interactiveshell" not in shown  # IPython's own frames are left out
    assert answer(cells[7])


def test_unknown_name_is_one_line_error_and_no_model_call(run):
    cells, replies = run
    assert usage_error(cells, replies, 8) == (
        "%%chat: {missing_name}: name 'missing_name' is not defined. Write \\{ for a literal brace."
    )
    assert not [o for o in cells[8].outputs if o.output_type == "display_data"]
    assert stream(cells[9]).strip() == "2 Why did t"  # the conversation did not move


def test_escaped_brace_json_and_doubled_braces_stay_text(run):
    cells, _ = run
    assert not errors(cells[10]), errors(cells[10])
    assert stream(cells[11]).strip() == 'Literal {df} and {"a": 1} and {x}'


def test_fix_offers_the_code_as_the_next_cell_never_runs_it(run):
    cells, replies = run
    assert errors(cells[12])[0].ename == "NameError"
    assert not errors(cells[13]), errors(cells[13])
    text = answer(cells[13])
    assert "```" in text, text
    (payload,) = [p for p in replies[13]["payload"] if p["source"] == "set_next_input"]
    assert payload["replace"] is False
    code = payload["text"]
    assert code.strip() and code in text  # the answer's first code block
    assert "A corrected cell 12 is offered below; it has not run." in stream(cells[13])


def test_explain_streams_an_answer_about_the_cell(run):
    cells, replies = run
    assert not errors(cells[14]), errors(cells[14])
    assert answer(cells[14])
    shown = stream(cells[14])
    assert "Explain this notebook cell (cell 6):\n\n```python\n1 / 0\n```" in shown
    assert "It failed with:" in shown and "ZeroDivisionError: division by zero" in shown
    assert usage_error(cells, replies, 15) == "%lms fix: cell 3 raised no error."
    assert stream(cells[17]).strip() == "12"  # the NameError, not a later UsageError


def test_public_chat_uses_the_same_rules(run):
    cells, _ = run
    assert not errors(cells[16]), errors(cells[16])
    shown = stream(cells[16])
    assert "Describe pandas DataFrame: 2 rows × 3 columns" in shown
    assert shown.rstrip().endswith("str")
