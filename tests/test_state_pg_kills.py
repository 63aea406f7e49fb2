"""Scoring runs with PostgreSQL state that are killed, lose their connection, or see
the database stop mid-run: real ``reviewflow score`` subprocesses, a real cluster
(tests/postgres.py), real failpoints and pausepoints (tasks/failpoints.py). Afterwards
no advisory lock is held, the next run scores what is left, and every input row is in
scored/ exactly once (that next run in the test's process); no run prints or writes the
database password."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import PROJECT, reviewflow_command

from tests import postgres
from tests.helpers import good_rows, layout_of, scored_rows, write_csv
from tests.prefect_server import what_prefect_keeps

NAMES_ROWS = (("a", 3), ("b", 4), ("c", 5))


def _fresh(cluster) -> str:
    return cluster.create_database(f"t{uuid.uuid4().hex[:12]}")


def _inbox(root) -> list[str]:
    for name, n in NAMES_ROWS:
        write_csv(layout_of(root).incoming / f"{name}.csv", good_rows(name, n))
    return sorted(f"{name}-{i}" for name, n in NAMES_ROWS for i in range(n))


def _env(env, url, **extra) -> dict:
    return dict(env, REVIEWFLOW_STATE_URL=url, REVIEWFLOW_SETTLE_SECONDS="0",
                REVIEWFLOW_READ_BATCH_ROWS="2", **extra)


def _start(root, env, *args) -> subprocess.Popen:
    return subprocess.Popen(reviewflow_command("score", "--data-dir", str(root), *args),
                            cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(root, env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(reviewflow_command("score", "--data-dir", str(root), *args),
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)


def _next_run_here(root, url: str, monkeypatch) -> dict:
    """The next run, in this process with the commands' settings."""
    from tests.helpers import score, take_command_settings

    take_command_settings(monkeypatch, _env({}, url))
    return score(root)


def _paused(root, env, pause_dir: Path) -> subprocess.Popen:
    pause_dir.mkdir()
    proc = _start(root, dict(env, REVIEWFLOW_PAUSEPOINT="score:mid-file",
                             REVIEWFLOW_PAUSEPOINT_DIR=str(pause_dir)))
    deadline = time.monotonic() + 180
    while not (pause_dir / "reached").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the scorer never reached score:mid-file"
        time.sleep(0.05)
    return proc


def _check_once(root, url, expected: list[str]) -> None:
    ids = scored_rows(root, columns=["review_id"]).column("review_id").to_pylist()
    assert sorted(ids) == expected  # every input row exactly once
    table = scored_rows(root, columns=["review_id", "source_file"])
    per_file = {}
    for source in table.column("source_file").to_pylist():
        per_file[source] = per_file.get(source, 0) + 1
    with psycopg.connect(url) as db:
        ledger = db.execute("SELECT source_file, rows_read, archived_at IS NOT NULL"
                            " FROM scored_files ORDER BY source_file").fetchall()
    assert ledger == [(f"{n}.csv", k, True) for n, k in NAMES_ROWS]
    assert {Path(s).name: c for s, c in per_file.items()} == {f"{n}.csv": k
                                                              for n, k in NAMES_ROWS}
    archived = sorted(p.name.split("-", 1)[1] for p in layout_of(root).archive.rglob("*.csv"))
    assert archived == [f"{n}.csv" for n, _ in NAMES_ROWS]
    assert not any(layout_of(root).incoming.glob("*.csv"))


def _one_line_naming(stderr: str, where: str) -> None:
    """The command's own message: one ``reviewflow:`` line, the last, naming the database
    (the Prefect flow-run log lines above it go to stderr as well at INFO), and no
    traceback."""
    ours = [line for line in stderr.strip().splitlines() if line.startswith("reviewflow:")]
    assert len(ours) == 1 and where in ours[0], stderr
    assert stderr.strip().splitlines()[-1] == ours[0], stderr
    # Prefect's traceback of the same error stays in the run's log, off the terminal.
    assert "Traceback" not in stderr and "Encountered exception" not in stderr, stderr


