"""How the modules depend on each other: tasks/ is plain code, and no import cycles.

Read from the source (every import, module-level or inside a function), so a cycle
that only a rarely taken path would close is found too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


# TensorFlow and Keras, and the libraries of their family, by the first part of a module name.
TENSORFLOW_FAMILY = ("tensorflow", "keras", "tf_keras")
# The one package that imports them: tasks/model/backend.py sets TensorFlow's log level and
# filters its load-time lines first; everything else uses tasks.model's names.
MODEL_PACKAGE = PROJECT / "tasks" / "model"


def tensorflow_imports(path: Path) -> set[str]:
    """The imports in ``path`` that load TensorFlow or Keras other than through
    ``tasks.model``'s names: the libraries themselves (a statement, at module level or in
    a function, or ``importlib.import_module``/``__import__`` of a literal name), and
    ``tasks.model.backend``, which hands them out."""
    names = imports_of(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and getattr(node.func, "attr", getattr(node.func, "id", None))
                in ("import_module", "__import__")):
            names.add(node.args[0].value)
    return {name for name in names
            if name.split(".")[0] in TENSORFLOW_FAMILY
            or name.split(".")[0].startswith(tuple(f"{n}_" for n in TENSORFLOW_FAMILY))
            or name == "tasks.model.backend" or name.startswith("tasks.model.backend.")}


def test_only_tasks_model_imports_tensorflow_or_keras():
    found = {}
    for folder in ("flows", "tasks", "deployments"):
        for path in (PROJECT / folder).rglob("*.py"):
            if not path.is_relative_to(MODEL_PACKAGE) and (names := tensorflow_imports(path)):
                found[str(path.relative_to(PROJECT))] = sorted(names)
    assert not found, f"TensorFlow or Keras imported outside tasks/model/: {found}"


@pytest.mark.parametrize("source", [
    "import keras\n",
    "import tensorflow as tf\n",
    "from keras import layers\n",
    "import tensorflow.keras\n",
    "from tensorflow_text import WordpieceTokenizer\n",
    "import tf_keras\n",
    "def later():\n    import tensorflow\n",
    "import importlib\nkeras = importlib.import_module('keras')\n",
    "tf = __import__('tensorflow')\n",
    "from tasks.model.backend import keras\n",
    "from tasks.model import backend\n",
])
def test_the_tensorflow_rule_sees_each_way_of_importing_it(tmp_path, source):
    path = tmp_path / "module.py"
    path.write_text(source)
    assert tensorflow_imports(path)


def test_the_tensorflow_rule_lets_tasks_model_names_through(tmp_path):
    path = tmp_path / "module.py"
    path.write_text("from tasks.model import load_model, predict_scores\n"
                    "from tasks.model.params import TrainingParams\nimport kerberos\n")
    assert tensorflow_imports(path) == set()


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
