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


#: numbered chapters, and the unnumbered interlude between parts 1 and 2, which keeps their shape
CHAPTERS = [p for p in NOTEBOOKS if p.name[:2].isdigit() or p.name == "making_numpy_fast.ipynb"]


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


PART1 = [p for p in NOTEBOOKS if p.name in ("quickstart.ipynb", "making_numpy_fast.ipynb")
         or p.name[:2] in {"01", "02", "03", "04", "05"}]
HIDDEN_INPUT = {"remove-input", "hide-input", "remove-cell"}
MAX_VISIBLE = 80


def test_part1_notebooks_found():
    assert len(PART1) == 7


@pytest.mark.parametrize("path", PART1, ids=lambda p: p.name)
def test_visible_code_lines_fit(path):
    """Code a reader sees (cells not tagged remove-input, hide-input or remove-cell) fits 80 columns."""
    nb = json.loads(path.read_text())
    too_long = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or HIDDEN_INPUT & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for n, line in enumerate("".join(cell["source"]).splitlines(), 1):
            if len(line) > MAX_VISIBLE:
                too_long.append(f"cell {i} line {n} ({len(line)} chars): {line.strip()[:60]}")
    assert not too_long, f"{path.name}: visible code lines over {MAX_VISIBLE} characters:\n" + "\n".join(too_long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_python_domain_roles(path):
    # the book has no API reference pages, so {func}`...` and {mod}`...` cannot resolve (-n fails)
    import re

    assert not re.findall(r"\{(?:py:)?(?:func|mod|class|meth|attr)\}`", _markdown(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_an_id(path):
    # nbformat 4.5 requires cell ids; without them every reader's Jupyter warns (and rewrites the file)
    nb = json.loads(path.read_text())
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    ids = [c.get("id") for c in nb["cells"]]
    assert all(ids) and len(set(ids)) == len(ids)
