"""The layers go one way: core at the bottom; data, evaluation and methods above it; orchestration above
those; the CLI on top. A module may import only its own layer's package or those below."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Written out here, not read from the code: the rule this test holds the code to.
LAYER = {"core": 0, "dataset": 1, "evaluation": 1, "tasks": 2, "pipeline": 3, "main": 4}
ALLOWED_SAME_LAYER = {("tasks", "dataset"), ("tasks", "evaluation")}  # methods use data and evaluation


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYER)


def units():
    for name in LAYER:
        package = ROOT / name
        yield from ((name, path) for path in sorted(package.rglob("*.py"))) if package.is_dir() \
            else [(name, ROOT / f"{name}.py")]


def test_every_unit_exists():
    assert all(path.is_file() for _, path in units())


def test_no_import_goes_up_or_sideways():
    violations = []
    for unit, path in units():
        for target in imports_of(path) - {unit}:
            if LAYER[target] > LAYER[unit] or (LAYER[target] == LAYER[unit] and (unit, target) not in ALLOWED_SAME_LAYER):
                violations.append(f"{path.relative_to(ROOT)} imports {target}")
    assert violations == []


def test_the_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from pipeline.runner import run_all\nimport tasks.adapters\n")
    assert imports_of(bad) == {"pipeline", "tasks"}
