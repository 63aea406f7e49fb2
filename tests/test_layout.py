"""The data-folder contract (tasks.layout): every name a user's data root already holds.

Plain functions and a pydantic model: no flow runs here. The names are pinned literally,
since changing one would orphan what earlier runs wrote (parts the ledger points to,
archived inputs, locks).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import PROJECT

from tasks.layout import (
    CHAMPION_FILE,
    DECISION_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    STATE_MARKER_FILE,
    DataLayout,
    day_of,
    is_part_of,
    kept_name,
    part_name,
    part_prefixes,
    reason_file,
)
from tasks.training.registry import Registry

SHA = "ab" * 32


@pytest.mark.parametrize("version, other", [("v", "v-b"), ("v", "v-s"), ("v-b", "v"),
                                            ("2026", "2026-1"), ("a.b", "aXb")])
def test_a_part_belongs_to_exactly_one_version(version, other):
    for shard in (None, 0, 12):
        name = part_name(SHA, version, shard)
        assert is_part_of(name, SHA, version)
        assert is_part_of(f".{name}.0123abcd.tmp", SHA, version)  # its temporary
        assert not is_part_of(name, SHA, other)
    assert not is_part_of(part_name(SHA, version), SHA, None)  # a scored part is no rejected part
    assert is_part_of(part_name(SHA, None, 3), SHA, None)


def test_part_names_are_those_earlier_runs_wrote():
    assert part_name(SHA, "20260101T000000Z-abcdef") == \
        "part-abababababababab-20260101T000000Z-abcdef.parquet"
    assert part_name(SHA, "v", 3) == "part-abababababababab-v-s0003.parquet"
    assert part_name(SHA) == "part-abababababababab.parquet"
    assert part_prefixes(SHA) == ("part-abababababababab", ".part-abababababababab")
    assert kept_name(SHA, "reviews.csv") == "abababababababab-reviews.csv"


def test_every_folder_of_the_contract(tmp_path):
    layout = DataLayout(root=tmp_path).ensure()
    day = day_of(datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    assert day == "2026-03-01"
    expected = {
        layout.scored_partition(day): "scored/scored_date=2026-03-01",
        layout.rejected_partition(day): "quarantine/rows/quarantined_date=2026-03-01",
        layout.rejected_rows: "quarantine/rows",
        layout.quarantined_files(day): "quarantine/files/2026-03-01",
        layout.training_rejects: "quarantine/training",
        layout.unlabeled_rejects: "quarantine/unlabeled",
        layout.monitoring_partition(day): "monitoring/run_date=2026-03-01",
        layout.archive_folder(day): "archive/2026-03-01",
        layout.ledger: "state/ledger.sqlite",
        layout.lock_file(SHA): "state/locks/abababababababab.lock",
    }
    for path, relative in expected.items():
        assert path == tmp_path / relative
    assert layout.accuracy_partition("v1") == tmp_path / "production_accuracy/model_version=v1"
    for folder in ("incoming", "labeled", "unlabeled", "scored", "quarantine", "models", "state",
                   "archive", "monitoring", "production_accuracy"):
        assert (tmp_path / folder).is_dir()
    assert reason_file(tmp_path / "x.csv") == tmp_path / "x.csv.reason.json"


def test_a_separate_state_folder_holds_the_ledger_and_the_locks(tmp_path):
    layout = DataLayout(root=tmp_path / "data", state_root=tmp_path / "state")
    assert layout.ledger == tmp_path / "state" / "ledger.sqlite"
    assert layout.lock_file(SHA).parent == tmp_path / "state" / "locks"


def test_the_registry_uses_the_contract_names(tmp_path):
    registry = Registry(tmp_path)
    assert registry.pointer == tmp_path / CHAMPION_FILE == tmp_path / "champion.json"
    assert registry.model_path("v1") == tmp_path / "versions" / "v1" / MODEL_FILE
    assert (MODEL_FILE, METRICS_FILE, DECISION_FILE, PROFILE_FILE) == (
        "model.keras", "metrics.json", "decision.json", "profile.json")
    assert isinstance(registry.versions, Path)


def runtime_folders(layout: DataLayout) -> list[Path]:
    """The folders runs and users fill in a data root: its data folders and the default
    state folder."""
    return [*layout.data_folders(), layout.state]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_data_empties_every_folder_runs_fill(tmp_path):
    """After `make clean-data`, `reviewflow monitor` must not report a model that is gone:
    every folder of the contract is emptied, its .gitkeep kept, and nothing else."""
    root = tmp_path / "data"
    layout = DataLayout(root=root).ensure()
    for folder in runtime_folders(layout):
        (folder / ".gitkeep").touch()
        (folder / "run_date=2026-03-01").mkdir()
        (folder / "run_date=2026-03-01" / "part.parquet").write_bytes(b"x")
        (folder / "loose.json").write_text("{}")
    layout.state_marker.write_text("{}")
    (root / "samples").mkdir()
    (root / "samples" / "keep.csv").write_text("review_id,text\n")
    done = subprocess.run(["make", "-s", "clean-data", f"DATA={root}"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for folder in runtime_folders(layout):
        assert [p.name for p in folder.iterdir()] == [".gitkeep"], folder
    assert not layout.state_marker.exists()
    assert (root / "samples" / "keep.csv").exists()


def test_git_ignores_what_runs_write_under_data_but_keeps_the_folders():
    if subprocess.run(["git", "rev-parse"], cwd=PROJECT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    layout = DataLayout(root=Path("data"))

    def ignored(path: Path) -> bool:
        return subprocess.run(["git", "check-ignore", "--no-index", "-q", str(path)],
                              cwd=PROJECT).returncode == 0

    assert layout.state_marker.name == STATE_MARKER_FILE
    assert ignored(layout.state_marker)
    for folder in runtime_folders(layout):
        assert ignored(folder / "run_date=2026-03-01" / "part.parquet"), folder
        assert not ignored(folder / ".gitkeep"), folder
        assert (PROJECT / folder / ".gitkeep").exists(), folder  # a fresh clone has it


# Test files that still spell a data-folder name as a path part, with how many times and
# why; a count may only go down. Every other test reaches the folders through
# DataLayout or tests/helpers.py.
SPELLED_FOLDERS_LEFT = {
    # Edited at the same time on other branches (issue 38 items 1-2, issue 40).
    "test_commit.py": 3, "test_monitoring.py": 5, "test_retrain_flow.py": 11,
    "test_score_flow.py": 18,
    # End to end, minutes each: left to a change that runs them.
    "test_deployments_e2e.py": 4, "test_many_scorers.py": 7, "test_multi_host_e2e.py": 8,
    # Keys on moto's S3 written as text for fsspec's own calls (fs.put, fs.glob, fs.cat_file),
    # which take strings, not the layout's ObjectPath.
    "test_checkpoints.py": 4, "test_data_root_hazards.py": 4, "test_first_champion.py": 5,
    "test_leftovers.py": 3, "test_lost_champion.py": 6, "test_object_claims.py": 6,
    "test_object_keys.py": 5, "test_registry_objects.py": 16, "test_scale_out.py": 11,
    "test_state_marker.py": 9, "test_state_migrate.py": 2, "test_state_pg_run.py": 3,
    # Not a data root: the bundled samples' own folders, a bare inbox for list_inbox, a
    # registry or a lock folder on its own.
    "test_drift_scripts.py": 1, "test_inbox_listing.py": 1, "test_safety.py": 1,
    "test_state_contract.py": 1, "test_training_record.py": 1,
}


def spelled_folder_names(source: str, names: set[str]) -> int:
    """How often ``source`` spells one of ``names`` as a path part: an operand of ``/``
    (``root / "incoming"``, ``"models/x"``) or an f-string part after a slash
    (``f"{root}/incoming/a.csv"``)."""
    count = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            count += sum(isinstance(side, ast.Constant) and isinstance(side.value, str)
                         and side.value.split("/")[0] in names
                         for side in (node.left, node.right))
        elif isinstance(node, ast.JoinedStr):
            count += sum(isinstance(part, ast.Constant) and isinstance(part.value, str)
                         and part.value.startswith("/")
                         and part.value[1:].split("/")[0] in names
                         for part in node.values)
    return count


def test_tests_reach_the_data_folders_through_the_layout():
    layout = DataLayout(root=Path("root"))
    names = {folder.name for folder in (layout.incoming, layout.scored, layout.quarantine,
                                        layout.archive, layout.models, layout.monitoring)}
    assert spelled_folder_names('x = root / "incoming" / "a.csv"', names) == 1  # the counter
    assert spelled_folder_names('x = f"{root}/models/v1"', names) == 1
    tests = Path(__file__).parent
    counts = {path.name: spelled_folder_names(path.read_text(), names)
              for path in sorted(tests.glob("*.py"))}
    over = {name: (count, SPELLED_FOLDERS_LEFT.get(name, 0)) for name, count in counts.items()
            if count > SPELLED_FOLDERS_LEFT.get(name, 0)}
    assert not over, ("these test files spell a data-folder name (count, allowed): use "
                      f"DataLayout(root=…) or tests.helpers.layout_of instead: {over}")
