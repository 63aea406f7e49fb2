"""Where the code decides between a local disk and object storage.

Issue 38 item 2: that decision is made once, by ``tasks.storage.objects.as_location``,
which makes a ``LocalPath`` or an ``ObjectPath`` (two implementations of one interface,
``tasks.storage.location.Location``). Everything else calls a method, or asks a
capability (``supports_locks``, ``supports_links``, ``supports_claims``). Outside
``tasks/storage/`` at most a handful of branches remain, each listed in ``KEPT`` and
marked with a ``# why:`` comment; inside it, no implementation module branches on the
other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# The types a branch asks about, by the name it spells.
LOCATION_TYPES = frozenset({"Path", "PurePath", "PosixPath", "LocalPath", "ObjectPath"})
# The branches on local-or-remote left outside tasks/storage/, and why each stays.
KEPT = {
    "flows/cli.py": 2,          # a look at a local inbox or labeled folder before Prefect
    #                             starts: free on a disk, a listing of a whole bucket
    "flows/stopping.py": 1,     # counting what a stopped run left in a local inbox
    "tasks/state/inbox.py": 2,  # two claim protocols of tasks.state: a rename, or a
    #                             conditional copy (tasks.state.object_claims)
}
MOST_KEPT = 5
# Inside tasks/storage/, the one function that decides, and the query that names it.
DECIDERS = {"tasks/storage/objects.py": {"as_location", "is_remote"}}
WHY_LINES_ABOVE = 3


def _type_names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, ast.Tuple):
        return set().union(*(_type_names(element) for element in node.elts))
    if isinstance(node, ast.BinOp):  # Path | ObjectPath
        return _type_names(node.left) | _type_names(node.right)
    return set()


def location_branches(source: str) -> list[int]:
    """The lines of every ``is_remote(...)`` call, every ``isinstance(x, T)`` or
    ``issubclass(x, T)`` whose ``T`` names a location type, every ``type(x) is T`` (or
    ``==``, ``is not``, ``!=``) and every ``case T():``: what decides between a local disk
    and a bucket."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq) for op in node.ops):
            if any(_type_names(side) & LOCATION_TYPES for side in [node.left, *node.comparators]
                   if isinstance(side, ast.Name | ast.Attribute)):
                found.append(node.lineno)
            continue
        if isinstance(node, ast.MatchClass) and _type_names(node.cls) & LOCATION_TYPES:
            found.append(node.lineno)
            continue
        if not isinstance(node, ast.Call):
            continue
        called = node.func
        name = (called.id if isinstance(called, ast.Name)
                else called.attr if isinstance(called, ast.Attribute) else "")
        if name == "is_remote" or (name in ("isinstance", "issubclass") and len(node.args) == 2
                                   and _type_names(node.args[1]) & LOCATION_TYPES):
            found.append(node.lineno)
    return sorted(found)


def test_the_counter_finds_each_kind_of_branch():
    source = ("if is_remote(p): pass\n"
              "x = a if isinstance(p, Path) else b\n"
              "ok = isinstance(p, Path | ObjectPath)\n"
              "other = isinstance(p, (str, ObjectPath))\n"
              "not_one = isinstance(p, str)\n"
              "same = type(p) is LocalPath\n"
              "sub = issubclass(cls, pathlib.PosixPath)\n"
              "match p:\n    case ObjectPath():\n        pass\n"
              "not_two = p == q\n")
    assert location_branches(source) == [1, 2, 3, 4, 6, 7, 9]


def branch_calls(source: str) -> list[tuple[int, str | None]]:
    """``location_branches`` with the name of the function each one is in (None at
    module level)."""
    tree = ast.parse(source)
    lines = set(location_branches(source))
    found = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [(node.lineno, function.name) for node in ast.walk(function)
                      if isinstance(node, ast.Call) and node.lineno in lines]
    inside = {line for line, _ in found}
    return sorted(found) + [(line, None) for line in sorted(lines - inside)]


def counted_outside_storage() -> dict[str, list[int]]:
    counted = {}
    for folder in ("flows", "tasks"):
        for path in sorted((PROJECT / folder).rglob("*.py")):
            name = path.relative_to(PROJECT).as_posix()
            if name.startswith("tasks/storage/"):
                continue
            if lines := location_branches(path.read_text(encoding="utf-8")):
                counted[name] = lines
    return counted


def test_the_counter_tells_which_function_a_branch_is_in():
    source = ("def as_location(v):\n    return isinstance(v, ObjectPath)\n"
              "def other(p):\n    return is_remote(p)\n"
              "top = isinstance(x, Path)\n")
    assert branch_calls(source) == [(2, "as_location"), (4, "other"), (5, None)]


def test_outside_storage_only_a_handful_of_branches_are_left():
    counted = {name: len(lines) for name, lines in counted_outside_storage().items()}
    assert counted == KEPT, ("the branches on local-or-remote outside tasks/storage/ "
                             f"(found {counted}, kept {KEPT}): ask the location a method or "
                             "a capability instead (tasks.storage.location.Location)")
    assert sum(KEPT.values()) <= MOST_KEPT


def test_each_branch_left_says_why():
    unexplained = []
    for name, lines in counted_outside_storage().items():
        text = (PROJECT / name).read_text(encoding="utf-8").splitlines()
        for line in lines:
            above = text[max(0, line - 1 - WHY_LINES_ABOVE):line]
            if not any("# why:" in row for row in above):
                unexplained.append(f"{name}:{line}")
    assert not unexplained, f"a branch on local-or-remote without a '# why:' comment: {unexplained}"


def test_inside_storage_only_the_factory_decides():
    found = {}
    for path in sorted((PROJECT / "tasks" / "storage").glob("*.py")):
        name = path.relative_to(PROJECT).as_posix()
        allowed = DECIDERS.get(name, set())
        if others := [(line, function) for line, function
                      in branch_calls(path.read_text(encoding="utf-8"))
                      if function not in allowed]:
            found[name] = others
    assert not found, (f"an implementation branches on the other (line, function): {found}; "
                       "give each class its own method instead")
