"""Production accuracy from late labels: how each model version does on the reviews it
scored, once their labels arrive in ``labeled/`` (docs/monitoring.md).

A moderation team's verdicts or star ratings joined afterwards land in ``labeled/``
next to the very reviews a champion scored weeks before; ``join`` matches them to
``scored/`` by ``review_id`` (the rule is in its docstring) and counts, per model
version, week and main script of the review, the reviews and the correct predictions;
``figures`` turns a version's counts into its production accuracy overall, per week and
per script beside its gate accuracy, and says which dropped more than
``accuracy_max_drop`` on at least ``accuracy_min_rows`` reviews; ``dataset`` writes and
reads ``production_accuracy/``; ``measure`` does all of it once.

Plain functions on Arrow tables and pandas: no Prefect, no TensorFlow. The flow
``measure-accuracy`` (``flows/accuracy.py``) and ``reviewflow monitor`` run it.
"""

from tasks.late_labels.dataset import (
    ACCURACY_FILE,
    ACCURACY_SCHEMA,
    accuracy_table,
    read_accuracy,
    write_accuracy,
)
from tasks.late_labels.figures import (
    AccuracyLimits,
    GateAccuracy,
    drop_message,
    script_label,
    version_figures,
)
from tasks.late_labels.join import (
    CELL_SCHEMA,
    NO_LETTERS,
    SLICES,
    Join,
    LateLabels,
    accuracy_cells,
    join_late_labels,
    matching_scores,
    read_late_labels,
    slices_of,
    week_of,
)
from tasks.late_labels.measure import Measurement, gate_of, measure_production_accuracy

__all__ = [
    "ACCURACY_FILE",
    "ACCURACY_SCHEMA",
    "CELL_SCHEMA",
    "NO_LETTERS",
    "SLICES",
    "AccuracyLimits",
    "GateAccuracy",
    "Join",
    "LateLabels",
    "Measurement",
    "accuracy_cells",
    "accuracy_table",
    "drop_message",
    "gate_of",
    "join_late_labels",
    "matching_scores",
    "measure_production_accuracy",
    "read_accuracy",
    "read_late_labels",
    "script_label",
    "slices_of",
    "version_figures",
    "week_of",
    "write_accuracy",
]
