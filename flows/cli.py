"""The ``reviewflow`` command: run the flows and manage the model registry.

    reviewflow score     [--data-dir D] [--require-gpu] [--settle-seconds S]
                         [--task-runner threads|dask] [--dask-address A] [--shard-rows N]
    reviewflow retrain   [--data-dir D] [--architecture A] [--epochs N] [--min-delta X]
                         [--require-significance]
    reviewflow models    list | promote VERSION [--reason R] | rollback [--reason R]
    reviewflow demo      [--data-dir D]

Every option also has an environment variable (``REVIEWFLOW_DATA_DIR`` and so on; see
``tasks/settings.py``). Exit codes: 0 done, 1 unexpected failure, 2 nothing to work
with (no champion, no labeled data), 3 another retraining holds the registry, 4 no
Prefect API: PREFECT_API_URL is not set and the temporary server this command starts
did not answer in time (see ``flows/prefect_api.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reviewflow", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_data_dir(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--data-dir", help="data root (default ./data or $REVIEWFLOW_DATA_DIR)")
        return sub

    score = with_data_dir(commands.add_parser("score", help="score new files in incoming/"))
    score.add_argument("--require-gpu", action="store_true", default=None,
                       help="fail unless TensorFlow sees a GPU")
    score.add_argument("--settle-seconds", type=float,
                       help="leave files modified more recently than this for the next run")
    score.add_argument("--task-runner", choices=["threads", "dask"],
                       help="where shards run: this process (threads) or a Dask cluster")
    score.add_argument("--dask-address", help="scheduler to connect to (tcp://HOST:8786); "
                                              "without it, --task-runner dask starts a LocalCluster")
    score.add_argument("--shard-rows", type=int, help="split files with more rows than this")

    retrain = with_data_dir(commands.add_parser(
        "retrain", help="train a candidate on labeled/ and promote it only if it is better"))
    retrain.add_argument("--architecture", help="named model configuration")
    retrain.add_argument("--epochs", type=int, help="most epochs (early stopping may end sooner)")
    retrain.add_argument("--min-delta", type=float, help="accuracy gain the candidate must exceed")
    retrain.add_argument("--require-significance", action="store_true", default=None,
                         help="also require an exact McNemar test at the configured alpha")

    models = with_data_dir(commands.add_parser("models", help="the model registry"))
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="versions, status, accuracy; which is champion")
    promote = actions.add_parser("promote", help="make VERSION the champion by hand")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion")
    rollback = actions.add_parser("rollback", help="go back to the previous champion")
    rollback.add_argument("--reason", default="manual rollback")

    with_data_dir(commands.add_parser(
        "demo", help="train on the bundled sample if there is no model, then score the sample"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from flows.prefect_api import TemporaryAPIError, start_temporary_api
    from flows.retrain_model import NoLabeledDataError, RetrainingBusyError
    from tasks.registry import NoChampionError, RegistryError

    try:
        if args.command in ("score", "retrain", "demo"):
            # Before any flow: a server this process starts itself waits long enough on a
            # busy host and dies with this process (flows/prefect_api.py).
            start_temporary_api()
        if args.command == "score":
            _print_score(_score(args))
        elif args.command == "retrain":
            _print_retrain(_retrain(args))
        elif args.command == "models":
            _models(args)
        elif args.command == "demo":
            _demo(args)
    except (NoChampionError, NoLabeledDataError, RegistryError) as exc:
        print(f"reviewflow: {exc}", file=sys.stderr)
        sys.exit(2)
    except RetrainingBusyError as exc:
        print(f"reviewflow: {exc}", file=sys.stderr)
        sys.exit(3)
    except TemporaryAPIError as exc:
        print(f"reviewflow: {exc}", file=sys.stderr)
        sys.exit(4)
    except (OSError, sqlite3.OperationalError) as exc:  # disk full, unwritable folders
        print(f"reviewflow: {args.command} stopped: {exc}. Files not yet committed were left "
              "where they were (incoming/, labeled/); fix the cause and run again.", file=sys.stderr)
        sys.exit(1)
    return 0


def _score(args) -> dict:
    from flows.score_reviews import score_reviews

    # getattr: `demo` scores with its own arguments, which have none of these options.
    options = ("require_gpu", "settle_seconds", "task_runner", "dask_address", "shard_rows")
    return score_reviews(data_dir=args.data_dir,
                         **{name: getattr(args, name, None) for name in options})


def _retrain(args) -> dict:
    from flows.retrain_model import retrain_model

    return retrain_model(data_dir=args.data_dir, architecture=getattr(args, "architecture", None),
                         epochs=getattr(args, "epochs", None),
                         min_delta=getattr(args, "min_delta", None),
                         require_significance=getattr(args, "require_significance", None))


def _print_score(summary: dict) -> None:
    print(f"\nscored {summary['rows_scored']} rows from {summary['files_scored']} files with model "
          f"{summary['model_version']} on {summary['device']}; {summary['rows_quarantined']} rows and "
          f"{summary['files_quarantined']} files quarantined; {summary['files_already_scored']} "
          f"files already scored")
    if summary["accuracy_on_labeled_rows"] is not None:
        print(f"accuracy on rows that carried a label: {summary['accuracy_on_labeled_rows']:.4f}")
    print(f"{summary['reviews_per_second']:.0f} reviews/s while scoring; run took "
          f"{summary['seconds']:.1f} s")


def _print_retrain(summary: dict) -> None:
    verdict = "promoted to champion" if summary["promoted"] else "not promoted"
    print(f"\ncandidate {summary['version']}: held-out accuracy "
          f"{summary['validation_accuracy']:.4f} on {summary['validation_rows']} rows; {verdict}")
    print(f"reason: {summary['reason']}")


def _models(args) -> None:
    from flows.common import settings_from
    from tasks.registry import Registry

    registry = Registry(settings_from(args.data_dir).layout.models)
    if args.action == "list":
        rows = registry.list_versions()
        if not rows:
            print("no model versions yet; run `reviewflow retrain`")
        for row in rows:
            accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
            marker = "*" if row["status"] == "champion" else " "
            print(f"{marker} {row['version']}  {row['status']:<16} accuracy {accuracy}  "
                  f"trained {row['trained_at']}  {row['decision'] or ''}")
        history = registry.read_history()
        if history:
            print("\nhistory:")
            for entry in history:
                print(f"  {entry['at']}  {entry['event']:<9} {entry['version']}  {entry.get('reason', '')}")
    elif args.action == "promote":
        pointer = registry.set_champion(args.version, args.reason, "manual promotion")
        print(f"champion is now {pointer['version']}")
    elif args.action == "rollback":
        pointer = registry.rollback(args.reason)
        print(f"rolled back; champion is now {pointer['version']}")


def _demo(args) -> None:
    """Train on the bundled labeled sample if there is no champion, then score the sample."""
    from flows.common import settings_from
    from tasks.registry import Registry

    layout = settings_from(args.data_dir).layout.ensure()
    if Registry(layout.models).champion() is None:
        for sample in sorted((SAMPLES / "labeled").iterdir()):
            shutil.copy2(sample, layout.labeled / sample.name)
        print(f"no champion yet: training one on the bundled sample in {layout.labeled}")
        _print_retrain(_retrain(args))
    for sample in sorted((SAMPLES / "incoming").iterdir()):
        shutil.copy2(sample, layout.incoming / sample.name)  # copy2 keeps the old mtime
    summary = _score(args)
    _print_score(summary)
    _show_output(layout.scored)


def _show_output(scored: Path) -> None:
    import pyarrow.dataset as ds

    table = ds.dataset(scored, format="parquet", partitioning="hive").to_table(
        columns=["review_id", "score", "predicted_label", "model_version", "source_file"])
    print(f"\n{scored} now holds {table.num_rows} scored rows; the first few:")
    print(table.slice(0, 8).to_pandas().to_string(index=False))
    print(json.dumps({"scored_dir": str(scored)}))


if __name__ == "__main__":
    sys.exit(main())
