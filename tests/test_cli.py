"""The `reviewflow` command line: options anywhere, no stray trees, plain words, fast paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PROJECT, SAMPLES

from flows.cli import main, parse_arguments
from tests.helpers import cli_exit_code, layout_of, scored_rows

HEAVY = ("tensorflow", "prefect", "great_expectations", "scipy.stats")


@pytest.mark.parametrize("argv", [
    ["--data-dir", "X", "score"], ["score", "--data-dir", "X"],
    ["--data-dir", "X", "retrain"], ["retrain", "--data-dir", "X", "--epochs", "2"],
    ["--data-dir", "X", "models", "list"], ["models", "--data-dir", "X", "list"],
    ["models", "list", "--data-dir", "X"],
    ["models", "promote", "v1", "--reason", "r", "--data-dir", "X"],
    ["models", "rollback", "--data-dir", "X", "--reason", "r"],
    ["demo", "--data-dir", "X"], ["init", "--data-dir", "X"],
    ["rescore", "--data-dir", "X", "--dry-run"], ["--data-dir", "X", "rescore"],
])
def test_data_dir_goes_before_or_after_any_command(argv):
    assert parse_arguments(argv).data_dir == "X"


def test_without_data_dir_the_setting_decides():
    args = parse_arguments(["models", "list"])
    assert args.data_dir is None and args.verbose is False


@pytest.mark.parametrize("argv", [["score"], ["retrain"], ["models", "list"],
                                  ["models", "rollback", "--reason", "r"], ["rescore"]])
def test_a_missing_data_root_exits_2_and_creates_nothing(tmp_path, capsys, argv):
    typo = tmp_path / "dta"
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--data-dir", str(typo)])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert f"no data root at {typo}" in message and "reviewflow init" in message
    assert not typo.exists()


def test_init_creates_a_root_that_the_commands_then_accept(tmp_path, capsys):
    root = tmp_path / "reviews"
    assert cli_exit_code(["init", str(root)]) == 0
    assert {p.name for p in root.iterdir()} >= {"incoming", "labeled", "scored", "quarantine",
                                                "models", "state", "archive"}
    assert cli_exit_code(["models", "list", "--data-dir", str(root)]) == 0
    assert "no model versions yet" in capsys.readouterr().out


def run_cli_collecting_imports(argv: list[str]) -> dict:
    """Run the CLI in a fresh interpreter; report its exit code, stderr and which heavy
    libraries it imported."""
    probe = ("import json, sys\n"
             "from flows.cli import main\n"
             "code = 0\n"
             "try:\n"
             f"    main({argv!r})\n"
             "except SystemExit as exc:\n"
             "    code = exc.code\n"
             f"print(json.dumps({{'code': code, 'heavy': sorted(m for m in {HEAVY!r} "
             "if m in sys.modules)}))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


def test_commands_with_nothing_heavy_to_do_skip_tensorflow_prefect_and_gx(tmp_path,
                                                                          trained_models):
    """What keeps `models …`, an empty inbox and a root without a champion well under a
    second or five: none of them imports TensorFlow, Prefect or Great Expectations
    (BENCHMARKS.md has the timings)."""
    import shutil

    empty = tmp_path / "empty"
    assert cli_exit_code(["init", str(empty)]) == 0
    result = run_cli_collecting_imports(["score", "--data-dir", str(empty)])
    assert result["code"] == 2 and "no champion model" in result["stderr"]
    assert result["heavy"] == []
    assert "Traceback" not in result["stderr"]

    result = run_cli_collecting_imports(["retrain", "--data-dir", str(empty)])
    assert result["code"] == 2 and "no labeled review files" in result["stderr"]
    assert result["heavy"] == []

    result = run_cli_collecting_imports(["rescore", "--data-dir", str(empty)])
    assert result["code"] == 2 and "no champion model" in result["stderr"]
    assert result["heavy"] == [] and "Traceback" not in result["stderr"]

    shutil.copytree(trained_models, layout_of(empty).models, dirs_exist_ok=True)
    (layout_of(empty).incoming / "fresh.csv").write_text("review_id,text\n1,fine\n")
    # The file settles for an hour: still nothing ready however long the command takes
    # to start on a loaded host (the default 2 s can pass before it lists the inbox).
    result = run_cli_collecting_imports(["score", "--data-dir", str(empty),
                                         "--settle-seconds", "3600"])
    assert result == {"code": 0, "heavy": [], "stderr": result["stderr"]}
    for argv in (["models", "list"], ["models", "rollback", "--reason", "r"],
                 ["rescore", "--dry-run"]):
        result = run_cli_collecting_imports([*argv, "--data-dir", str(empty)])
        assert result["heavy"] == [], argv


def test_nothing_to_score_says_why_in_one_line(scoring_root, capsys):
    (layout_of(scoring_root).incoming / "fresh.csv").write_text("review_id,text\n1,fine\n")
    assert cli_exit_code(["score", "--data-dir", str(scoring_root), "--settle-seconds", "3600"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"reviewflow: nothing to score: 0 files ready in {layout_of(scoring_root).incoming}; 1 left "
        "for the next run (modified in the last 3600 s)")


def test_demo_knows_both_bundled_languages(data_dir, capsys):
    """`make demo` trains on the English and the Korean samples; its Korean scores are
    sensible (the Korean test sample carries labels)."""
    assert cli_exit_code(["demo", "--data-dir", str(data_dir)]) == 0
    scored = scored_rows(data_dir).to_pandas()
    korean = scored[scored["source_file"] == "korean-test.tsv"]
    assert len(korean) == sum(1 for _ in open(SAMPLES / "korean" / "test.tsv")) - 1
    assert (korean["predicted_label"] == korean["label"]).mean() >= 0.8
    assert korean["score"].nunique() > len(korean) // 2  # not one constant score


def test_long_work_shows_progress_lines(scoring_root, caplog):
    """Scoring logs files done of all, rows, reviews/s and time left (the last file
    always); retraining logs each epoch with its held-out figures."""
    import logging
    import shutil

    from flows.retrain_model import retrain_model
    from flows.score_reviews import score_reviews

    for name in ("prefect.flow_runs", "prefect.task_runs"):  # the suite runs at WARNING
        caplog.set_level(logging.INFO, logger=name)
    for i in range(3):
        (layout_of(scoring_root).incoming / f"f{i}.csv").write_text(f"review_id,text\n{i},fine film\n")
    score_reviews(data_dir=str(scoring_root), settle_seconds=0)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("3/3 files, 3 rows, ") and line.endswith(" s left")
               for line in lines), lines
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    caplog.clear()
    retrain_model(data_dir=str(scoring_root), architecture="seed", epochs=2)
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("selection accuracy" in line for line in epochs)


def run_on_a_terminal(argv: list[str], env: dict, timeout: float = 600) -> str:
    """Run the CLI with a pseudo-terminal as its standard output and error; what it drew."""
    import os
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], cwd=PROJECT, env=env,
                               stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_long_work_shows_bars(scoring_root, subprocess_env):
    """A person at a terminal sees bars (files for scoring, epochs for training) instead of
    progress log lines."""
    import shutil

    for i in range(3):
        (layout_of(scoring_root).incoming / f"f{i}.csv").write_text(f"review_id,text\n{i},fine film\n")
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0", COLUMNS="160")
    drawn = run_on_a_terminal(["score", "--data-dir", str(scoring_root)], env)
    assert "scoring" in drawn and "3/3" in drawn and "reviews/s" in drawn
    assert "files, 3 rows" in drawn and "s left" not in drawn  # the bar, not the log line
    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    drawn = run_on_a_terminal(["retrain", "--data-dir", str(scoring_root), "--architecture",
                               "seed", "--epochs", "2"], env)
    assert "training" in drawn and "2/2" in drawn and "selection accuracy" in drawn
    assert "epoch 1/2:" not in drawn


def test_the_program_exits_with_its_code_after_prefect_has_its_last_log(scoring_root,
                                                                        subprocess_env):
    """``reviewflow`` ends without the interpreter's teardown (flows.cli.run), after
    Python's exit handlers: the run's last log line is on the Prefect server, the output
    is complete, and the exit code is the command's own, 0 here and 2 for a root
    without a champion."""
    import asyncio
    import shutil

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort

    from tasks.layout import DataLayout

    (layout_of(scoring_root).incoming / "a.csv").write_text(
        "review_id,text\n" + "".join(f"a{i},A fine film take {i}.\n" for i in range(20)))
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "score", "--data-dir",
                           str(scoring_root)], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scored 20 rows from 1 files" in done.stdout and "run took" in done.stdout
    run_name = done.stderr.split("Beginning flow run '")[1].split("'")[0]

    async def last_log() -> str:
        async with get_client() as client:
            [flow_run] = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])),
                sort=LogSort.TIMESTAMP_DESC, limit=1)
            return logs[0].message

    assert "Finished in state Completed('scored 20 rows from 1 files with " in asyncio.run(last_log())

    shutil.rmtree(DataLayout(root=scoring_root).models)  # no champion now: exit code 2
    DataLayout(root=scoring_root).models.mkdir()
    (layout_of(scoring_root).incoming / "b.csv").write_text("review_id,text\nb1,Fine.\n")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "score", "--data-dir",
                           str(scoring_root)], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("reviewflow: ")


PREFECT_LOG_LINE = r"^\d\d:\d\d:\d\d\.\d+ \| "


def start_and_signal_once(argv: list[str], env: dict, log, wait_for: str, signum: int,
                          to_group: bool) -> tuple[int, str, str]:
    """Start the real CLI, send ``signum`` once ``wait_for`` is in its output (to its
    process group, as Ctrl-C at a terminal does, or to the process alone, as `kill`
    does); its exit code, all it printed and what it printed after the signal."""
    import os
    import signal
    import time

    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], cwd=PROJECT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while wait_for not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"never printed {wait_for!r}"
            time.sleep(0.05)
        before = len(log.read_text())
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        code = process.wait(timeout=90)  # seconds when right; minutes when not
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    said = log.read_text()
    return code, said, said[before:]


def the_one_line(after: str) -> str:
    """The command's own lines among what it printed after the signal (the rest are
    Prefect's log lines): there must be exactly one."""
    import re

    own = [line for line in after.splitlines()
           if line.strip() and not re.match(PREFECT_LOG_LINE, line)
           and "Finished in state" not in line]
    assert len(own) == 1, after
    return own[0]


