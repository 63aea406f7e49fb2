"""``reviewflow rescore``: score archived inputs again with the current champion.

    reviewflow rescore [--since YYYY-MM-DD] [--files GLOB] [--dry-run] [--json]

With ``--dry-run`` the plan (each file and its rows, the files skipped because the
champion scored them already, those that will fail) is printed and nothing is scored,
without Prefect or TensorFlow; without it the ``rescore-archive`` flow runs
(``flows.rescore_archive``) and logs the same plan first. No champion, or a ``--since``
that is no day: one line, exit 2.
"""

from __future__ import annotations

import argparse

from flows.cli_output import print_json, summary_only_on_stdout
from flows.configuration import flow_parameters, lending_state_url
from flows.startup import reported_errors, starting_flow
from tasks.layout import DataLayout

# The options of `rescore` that are flow parameters of the same name.
RESCORE_OPTIONS = ("since", "files", "task_runner", "shard_rows")


def add_parser(command) -> None:
    """The ``rescore`` command's arguments (``command``: the CLI's sub-command maker)."""
    rescore = command("rescore", help="score archived inputs again with the current champion "
                                      "(once per content and champion; earlier rows stay)")
    rescore.add_argument("--since", metavar="YYYY-MM-DD",
                         help="only archive/ days on or after this one")
    rescore.add_argument("--files", metavar="GLOB",
                         help="only files whose uploaded name matches (e.g. 'shop-*.csv')")
    rescore.add_argument("--dry-run", action="store_true",
                         help="print the files and rows it would score; score nothing")
    rescore.add_argument("--task-runner", choices=["threads", "dask"],
                         help="where shards run, as for score")
    rescore.add_argument("--shard-rows", type=int, help="split files with more rows than this")
    rescore.add_argument("--json", action="store_true",
                         help="print the plan (--dry-run) or the run summary as one JSON "
                              "document on stdout, no other lines")


def rescore(args: argparse.Namespace, settings) -> None:
    """Check what a backfill needs, then print its plan (``--dry-run``) or run it."""
    from tasks.errors import SettingsError
    from tasks.scoring.backfill import check_since
    from tasks.state.backend import open_state
    from tasks.training.registry import Registry

    try:
        check_since(args.since)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    layout = DataLayout.of(settings)
    state = open_state(settings.state_url, layout)  # down: exit 1; another state: exit 2
    try:
        version = Registry(layout.models).champion_version()  # none: one line, exit 2
        if args.dry_run:
            _print_plan(args, settings, layout, state, version)
            return
    finally:
        state.close()
    args.under_way.update(command="rescore")  # the line a stop prints (flows.stopping)
    with summary_only_on_stdout(args.json):
        with starting_flow(() if args.verbose else reported_errors()):
            from flows.rescore_archive import rescore_archive
        given = {name: getattr(args, name, None) for name in RESCORE_OPTIONS}
        with lending_state_url(settings.state_url):
            summary = rescore_archive(**flow_parameters(rescore_archive.fn, settings, given))
    if args.json:
        print_json(summary)
        return
    from flows.run_messages import rescore_message

    print(f"\n{rescore_message(summary)}; took {summary['seconds']:.1f} s")


def _print_plan(args, settings, layout, state, version) -> None:
    from tasks.scoring.backfill import archived_inputs, plan_backfill

    plan = plan_backfill(archived_inputs(layout, args.since, args.files), state, version,
                         settings)
    if args.json:
        print_json(plan.as_dict())
        return
    print("\n".join(plan.lines()))
    print("dry run: nothing scored")
