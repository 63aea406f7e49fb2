"""The ``reviewflow`` command: run the flows and manage the model registry.

    reviewflow init      [DIR]
    reviewflow score     [--require-gpu] [--settle-seconds S] [--task-runner threads|dask]
                         [--dask-address A] [--shard-rows N] [--json]
    reviewflow rescore   [--since YYYY-MM-DD] [--files GLOB] [--dry-run] [--json]
    reviewflow retrain   [--architecture A] [--epochs N] [--min-delta X] [--require-significance]
                         [--force] [--json]
    reviewflow monitor   [--runs N] [--png PATH] [--json]
    reviewflow models    list | promote VERSION --reason R [--force] | rollback --reason R
    reviewflow state     migrate [--from-state-dir DIR] --to URL
    reviewflow demo

``--data-dir D`` (default ``./data`` or ``REVIEWFLOW_DATA_DIR``) and ``--verbose`` go
before or after the command. Every option also has an environment variable (see
``tasks/settings.py``). Exit codes (``tasks/errors.py``): 0 done, 1 stopped by the
environment (disk full, unwritable folder) or an unexpected failure, 2 nothing to work
with or a wrong request (no data root, no champion, no labeled data, a registry
problem, a setting or state URL that cannot be read, a root scored with another run
state), 3 another retraining holds the registry, 4 no Prefect API: nothing answers at
``PREFECT_API_URL``, or it is not set and the temporary server this command starts did
not answer in time (see ``flows/prefect_api.py``); 130 interrupted (Ctrl-C, SIGINT) and
143 stopped by SIGTERM, each with one line saying what was kept.

Commands that find nothing heavy to do answer without importing TensorFlow, Great
Expectations or Prefect: ``models``, ``init``, and ``score``/``retrain`` on a root with
no champion, an empty inbox or no labeled files.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import NoReturn

from flows import admin, rescore_command
from flows.cli_output import print_retrain, print_score, summary_only_on_stdout
from flows.configuration import command_settings, flow_parameters, lending_state_url
from flows.startup import quiet_defaults, reported_errors, run_program, starting_flow
from flows.stopping import Stop, say_stopped
from tasks.layout import DataLayout
from tasks.scoring.schema import SCORED_DATASET_SCHEMA
from tasks.state.url import parse

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
# The options of `score` and `retrain` that are flow parameters of the same name.
SCORE_OPTIONS = ("require_gpu", "settle_seconds", "task_runner", "dask_address", "shard_rows")
RETRAIN_OPTIONS = ("architecture", "epochs", "min_delta", "require_significance")


def _parser() -> argparse.ArgumentParser:
    # --data-dir and --verbose are accepted before the command and after it: the
    # sub-commands' copies default to SUPPRESS, so they only override when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS,
                        help="data root (default ./data or $REVIEWFLOW_DATA_DIR)")
    common.add_argument("--state-url", default=argparse.SUPPRESS,
                        help="postgresql://user@host:port/db for the ledger and locks "
                             "(default $REVIEWFLOW_STATE_URL; unset: SQLite in the state folder)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and library logs for expected errors too")
    # (No set_defaults here: the parents' actions are shared objects, so a default set
    # on one parser would reach every sub-command's copy; see parse_arguments.)
    parser = argparse.ArgumentParser(prog="reviewflow", description=__doc__.split("\n")[0],
                                     parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **kwargs)

    init = command("init", help="create a data root (its folders) to score and train in")
    init.add_argument("directory", nargs="?", help="the root to create (default: --data-dir)")

    score = command("score", help="score new files in incoming/")
    score.add_argument("--require-gpu", action="store_true", default=None,
                       help="fail unless TensorFlow sees a GPU")
    score.add_argument("--settle-seconds", type=float,
                       help="leave files modified more recently than this for the next run")
    score.add_argument("--task-runner", choices=["threads", "dask"],
                       help="where shards run: this process (threads) or a Dask cluster")
    score.add_argument("--dask-address", help="scheduler to connect to (tcp://HOST:8786); "
                                              "without it, --task-runner dask starts a LocalCluster")
    score.add_argument("--shard-rows", type=int, help="split files with more rows than this")

    rescore_command.add_parser(command)

    retrain = command("retrain",
                      help="train a candidate on labeled/ and promote it only if it is better")
    retrain.add_argument("--architecture", help="named model configuration")
    retrain.add_argument("--epochs", type=int, help="most epochs (early stopping may end sooner)")
    retrain.add_argument("--min-delta", type=float, help="accuracy gain the candidate must exceed")
    retrain.add_argument("--require-significance", action="store_true", default=None,
                         help="also require an exact McNemar test at the configured alpha")
    retrain.add_argument("--force", action="store_true", default=False,
                         help="train even when nothing changed since the latest version")
    for sub in (score, retrain):
        sub.add_argument("--json", action="store_true", help="print the run summary as one "
                         "JSON document on stdout (null: nothing to score), no other lines")

    monitor = command("monitor", help="drift signals of recent scoring runs and accuracy on "
                                      "late labels, per model version, and a PNG")
    monitor.add_argument("--runs", type=int, default=10, help="recent runs to list per version")
    monitor.add_argument("--png", help="where to write the trends (default monitoring/_trends.png)")
    monitor.add_argument("--json", action="store_true",
                         help="print one JSON document on stdout: an object per model version")

    models = command("models", help="the model registry")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common],
                       help="versions, status, accuracy; which is champion")
    promote = actions.add_parser("promote", parents=[common],
                                 help="make VERSION the champion by hand")
    promote.add_argument("version")
    promote.add_argument("--reason", required=True,
                         help="why, for the history (required: a promotion by hand is deliberate)")
    promote.add_argument("--force", action="store_true",
                         help="promote a version that was rejected or scores below the champion")
    rollback = actions.add_parser("rollback", parents=[common],
                                  help="go back to the previous champion")
    rollback.add_argument("--reason", required=True, help="why, for the history (required)")

    command("demo", help="train on the bundled samples if there is no model, then score them")

    state = command("state", help="the run state (ledger and locks)")
    state_actions = state.add_subparsers(dest="action", required=True)
    migrate = state_actions.add_parser(
        "migrate", parents=[common],
        help="copy a state folder's SQLite ledger into PostgreSQL and make that database "
             "the root's run state (again: finishes, copies nothing twice)")
    migrate.add_argument("--to", required=True, metavar="URL",
                         help="postgresql://user@host:port/db (password: PGPASSWORD or ~/.pgpass)")
    migrate.add_argument("--from-state-dir", metavar="DIR",
                         help="the state folder the root was scored with until now (default "
                              "$REVIEWFLOW_STATE_DIR, else a local root's state/)")
    return parser


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command's arguments, ``--data-dir``, ``--state-url`` and ``--verbose`` always
    present (None or False when not given)."""
    args = _parser().parse_args(argv)
    args.data_dir = getattr(args, "data_dir", None)
    args.verbose = getattr(args, "verbose", False)
    args.state_url = getattr(args, "state_url", None)
    return args


