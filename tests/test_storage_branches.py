"""Where the code decides between a local disk and object storage.

Issue 38 item 2 wants that decision inside ``tasks/storage/`` (one interface, a local and
an object-storage implementation) and, outside it, at most a handful of branches, each
with a comment why. Until then this test is a ratchet: it counts the branches (read from
the source with ``ast``) per module and fails when a module gains one, so the number can
only go down; a module that loses some must lower its count here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# The types a branch asks about, by the name it spells.
LOCATION_TYPES = frozenset({"Path", "PurePath", "PosixPath", "ObjectPath"})
# Branches on local-or-remote per module outside tasks/storage/ (33 in all on 2026-12-05).
ALLOWED = {
    "flows/cli.py": 4,
    "flows/retrain_model.py": 1,
    "flows/stopping.py": 1,
    "tasks/late_labels/dataset.py": 1,
    "tasks/layout.py": 3,
    "tasks/reading/parquet.py": 2,
    "tasks/reading/streams.py": 1,
    "tasks/scoring/workers.py": 1,
    "tasks/state/backend.py": 1,
    "tasks/state/checkpoints.py": 1,
    "tasks/state/inbox.py": 5,
    "tasks/state/leftovers.py": 5,
    "tasks/state/marker.py": 2,
    "tasks/state/migrate.py": 1,
    "tasks/state/object_claims.py": 1,
    "tasks/state/quarantine.py": 1,
    "tasks/training/registry.py": 2,
    "tasks/training/registry_files.py": 1,
}


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
    """The lines of every ``is_remote(...)`` call and every ``isinstance(x, T)`` whose
    ``T`` names a location type: what decides between a local disk and a bucket."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        called = node.func
        name = (called.id if isinstance(called, ast.Name)
                else called.attr if isinstance(called, ast.Attribute) else "")
        if name == "is_remote" or (name == "isinstance" and len(node.args) == 2
                                   and _type_names(node.args[1]) & LOCATION_TYPES):
            found.append(node.lineno)
    return sorted(found)


def test_the_counter_finds_each_kind_of_branch():
    source = ("if is_remote(p): pass\n"
              "x = a if isinstance(p, Path) else b\n"
              "ok = isinstance(p, Path | ObjectPath)\n"
              "other = isinstance(p, (str, ObjectPath))\n"
              "not_one = isinstance(p, str)\n")
    assert location_branches(source) == [1, 2, 3, 4]


def test_no_module_outside_storage_decides_local_or_remote_more_than_it_did():
    counted = {}
    for folder in ("flows", "tasks"):
        for path in sorted((PROJECT / folder).rglob("*.py")):
            name = path.relative_to(PROJECT).as_posix()
            if name.startswith("tasks/storage/"):
                continue
            if lines := location_branches(path.read_text(encoding="utf-8")):
                counted[name] = len(lines)
    grown = {name: (count, ALLOWED.get(name, 0)) for name, count in counted.items()
             if count > ALLOWED.get(name, 0)}
    assert not grown, (f"more branches on local-or-remote than allowed (found, allowed): "
                       f"{grown}; put the difference behind tasks/storage/ instead")
    fewer = {name: (counted.get(name, 0), allowed) for name, allowed in ALLOWED.items()
             if counted.get(name, 0) < allowed}
    assert not fewer, f"fewer branches than ALLOWED says (found, allowed): lower it: {fewer}"
