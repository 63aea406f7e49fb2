"""The input's other columns in scored/ and quarantine/rows/ (issue 39 item 1,
docs/data-contract.md "Pass-through columns"): a CSV export and a Parquet file scored in
one run answer "average sentiment per product per week" in DuckDB, pandas and pyarrow,
with the expected figures computed here from the inputs and the scores."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tasks.scoring.schema import scored_schema
from tests.helpers import layout_of, quarantined_rows, score, write_csv

TYPES = json.dumps({"created_at": "timestamp", "stars": "int64"})
WEEKLY = ("SELECT product_id, date_trunc('week', created_at) AS week, avg(score) AS mean, "
          "count(*) AS n FROM read_parquet('{parts}', hive_partitioning=true, "
          "union_by_name=true) GROUP BY 1, 2 ORDER BY 1, 2")
WORDS = ["a wonderful film, loved it", "boring and far too long", "great acting, great story",
         "awful, I want my money back", "fine, nothing special", "the best thing this year"]


def export_rows(n: int) -> list[dict]:
    """A shop's CSV export: product ids as text, stars and dates as text."""
    return [{"review_id": f"c-{i}", "text": WORDS[i % len(WORDS)], "product_id": str(100 + i % 3),
             "stars": str(1 + i % 5), "created_at": f"2024-01-{1 + (i * 3) % 20:02d} 10:{i % 60:02d}:00"}
            for i in range(n)]


def parquet_table(n: int) -> pa.Table:
    """A Parquet file: product ids as int64, dates as timestamps, and a shop column."""
    return pa.table({
        "review_id": [f"p-{i}" for i in range(n)],
        "text": [WORDS[(i + 2) % len(WORDS)] for i in range(n)],
        "product_id": pa.array([100 + i % 4 for i in range(n)], pa.int64()),
        "created_at": pa.array([datetime(2024, 1, 2 + (i * 5) % 25, 8) for i in range(n)],
                               pa.timestamp("us")),
        "shop": [f"shop-{i % 2}" for i in range(n)],
    })


def expected_weekly(csv_rows: list[dict], table: pa.Table, scores: dict[str, float]) -> dict:
    """(product id as text, Monday of the week) -> (mean score, rows), from the inputs."""
    frame = pd.concat([
        pd.DataFrame({"review_id": [r["review_id"] for r in csv_rows],
                      "product_id": [r["product_id"] for r in csv_rows],
                      "created_at": pd.to_datetime([r["created_at"] for r in csv_rows])}),
        pd.DataFrame({"review_id": table.column("review_id").to_pylist(),
                      "product_id": [str(v) for v in table.column("product_id").to_pylist()],
                      "created_at": pd.to_datetime(table.column("created_at").to_pylist())}),
    ])
    frame["score"] = frame["review_id"].map(scores)
    day = frame["created_at"].dt.normalize()
    frame["week"] = day - pd.to_timedelta(day.dt.weekday, unit="D")
    grouped = frame.groupby(["product_id", "week"])["score"].agg(["mean", "count"])
    return {(p, w.to_pydatetime()): (m, int(c)) for (p, w), (m, c) in grouped.iterrows()}


