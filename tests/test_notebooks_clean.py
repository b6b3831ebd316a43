"""Notebooks are committed clean (no outputs, no execution counts) with exactly one papermill 'parameters' cell
made of plain literal assignments (papermill injects values after it; derived values belong in the next cell)."""
import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:1] == ["01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: a cell has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"
        meta = cell.get("metadata", {})
        if "solution" in meta.get("tags", []):      # a worked solution: collapsed until the reader opens it
            assert meta.get("jupyter") == {"source_hidden": True}, f"{path.name}: a solution cell is not collapsed"
            meta = {k: v for k, v in meta.items() if k != "jupyter"}
        assert set(meta) <= {"tags"}, f"{path.name}: noisy cell metadata {cell['metadata']}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_of_literals(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse("".join(tagged[0]["source"]))
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{path.name}: only assignments in the parameters cell"
        ast.literal_eval(node.value)  # raises if not a plain literal
        names += [t.id for t in node.targets]
    assert {"preset", "seed", "runs_dir", "device"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_goals_summary_and_exercises(path):
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    for heading in ("**Goals**", "## Summary", "## Exercises"):
        assert heading in text, f"{path.name} lacks {heading}"
    assert "| `smoke` |" in text and "| `laptop` |" in text  # the runtime table per preset


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_has_an_expected_outcome_where_a_notebook_gives_them(path):
    """A notebook's "Expected outcomes and solutions" lists one outcome per exercise, numbered alike, and each
    solution cell names an exercise that exists."""
    import re
    cells = json.loads(path.read_text())["cells"]
    text = ["".join(c["source"]) for c in cells]
    exercises = next(t for t in text if "## Exercises" in t).split("## Exercises")[1]
    asked = re.findall(r"^(\d+)\. ", exercises, flags=re.M)
    outcomes = next((t for t in text if t.startswith("### Expected outcomes and solutions")), None)
    if outcomes is None:
        pytest.skip(f"{path.name} gives no expected outcomes yet")
    assert re.findall(r"^(\d+)\. ", outcomes, flags=re.M) == asked
    solved = [re.match(r"# Solution to exercise (\d+)", t) for t, c in zip(text, cells)
              if "solution" in c.get("metadata", {}).get("tags", [])]
    assert solved and all(m and m.group(1) in asked for m in solved)
