"""``reviewflow rescore`` and the ``rescore-archive`` flow: archived inputs scored again
with a new champion, once per (content, champion), the inputs left in ``archive/``.

One root scored by the session's champion (v1) is made once per module; each test
copies it, promotes a copy of the champion as v2 and backfills.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from conftest import PROJECT, SAMPLES, reviewflow_command

from tasks.layout import content_key
from tasks.state.ledger import Ledger
from tasks.training.registry import Registry
from tests.helpers import (
    add_version,
    cli_exit_code,
    good_rows,
    layout_of,
    monitoring_rows,
    quarantined_rows,
    score,
    scored_rows,
    scored_sql,
    take_command_settings,
    write_csv,
)

# The template's files and their good rows; g.csv.gz, a gzip, is never bundled with
# small files: it is scored in one pass, in checkpoints (REVIEWFLOW_CHECKPOINT_ROWS).
FILES = {"a.csv": 5, "b.csv": 4, "shop-c.csv": 3, "g.csv.gz": 12}
BAD_ROWS = 1  # an empty text in shop-c.csv: quarantined by every scoring of it
CHECKPOINT_ROWS = "4"


def _prefix(name: str) -> str:
    return name.split(".")[0]


def _reviews() -> list[str]:
    return sorted(f"{_prefix(name)}-{i}" for name, n in FILES.items() for i in range(n))


@pytest.fixture(scope="module")
def scored_template(tmp_path_factory, trained_models) -> tuple[Path, str]:
    """A root whose inbox (FILES) was scored by the sample champion: v1 rows in
    scored/, the inputs in archive/<day>/."""
    from tasks.layout import DataLayout

    root = tmp_path_factory.mktemp("rescore") / "data"
    DataLayout(root=root).ensure()
    shutil.rmtree(layout_of(root).models)
    shutil.copytree(trained_models, layout_of(root).models)
    for name, n in FILES.items():
        rows = good_rows(_prefix(name), n)
        if name == "shop-c.csv":
            rows.append({"review_id": "shop-c-bad", "text": ""})
        pd.DataFrame(rows).to_csv(layout_of(root).incoming / name, index=False)
    summary = score(root)
    assert summary["files_scored"] == len(FILES), summary
    return root, Registry(layout_of(root).models).champion_version()


@pytest.fixture
def root(scored_template, tmp_path) -> Path:
    """A copy of the template with v2 (a copy of the champion) promoted."""
    copy = tmp_path / "data"
    shutil.copytree(scored_template[0], copy)
    Registry(layout_of(copy).models).promote_by_hand(add_version(copy, "v2"), "backfill test")
    return copy


def _archived(root) -> dict[str, bytes]:
    return {str(p.relative_to(layout_of(root).archive)): p.read_bytes()
            for p in layout_of(root).archive.rglob("*") if p.is_file()}


def _rows_per_version(root) -> dict[str, list[str]]:
    table = scored_rows(root, columns=["review_id", "model_version"]).to_pandas()
    return {v: sorted(g["review_id"]) for v, g in table.groupby("model_version")}


def _rescore(root, **parameters) -> dict:
    from flows.rescore_archive import rescore_archive

    return rescore_archive(data_dir=str(root), **parameters)


def test_a_new_champion_scores_every_archived_review_once_and_the_old_rows_stay(
        root, scored_template):
    v1 = scored_template[1]
    archived = _archived(root)
    summary = _rescore(root)
    assert summary["plan"]["files"] == len(FILES)
    assert summary["plan"]["rows"] == sum(FILES.values()) + BAD_ROWS
    assert (summary["files_scored"], summary["rows_scored"], summary["rows_quarantined"],
            summary["files_already_scored"], summary["files_failed"]) == (
        len(FILES), sum(FILES.values()), BAD_ROWS, 0, 0)
    assert summary["rows_read"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert _rows_per_version(root) == {v1: _reviews(), "v2": _reviews()}
    assert _archived(root) == archived  # nothing moved, no second copy
    assert not [p for p in layout_of(root).incoming.rglob("*") if p.is_file()]
    assert not list(layout_of(root).quarantined_files("x").parent.rglob("*"))
    # A rejected row is the input's, whatever model: quarantine/rows keeps it once.
    assert quarantined_rows(root).column("review_id").to_pylist() == ["shop-c-bad"]
    ledger = Ledger(layout_of(root).ledger)
    for sha in {n.split("-", 1)[0] for n in (Path(k).name for k in archived)}:
        full = next(s for s in scored_rows(root, ["source_sha256"]).column(
            "source_sha256").to_pylist() if content_key(s) == sha)
        assert ledger.scored(full, "v2").archived_at is not None
        assert ledger.scored(full, v1) is not None
    again = _rescore(root)  # once per (content, champion): the rerun skips every file
    assert (again["files_scored"], again["files_already_scored"], again["rows_scored"]) == (
        0, len(FILES), 0)
    assert again["plan"]["files"] == 0 and again["plan"]["files_skipped"] == len(FILES)
    assert _rows_per_version(root) == {v1: _reviews(), "v2": _reviews()}


@pytest.mark.parametrize("shard_rows", [None, 2], ids=["whole-files", "sharded"])
def test_rescored_rows_records_and_lines_name_each_file_as_it_was_uploaded(
        root, scored_template, shard_rows, caplog):
    """The archive keeps ``<sha16>-<name>``; what a backfill writes says ``<name>``, as
    the first scoring did: scored/ rows, the rejected row and its reason, the monitoring
    row, the ledger record, the files table and the progress lines. Bundled small files
    and a file in checkpoints (g.csv.gz); with ``shard_rows``, files in shards."""
    import logging
    import re

    from flows.rescore_archive import rescore_archive

    with caplog.at_level(logging.INFO, logger="prefect"):
        state = rescore_archive(data_dir=str(root), shard_rows=shard_rows, return_state=True)
    summary = state.result()
    assert summary["files_scored"] == len(FILES)
    assert summary["shards"] > len(FILES) if shard_rows else summary["shards"] == len(FILES)
    rows = scored_rows(root, ["review_id", "model_version", "source_file"]).to_pandas()
    named = {v: dict(zip(g["review_id"], g["source_file"], strict=True))
             for v, g in rows.groupby("model_version")}
    assert named["v2"] == named[scored_template[1]]
    assert set(named["v2"].values()) == set(FILES)
    (rejected,) = quarantined_rows(root, ["source_file", "reason"]).to_pylist()
    assert rejected["source_file"] == "shop-c.csv"
    assert rejected["reason"].startswith("shop-c.csv row "), rejected
    monitored = monitoring_rows(root).to_pandas()
    assert sorted(monitored.loc[monitored["model_version"] == "v2", "source_file"]) == sorted(
        FILES)
    ledger = Ledger(layout_of(root).ledger)
    shas = set(scored_rows(root, ["source_sha256"]).column("source_sha256").to_pylist())
    assert {ledger.scored(sha, "v2").source_file for sha in shas} == set(FILES)
    assert sorted(row["file"] for row in _artifacts(state)["score-files"]) == sorted(FILES)
    messages = [r.getMessage() for r in caplog.records]
    # Only the plan's lines say where each input lies in archive/ (the progress lines,
    # whichever the timing brings, name the uploaded file).
    archived = re.compile(r"[0-9a-f]{16}-")
    assert [m for m in messages if archived.search(m) and not m.startswith("  ")] == []


def test_an_uploaded_name_that_looks_archived_is_kept_whole_when_scored_and_rescored(root):
    """Only the archive's own ``<sha16>-`` is undone: a user's file named like an
    archived one keeps its whole name in scored/ and the ledger, then in a backfill."""
    name = "0123456789abcdef-x.csv"
    write_csv(layout_of(root).incoming / name, good_rows("x", 3))
    assert score(root)["files_scored"] == 1
    Registry(layout_of(root).models).promote_by_hand(add_version(root, "v3"), "backfill test")
    assert _rescore(root, files=name)["files_scored"] == 1
    rows = scored_rows(root, ["review_id", "model_version", "source_file",
                              "source_sha256"]).to_pandas()
    mine = rows[rows["review_id"].str.startswith("x-")]
    assert sorted(mine["model_version"]) == ["v2"] * 3 + ["v3"] * 3
    assert set(mine["source_file"]) == {name}
    (sha,) = set(mine["source_sha256"])
    ledger = Ledger(layout_of(root).ledger)
    assert ledger.scored(sha, "v2").source_file == ledger.scored(sha, "v3").source_file == name


def _artifacts(state) -> dict:
    """The artifacts of the flow run of ``state``, by key, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return {a.key: (json.loads(a.data) if a.type == "table" else a.data) for a in found}


