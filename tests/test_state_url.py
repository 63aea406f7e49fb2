"""A state password never leaks (issue 37, item 1): every split, comparison and redaction
of a state URL goes through libpq's own parser (``tasks.state.url``), for every form
libpq takes (the password in the user info, in ``?password=``, in ``key=value`` pairs,
in ``PGPASSWORD``, in ``~/.pgpass``) and passwords holding each of ``# ? % @ : / & = +``
and a space. Logins really made against a real PostgreSQL with such passwords; the
real CLI's terminal output, the Prefect run as the API keeps it, the run summary, the
command lines of every process while a run scores, and the error lines of a wrong or
unreadable URL, each searched for any part of the password."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from conftest import PROJECT, reviewflow_command
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tasks.errors import StateUnavailableError, StateURLError
from tasks.layout import STATE_MARKER_FILE, DataLayout
from tasks.state.url import describe, parse, redacted, with_password_of, without_password
from tests.helpers import good_rows, layout_of, write_csv
from tests.prefect_server import what_prefect_keeps

SPECIALS = ["#", "?", "%", "@", ":", "/", "&", "=", "+", " "]
# A password is two distinctive halves around the characters under test, so that a part
# of it shown anywhere (libpq splitting it into a host, say) is found too.
HALVES = ("Lq7Vw", "Zx9Tk")
WRONG_HALVES = ("Wq3Rt", "Yu8Io")


def password_with(middle: str, halves: tuple[str, str] = HALVES) -> str:
    return f"{halves[0]}{middle}{halves[1]}"


def assert_hidden(text: str, halves: tuple[str, str] = HALVES) -> None:
    for half in halves:
        assert half not in text, f"{half!r} shown in {text[:3000]!r}"


def forms(user: str, password: str, host: str, port: int | str, db: str,
          folder: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Every way libpq takes this login: (state URL, environment)."""
    bare = f"postgresql://{user}@{host}:{port}/{db}"
    pgpass = folder / f"pgpass-{uuid.uuid4().hex[:8]}"
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    pgpass.write_text(f"{host}:{port}:{db}:{user}:{escaped}\n")
    pgpass.chmod(0o600)
    return {
        "user info": (f"postgresql://{user}:{quote(password, safe='')}@{host}:{port}/{db}", {}),
        "?password=": (f"{bare}?password={quote(password, safe='')}", {}),
        "key=value": (make_conninfo(host=host, port=str(port), user=user, password=password,
                                    dbname=db), {}),
        "PGPASSWORD": (bare, {"PGPASSWORD": password}),
        ".pgpass": (bare, {"PGPASSFILE": str(pgpass)}),
    }


def raw_forms(user: str, password: str, host: str, port: int | str, db: str) -> dict[str, str]:
    """The password written into the URL as it is, unencoded: what a user may type."""
    return {"raw user info": f"postgresql://{user}:{password}@{host}:{port}/{db}",
            "raw ?password=": f"postgresql://{user}@{host}:{port}/{db}?password={password}"}


def shown(url: str) -> str:
    """Everything the product derives from a state URL for others to see."""
    return " ".join([without_password(url) or "", redacted(url), describe(url)])


# ------------------------------------------------------------------ the parser, no server

@pytest.mark.parametrize("middle", SPECIALS, ids=repr)
def test_every_form_is_read_as_libpq_reads_it_and_shown_without_the_password(middle, tmp_path):
    password = password_with(middle)
    for name, (url, _) in forms("rf", password, "db.example", 5433, "state", tmp_path).items():
        if name in ("PGPASSWORD", ".pgpass"):
            continue
        assert parse(url)["password"] == password, name
        assert_hidden(shown(url))
        bare = without_password(url)
        assert conninfo_to_dict(bare) == {k: v for k, v in conninfo_to_dict(url).items()
                                          if k != "password"}, name
        assert with_password_of(bare, url) == url  # what a flow run does with its parameter
        assert with_password_of(bare, url.replace("db.example", "db.other")) == bare
    for name, url in raw_forms("rf", password, "db.example", 5433, "state").items():
        try:
            read = parse(url)
        except StateURLError as exc:
            assert_hidden(str(exc))
            assert "\n" not in str(exc) and "PGPASSWORD" in str(exc), name
            assert_hidden(redacted(url) + describe(url))  # shown, if at all, as a phrase
            with pytest.raises(StateURLError):
                without_password(url)  # never kept anywhere
            continue
        assert read["password"] == password, (name, read)  # libpq read it whole
        assert_hidden(shown(url))