@pytest.mark.parametrize("signum, to_group", [
    pytest.param(2, True, id="ctrl-c"),
    pytest.param(15, False, id="sigterm")])
def test_an_interrupted_score_says_what_it_kept_and_the_next_run_finishes(
        scoring_root, subprocess_env, tmp_path, signum, to_group):
    """Ctrl-C (SIGINT to the whole process group, the temporary Prefect API server
    included) or SIGTERM while scoring: no traceback, one line saying what was kept,
    exit 128 + the signal; the next run scores the rest, every row once."""
    import re

    files, rows = 12, 25_000  # each over 1 MiB: scored one by one, not in a bundle
    for f in range(files):
        (layout_of(scoring_root).incoming / f"batch{f:02d}.csv").write_text(
            "review_id,text\n" + "".join(f"{f}-{i},A {'fine' if i % 2 else 'dull'} film "
                                         f"with a cast to match; take {i}.\n"
                                         for i in range(rows)))
    assert (layout_of(scoring_root).incoming / "batch00.csv").stat().st_size > 1 << 20
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0")
    if to_group:  # no PREFECT_API_URL: the command starts its own temporary server
        env.pop("PREFECT_API_URL")
        env["PREFECT_HOME"] = str(tmp_path / "prefect")
    code, said, after = start_and_signal_once(
        ["score", "--data-dir", str(scoring_root)], env, tmp_path / "score.log",
        "files, ", signum, to_group)
    assert code == 128 + signum, said[-3000:]
    assert "Traceback" not in said
    line = the_one_line(after)
    how = "interrupted" if signum == 2 else "stopped by SIGTERM"
    kept = re.fullmatch(
        rf"reviewflow: score {how}: the files committed before the stop are kept \((\d+) "
        r"rows, in scored/ and quarantine/; their inputs in archive/\); the next `reviewflow "
        r"score` finishes the rest \((\d+) files: (\d+) this run had claimed, in "
        r"incoming/\.claimed/, and (\d+) not started\)(?:; (\d+) committed files are still "
        r"in incoming/\.claimed/: the next run archives them without scoring them again)?",
        line)
    assert kept, line
    committed, left, claimed, fresh = map(int, kept.groups()[:4])
    archiving = int(kept.group(5) or 0)  # stopped between a commit and its archive move
    scored = scored_rows(scoring_root, columns=["review_id"]).column("review_id").to_pylist()
    assert committed == len(scored) and committed % rows == 0 and committed >= rows
    assert left == files - committed // rows == claimed + fresh and left > 0
    assert len([p for p in (layout_of(scoring_root).incoming / ".claimed").glob("*/*")
                if not p.name.startswith(".")]) == claimed + archiving

    assert cli_exit_code(["score", "--data-dir", str(scoring_root), "--settle-seconds", "0"]) == 0
    scored = scored_rows(scoring_root, columns=["review_id"]).column("review_id").to_pylist()
    assert sorted(scored) == sorted(f"{f}-{i}" for f in range(files) for i in range(rows))


