"""Notebook context without a kernel or a model: which braces are placeholders, how
values render for a model, the token cap, the history's lookups and the fix's code."""

from __future__ import annotations

import pytest

from lms_jupyter.kernel.context.assist import (
    explain_request,
    first_code_block,
    fix_request,
)
from lms_jupyter.kernel.context.history import (
    ContextError,
    NotebookHistory,
    format_error,
)
from lms_jupyter.kernel.context.interpolate import expand, resolve
from lms_jupyter.kernel.context.render import Limits, render_value
from lms_jupyter.kernel.context.template import (
    Placeholder,
    free_names,
    parse,
    placeholders,
)
from lms_jupyter.kernel.context.tokens import (
    EstimateCounter,
    TokenizerCounter,
    counter_for,
)


# -- the template rule ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        "{a: 1}",
        "{ x }",
        "{}",
        "{1}",
        "{a, b}",
        "{x!r}",
        "{True}",
        "{'k': v}",
        "def f(): return {k: v for k, v in d.items()}",
        "{x:>10}",
        "{a\nb}",
        "{x=1}",
    ],
)
def test_json_code_and_format_specs_are_plain_text(text):
    assert parse(text) == [text]


@pytest.mark.parametrize(
    "text, kind, index",
    [
        ("df", "expr", None),
        ("df.head()", "expr", None),
        ("len(rows)", "expr", None),
        ('d["k"]', "expr", None),
        ("facts[river]", "expr", None),
        ("In[1]", "In", 1),
        ("Out[ 12 ]", "Out", 12),
        ("Err[3]", "Err", 3),
        ("Err", "Err", None),
        ("In[-1]", "In", -1),
        ("[x * 2 for x in xs]", None, None),
    ],
)
def test_placeholders(text, kind, index):
    if kind is None:  # starts with a bracket, not a name: plain text
        assert parse("{" + text + "}") == ["{" + text + "}"]
        return
    (found,) = placeholders("before {" + text + "} after")
    assert (found.kind, found.index, found.label) == (kind, index, "{" + text + "}")


def test_escapes_and_order():
    parts = parse(r"a \{x} b {{y}} c {z} \} {")
    assert parts[0] == "a {x} b {y} c "
    assert isinstance(parts[1], Placeholder) and parts[1].text == "z"
    assert parts[2] == " } {"


def test_free_names_leave_out_comprehension_and_lambda_variables():
    (p,) = placeholders("{sum([f(x) for x in xs if (y := x)]) + len(list(map(lambda a: a, ys)))}")
    assert sorted(free_names(p.tree)) == ["f", "len", "list", "map", "sum", "xs", "ys"]


# -- filling in -------------------------------------------------------------------------------
class Obj:
    x = "X"


NS = {"a": 1, "obj": Obj(), "d": {"k": "v"}, "rows": [1, 2, 3], "facts": {"river": "Seine"}}


def test_expressions_are_evaluated_in_the_namespace():
    text = expand(
        '{a}{obj.x}{d["k"]}{len(rows)} {facts[river]} {sum([r * 2 for r in rows])} '
        '{[r for r in rows]} {"json": true}',
        NS,
    ).text
    assert text == '1Xv3 Seine 12 {[r for r in rows]} {"json": true}'


def test_unknown_names_and_failures_are_one_line_errors_that_name_them():
    with pytest.raises(ContextError) as exc:
        resolve("Look at {missing} please", NS)
    assert str(exc.value).startswith("{missing}: name 'missing' is not defined")
    assert "\n" not in str(exc.value)
    with pytest.raises(ContextError, match=r"^\{obj.nope\} failed: AttributeError: "):
        resolve("{obj.nope}", NS)
    with pytest.raises(ContextError, match=r"^\{rows\[9\]\} failed: IndexError"):
        resolve("{rows[9]}", NS)


def test_only_used_placeholders_are_evaluated():
    calls = []
    ns = {"f": lambda: calls.append(1) or "ran"}
    assert expand("no placeholders {} here", ns).text == "no placeholders {} here"
    assert calls == []
    assert expand("{f()}", ns).text == "ran" and calls == [1]


