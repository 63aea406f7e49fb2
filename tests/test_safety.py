"""Safety: models load only in Keras safe mode, nothing untrusted is unpickled, and
names taken from files or the command line cannot reach outside the data root."""

from __future__ import annotations

import ast
import pickle
import subprocess

import keras
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import PROJECT, reviewflow_command

from flows.score_reviews import score_reviews
from tasks.model import ModelLoadError, load_model
from tasks.reading import iter_review_batches
from tasks.reading.columns import ColumnMapping
from tasks.training.registry import MODEL_FILE, Registry, RegistryError
from tests.helpers import layout_of, scored_parts

# Modules and calls that turn bytes into arbitrary Python objects or run code.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal"}
UNSAFE_CALLS = {"read_pickle", "load_pickle", "unsafe_load", "eval", "exec",
                "enable_unsafe_deserialization"}


def project_sources():
    for folder in ("tasks", "flows", "deployments", "benchmarks"):
        yield from sorted((PROJECT / folder).rglob("*.py"))


def test_the_code_never_unpickles_or_evaluates():
    """A static check over every module that handles data: it fails the day someone
    adds pickle, joblib, ``allow_pickle=True``, ``yaml.load`` or ``safe_mode=False``."""
    found = []
    for path in project_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PROJECT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{where} imports {n}" for n in names
                          if n.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if name in UNSAFE_CALLS or (name == "load" and "yaml" in ast.unparse(node.func)):
                    found.append(f"{where} calls {ast.unparse(node.func)}")
                for keyword in node.keywords:
                    value = getattr(keyword.value, "value", None)
                    if (keyword.arg, value) in {("allow_pickle", True), ("safe_mode", False)}:
                        found.append(f"{where} passes {keyword.arg}={value}")
    assert len(list(project_sources())) > 20  # the walk really saw the project
    assert not found, found


class _Tripwire:
    """Unpickling this creates a file: proof that someone unpickled it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_parquet_with_a_pickled_extension_type_is_read_without_unpickling(tmp_path):
    """Arrow once unpickled ``arrow.py_extension_type`` metadata on read; a hostile
    Parquet file could carry a payload there. Reading it must not run it."""
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Tripwire(marker))
    field = pa.field("text", pa.string(), metadata={
        b"ARROW:extension:name": b"arrow.py_extension_type",
        b"ARROW:extension:metadata": payload})
    table = pa.table({"review_id": ["x1", "x2"], "text": ["good", "bad"]})
    table = table.cast(pa.schema([table.schema.field("review_id"), field]))
    path = tmp_path / "hostile.parquet"
    pq.write_table(table, path)
    rows = sum(batch.num_rows for batch in iter_review_batches(path, ColumnMapping(), 100, 10**8))
    assert rows == 2
    assert not marker.exists()


def save_model_with_code(path):
    """A model whose Lambda layer is Python bytecode: what safe mode exists to refuse."""
    inputs = keras.Input(shape=(), dtype="string")
    outputs = keras.layers.Lambda(lambda texts: tf.zeros((tf.shape(texts)[0], 1)))(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_a_model_carrying_python_code_is_refused(tmp_path):
    path = save_model_with_code(tmp_path / "model.keras")
    with pytest.raises(ModelLoadError, match=r"safe mode.*reviewflow models rollback"):
        load_model(path)


def test_scoring_refuses_a_champion_carrying_code_and_keeps_the_inbox(scoring_root,
                                                                      subprocess_env):
    registry = Registry(layout_of(scoring_root).models)
    save_model_with_code(registry.model_path(registry.champion_version()))
    (layout_of(scoring_root).incoming / "a.csv").write_text("review_id,text\nr1,fine\n")
    with pytest.raises(ModelLoadError):
        score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0")
    process = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                             cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 2, process.stderr[-2000:]
    # Prefect logs the task's traceback; the command's own last word is one clear line.
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith("reviewflow: cannot load the model"), last_line
    assert (layout_of(scoring_root).incoming / "a.csv").exists()
    assert not scored_parts(scoring_root)


def test_a_model_file_outside_the_registry_is_never_the_champion(trained_models, tmp_path):
    """Versions are names, not paths: ``promote ../..`` is refused before anything moves."""
    import shutil

    root = tmp_path / "models"
    shutil.copytree(trained_models, root)
    registry = Registry(root)
    champion = registry.champion_version()
    outside = tmp_path / "elsewhere"
    (outside / "versions" / "evil").mkdir(parents=True)
    save_model_with_code(outside / "versions" / "evil" / MODEL_FILE)
    for version in ("../../elsewhere/versions/evil", "..", "/etc", ".staging", "a/b"):
        with pytest.raises(RegistryError, match="not a version name"):
            registry.promote_by_hand(version, "test", force=True)
    assert registry.champion_version() == champion


def test_a_file_name_too_long_to_archive_with_its_hash_prefix_is_shortened(scoring_root):
    """Archive and quarantine names are ``<hash>-<name>``: a name near the 255-byte limit
    would not fit, and a file that can never be moved would block every later run."""
    name = "ä" * 120 + ".csv"  # 244 bytes in UTF-8: a legal name, too long with a prefix
    (layout_of(scoring_root).incoming / name).write_text("review_id,text\nr1,fine film\n")
    (layout_of(scoring_root).incoming / ("ö" * 124 + ".txt")).write_text("not a review file")
    summary = score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    assert summary["rows_scored"] == 1 and summary["files_quarantined"] == 1
    assert not list(layout_of(scoring_root).incoming.iterdir())
    kept = [p for p in scoring_root.rglob("*") if p.is_file()]
    assert all(len(p.name.encode()) <= 255 for p in kept)
    archived = [p.name for p in layout_of(scoring_root).archive.rglob("*.csv")]
    assert len(archived) == 1 and archived[0].endswith("ää.csv")