def assert_same(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, (mean, count) in expected.items():
        assert got[key][1] == count, key
        assert got[key][0] == pytest.approx(mean, abs=1e-5), key


def test_csv_export_and_parquet_answer_the_weekly_query_three_ways(scoring_root, monkeypatch):
    monkeypatch.setenv("REVIEWFLOW_COLUMNS__TYPES", TYPES)
    inbox = layout_of(scoring_root).incoming
    csv_rows = export_rows(30)
    write_csv(inbox / "a-export.csv", csv_rows)
    table = parquet_table(24)
    pq.write_table(table, inbox / "b-shop.parquet")
    summary = score(scoring_root)
    assert summary["rows_scored"] == 54, summary

    scored = layout_of(scoring_root).scored
    parts = f"{scored}/**/*.parquet"
    scores = dict(duckdb.sql(f"SELECT review_id, score FROM read_parquet('{parts}')").fetchall())
    expected = expected_weekly(csv_rows, table, scores)

    rows = duckdb.sql(WEEKLY.format(parts=parts)).fetchall()
    assert_same({(p, w): (m, n) for p, w, m, n in rows}, expected)

    # The first file to bring a name fixed its type; the other file's values were cast to it.
    schema = scored_schema(scored)
    assert schema.field("product_id").type == pa.string()
    assert schema.field("created_at").type == pa.timestamp("us")
    assert schema.field("stars").type == pa.int64()
    assert schema.field("shop").type == pa.string()
    assert "text" not in schema.names  # off unless asked

    frame = pd.read_parquet(scored, schema=schema)
    frame["week"] = frame["created_at"].dt.to_period("W-SUN").dt.start_time
    grouped = frame.groupby(["product_id", "week"])["score"].agg(["mean", "count"])
    assert_same({(p, w.to_pydatetime()): (m, c) for (p, w), (m, c) in grouped.iterrows()},
                expected)
    assert set(frame.loc[frame["review_id"].str.startswith("p-"), "shop"]) == {"shop-0", "shop-1"}
    assert frame.loc[frame["review_id"].str.startswith("c-"), "shop"].isna().all()

    arrow = ds.dataset(scored, schema=schema, format="parquet", partitioning="hive").to_table()
    week = pa.compute.floor_temporal(arrow.column("created_at"), unit="week",
                                     week_starts_monday=True)
    grouped = (arrow.append_column("week", week).group_by(["product_id", "week"])
               .aggregate([("score", "mean"), ("score", "count")]))
    assert_same({(r["product_id"], r["week"]): (r["score_mean"], r["score_count"])
                 for r in grouped.to_pylist()}, expected)


def part_schemas(root, source_file: str) -> list[pa.Schema]:
    return [pq.read_schema(part) for part in sorted(layout_of(root).scored.rglob("*.parquet"))
            if pq.read_table(part, columns=["source_file"]).column(0)[0].as_py() == source_file]


def test_a_value_not_of_its_type_quarantines_its_row_with_every_column(scoring_root,
                                                                        monkeypatch):
    monkeypatch.setenv("REVIEWFLOW_COLUMNS__TYPES", TYPES)
    rows = export_rows(8)
    for row in rows:
        row["score"] = f"their-{row['review_id']}"  # a name scored/ uses
    rows[2]["stars"] = "five"
    write_csv(layout_of(scoring_root).incoming / "typo.csv", rows)
    summary = score(scoring_root)
    assert (summary["rows_scored"], summary["rows_quarantined"]) == (7, 1), summary

    quarantined = quarantined_rows(scoring_root).to_pylist()
    assert len(quarantined) == 1
    bad = quarantined[0]
    assert "typo.csv" in bad["reason"] and "row 3" in bad["reason"]
    assert "'stars'" in bad["reason"] and "'five'" in bad["reason"]
    # Every column as read, so the corrected row can be resubmitted.
    assert {k: bad[k] for k in ("review_id", "text", "product_id", "stars", "created_at",
                                "input_score")} == {
        "review_id": "c-2", "text": rows[2]["text"], "product_id": rows[2]["product_id"],
        "stars": "five", "created_at": rows[2]["created_at"], "input_score": "their-c-2"}

    scored = pd.read_parquet(layout_of(scoring_root).scored,
                             schema=scored_schema(layout_of(scoring_root).scored))
    assert scored["stars"].tolist() == [int(r["stars"]) for r in rows if r is not rows[2]]
    assert scored["input_score"].tolist() == [r["score"] for r in rows if r is not rows[2]]
    assert scored["score"].between(0, 1).all()


def test_the_settings_choose_the_columns_and_the_text(scoring_root, monkeypatch):
    inbox = layout_of(scoring_root).incoming
    runs = {"subset.csv": ({"REVIEWFLOW_COLUMNS__PASSTHROUGH": '["stars", "shop"]'},
                           ["stars"]),
            "none.csv": ({"REVIEWFLOW_COLUMNS__PASSTHROUGH": "[]"}, []),
            "text.jsonl": ({"REVIEWFLOW_COLUMNS__PASSTHROUGH_TEXT": "true"},
                           ["text", "product_id", "stars", "created_at"])}
    for name, (environment, columns) in runs.items():
        rows = [dict(row, review_id=f"{name}-{i}") for i, row in enumerate(export_rows(6))]
        with monkeypatch.context() as patched:
            for key, value in environment.items():
                patched.setenv(key, value)
            if name.endswith(".jsonl"):
                (inbox / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
            else:
                write_csv(inbox / name, rows)
            assert score(scoring_root)["rows_scored"] == 6
        (schema,) = part_schemas(scoring_root, name)
        assert schema.names[:9] == ["review_id", "score", "predicted_label", "label",
                                    "model_version", "source_file", "source_row",
                                    "source_sha256", "scored_at"]
        assert schema.names[9:] == columns, name
    frame = pd.read_parquet(layout_of(scoring_root).scored,
                            schema=scored_schema(layout_of(scoring_root).scored))
    texts = frame[frame["source_file"] == "text.jsonl"].sort_values("source_row")["text"]
    assert texts.tolist() == [r["text"] for r in rows]
    assert frame[frame["source_file"] != "text.jsonl"]["text"].isna().all()


def test_checkpoints_of_one_file_share_its_schema(scoring_root, monkeypatch):
    import gzip

    monkeypatch.setenv("REVIEWFLOW_CHECKPOINT_ROWS", "10")
    rows = export_rows(35)
    path = write_csv(layout_of(scoring_root).incoming / "big.csv", rows)
    gzipped = path.with_name("big.csv.gz")  # never bundled: scored in checkpoints
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    assert score(scoring_root)["rows_scored"] == 35
    schemas = part_schemas(scoring_root, "big.csv.gz")
    assert len(schemas) == 4
    assert all(schema.equals(schemas[0]) for schema in schemas)
    assert schemas[0].names[9:] == ["product_id", "stars", "created_at"]


@pytest.fixture(params=["sqlite", "postgresql"])
def run_state(request, tmp_path):
    from tasks.state.backend import SQLiteState

    if request.param == "sqlite":
        opened = SQLiteState(tmp_path / "state" / "ledger.sqlite", tmp_path / "state" / "locks",
                             tmp_path / "locks" / ".retrain.lock")
    else:
        import uuid

        from tasks.state.postgres import PostgresState

        cluster = request.getfixturevalue("pg_cluster")
        opened = PostgresState(cluster.create_database(f"t{uuid.uuid4().hex[:12]}"))
    yield opened
    opened.close()


def test_the_first_writer_of_a_name_fixes_its_type_for_every_writer(run_state):
    from tasks.scoring.passthrough import register

    kinds = [pa.int64(), pa.string(), pa.timestamp("us"), pa.float64()] * 4
    got: list = [None] * len(kinds)

    def writer(index: int) -> None:
        got[index] = register(run_state, "/data", pa.schema([("stars", kinds[index]),
                                                             (f"own{index}", kinds[index])]))
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(kinds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = {schema.field("stars").type for schema in got}
    assert len(first) == 1 and first <= set(kinds)
    assert [schema.field(f"own{i}").type for i, schema in enumerate(got)] == kinds
    # Another data root keeps its own types.
    assert register(run_state, "/other", pa.schema([("stars", pa.bool_())])).field(
        "stars").type == pa.bool_()


def test_the_readmes_first_query_runs_on_a_scored_root(scoring_root):
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (query,) = re.findall(r"```sql\n(.*?)```", quick_start, re.S)
    write_csv(layout_of(scoring_root).incoming / "some.csv", export_rows(12))
    summary = score(scoring_root)
    rows = duckdb.sql(query.replace("data/scored", str(layout_of(scoring_root).scored))
                      .rstrip().rstrip(";")).fetchall()
    assert [(r[1], r[2]) for r in rows] == [(summary["model_version"], 12)]
    assert 0 <= rows[0][3] <= 1 and 0 <= rows[0][4] <= 1


def test_the_weekly_query_on_an_s3_root(s3_env, trained_models, tmp_path, monkeypatch):
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    endpoint, fs = s3_env
    fs.mkdir("passthrough")
    root = "s3://passthrough/reviews"
    monkeypatch.setenv("REVIEWFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("REVIEWFLOW_STORAGE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    monkeypatch.setenv("REVIEWFLOW_COLUMNS__TYPES", TYPES)
    upload = tmp_path / "upload"
    upload.mkdir()
    csv_rows, table = export_rows(20), parquet_table(16)
    write_csv(upload / "a-export.csv", csv_rows)
    pq.write_table(table, upload / "b-shop.parquet")
    for path in sorted(upload.iterdir()):
        fs.put_file(str(path), str(layout_of(root).incoming / path.name))
    fs.put(str(trained_models), str(layout_of(root).models), recursive=True)
    assert score(root)["rows_scored"] == 36

    scored = str(layout_of(root).scored).split("://", 1)[1]
    arrow_fs = PyFileSystem(FSSpecHandler(fs))
    schema = scored_schema(scored, filesystem=arrow_fs)
    frame = ds.dataset(scored, schema=schema, format="parquet", partitioning="hive",
                       filesystem=arrow_fs).to_table().to_pandas()
    expected = expected_weekly(csv_rows, table, dict(zip(frame["review_id"], frame["score"])))
    frame["week"] = frame["created_at"].dt.to_period("W-SUN").dt.start_time
    grouped = frame.groupby(["product_id", "week"])["score"].agg(["mean", "count"])
    assert_same({(p, w.to_pydatetime()): (m, c) for (p, w), (m, c) in grouped.iterrows()},
                expected)
    # DuckDB on a downloaded copy of scored/.
    fs.get(str(layout_of(root).scored), str(tmp_path / "copy"), recursive=True)
    rows = duckdb.sql(WEEKLY.format(parts=f"{tmp_path / 'copy'}/**/*.parquet")).fetchall()
    assert_same({(p, w): (m, n) for p, w, m, n in rows}, expected)


def test_dask_shards_carry_the_registered_columns(scoring_root, monkeypatch):
    monkeypatch.setenv("REVIEWFLOW_COLUMNS__TYPES", TYPES)
    monkeypatch.setenv("REVIEWFLOW_DASK_WORKERS", "1")
    inbox = layout_of(scoring_root).incoming
    csv_rows, table = export_rows(30), parquet_table(24)
    write_csv(inbox / "a-export.csv", csv_rows)
    pq.write_table(table, inbox / "b-shop.parquet", row_group_size=8)
    summary = score(scoring_root, task_runner="dask", shard_rows=10)
    assert summary["rows_scored"] == 54 and summary["shards"] == 3 + 3, summary

    parts = f"{layout_of(scoring_root).scored}/**/*.parquet"
    schemas = part_schemas(scoring_root, "a-export.csv") + part_schemas(scoring_root,
                                                                         "b-shop.parquet")
    assert len(schemas) == 6
    assert {s.field("product_id").type for s in schemas} == {pa.string()}
    assert {s.field("created_at").type for s in schemas} == {pa.timestamp("us")}
    scores = dict(duckdb.sql(f"SELECT review_id, score FROM read_parquet('{parts}')").fetchall())
    rows = duckdb.sql(WEEKLY.format(parts=parts)).fetchall()
    assert_same({(p, w): (m, n) for p, w, m, n in rows}, expected_weekly(csv_rows, table, scores))


def test_a_checkpoint_kept_by_a_killed_run_and_the_rest_share_one_schema(scoring_root,
                                                                         subprocess_env):
    import gzip
    import signal
    import subprocess

    from conftest import PROJECT, reviewflow_command

    rows = export_rows(35)
    rows[23]["stars"] = "many"  # quarantined in the part the second run writes
    path = write_csv(layout_of(scoring_root).incoming / "long.csv", rows)
    path.with_name("long.csv.gz").write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0", REVIEWFLOW_CHECKPOINT_ROWS="10",
               REVIEWFLOW_COLUMNS__TYPES=TYPES)

    def run(**extra) -> subprocess.CompletedProcess:
        return subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root)),
                              cwd=PROJECT, env=dict(env, **extra), capture_output=True,
                              text=True, timeout=600)
    killed = run(REVIEWFLOW_FAILPOINT="score:checkpoint-recorded")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # The parts the run state records as kept; another checkpoint's part may have been
    # half written when the kill came (the next run sweeps it), so not every .tmp is one.
    from tasks.layout import DataLayout
    from tasks.state.backend import open_state

    state = open_state(None, DataLayout(root=scoring_root))
    try:
        kept = [record.scored_part for record in state.shard_records()]
    finally:
        state.close()
    assert kept and all(pq.read_schema(p).names[9:] == ["product_id", "stars", "created_at"]
                        for p in kept)
    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    schemas = part_schemas(scoring_root, "long.csv.gz")
    assert len(schemas) == 4 and all(s.equals(schemas[0]) for s in schemas)
    assert schemas[0].field("stars").type == pa.int64()
    parts = f"{layout_of(scoring_root).scored}/**/*.parquet"
    assert duckdb.sql(f"SELECT count(*), sum(stars) FROM read_parquet('{parts}')").fetchall() == [
        (34, sum(int(r["stars"]) for i, r in enumerate(rows) if i != 23))]
    (bad,) = quarantined_rows(scoring_root).to_pylist()
    assert bad["stars"] == "many" and bad["source_row"] == 24
