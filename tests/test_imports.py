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


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    modules = {f"{p.parent.name}.{p.stem}": p for folder in ("flows", "tasks")
               for p in (PROJECT / folder).glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in imports_of(path) if m in modules}
            for name, path in modules.items()}


def test_tasks_import_no_prefect():
    for path in (PROJECT / "tasks").glob("*.py"):
        assert not any(m == "prefect" or m.startswith("prefect.") for m in imports_of(path)), path


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