def main(argv: list[str] | None = None, stop: Stop | None = None) -> int:
    args = parse_arguments(argv)
    args.under_way = {}  # what it does, for the line a stop prints: set by _score, _retrain
    stop = stop or Stop()  # called as a function: no signal handlers of its own
    stop.say = functools.partial(say_stopped, command=args.command, under_way=args.under_way)
    stop.traceback = args.verbose
    quiet_defaults(args.verbose)
    try:
        if args.state_url:  # one libpq cannot read: refused first, whatever the command
            parse(args.state_url)
        if args.command == "init":
            _init(args)
        elif args.command == "demo":
            _demo(args)
        else:
            _require_root(args)
            if args.command == "score":
                with summary_only_on_stdout(args.json):
                    summary = _score_if_needed(args)
                print_score(summary, args.json)
            elif args.command == "rescore":
                rescore_command.rescore(args, _settings(args))
            elif args.command == "retrain":
                _preflight_retrain(args)
                with summary_only_on_stdout(args.json):
                    summary = _retrain(args)
                print_retrain(summary, args.json)
            elif args.command == "models":
                admin.models(args, _settings(args))
            elif args.command == "monitor":
                from flows.monitor_command import monitor

                monitor(args, _settings(args))
            elif args.command == "state":
                admin.migrate(args, _settings(args))
    except BaseException as exc:
        # Ctrl-C or SIGTERM, whatever exception a library made of it: one line, 130/143.
        if (signum := stop.stopped_by(exc)) is not None:
            stop.end(signum, exc)
        _fail(args, exc)
    return 0


