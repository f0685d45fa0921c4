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


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The project's modules `path` imports, inside functions too (`from a.b import c` counts a.b.c where it is one)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names & modules


def file_cycles(paths: list[Path], root: Path = ROOT) -> list[list[str]]:
    """Each import cycle between files, as the modules along it (found by a depth-first walk)."""
    def name(path):
        parts = path.relative_to(root).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    graph = {name(path): path for path in paths}
    edges = {module: module_imports(path, set(graph)) - {module} for module, path in graph.items()}
    cycles, done = [], set()

    def walk(module, trail):
        if module in trail:
            cycles.append(trail[trail.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(edges[module]):
            walk(target, trail + [module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])
    return cycles


def test_no_file_imports_one_that_imports_it_back():
    assert file_cycles([path for _, path in units()]) == []


def test_the_cycle_check_catches_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "a.py").write_text("from pipeline.b import f\n")
    (tmp_path / "pipeline" / "b.py").write_text("def f():\n    from pipeline import a\n")
    assert file_cycles(sorted((tmp_path / "pipeline").glob("*.py")), tmp_path) == [["pipeline.a", "pipeline.b", "pipeline.a"]]