def test_the_latest_score_queries_of_the_data_contract_return_v2_once_per_review(root):
    """docs/data-contract.md's "each review's latest score", in DuckDB and pandas."""
    _rescore(root)
    contract = (PROJECT / "docs" / "data-contract.md").read_text()
    sql = _fenced(contract, "sql", "latest_score").replace(
        "read_parquet('data/scored/**/*.parquet', hive_partitioning=true)", scored_sql(root))
    latest = duckdb.sql(sql).df()
    assert sorted(latest["review_id"]) == _reviews()
    assert set(latest["model_version"]) == {"v2"}
    code = _fenced(contract, "python", "latest_score").replace('"data/scored"',
                                                                repr(str(layout_of(root).scored)))
    found: dict = {"pd": pd}
    exec(code, found)  # noqa: S102 - the documented snippet, as a reader runs it
    frame = found["latest"]
    assert sorted(frame["review_id"]) == _reviews()
    assert set(frame["model_version"]) == {"v2"}
    assert len(frame) == len(set(frame["review_id"]))


def _fenced(text: str, language: str, marker: str) -> str:
    """The fenced ``language`` block of ``text`` that follows the line naming ``marker``."""
    after = text[text.index(f"<!-- {marker} -->"):]
    start = after.index(f"```{language}\n") + len(f"```{language}\n")
    return after[start:after.index("```", start)]


