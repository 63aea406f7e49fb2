"""One measurement of production accuracy: the join, each version's gate accuracy and
figures, and the parts of ``production_accuracy/`` that hold them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from tasks.late_labels.dataset import accuracy_table
from tasks.late_labels.figures import AccuracyLimits, GateAccuracy, version_figures
from tasks.late_labels.join import Join, join_late_labels
from tasks.layout import DataLayout
from tasks.settings import Settings


@dataclass
class Measurement:
    """What one measurement found: ``versions`` maps each model version some late label
    reaches to its figures (``version_figures``), ``parts`` to its dataset part."""

    join: Join
    versions: dict[str, dict]
    parts: dict[str, pa.Table]
    measured_at: datetime
    limits: AccuracyLimits

    def summary(self) -> dict:
        """The measurement as one JSON-able dict: the join's counts, the limits and each
        version's figures."""
        return {"measured_at": self.measured_at.isoformat(timespec="seconds"),
                **self.join.counts(),
                "max_drop": self.limits.max_drop, "min_rows": self.limits.min_rows,
                "versions": [{"model_version": version, **figures}
                             for version, figures in self.versions.items()]}


def gate_of(registry, version: str) -> GateAccuracy:
    """The gate accuracy ``registry`` (``tasks.training.registry.Registry``) records for
    ``version``; empty for a version without a record there (removed, or trained before
    metrics.json)."""
    return GateAccuracy.of_version(registry.read_version(version).get("metrics"),
                                   registry.read_profile(version))


def measure_production_accuracy(layout: DataLayout, settings: Settings,
                                registry) -> Measurement:
    """Join ``labeled/`` to ``scored/`` and judge each version against its gate."""
    limits = AccuracyLimits.from_settings(settings)
    join = join_late_labels(layout.labeled, layout.scored, settings)
    measured_at = datetime.now(UTC)
    versions, parts = {}, {}
    for version in sorted(set(join.cells["model_version"].to_pylist())):
        cells = join.cells.filter(pc.equal(join.cells["model_version"], version))
        gate = gate_of(registry, version)
        versions[version] = version_figures(cells.to_pylist(), gate, limits)
        parts[version] = accuracy_table(cells, gate, measured_at)
    return Measurement(join, versions, parts, measured_at, limits)