def test_a_scorer_killed_mid_file_leaves_no_lock_and_the_next_run_scores_all(
        scoring_root, pg_cluster, subprocess_env, monkeypatch):
    url = _fresh(pg_cluster)
    expected = _inbox(scoring_root)
    env = _env(subprocess_env, url)
    killed = _run(scoring_root, dict(env, REVIEWFLOW_FAILPOINT="score:mid-file"))
    assert killed.returncode == -9, killed.stderr
    assert postgres.advisory_locks_left(url) == 0
    _next_run_here(scoring_root, url, monkeypatch)
    _check_once(scoring_root, url, expected)
    assert postgres.advisory_locks_left(url) == 0


def test_a_connection_cut_mid_run_stops_the_run_with_one_line(
        scoring_root, pg_cluster, subprocess_env, tmp_path, monkeypatch):
    url = _fresh(pg_cluster)
    expected = _inbox(scoring_root)
    env = _env(subprocess_env, url)
    proc = _paused(scoring_root, env, tmp_path / "pause")
    with psycopg.connect(pg_cluster.url, autocommit=True) as db:
        pids = [pid for (pid,) in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'reviewflow%'")]
        assert pids
        for pid in pids:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    (tmp_path / "pause" / "go").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    _one_line_naming(err, f"127.0.0.1:{pg_cluster.port}/")
    assert postgres.PASSWORD not in out + err
    assert postgres.advisory_locks_left(url) == 0
    _next_run_here(scoring_root, url, monkeypatch)
    _check_once(scoring_root, url, expected)


def test_the_database_stopped_mid_run_stops_the_run_and_the_next_run_completes(
        scoring_root, subprocess_env, tmp_path, monkeypatch):
    if (why := postgres.available()) is not None:
        pytest.skip(why)
    cluster = postgres.temporary_cluster()  # its own: the others keep theirs running
    try:
        url = _fresh(cluster)
        expected = _inbox(scoring_root)
        env = _env(subprocess_env, url)
        proc = _paused(scoring_root, env, tmp_path / "pause")
        cluster.stop()
        (tmp_path / "pause" / "go").touch()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        _one_line_naming(err, f"127.0.0.1:{cluster.port}/")
        assert postgres.PASSWORD not in out + err
        cluster.start()
        assert postgres.advisory_locks_left(url) == 0
        _next_run_here(scoring_root, url, monkeypatch)
        _check_once(scoring_root, url, expected)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)


def test_no_run_prints_or_writes_the_database_password(scoring_root, pg_cluster,
                                                       subprocess_env):
    url = _fresh(pg_cluster)
    assert postgres.PASSWORD in url
    _inbox(scoring_root)
    env = _env(subprocess_env, url)
    done = _run(scoring_root, env, "--verbose")
    assert done.returncode == 0, done.stderr
    assert postgres.PASSWORD not in done.stdout + done.stderr
    assert postgres.PASSWORD not in what_prefect_keeps(done.stderr)
    write_csv(layout_of(scoring_root).incoming / "more.csv", good_rows("more", 3))
    without = {k: v for k, v in env.items() if k != "REVIEWFLOW_STATE_URL"}
    given = _run(scoring_root, without, "--state-url", url)  # the URL on the command line
    assert given.returncode == 0, given.stderr
    assert postgres.PASSWORD not in given.stdout + given.stderr
    assert postgres.PASSWORD not in what_prefect_keeps(given.stderr)
    secret = postgres.PASSWORD.encode()
    for path in scoring_root.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    wrong = f"postgresql://{postgres.USER}:{postgres.PASSWORD}@127.0.0.1:{postgres.free_port()}/x"
    for args in ([], ["--verbose"]):
        failed = _run(scoring_root, _env(subprocess_env, wrong), *args)
        assert failed.returncode == 1, failed.stderr
        assert postgres.PASSWORD not in failed.stdout + failed.stderr