def test_a_url_libpq_cannot_read_is_refused_by_the_settings_in_one_line(monkeypatch):
    from flows.configuration import settings_from

    for url in ("postgresql://rf:Lq7Vw%Zx9Tk@db/state", "postgresql://rf:Lq7Vw Zx9Tk@db/state",
                "postgresql://rf:Lq7Vw@Zx9Tk@db/state", "postgresql://rf:Lq7Vw/Zx9Tk@db/state",
                "host=db password=Lq7Vw Zx9Tk", "Lq7Vw-Zx9Tk", "mysql://rf:Lq7Vw-Zx9Tk@db/s"):
        with pytest.raises(StateURLError) as refused:  # not pydantic's error, which
            settings_from(state_url=url)                # would repeat the value
        assert "\n" not in str(refused.value)
        assert_hidden(str(refused.value))
        error = refused.value  # no libpq error chained to it (its traceback quotes the URL)
        assert error.__cause__ is None and (error.__context__ is None
                                            or error.__suppress_context__)
    # Such a URL in the environment: the flows still import (they read no settings then).
    imported = subprocess.run([sys.executable, "-c", "import flows.score_reviews, "
                               "flows.retrain_model"], cwd=PROJECT, capture_output=True,
                              text=True, timeout=300, env={**os.environ,
                                                           "REVIEWFLOW_STATE_URL": url})
    assert imported.returncode == 0, imported.stderr[-3000:]


def test_a_state_url_libpq_cannot_read_is_refused_first_by_every_command(tmp_path, capsys):
    """Even by one that does not use the run state: `init` creates nothing."""
    from flows.cli import main

    root = tmp_path / "new"
    for argv in (["init", str(root)], ["models", "list", "--data-dir", str(root)]):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--state-url", "postgresql://rf:Lq7Vw%Zx9Tk@db/state"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert stopped.value.code == 2 and len(lines) == 1 and "state URL" in lines[0], lines
        assert_hidden(lines[0])
        assert not root.exists()


# ------------------------------------------------------------------ real logins

def _role(cluster, password: str) -> tuple[str, str]:
    """A login role with ``password`` and a database of its own: (user, database)."""
    user = f"r{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.url, autocommit=True) as db:
        db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)))
        db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(user), sql.Identifier(user)))
    return user, user


def test_each_password_logs_in_in_every_form_and_a_wrong_one_is_never_shown(
        pg_cluster, tmp_path, monkeypatch):
    from flows.configuration import settings_from
    from tasks.state.backend import open_state

    host, port = pg_cluster.host, pg_cluster.port
    for middle in SPECIALS:
        password = password_with(middle)
        user, db = _role(pg_cluster, password)
        layout = DataLayout(root=tmp_path / f"root-{uuid.uuid4().hex[:8]}")
        attempts = {name: (url, env) for name, (url, env) in
                    forms(user, password, host, port, db, tmp_path).items()}
        attempts.update({name: (url, {}) for name, url in
                         raw_forms(user, password, host, port, db).items()})
        for name, (url, env) in attempts.items():
            with monkeypatch.context() as patched:
                for key, value in env.items():
                    patched.setenv(key, value)
                try:
                    parse(url)
                except StateURLError:
                    assert name.startswith("raw"), (middle, name)
                    continue
                # The flow's way: the parameter without the password, the password
                # from the worker's REVIEWFLOW_STATE_URL.
                patched.setenv("REVIEWFLOW_STATE_URL", url)
                settings = settings_from(data_dir=layout.root,
                                         state_url=without_password(url))
                state = open_state(settings.state_url, layout)
                try:
                    assert_hidden(state.where() + str(state.identity()))
                finally:
                    state.close()
        assert_hidden((layout.root / STATE_MARKER_FILE).read_text())

        wrong = password_with(middle, WRONG_HALVES)
        for name, (url, env) in forms(user, wrong, host, port, db, tmp_path).items():
            with monkeypatch.context() as patched:
                for key, value in env.items():
                    patched.setenv(key, value)
                with pytest.raises(StateUnavailableError) as refused:
                    open_state(url, layout)
            message = str(refused.value)
            assert "refused the login" in message and "\n" not in message, (name, message)
            assert_hidden(message, WRONG_HALVES)
            assert_hidden(message)


# ------------------------------------------------------------------ the real CLI