def test_a_stop_between_a_commit_and_its_archive_move_is_told_apart(tmp_path):
    """The interrupted line counts a claimed file whose content the ledger committed
    (stopped before its archive move) as committed, not as left to score."""
    from flows.stopping import interrupted_line
    from tasks.layout import DataLayout
    from tasks.state.ledger import Ledger, ScoredFile

    layout = DataLayout(root=tmp_path / "data").ensure()
    before = Ledger(layout.ledger).totals()
    for folder, name in (("tok1", "a.csv"), ("tok2", "b.csv"), (None, "c.csv")):
        path = layout.incoming / (f".claimed/{folder}/{name}" if folder else name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("review_id,text\n1,fine\n")
    Ledger(layout.ledger).record_scored_many([ScoredFile(
        "a" * 64, "v1", "a.csv", 1, 1, 0, None, None)])
    line = interrupted_line({"command": "score", "layout": layout, "ledger_totals": before})
    assert line.endswith("finishes the rest (2 files: 1 this run had claimed, in "
                         "incoming/.claimed/, and 1 not started); 1 committed files are still "
                         "in incoming/.claimed/: the next run archives them without scoring "
                         "them again"), line
    assert "(1 rows, in scored/" in line


def test_an_interrupted_retraining_says_nothing_was_promoted(scoring_root, subprocess_env,
                                                            tmp_path):
    """Ctrl-C while training: one line, exit 130, the champion untouched."""
    import shutil
    import signal

    from tasks.training.registry import Registry

    for sample in (SAMPLES / "labeled").iterdir():
        shutil.copy2(sample, scoring_root / "labeled" / sample.name)
    registry = Registry(layout_of(scoring_root).models)
    champion, versions = registry.champion_version(), sorted(registry.versions.iterdir())
    env = dict(subprocess_env, REVIEWFLOW_EPOCHS="400", REVIEWFLOW_PATIENCE="400",
               REVIEWFLOW_ARCHITECTURE="seed")
    code, said, after = start_and_signal_once(
        ["retrain", "--force", "--data-dir", str(scoring_root)], env,
        tmp_path / "retrain.log", "epoch 2/", signal.SIGINT, False)
    assert code == 130, said[-3000:]
    assert "Traceback" not in said
    assert the_one_line(after) == (
        f"reviewflow: retrain interrupted: no version was promoted; the champion is still "
        f"{champion}. Run `reviewflow retrain` again to train")
    assert registry.champion_version() == champion
    assert sorted(registry.versions.iterdir()) == versions


def test_score_json_prints_the_run_summary_alone_on_stdout(scoring_root, subprocess_env):
    """`reviewflow score --json`, the program to its exit: its whole standard output is
    one JSON document, the summary the flow returned, with the counts the run wrote;
    Prefect's log lines and the flow's own summary line stay on standard error."""
    from tasks.training.registry import Registry
    from tests.helpers import layout_of, quarantined_rows

    rows = "".join(f"j{i},A fine film; take {i}.\n" for i in range(20))
    (layout_of(scoring_root).incoming / "a.csv").write_text(f"review_id,text\n{rows}j20,\n")
    env = dict(subprocess_env, REVIEWFLOW_SETTLE_SECONDS="0")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "score", "--json", "--data-dir",
                           str(scoring_root)], cwd=PROJECT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["files_scored"], summary["rows_read"], summary["rows_scored"],
            summary["rows_quarantined"]) == (1, 21, 20, 1)
    assert summary["rows_scored"] == scored_rows(scoring_root).num_rows
    assert summary["rows_quarantined"] == quarantined_rows(scoring_root).num_rows
    assert summary["model_version"] == Registry(layout_of(scoring_root).models).champion_version()
    assert "Beginning flow run" in done.stderr and '"rows_scored": 20' in done.stderr


