"""The book's notebooks are stored clean and every one is in the table of contents."""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_in_table_of_contents(path):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"book/{path.stem}" in toc


CHAPTERS = [p for p in NOTEBOOKS if p.name[:2].isdigit()]


def _markdown(path):
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_there_are_chapters():
    assert len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_shape(path):
    text = _markdown(path)
    assert "**This chapter teaches**" in text and "**It assumes**" in text
    assert "## Summary" in text and "## Exercises" in text
    exercises = text.count("```{exercise}")
    assert exercises >= 2, f"{path.name} has {exercises} exercises"
    assert text.count("```{solution-start}") == exercises, "every exercise has a solution"
    assert text.count(":class: dropdown") >= exercises, "solutions are collapsed"
    assert "{glue:" in text or "{glue:figure}" in text, "numbers and figures come from the code"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_a_figure_and_asserts(path):
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "```{glue:figure}" in _markdown(path)
    assert "assert " in code