def test_history_placeholders():
    sources = ["", "x = 1", "1/0", "x + 1", "%%chat\n{In[1]}"]
    history = NotebookHistory(lambda: sources, lambda: {3: 2}, lambda: 4)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError as exc:
        history.record_error(2, exc)
    expanded = expand("{In[1]} | {Out[3]} | {Err[2]} | {Err} | {In[-1]}", {}, history)
    first, out, err, last, previous = expanded.text.split(" | ")
    assert (first, out, previous) == ("x = 1", "2", "x + 1")
    assert (
        err == last
        and err.startswith("Traceback")
        and err.endswith("ZeroDivisionError: division by zero")
    )
    assert [i.kind for i in expanded.interpolations] == [
        "In[1]",
        "Out[3] int",
        "Err[2] ZeroDivisionError",
        "Err[2] ZeroDivisionError",
        "In[3]",
    ]
    for text, message in [
        ("{In[7]}", "{In[7]}: no cell 7 has run"),
        ("{Out[1]}", "{Out[1]}: cell 1 has no output"),
        ("{Err[3]}", "{Err[3]}: cell 3 raised no error"),
        ("{In[4]}", "{In[4]}: no cell 4 has run"),
    ]:  # the running cell
        with pytest.raises(
            ContextError, match="^" + message.replace("[", r"\[").replace("{", r"\{")
        ):
            resolve(text, {}, history)
    with pytest.raises(ContextError, match="only available in an IPython kernel"):
        resolve("{Err}", {})
    empty = NotebookHistory(lambda: [""], dict, lambda: 1)
    with pytest.raises(ContextError, match="no cell has raised an error"):
        resolve("{Err}", {}, empty)


def test_format_error_skips_the_runner_frames():
    def runner():  # runs a cell, as IPython does
        exec(compile("def g():\n    raise ValueError('bad value')\ng()", "<cell-5>", "exec"), {})

    try:
        runner()
    except ValueError as exc:
        text = format_error(exc, skip_dirs=[__file__.rsplit("/", 1)[0]])
    assert "runner" not in text and '"<cell-5>", line 3' in text
    assert text.endswith("ValueError: bad value")
    try:
        compile("x = (", "<cell>", "exec")
    except SyntaxError as exc:
        assert "SyntaxError" in format_error(exc) and "Traceback" not in format_error(exc)


# -- the renderer -----------------------------------------------------------------------------
def test_short_values_are_as_str():
    assert [render_value(v) for v in ("hi", 3, 2.5, None, [1, "a"], {"b": 1, "a": 2})] == [
        "hi",
        "3",
        "2.5",
        "None",
        "[1, 'a']",
        "{'b': 1, 'a': 2}",
    ]


def test_long_string_is_cut_with_a_note():
    text = render_value("x" * 100_000, Limits(tokens=100))
    body, note = text.rsplit("\n", 1)
    assert set(body) == {"x"} and EstimateCounter().count(text) <= 100
    assert note.startswith("[... string cut to its first") and "100,000 characters" in note


def test_long_list_and_dict_show_their_size():
    text = render_value(list(range(100_000)), Limits(tokens=80))
    assert text.startswith("[0, 1, 2") and "[list of 100,000 items; the first" in text
    assert EstimateCounter().count(text) <= 80
    text = render_value({f"k{i}": "v" * 50 for i in range(1000)}, Limits(tokens=200))
    assert text.startswith("{'k0': 'vvv") and "[dict of 1,000 keys; the first" in text
    assert EstimateCounter().count(text) <= 200


def test_dataframe_shape_dtypes_and_markdown_head():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"city": ["Paris", "Rome", "Oslo"] * 400, "temp": [21.5, 25.0, 9.5] * 400})
    text = render_value(df)
    lines = text.splitlines()
    assert lines[0] == "pandas DataFrame: 1,200 rows × 2 columns"
    assert lines[1] == "dtypes: city: " + str(df.dtypes["city"]) + ", temp: float64"
    assert lines[2] == "first 5 rows:"
    assert lines[3] == "|  | city | temp |" and lines[4] == "|---|---|---|"
    assert lines[5] == "| 0 | Paris | 21.5 |" and len(lines) == 10
    wide = pd.DataFrame({f"c{i}": ["text " * 40] * 50 for i in range(40)})
    small = render_value(wide, Limits(tokens=300))
    assert EstimateCounter().count(small) <= 300
    assert small.startswith("pandas DataFrame: 50 rows × 40 columns") and "| c0 |" in small
    series = render_value(df["temp"])
    assert series.startswith("pandas Series 'temp': 1,200 values, dtype float64\nfirst 5")