def test_score_json_with_nothing_ready_prints_null_and_the_reason_on_stderr(scoring_root,
                                                                           capsys):
    from tests.helpers import layout_of

    (layout_of(scoring_root).incoming / "fresh.csv").write_text("review_id,text\n1,fine\n")
    main(["score", "--json", "--data-dir", str(scoring_root), "--settle-seconds", "3600"])
    said = capsys.readouterr()
    assert json.loads(said.out) is None and said.out == "null\n"
    assert "reviewflow: nothing to score: 0 files ready" in said.err


def test_retrain_json_prints_the_run_summary_alone_on_stdout(labeled_root, capsys):
    """`reviewflow retrain --json`: the summary of the new version (promoted or not, and
    why), then of a run with nothing new to learn, each the only thing on stdout."""
    from tasks.training.registry import Registry
    from tests.helpers import layout_of

    argv = ["retrain", "--json", "--data-dir", str(labeled_root), "--architecture", "seed",
            "--epochs", "2"]
    main([*argv, "--force"])
    summary = json.loads(capsys.readouterr().out)
    registry = Registry(layout_of(labeled_root).models)
    assert summary["version"] == registry.latest_version()
    assert summary["promoted"] == (registry.champion_version() == summary["version"])
    assert summary["validation_rows"] > 0 and summary["reason"]
    main(argv)
    again = json.loads(capsys.readouterr().out)
    assert again["nothing_new"] is True and again["latest_version"] == summary["version"]
