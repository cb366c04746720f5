"""`explodebook.book.expressions`: finding, checking and substituting inline expressions."""

from __future__ import annotations

import nbformat

from explodebook.book import expressions as ex


def notebook(*cells: tuple[str, list[dict]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for source, entries in cells:
        cell = nbformat.v4.new_markdown_cell(source)
        if entries:
            cell.metadata["user_expressions"] = entries
        nb.cells.append(cell)
    return nb


def ok(text: str) -> dict:
    return {"status": "ok", "data": {"text/plain": text}, "metadata": {}}


def test_expressions_in_a_cell_in_order_each_once() -> None:
    text = 'A {eval}`x` and {eval}`f"{y:.2f}"`, again {eval}`x`; not {glue:text}`x`.'
    assert ex.expressions_in(text) == ["x", 'f"{y:.2f}"']
    assert ex.expressions_in("no expressions") == []


def test_metadata_entries_follow_jupyterlab_myst() -> None:
    reply = {"0": ok("1"), "1": {"status": "error", "ename": "NameError", "evalue": "y", "traceback": []}}
    assert ex.metadata_entries(["x", "y"], reply) == [
        {"expression": "x", "result": ok("1")},
        {"expression": "y", "result": reply["1"]},
    ]


def test_errors_and_conflicts_are_reported() -> None:
    nb = notebook(
        ("{eval}`x`", [{"expression": "x", "result": ok("1")}]),
        ("{eval}`x` {eval}`y`", [
            {"expression": "x", "result": ok("2")},
            {"expression": "y", "result": {"status": "error", "ename": "NameError", "evalue": "name 'y'"}},
        ]),
        ("{eval}`z`", [{"expression": "z", "result": ok("3")}]),
        ("{eval}`z`", [{"expression": "z", "result": ok("3")}]),  # same value twice: fine
    )  # fmt: skip
    assert ex.conflicts(nb) == {"x": 2}
    problems = ex.errors(nb)
    assert len(problems) == 2
    assert any("`y` raised NameError" in p for p in problems)
    assert any("`x` has 2 different values" in p for p in problems)
    assert ex.expression_outputs(nb)["z"] == ok("3")
    assert ex.all_expressions(nb.cells) == ["x", "y", "z"]


def test_plain_text_drops_a_strings_quotes_only() -> None:
    assert ex.plain_text(ok("'1.73'")) == "1.73"
    assert ex.plain_text(ok('"it\'s"')) == "it's"
    assert ex.plain_text(ok("42")) == "42"
    # jupyterlab-myst's rule (first and last character the same quote)
    assert ex.plain_text(ok("'a' + 'b'")) == "a' + 'b"
    assert ex.plain_text({"status": "error"}) is None


def test_substitute_writes_the_values_into_the_text() -> None:
    outputs = {"x": ok("'7.22e+23'"), "n": ok("3")}
    text = "reaches {eval}`x` at step {eval}`n`, {eval}`unknown` stays"
    assert ex.substitute(text, outputs) == "reaches 7.22e+23 at step 3, {eval}`unknown` stays"
