"""How the modules depend on each other: tasks/ is plain code, and no import cycles.

Read from the source (every import, module-level or inside a function), so a cycle
that only a rarely taken path would close is found too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


MAX_MODULE_LINES = 450


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports; ``from pkg import name`` counts ``pkg.name`` too, which
    matters only where that name is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module_files() -> dict[str, Path]:
    """flows/ and tasks/ by dotted name; a package is its ``__init__.py``."""
    found = {}
    for folder in ("flows", "tasks"):
        for path in (PROJECT / folder).rglob("*.py"):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def project_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: {m for m in imports_of(path) if m in modules and m != name}
            for name, path in modules.items()}


def test_tasks_import_no_prefect():
    for path in (PROJECT / "tasks").rglob("*.py"):
        assert not any(m == "prefect" or m.startswith("prefect.") for m in imports_of(path)), path


def test_no_module_is_several_modules_in_one():
    long = {name: n for name, path in module_files().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"over {MAX_MODULE_LINES} lines: {long}"


def test_every_package_says_what_it_owns():
    for path in [*(PROJECT / "tasks").rglob("__init__.py"), *(PROJECT / "flows").rglob("__init__.py")]:
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring and len(docstring.split()) >= 8, f"{path} needs a docstring"


def test_no_import_cycles():
    graph = project_graph()

    def reach(start: str, seen: list[str]) -> None:
        for module in graph[start]:
            assert module != seen[0], " -> ".join([*seen, module])
            if module not in seen:
                reach(module, [*seen, module])

    for module in graph:
        reach(module, [module])


def test_a_flow_module_runs_as_the_cli_command(tmp_path):
    missing = tmp_path / "none"
    for module in ("flows.score_reviews", "flows.retrain_model"):
        done = subprocess.run([sys.executable, "-m", module, "--data-dir", str(missing)],
                              cwd=PROJECT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"no data root at {missing}" in done.stderr
