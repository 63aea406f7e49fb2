"""The ``reviewflow`` commands that change the registry or the run state by hand, with no
flow: ``models list|promote|rollback`` and ``state migrate`` (flows/cli.py parses them
and reports their errors). None of them imports Prefect, TensorFlow or Great
Expectations.
"""

from __future__ import annotations

from pathlib import Path

from tasks.layout import DataLayout


def models(args, settings) -> None:
    """``reviewflow models list|promote|rollback``: promote and rollback open the root's
    run state first (``open_registry``), so they take the lock every other command on
    the root takes, or are refused."""
    from tasks.training.registry import Registry, open_registry

    if args.action == "list":
        list_models(Registry(DataLayout.of(settings).models), args.verbose)
        return
    with open_registry(DataLayout.of(settings), settings.state_url) as registry:
        # What a stop mid-change says became of the champion (flows.stopping).
        args.under_way.update(command="models", registry=registry,
                              champion=registry.current_version())
        if args.action == "promote":
            pointer = registry.promote_by_hand(args.version, args.reason, force=args.force)
            print(f"champion is now {pointer['version']}")
        elif args.action == "rollback":
            pointer = registry.rollback(args.reason)
            print(f"rolled back; champion is now {pointer['version']}")


def list_models(registry, verbose: bool = False) -> None:
    """Every version, its status and gate accuracy, and the history; ``verbose``: under
    each version its slices, calibration error, gate caveat and model card."""
    from flows.cli_output import version_lines
    from tasks.layout import CARD_FILE
    from tasks.training.events import VersionStatus
    from tasks.training.record import architecture_and_rows

    rows = registry.list_versions()
    if not rows:
        print("no model versions yet; run `reviewflow retrain`")
    for row in rows:
        accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
        marker = "*" if row["status"] == VersionStatus.CHAMPION else " "
        metrics = registry.read_version(row["version"]).get("metrics") or {}
        architecture, trained_rows = architecture_and_rows(metrics)
        print(f"{marker} {row['version']}  {row['status']:<16} accuracy {accuracy}  "
              f"{architecture or '-'}, {'-' if trained_rows is None else f'{trained_rows:,}'} "
              f"training rows  trained {row['trained_at']}  {row['decision'] or ''}")
        if verbose:
            for line in version_lines(metrics):
                print(f"  {line}")
            card = registry.versions / row["version"] / CARD_FILE
            if card.exists():
                print(f"    model card: {card}")
    history = registry.read_history()
    if history:
        print("\nhistory:")
        for entry in history:
            forced = " (forced)" if entry.get("forced") else ""
            print(f"  {entry['at']}  {entry['event']:<9} {entry['version']}  "
                  f"{entry.get('reason', '')}{forced}")


def migrate(args, settings) -> None:
    """``reviewflow state migrate [--from-state-dir DIR] --to URL``: the ledger of the
    state folder DIR (default: ``default_source``) copied into the database at URL, and
    the root's marker moved to it (``tasks.state.migrate``)."""
    from tasks.state.migrate import default_source, migrate_to_database

    layout = DataLayout.of(settings)
    source = Path(args.from_state_dir).expanduser().resolve() if args.from_state_dir \
        else default_source(layout)
    counts = migrate_to_database(layout, source, args.to)
    print(f"copied {counts['scored_files']} scored files and {counts['quarantined_files']} "
          f"quarantined files from {source} to {counts['target']} "
          f"({counts['scored_files_present']} and {counts['quarantined_files_present']} were "
          f"there already); {layout.root} is now scored with that database: score with "
          "--state-url or REVIEWFLOW_STATE_URL set to it from now on")