def test_images_and_figures_are_named_not_inlined():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.set_title("Sales")
    assert render_value(figure) == (
        "[matplotlib figure, 640×480 px, 1 axes, titled 'Sales'; the image is not included]"
    )
    assert "Axes titled 'Sales'" in render_value(axes)
    plt.close(figure)
    image = pytest.importorskip("PIL.Image")
    assert (
        render_value(image.new("RGB", (64, 32))) == "[image: 64×32 RGB; the image is not included]"
    )

    class Plot:
        def _repr_png_(self):
            return b"\x89PNG"

    assert render_value(Plot()) == "[Plot image; the image is not included]"


def test_anything_else_is_a_bounded_str():
    class Big:
        def __str__(self):
            return "y" * 50_000

    assert len(render_value(Big(), Limits(tokens=50))) < 400

    class Broken:
        def __str__(self):
            raise RuntimeError("nope")

    assert render_value(Broken()) == "<Broken object; str() failed: nope>"


def test_tokenizer_counter_cuts_in_tokens_and_falls_back():
    words = {}

    def tokenize(text, add_bos=False, special=False):
        return [words.setdefault(w, len(words)) for w in text.split(" ")]

    def detokenize(ids):
        back = {v: k for k, v in words.items()}
        return " ".join(back[i] for i in ids)

    counter = TokenizerCounter(tokenize, detokenize)
    assert counter.count("a b c d") == 4 and counter.truncate("a b c d", 2) == "a b"
    text = render_value(" ".join(f"w{i}" for i in range(1000)), Limits(tokens=60, counter=counter))
    assert text.startswith("w0 w1 w2") and counter.count(text) <= 60

    def gone(*args, **kwargs):
        raise ConnectionError("worker exited")

    broken = TokenizerCounter(gone)
    assert broken.count("abcdefgh") == 2 and broken.name == "estimate"
    assert isinstance(counter_for(None), EstimateCounter)
    assert isinstance(counter_for(object()), EstimateCounter)


# -- fix / explain ----------------------------------------------------------------------------
def test_first_code_block():
    assert first_code_block("Here:\n```python\nx = 1\nprint(x)\n```\nDone") == "x = 1\nprint(x)"
    assert first_code_block("```py\na\n```\n```\nb\n```") == "a"
    assert first_code_block("cut short:\n```\nx = 1\n") == "x = 1"  # hit max_tokens
    assert first_code_block("no code here") is None
    assert first_code_block("```\n\n```") is None


def test_fix_and_explain_requests_hold_the_cell_and_its_error():
    sources = ["", "df.plot(kind='bars')"]
    history = NotebookHistory(lambda: sources, dict, lambda: 2)
    try:
        raise ValueError("bars is not a valid plot kind")
    except ValueError as exc:
        error = history.record_error(1, exc)
    request = fix_request(error)
    assert "```python\ndf.plot(kind='bars')\n```" in request.user
    assert "ValueError: bars is not a valid plot kind" in request.user
    assert "```python" in request.system
    explained = explain_request(1, sources[1], error)
    assert "cell 1" in explained.user and "ValueError" in explained.user
    assert "failed" not in explain_request(1, sources[1], None).user


def test_public_chat_rejects_a_bad_placeholder_before_any_model_call(monkeypatch):
    import lms_jupyter
    from lms_jupyter.kernel import runtime

    def no_model(*args, **kwargs):
        raise AssertionError("no model must be touched")

    monkeypatch.setattr(runtime, "get_manager", no_model)
    monkeypatch.setattr(runtime, "get_api", no_model)
    with pytest.raises(ContextError, match=r"^\{nothing_here\}: name 'nothing_here'"):
        lms_jupyter.chat("Tell me about {nothing_here}")
    import lms_jupyter.chat.templates

    assert callable(lms_jupyter.chat)


def test_batch_templates_render_non_text_values_with_the_same_renderer():
    from lms_jupyter.kernel.mapping.data import read_inputs

    rows = [{"text": "word " * 5000, "tags": list(range(100_000)), "n": 3, "score": 0.25}]
    (item,), _ = read_inputs(rows, "{text}|{tags}|{n}|{score:.1f}|{index}")
    text, tags, n, score, index = item.prompt.split("|")
    assert text == "word " * 5000  # a row's own text is never cut
    assert tags == render_value(list(range(100_000)))
    assert "[list of 100,000 items; the first" in tags
    assert (n, score, index) == ("3", "0.2", "0")