def _command_lines() -> dict[int, str]:
    """Every process's command line, as ``ps`` shows it, by pid."""
    lines = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                raw = (proc / "cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            lines[int(proc.name)] = raw.replace(b"\0", b" ").decode("utf-8", "replace")
    return lines


def _score_paused(args: list[str], env: dict, pause: Path, skip_own: bool
                  ) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``reviewflow score`` paused while it scores a file: every process's command line
    is read then; the command's output once it has finished."""
    pause.mkdir()
    env = {**env, "REVIEWFLOW_PAUSEPOINT": "score:mid-file",
           "REVIEWFLOW_PAUSEPOINT_DIR": str(pause)}
    process = subprocess.Popen(reviewflow_command("score", *args), cwd=PROJECT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while not (pause / "reached").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never reached its file"
            time.sleep(0.1)
        every = _command_lines()
    finally:
        (pause / "go").touch()
        out, err = process.communicate(timeout=600)
    assert "flows.cli" in every[process.pid]  # the scan saw the command itself
    if skip_own:  # the password the user typed on its command line: there, and only there
        assert any(half in every.pop(process.pid) for half in HALVES)
    holding = [line for line in every.values() if any(half in line for half in HALVES)]
    assert not holding, holding
    return (subprocess.CompletedProcess(process.args, process.returncode, out, err),
            list(every.values()))


@pytest.mark.slow
def test_no_command_shows_a_password_in_any_form(scoring_root, pg_cluster, subprocess_env,
                                                 tmp_path):
    password = password_with("".join(SPECIALS))
    user, db = _role(pg_cluster, password)
    host, port = pg_cluster.host, pg_cluster.port
    attempts = forms(user, password, host, port, db, tmp_path)
    base = {**subprocess_env, "REVIEWFLOW_SETTLE_SECONDS": "0"}
    for i, (name, (url, env)) in enumerate(attempts.items()):
        write_csv(layout_of(scoring_root).incoming / f"f{i}.csv", good_rows(f"f{i}", 3))
        on_command_line = name == "?password="  # the URL given as --state-url
        run_env = {**base, **env, **({} if on_command_line else {"REVIEWFLOW_STATE_URL": url})}
        args = ["--data-dir", str(scoring_root), "--verbose",
                *(["--state-url", url] if on_command_line else [])]
        if name == "user info":  # no PREFECT_API_URL: the command starts its own API
            run_env.pop("PREFECT_API_URL")
        done, every = _score_paused(args, run_env, tmp_path / f"pause-{i}", on_command_line)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        assert "scored 3 rows from 1 files" in done.stdout, (name, done.stdout)
        assert_hidden(done.stdout + done.stderr)
        if name == "user info":  # the temporary API server was among the processes read
            assert any("uvicorn" in line and "prefect" in line for line in every)
        else:  # the flow run's parameters, state messages, logs and summary artifact
            assert_hidden(what_prefect_keeps(done.stderr))
    assert_hidden((scoring_root / STATE_MARKER_FILE).read_text())

    # `state migrate` prints where it copied to: from a root of its own, in every form.
    other = DataLayout(root=tmp_path / "other").ensure()
    shutil.copytree(layout_of(scoring_root).models, other.models, dirs_exist_ok=True)
    write_csv(other.incoming / "a.csv", good_rows("a", 2))
    from tests.helpers import score

    assert score(other.root)["rows_scored"] == 2
    for name, (url, env) in attempts.items():
        done = subprocess.run(reviewflow_command("state", "migrate", "--data-dir",
                                                 str(other.root), "--to", url),
                              cwd=PROJECT, env={**base, **env}, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (name, done.stderr)
        assert f"{host}:{port}/{db}" in done.stdout
        assert_hidden(done.stdout + done.stderr)

    # A wrong password, and URLs libpq cannot read: one line each, nothing repeated.
    wrong = password_with("".join(SPECIALS), WRONG_HALVES)
    failing = [(forms(user, wrong, host, port, db, tmp_path)["user info"][0], 1,
                "refused the login")]
    failing += [(url, 2, "state URL") for url in raw_forms(user, password, host, port, db)
                .values()]
    for url, code, words in failing:
        for how in ("environment", "command line"):
            given = ["--state-url", url] if how == "command line" else []
            env = {**base, **({"REVIEWFLOW_STATE_URL": url} if not given else {})}
            done = subprocess.run(reviewflow_command("score", "--data-dir", str(scoring_root),
                                                     *given), cwd=PROJECT, env=env,
                                  capture_output=True, text=True, timeout=600)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == code and len(lines) == 1 and words in lines[0], \
                (how, done.stderr[-2000:])
            assert_hidden(done.stdout + done.stderr)
            assert_hidden(done.stdout + done.stderr, WRONG_HALVES)


def test_a_password_on_the_command_line_is_lent_to_the_flow_never_put_in_the_environment(
        scoring_root, pg_cluster, tmp_path, capsys):
    """`reviewflow score --state-url URL`, the password in URL: the flow run gets URL without
    it (its parameters, which Prefect keeps) and the password through the command's own
    process; the environment, which every process the command starts inherits (the
    temporary Prefect API, Dask workers), gains no variable holding it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.cli import main

    password = password_with("@:/ ")
    user, db = _role(pg_cluster, password)
    url = forms(user, password, pg_cluster.host, pg_cluster.port, db, tmp_path)["user info"][0]
    write_csv(layout_of(scoring_root).incoming / "a.csv", good_rows("a", 3))
    assert main(["score", "--data-dir", str(scoring_root), "--settle-seconds", "0",
                 "--state-url", url]) == 0
    assert "scored 3 rows from 1 files" in capsys.readouterr().out
    assert "REVIEWFLOW_STATE_URL" not in os.environ
    assert_hidden(json.dumps(dict(os.environ)))
    with get_client(sync_client=True) as client:  # the latest run: this one
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["score-reviews"])),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert run.parameters["state_url"] == without_password(url)
    assert run.parameters["data_dir"] == str(scoring_root)
    with psycopg.connect(url) as database:  # the run used the database
        assert database.execute("SELECT count(*) FROM scored_files").fetchone()[0] == 1