def _fail(args, exc: BaseException) -> NoReturn:
    """One line and an exit code for ``flows.startup.reported_errors``; else the traceback."""
    from tasks.errors import ReviewflowError

    if isinstance(exc, ReviewflowError) and not args.verbose:
        print(f"reviewflow: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if isinstance(exc, OSError | sqlite3.OperationalError):  # disk full, unwritable folders
        print(f"reviewflow: {args.command} stopped: {exc}. Files not yet committed were left "
              "where they were (incoming/, labeled/); fix the cause and run again.", file=sys.stderr)
        sys.exit(1)
    raise exc


def _settings(args):
    # `state migrate`: the database it copies to is the state the root will have.
    return command_settings(data_dir=args.data_dir or None,
                            state_url=getattr(args, "state_url", None) or getattr(args, "to", None))


def _init(args) -> None:
    settings = command_settings(data_dir=args.directory or args.data_dir or None)
    layout = DataLayout.of(settings).ensure()
    print(f"data root ready at {layout.root}: put review files in {layout.incoming}, labeled "
          f"ones in {layout.labeled}, then `reviewflow retrain` and `reviewflow score`")


def _require_root(args) -> None:
    """A mistyped --data-dir must not grow a whole empty tree and then report 'no champion'."""
    # A missing folder (exit 3) or an unreachable store (exit 1): one line.
    DataLayout.of(_settings(args)).root.check_reachable()


def _score_if_needed(args) -> dict | None:
    """Score, unless a look at the registry and the inbox shows there is nothing to do:
    then say so without starting Prefect or loading TensorFlow."""
    from tasks.state.backend import open_state
    from tasks.state.inbox import list_inbox
    from tasks.training.registry import Registry

    settings = _settings(args)
    # A state database that is down (exit 1) or a root scored with another run state
    # (exit 2): one line, before the inbox is looked at.
    open_state(settings.state_url, DataLayout.of(settings)).close()
    if args.settle_seconds is not None:
        settings = settings.model_copy(update={"settle_seconds": args.settle_seconds})
    layout = DataLayout.of(settings)
    Registry(layout.models).champion_version()  # NoChampionError, RegistryError: one line
    # why: a local inbox is listed here at no cost; a bucket's listing and claims are
    # the flow's (requests, the claim protocol of tasks.state.object_claims).
    if isinstance(layout.incoming, Path):
        inbox = list_inbox(layout.incoming, settings.settle_seconds)
        if not inbox.ready and not inbox.unsupported:
            print("reviewflow: nothing to score: "
                  + inbox.note(settings.settle_seconds, where=str(layout.incoming)))
            return None
    return _score(args)


def _preflight_retrain(args) -> None:
    """The conditions a retraining cannot start under, said in one line before Prefect
    and TensorFlow load. The flow checks them again (another run may come in between)."""
    from tasks.errors import NoLabeledDataError, RetrainingBusyError
    from tasks.reading import describe_supported, is_review_file
    from tasks.state.backend import open_state
    from tasks.storage.local import LockHeldError
    from tasks.training.registry import Registry

    settings = _settings(args)
    layout = DataLayout.of(settings)
    # Down: exit 1; a root scored with another run state: exit 2; each in one line.
    state = open_state(settings.state_url, layout)
    try:
        # The locks the flow takes (flows.retrain_model); a local one only once it exists.
        if (settings.state_url or not layout.models.supports_locks
                or Registry(layout.models).retrain_lock.exists()):
            with state.retrain_lock():
                pass
    except LockHeldError as exc:
        raise RetrainingBusyError(f"another retraining is running ({exc}); this run "
                                  "leaves the registry untouched. Try again when it has "
                                  "finished.") from None
    finally:
        state.close()
    # why: a local folder is walked here at no cost; a bucket's walk is a listing of
    # every labeled object, which the flow makes anyway.
    if isinstance(layout.labeled, Path) and not any(
            is_review_file(p) for p in layout.labeled.rglob("*")):
        raise NoLabeledDataError(
            f"no labeled review files in {layout.labeled}; add review files "
            f"{describe_supported()} with text and label (0/1 or negative/positive) columns")


def _score(args) -> dict:
    from tasks.state.backend import open_state

    settings = _settings(args)
    layout = DataLayout.of(settings)
    state = open_state(settings.state_url, layout)
    try:
        totals = state.totals()
    finally:
        state.close()
    args.under_way.update(command="score", layout=layout, state_url=settings.state_url,
                          ledger_totals=totals)

    # The Prefect API starts while the flow imports (flows.startup).
    with starting_flow(() if args.verbose else reported_errors()):
        from flows.score_reviews import score_reviews
    # Every parameter, from the options given over the settings, so the run shows the
    # values it uses; the state URL's password is lent, not passed (flows.configuration).
    # getattr: `demo` scores with its own arguments, which have none of these options.
    given = {name: getattr(args, name, None) for name in SCORE_OPTIONS}
    with lending_state_url(settings.state_url):
        return score_reviews(**flow_parameters(score_reviews.fn, settings, given))


def _retrain(args) -> dict:
    from tasks.training.registry import Registry

    settings = _settings(args)
    registry = Registry(DataLayout.of(settings).models)
    args.under_way.update(command="retrain", registry=registry,
                          champion=registry.current_version(), latest=registry.latest_version())

    with starting_flow(() if args.verbose else reported_errors()):  # see _score
        from flows.retrain_model import retrain_model
    given = {name: getattr(args, name, None) for name in RETRAIN_OPTIONS}
    with lending_state_url(settings.state_url):  # as in _score
        return retrain_model(**flow_parameters(retrain_model.fn, settings,
                                               {**given, "force": getattr(args, "force", False)}))


def _demo(args) -> None:
    """Create the root, train on the bundled English and Korean samples if there is no
    champion, then score the sample inbox and the Korean test reviews."""
    from tasks.training.registry import Registry

    layout = DataLayout.of(_settings(args)).ensure()
    if Registry(layout.models).champion() is None:
        for sample in sorted((SAMPLES / "labeled").iterdir()):
            shutil.copy2(sample, layout.labeled / sample.name)
        shutil.copy2(SAMPLES / "korean" / "train.tsv", layout.labeled / "korean-train.tsv")
        print(f"no champion yet: training one on the bundled English and Korean samples in "
              f"{layout.labeled}")
        print_retrain(_retrain(args))
    for sample in sorted((SAMPLES / "incoming").iterdir()):
        shutil.copy2(sample, layout.incoming / sample.name)  # copy2 keeps the old mtime
    shutil.copy2(SAMPLES / "korean" / "test.tsv", layout.incoming / "korean-test.tsv")
    print_score(_score(args))
    _show_output(layout.scored)


def _show_output(scored: Path) -> None:
    import pyarrow.dataset as ds

    table = ds.dataset(scored, format="parquet", partitioning="hive",
                       schema=SCORED_DATASET_SCHEMA).to_table(
        columns=["review_id", "score", "predicted_label", "model_version", "source_file"])
    print(f"\n{scored} now holds {table.num_rows} scored rows; the first few:")
    print(table.slice(0, 8).to_pandas().to_string(index=False))
    print(json.dumps({"scored_dir": str(scored)}))


def run() -> None:
    """The ``reviewflow`` program: ``main()``, then an exit that skips the interpreter's
    teardown (``flows.startup.run_program``). ``main()`` called as a function (the tests
    do) exits nothing."""
    run_program(lambda stop: main(stop=stop))


if __name__ == "__main__":
    run()
