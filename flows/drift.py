"""The drift signals of each scored file (docs/monitoring.md): one ``monitoring/`` row,
a WARNING per threshold crossed, and the Prefect event ``reviewflow.drift.detected``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from flows.score_report import ScoreSummary
from tasks.layout import DataLayout, part_name
from tasks.monitoring import (
    Flag,
    MonitorCounts,
    Thresholds,
    flags,
    monitoring_row,
    monitoring_table,
    signals,
)
from tasks.outcomes import FileOutcome, FileStatus
from tasks.scoring.shard import ScoringJob, ShardResult
from tasks.settings import Settings
from tasks.storage.local import Location

DRIFT_EVENT = "reviewflow.drift.detected"


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds.from_settings(settings)


@dataclass
class DriftWatch:
    """Measures each scored file against the champion's reference profile."""

    layout: DataLayout
    day: str
    job: ScoringJob
    thresholds: Thresholds
    emit_events: bool
    logger: object
    # Files measured by ``row`` and not yet reported by ``observe``, by content hash.
    measured: dict[str, tuple] = field(default_factory=dict)

    def row(self, name: str, sha256: str,
            results: list[ShardResult]) -> tuple[Location, pa.Table]:
        """A scored file's monitoring/ row and where it goes, for the Committer to
        write with the file's parts before its commit (``Committer.monitor``). Named
        like the file's scored part: a rerun after a crash overwrites, never adds."""
        counts = MonitorCounts()
        for result in results:
            counts.add(result.monitor)
        version, profile = self.job.model.version, self.job.profile
        found = signals(counts, profile)
        raised = flags(name, found, profile, self.thresholds)
        from prefect.runtime import flow_run

        row = monitoring_row(found, raised, counts, run_started=self.job.run_started,
                             flow_run_id=flow_run.id, model_version=version,
                             source_file=name, source_sha256=sha256,
                             has_profile=profile is not None)
        self.measured[sha256] = (counts, found, raised, row)
        return (self.layout.monitoring_partition(self.day) / part_name(sha256, version),
                monitoring_table([row]))

    def observe(self, outcome: FileOutcome, results: list[ShardResult],
                summary: ScoreSummary) -> None:
        """Report a committed file's drift signals (its row, written by ``row``, is in
        monitoring/): the run's counts, a WARNING per threshold crossed, a Prefect event
        if flagged."""
        if outcome.status != FileStatus.SCORED or not results:
            return
        sha256 = results[0].sha256
        counts, found, raised, row = self.measured.pop(sha256)
        for result in results:
            summary.monitor_seconds += result.monitor_seconds
        summary.run_counts.add(counts)
        for flag in raised:
            self.logger.warning(flag.message)
        summary.monitoring.append(row)
        if raised and self.emit_events:
            emit_drift_event(self.job.model.version, outcome.file, sha256, found, raised,
                             row["flow_run_id"])


def drift_resource(version: str) -> dict[str, str]:
    """The resource of a drift event: the model version (what a trigger matches on)."""
    return {"prefect.resource.id": f"reviewflow.model.{version}",
            "prefect.resource.name": version, "reviewflow.model-version": version}


def emit_drift_event(version: str, file: str, sha256: str, found: dict,
                     raised: list[Flag], flow_run_id: str | None = None) -> None:
    """Tell Prefect that a file drifted: the model version is the event's resource, the
    file a related one, so an automation or a deployment trigger can match on either
    (deployments/prefect.yaml shows one that starts retrain-model)."""
    from prefect.events import emit_event

    emit_event(
        DRIFT_EVENT, resource=drift_resource(version),
        related=[{"prefect.resource.id": f"reviewflow.file.{sha256}",
                  "prefect.resource.role": "file", "prefect.resource.name": file,
                  "reviewflow.sha256": sha256}],
        payload={"file": file, "model_version": version, "flow_run_id": flow_run_id,
                 "flags": [flag.signal for flag in raised],
                 "messages": [flag.message for flag in raised],
                 "signals": {k: v for k, v in found.items() if k != "script_mix"}})
