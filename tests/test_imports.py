"""How the modules depend on each other: tasks/ is plain code, no import cycles between
modules or packages, settings at the bottom, the environment read in one place, and no
private name used outside its module.

Read from the source (every import, module-level or inside a function), so a cycle
that only a rarely taken path would close is found too.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


MAX_MODULE_LINES = 450


def subprocess_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REVIEWFLOW_")}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports; ``from pkg import name`` counts ``pkg.name`` too, which
    matters only where that name is a module."""
    return imports_in(ast.parse(path.read_text(encoding="utf-8")))


def imports_in(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module_files(folders: tuple[str, ...] = ("flows", "tasks")) -> dict[str, Path]:
    """The modules of ``folders`` by dotted name; a package is its ``__init__.py``."""
    found = {}
    for folder in folders:
        for path in (PROJECT / folder).rglob("*.py"):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            if any(part.startswith(".") for part in parts):  # benchmarks/.work and the like
                continue
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


def assert_no_cycle(graph: dict[str, set[str]], explain=lambda a, b: "") -> None:
    def reach(start: str, seen: list[str]) -> None:
        for node in graph.get(start, ()):
            assert node != seen[0], " -> ".join(
                f"{a} -> {b}{explain(a, b)}" for a, b in zip([*seen], [*seen[1:], node]))
            if node not in seen:
                reach(node, [*seen, node])

    for node in graph:
        reach(node, [node])


def test_no_import_cycles():
    assert_no_cycle(project_graph())


def package_of(module: str) -> str:
    """The unit the package rule is about: a sub-package of tasks/ (``tasks.reading``), or
    a module at the top of tasks/ or in flows/ (``tasks.settings``, ``flows.cli``)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "tasks" else module


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        packages.setdefault(package_of(module), set()).update(
            package_of(other) for other in imported if package_of(other) != package_of(module))
    return packages


def test_no_import_cycles_between_packages():
    """Two packages that import each other, even only inside a function (``tasks.model``
    and ``tasks.monitoring`` would be one), are one package in two folders."""
    graph = project_graph()

    def explain(a: str, b: str) -> str:
        found = sorted(f"{m} imports {o}" for m, imported in graph.items() for o in imported
                       if package_of(m) == a and package_of(o) == b)
        return f" ({'; '.join(found)})"

    assert_no_cycle(package_graph(graph), explain)


def test_the_package_rule_sees_a_cycle_inside_a_function():
    """The rule itself: a lazy import that closes a package cycle is found."""
    graph = {"tasks.model.serving": {"tasks.monitoring"},
             "tasks.monitoring.text": {"tasks.model.text"},
             "tasks.model.text": set(), "tasks.monitoring": {"tasks.monitoring.text"}}
    with pytest.raises(AssertionError, match="tasks.model -> tasks.monitoring"):
        assert_no_cycle(package_graph(graph))
    tree = ast.parse("def vocabulary():\n    from tasks.monitoring import Vocabulary\n")
    assert "tasks.monitoring" in imports_in(tree)


def test_settings_import_nothing_of_reviewflow():
    """``tasks/settings.py`` is the bottom: every module may import it, it imports none."""
    ours = ("tasks", "flows", "deployments", "benchmarks", "tests")
    imported = imports_of(PROJECT / "tasks" / "settings.py")
    assert imported and not (found := {m for m in imported if m.split(".")[0] in ours}), found


def test_a_flow_module_runs_as_the_cli_command(tmp_path):
    missing = tmp_path / "none"
    for module in ("flows.score_reviews", "flows.retrain_model"):
        done = subprocess.run([sys.executable, "-m", module, "--data-dir", str(missing)],
                              cwd=PROJECT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"no data root at {missing}" in done.stderr


# Modules that touch the process environment, and why; every other module of tasks/,
# flows/ and deployments/ takes its values from a Settings (tasks/settings.py) built by
# flows/configuration.py.
ENVIRONMENT_READERS = {
    "tasks.settings": "the settings: every REVIEWFLOW_* value is read here",
    "tasks.failpoints": "crash and pause points for tests (REVIEWFLOW_FAILPOINT, "
                        "REVIEWFLOW_PAUSEPOINT), read where they fire so no code carries them",
    "tasks.native_logs": "TensorFlow's own switch, TF_CPP_MIN_LOG_LEVEL, set before it loads "
                         "in every process that loads it",
    "tasks.native_memory": "glibc's own switch, MALLOC_ARENA_MAX: a user's value wins over "
                           "the arena limit set where TensorFlow loads",
    "tasks.validation": "Great Expectations' analytics switch, set before it loads in every "
                        "process that validates",
    "tasks.state.url": "libpq's own variables (PGHOST, PGPORT, PGUSER, PGDATABASE, "
                       "PGPASSWORD): the database and the secret libpq will use",
    "flows.startup": "process start-up: the libraries' analytics switches, before they load",
    "flows.prefect_api": "the temporary Prefect API: its server process's environment, and "
                         "this process's PREFECT_API_URL pointed at it",
}
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(tree: ast.AST) -> list[int]:
    """Lines that touch the process environment: ``os.environ``, ``os.getenv`` and the
    like, through ``import os`` (or an alias of it) or ``from os import environ``."""
    aliases = {alias.asname or alias.name for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names if alias.name == "os"}
    lines = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "os"
             and any(alias.name in ENVIRONMENT_NAMES for alias in node.names)]
    lines += [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES
              and isinstance(node.value, ast.Name) and node.value.id in aliases]
    return sorted(lines)


def test_only_the_settings_and_process_start_up_read_the_environment():
    found = {name: lines for name, path in module_files(("tasks", "flows", "deployments")).items()
             if (lines := environment_uses(ast.parse(path.read_text(encoding="utf-8"))))}
    assert set(found) <= set(ENVIRONMENT_READERS), \
        {name: lines for name, lines in found.items() if name not in ENVIRONMENT_READERS}
    assert "tasks.settings" in found  # the rule sees what it is about
    for code in ("import os\nos.environ.get('X')", "import os as o\no.getenv('X')",
                 "from os import environ\nenviron['X']"):
        assert environment_uses(ast.parse(code)), code


def test_the_flows_read_no_settings_when_imported():
    """A flow module builds its settings when a run starts, never at import: no parameter
    default comes from the environment it is imported in (a worker's own REVIEWFLOW_*
    decide when its run starts), and one whose settings cannot validate imports it too."""
    probe = ("import inspect, json\n"
             "from flows.retrain_model import retrain_model\n"
             "from flows.score_reviews import score_reviews\n"
             "print(json.dumps({f.name: {n: p.default for n, p in inspect.signature(f.fn)"
             ".parameters.items()} for f in (score_reviews, retrain_model)}))\n")
    for given in ({"REVIEWFLOW_DATA_DIR": "/elsewhere", "REVIEWFLOW_EPOCHS": "3",
                   "REVIEWFLOW_SETTLE_SECONDS": "7", "REVIEWFLOW_TASK_RUNNER": "dask"},
                  {"REVIEWFLOW_READ_BATCH_ROWS": "0", "REVIEWFLOW_STATE_URL": "Lq7Vw Zx9Tk"}):
        done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, capture_output=True,
                              text=True, timeout=300, env={**subprocess_environment(), **given})
        assert done.returncode == 0, done.stderr[-3000:]
        defaults = json.loads(done.stdout.strip().splitlines()[-1])
        assert set(defaults["score-reviews"]) == {"data_dir", "require_gpu", "settle_seconds",
                                                  "task_runner", "dask_address", "shard_rows",
                                                  "state_url"}
        assert set(defaults["retrain-model"]) == {"data_dir", "architecture", "epochs",
                                                  "min_delta", "require_significance", "force",
                                                  "state_url"}
        assert {name: value for flow in defaults.values() for name, value in flow.items()
                if value is not None} == {"force": False}, given


# Where a private name may not be used from another module: the product and everything
# around it (a test uses a module's public names, as any caller does).
PRIVATE_RULE_FOLDERS = ("tasks", "flows", "deployments", "benchmarks", "tests")


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(tree: ast.AST, module: str, modules: set[str]) -> list[str]:
    """Where ``module`` uses a private name of another module of ``modules``: ``from X
    import _name`` (one line or several), ``X._name`` on a module imported as a name
    (``import tasks.x as x``, ``from tasks import x``) or by its dotted path, and
    ``setattr(x, "_name", ...)`` or ``monkeypatch.setattr("tasks.x._name", ...)``. Code
    held in a string (a script a test or benchmark runs in a subprocess) is read too."""
    found, names = [], {}  # names: a local name bound to one of ``modules``
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif (node.module in modules and node.module != module
                      and is_private(alias.name)):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    names[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            dotted = _dotted(node.value)
            target = names.get(dotted, dotted if dotted in modules else None)
            if target is not None and target != module:
                found.append(f"line {node.lineno}: {dotted}.{node.attr}")
        elif (isinstance(node, ast.Call) and node.args and _dotted(node.func) is not None
              and _dotted(node.func).split(".")[-1] == "setattr"):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                path, _, attr = first.value.rpartition(".")
                if path in modules and path != module and is_private(attr):
                    found.append(f"line {node.lineno}: setattr({first.value!r})")
            elif (len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and is_private(node.args[1].value)
                  and names.get(_dotted(first) or "", module) != module):
                found.append(f"line {node.lineno}: setattr({_dotted(first)}, "
                             f"{node.args[1].value!r})")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and "import " in node.value and "\n" in node.value):
            try:
                script = ast.parse(node.value)
            except SyntaxError:
                continue
            found += [f"line {node.lineno}, in a script: {use}"
                      for use in private_uses(script, f"{module}:script", modules)]
    return found


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def test_no_private_name_is_used_outside_its_module():
    files = module_files(PRIVATE_RULE_FOLDERS)
    # Tests and their helpers are also imported by their bare names (``from conftest
    # import …``, ``from test_exactly_once import …``).
    modules = {*files, *(name.split(".", 1)[1] for name in files if name.startswith("tests."))}
    found = {name: uses for name, path in files.items()
             if (uses := private_uses(ast.parse(path.read_text(encoding="utf-8")), name,
                                      modules))}
    assert not found, found


def test_the_private_rule_sees_each_way_of_reaching_a_name():
    modules = {"tasks.reading.columns", "tasks.reading", "tasks", "flows.cli", "flows"}
    # Each example as its lines: one string holding them all would be a script of this
    # module, which the rule reads too.
    for lines in (["from tasks.reading.columns import ColumnMapping, _Columns"],
                  ["from tasks.reading.columns import (", "    ColumnMapping,", "    _pick,", ")"],
                  ["import tasks.reading.columns as c", "c._pick([], [])"],
                  ["from tasks.reading import columns", "columns._Columns"],
                  ["import tasks.reading.columns", "tasks.reading.columns._key('a')"],
                  ["from flows import cli", "monkeypatch.setattr(cli, '_print', print)"],
                  ["monkeypatch.setattr('flows.cli._print', print)"],
                  ['SCRIPT = """', "import flows.cli as cli", "cli._print = print", '"""']):
        code = "\n".join(lines)
        assert private_uses(ast.parse(code), "tests.test_x", modules), code
    code = "\n".join(["from tasks.reading.columns import Columns", "self._cache = {}"])
    assert not private_uses(ast.parse(code), "tests.test_x", modules)
