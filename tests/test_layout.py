"""Imports point down: the core never imports a topic or the widgets; topics never each other."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "sgmteach"
TOPICS = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
CORE = sorted(p for p in PKG.glob("*.py") if p.name != "__init__.py")


def _imported(path: Path, package: str) -> set[str]:
    """Absolute names of the sgmteach modules `path` imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("sgmteach")}


def test_there_is_a_topic_and_a_core():
    assert "symmetry" in TOPICS and len(CORE) >= 10  # the checks below see real files


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_imports_no_topic_and_no_widget(path):
    bad = {n for n in _imported(path, "sgmteach")
           if any(n == f"sgmteach.{t}" or n.startswith(f"sgmteach.{t}.") for t in TOPICS)
           or n.startswith("sgmteach.widgets")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("topic", TOPICS)
def test_a_topic_imports_only_the_core_and_itself(topic):
    for path in (PKG / topic).glob("*.py"):
        pkg = f"sgmteach.{topic}"
        others = {n for n in _imported(path, pkg) for t in TOPICS
                  if t != topic and (n == f"sgmteach.{t}" or n.startswith(f"sgmteach.{t}."))}
        assert not others, f"{topic}/{path.name} imports {sorted(others)}"


def test_the_control_catches_a_bad_import(tmp_path):
    # Positive control: a core file importing a topic is seen.
    bad = tmp_path / "bad.py"
    bad.write_text("from .symmetry import CyclicGroup\nfrom . import mixture\n")
    assert "sgmteach.symmetry" in _imported(bad, "sgmteach")


# Characters a JupyterLab code cell shows at a 1440 px window with the file browser open.
NOTEBOOK_COLUMN = 100


@pytest.mark.parametrize("notebook", sorted((PKG.parent / "tutorials").glob("*.ipynb")),
                         ids=lambda p: p.stem)
def test_tutorial_code_fits_the_cell(notebook):
    import json

    cells = json.loads(notebook.read_text())["cells"]
    long = [(i, len(line)) for i, c in enumerate(cells) if c["cell_type"] == "code"
            for line in "".join(c["source"]).splitlines() if len(line) > NOTEBOOK_COLUMN]
    assert not long, f"{notebook.name}: (cell, length) of lines past the code cell's edge: {long}"