def test_since_and_files_choose_what_is_rescored(root):
    archive = layout_of(root).archive
    (day,) = [p.name for p in archive.iterdir()]
    older = archive / "2020-01-01"
    older.mkdir()
    for kept in archive.glob(f"{day}/*-a.csv"):  # a.csv, as if archived long ago
        shutil.move(kept, older / kept.name)
    summary = _rescore(root, since=day)
    assert summary["files_scored"] == len(FILES) - 1
    assert sorted(_rows_per_version(root)["v2"]) == sorted(
        r for r in _reviews() if not r.startswith("a-"))
    summary = _rescore(root, files="a.*")
    assert (summary["files_scored"], summary["files_already_scored"]) == (1, 0)
    summary = _rescore(root, since="2019-12-31", files="shop-*.csv")
    assert (summary["files_scored"], summary["files_already_scored"]) == (0, 1)
    assert _rows_per_version(root)["v2"] == _reviews()


def test_dry_run_prints_the_files_and_rows_and_scores_nothing(root, capsys):
    before = scored_rows(root).num_rows
    assert cli_exit_code(["rescore", "--data-dir", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(FILES)} files, {sum(FILES.values()) + BAD_ROWS} rows to score" in out
    for name, n in FILES.items():
        assert any(line.endswith(f"-{name}: {n + (BAD_ROWS if 'shop' in name else 0)} rows")
                   for line in out.splitlines()), out
    assert "nothing scored" in out
    assert scored_rows(root).num_rows == before
    assert cli_exit_code(["rescore", "--data-dir", str(root), "--dry-run", "--json",
                          "--files", "b.csv"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["files"], plan["rows"], plan["files_skipped"]) == (1, 4, 0)
    assert scored_rows(root).num_rows == before


def test_the_plan_is_logged_before_anything_is_scored(root, caplog):
    import logging

    from flows.rescore_archive import rescore_archive

    with caplog.at_level(logging.INFO, logger="prefect.flow_runs"):
        state = rescore_archive(data_dir=str(root), files="b.csv", return_state=True)
    messages = [r.getMessage() for r in caplog.records]
    plan = next(i for i, m in enumerate(messages) if "1 files, 4 rows to score" in m)
    assert any(m.endswith("-b.csv: 4 rows") for m in messages[plan:plan + 2])
    assert not any("scoring on" in m for m in messages[:plan])  # the plan comes first
    # The final state's message: what the UI and `prefect deployment run --watch` show.
    assert state.is_completed() and state.message == (
        "rescored 4 rows from 1 files with v2; 0 rows quarantined; 0 files skipped (already "
        "scored by v2); 0 files failed; 0 files busy")


def test_a_tampered_or_unreadable_archived_file_fails_with_its_reason_and_the_rest_is_scored(
        root):
    archive = layout_of(root).archive
    (tampered,) = archive.glob("*/*-a.csv")
    tampered.write_bytes(tampered.read_bytes().replace(b"wonderful", b"dreadful!"))
    (day,) = [p.name for p in archive.iterdir()]
    broken_bytes = b"\x00not parquet"
    import hashlib

    broken = archive / day / f"{content_key(hashlib.sha256(broken_bytes).hexdigest())}-d.parquet"
    broken.write_bytes(broken_bytes)
    archived = _archived(root)
    summary = _rescore(root)
    assert (summary["files_scored"], summary["files_failed"]) == (len(FILES) - 1, 2), summary
    assert summary["plan"]["files_failing"] == 2
    assert _archived(root) == archived  # both left where they are
    reasons = {json.loads(p.read_text())["file"]: json.loads(p.read_text())
               for p in layout_of(root).quarantined_files("x").parent.rglob("*.reason.json")}
    assert set(reasons) == {"a.csv", "d.parquet"}
    assert "differ from those it was archived with" in reasons["a.csv"]["reason"]
    assert reasons["a.csv"]["left_in"] == str(tampered)
    assert reasons["d.parquet"]["left_in"] == str(broken)
    assert sorted(_rows_per_version(root)["v2"]) == sorted(
        r for r in _reviews() if not r.startswith("a-"))


def test_no_champion_is_one_line_and_exit_2(root, capsys):
    shutil.rmtree(layout_of(root).models)
    layout_of(root).models.mkdir()
    assert cli_exit_code(["rescore", "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reviewflow: ") and "champion" in err[0], err
    assert cli_exit_code(["rescore", "--data-dir", str(root), "--since", "last week"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "YYYY-MM-DD" in err[0], err


def _cli(root, env, *args, **extra) -> subprocess.Popen:
    return subprocess.Popen(reviewflow_command(*args, "--data-dir", str(root)), cwd=PROJECT,
                            env=dict(env, REVIEWFLOW_SETTLE_SECONDS="0",
                                     REVIEWFLOW_READ_BATCH_ROWS="2", **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rescore_here(root, env, monkeypatch) -> None:
    """A rescore in this process with the settings ``_cli`` gives its commands."""
    take_command_settings(monkeypatch, {"REVIEWFLOW_SETTLE_SECONDS": "0",
                                        "REVIEWFLOW_READ_BATCH_ROWS": "2", **env})
    assert cli_exit_code(["rescore", "--data-dir", str(root)]) == 0


def _finish(process) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def _exactly_once_per_version(root, v1: str, more: list[str] = ()) -> None:
    """Every archived review has one v1 row and one v2 row in scored/, nothing twice."""
    expected = sorted(_reviews() + list(more))
    table = scored_rows(root, columns=["review_id", "model_version"]).to_pandas()
    assert sorted(table[table.model_version == "v2"]["review_id"]) == expected
    assert sorted(table[table.model_version == v1]["review_id"]) == _reviews()


@pytest.mark.parametrize(("state", "kill"), [
    ("sqlite", "score:mid-file"), ("postgresql", "score:mid-file"),
    ("sqlite", "score:checkpoint-recorded"), ("sqlite", "score:ledger-committed")])
def test_a_backfill_killed_then_run_again_scores_each_review_once(
        root, scored_template, subprocess_env, request, monkeypatch, state, kill):
    """SIGKILL inside a file (b.csv), after g.csv.gz's first checkpoint, or after the
    commit before the ledger's archive marks; the rerun finishes the rest."""
    env = _state_env(request, state, root, subprocess_env)
    env["REVIEWFLOW_CHECKPOINT_ROWS"] = CHECKPOINT_ROWS
    if kill == "score:mid-file":
        env["REVIEWFLOW_FAILPOINT_FILE"] = next(layout_of(root).archive.glob("*/*-b.csv")).name
    archived = _archived(root)
    killed = _cli(root, env, "rescore", REVIEWFLOW_FAILPOINT=kill)
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode == -9, output[-3000:]
    for name in ("REVIEWFLOW_CHECKPOINT_ROWS", "REVIEWFLOW_STATE_URL"):
        if name in env:
            monkeypatch.setenv(name, env[name])
    summary = _rescore(root)
    _exactly_once_per_version(root, scored_template[1])
    assert _archived(root) == archived
    assert not [p for p in layout_of(root).incoming.rglob("*") if p.is_file()]
    if kill == "score:checkpoint-recorded":  # g.csv.gz's kept checkpoint was reused
        assert summary["rows_resumed"] == int(CHECKPOINT_ROWS), summary
    if kill == "score:ledger-committed":  # committed by the killed run: skipped, marked
        assert summary["files_already_scored"] >= 1
        assert summary["files_scored"] + summary["files_already_scored"] == len(FILES)
        ledger = Ledger(layout_of(root).ledger)
        assert not ledger.unarchived()


@pytest.mark.parametrize("state", ["sqlite", "postgresql"])
def test_a_backfill_beside_a_scoring_run_scores_no_file_twice_and_loses_none(
        root, scored_template, subprocess_env, tmp_path, request, state, monkeypatch):
    """A `score` run paused inside a new upload while a `rescore` runs; the inbox also
    holds a second upload of an archived file, which both runs find."""
    env = _state_env(request, state, root, subprocess_env)
    inbox = layout_of(root).incoming
    write_csv(inbox / "new.csv", good_rows("new", 6))
    shutil.copy(next(layout_of(root).archive.glob("*/*-b.csv")), inbox / "b-again.csv")
    pause = tmp_path / "pause"
    pause.mkdir()
    scorer = _cli(root, env, "score", REVIEWFLOW_PAUSEPOINT="score:mid-file",
                  REVIEWFLOW_PAUSEPOINT_DIR=str(pause))
    _wait_at_pause(scorer, pause)
    rescorer = _cli(root, env, "rescore")
    rescored = _finish(rescorer)
    (pause / "go").touch()
    _finish(scorer)
    _rescore_here(root, env, monkeypatch)  # what either left busy
    _exactly_once_per_version(root, scored_template[1], [f"new-{i}" for i in range(6)])
    assert "; 1 files busy" in rescored, rescored[-3000:]  # b: the scorer held its content
    assert not [p for p in inbox.rglob("*") if p.is_file()]
    archived = sorted(p.name.split("-", 1)[1] for p in layout_of(root).archive.rglob("*")
                      if p.is_file())
    assert archived == sorted([*FILES, "new.csv", "b-again.csv"])


def _wait_at_pause(process: subprocess.Popen, pause: Path) -> None:
    """Until ``process`` is held at its pause point (``REVIEWFLOW_PAUSEPOINT_DIR=pause``)."""
    deadline = time.monotonic() + 300
    while not (pause / "reached").exists():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _state_env(request, state: str, root: Path, env: dict) -> dict:
    """``env`` for the CLI; with PostgreSQL, the root's ledger copied into a fresh
    database that becomes its run state (``reviewflow state migrate``)."""
    if state == "sqlite":
        return env
    import uuid

    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database(f"t{uuid.uuid4().hex[:12]}")
    assert cli_exit_code(["state", "migrate", "--data-dir", str(root), "--to", url]) == 0
    return dict(env, REVIEWFLOW_STATE_URL=url)


def test_an_interrupted_backfill_says_what_it_kept_and_the_next_one_finishes(
        root, scored_template, subprocess_env, tmp_path):
    import signal

    pause = tmp_path / "pause"
    pause.mkdir()
    process = _cli(root, subprocess_env, "rescore", REVIEWFLOW_PAUSEPOINT="score:mid-file",
                   REVIEWFLOW_PAUSEPOINT_DIR=str(pause))
    _wait_at_pause(process, pause)
    process.send_signal(signal.SIGINT)
    time.sleep(1)  # the stop is in before the paused shard goes on
    (pause / "go").touch()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert output.strip().splitlines()[-1] == (
        "reviewflow: rescore interrupted: the files committed before the stop are kept; the "
        "next reviewflow rescore skips them and scores the rest"), output[-3000:]
    _rescore(root)
    _exactly_once_per_version(root, scored_template[1])


def test_the_same_content_archived_twice_is_rescored_once(root):
    """An upload of content already scored is archived too: the archive may hold one
    content under several names and days; the backfill scores it once, the rest skipped."""
    archive = layout_of(root).archive
    (kept,) = archive.glob("*/*-b.csv")
    again = archive / "2021-06-01" / kept.name.replace("-b.csv", "-b-again.csv")
    again.parent.mkdir()
    shutil.copy(kept, again)
    summary = _rescore(root)
    assert summary["plan"]["files"] == len(FILES) and summary["plan"]["files_skipped"] == 1
    assert summary["plan"]["rows"] == sum(FILES.values()) + BAD_ROWS
    assert (summary["files_scored"], summary["files_already_scored"]) == (len(FILES), 1)
    assert _rows_per_version(root)["v2"] == _reviews()


def test_a_backfill_writes_drift_rows_but_emits_no_drift_event(scoring_root):
    """Old inputs scored again are not news: a Korean file rescored by the English
    champion gets its flagged monitoring row, and no ``reviewflow.drift.detected``
    event (a deployment trigger would start a retraining for each)."""
    import hashlib

    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
    from prefect.types import DateTime

    from flows.drift import DRIFT_EVENT
    from tests.helpers import monitoring_rows

    data = (SAMPLES / "korean" / "test.tsv").read_bytes()
    sha16 = content_key(hashlib.sha256(data).hexdigest())
    archived = layout_of(scoring_root).archive_folder("2026-01-02") / f"{sha16}-korean.tsv"
    archived.parent.mkdir(parents=True)
    archived.write_bytes(data)

    began = DateTime.now("UTC")
    summary = _rescore(scoring_root)
    assert summary["files_scored"] == 1, summary
    (row,) = monitoring_rows(scoring_root).to_pylist()
    assert {"oov_rate", "script_shift"} <= set(row["flags"])

    # Events reach the server in the order they are emitted: once a marker sent after
    # the run is there, a drift event of the run would be too.
    marker = emit_event(event="reviewflow.test.marker", resource={
        "prefect.resource.id": f"reviewflow.test.{row['flow_run_id']}"})
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            seen = client.read_events(EventFilter(
                occurred=EventOccurredFilter(since=began),
                event=EventNameFilter(name=["reviewflow.test.marker", DRIFT_EVENT])),
                limit=50).events
            if any(e.id == marker.id for e in seen):
                break
            time.sleep(1)
        else:
            pytest.fail("the marker event never reached the server")
    assert not [e for e in seen if e.event == DRIFT_EVENT
                and e.payload.get("flow_run_id") == row["flow_run_id"]]
