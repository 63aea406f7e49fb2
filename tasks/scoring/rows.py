"""Turn validated reviews into scored rows (the output schema of ``scored/``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pyarrow as pa

from tasks.model import predict_scores
from tasks.model.decision import predicted_labels
from tasks.scoring.schema import SCORED_SCHEMA


def score_batch(model, valid: pa.Table, batch_size: int, model_version: str, source_file: str,
                source_sha256: str, scored_at: datetime,
                between: Callable[[int], None] | None = None) -> pa.Table:
    """Score the ``text`` of ``valid`` rows; one output row per input row, in order.

    ``label`` carries the label given in the input, if any, so accuracy can be read
    off the output; ``predicted_label`` is 1 where the score is at least ``DECISION_THRESHOLD``.
    ``between``: called after each prediction slice (``predict_scores``).
    """
    texts = valid.column("text").to_numpy(zero_copy_only=False)
    scores = predict_scores(model, texts, batch_size, between)
    n = valid.num_rows
    return pa.Table.from_arrays([
        valid.column("review_id"),
        pa.array(scores, pa.float32()),
        pa.array(predicted_labels(scores), pa.int8()),
        valid.column("label"),
        pa.repeat(pa.scalar(model_version, pa.string()), n),
        pa.repeat(pa.scalar(source_file, pa.string()), n),
        valid.column("source_row"),
        pa.repeat(pa.scalar(source_sha256, pa.string()), n),
        pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
    ], schema=SCORED_SCHEMA)
