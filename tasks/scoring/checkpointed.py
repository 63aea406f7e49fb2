"""Score a whole file in one pass, cut into checkpoints: what a file too large for a bundle
gets on the thread runner.

Checkpoint ``k`` is the file's rows ``[k * rows, (k + 1) * rows)`` (``Checkpoints.rows``,
the ``checkpoint_rows`` setting), with the part names shard ``k`` would have
(``part-<sha16>-<version>-s0003.parquet``). The file is read once; each time the rows of
the next checkpoint begin, the parts of the one before are closed and handed to the
driver (``ShardControl.finished``), which keeps them (``tasks.state.checkpoints``) while
this goes on reading. A file that ends within its first checkpoint is one unsharded part,
as it would be without checkpoints: a file of up to ``rows`` rows pays nothing.

The checkpoints an earlier, stopped run kept (``Checkpoints.done``) are read but neither
validated nor scored; their ids still count as seen, so uniqueness over the whole file
holds as in one uninterrupted pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import poison_reason
from tasks.failpoints import failpoint
from tasks.layout import part_name
from tasks.reading import ReadReport, UnreadableFileError, iter_review_batches
from tasks.scoring.control import ShardControl
from tasks.scoring.passthrough import split
from tasks.scoring.shard import (
    NO_CLOCK,
    ScoringJob,
    ShardResult,
    Worker,
    finish_parts,
    score_checked,
    staged_parts,
)
from tasks.scoring.workers import model_loads
from tasks.storage.local import Location, StagedParquet
from tasks.validation import SeenValues


@dataclass(frozen=True)
class Checkpoints:
    """How a file is cut: ``rows`` per checkpoint; ``done``, the checkpoints kept by an
    earlier run, read for their ids only."""

    rows: int
    done: tuple[int, ...] = ()


@dataclass
class _Open:
    """The checkpoint being scored: its staged parts and its result so far."""

    scored: StagedParquet
    rejected: StagedParquet
    result: ShardResult
    started: float


def score_checkpointed(path: Location, sha256: str, job: ScoringJob, checkpoints: Checkpoints,
                       control: ShardControl | None = None,
                       extra: pa.Schema | None = None,
                       name: str | None = None) -> list[ShardResult]:
    """Validate and score ``path`` in checkpoints; return a result per checkpoint this
    call scored (each handed to ``control.finished`` too, but for the last), parts left
    as temporaries. A file that cannot be read ends with a result whose ``unreadable``
    is set (the results before it included, for the commit to discard). A stop of the
    run (``control``) raises ``ScoringStopped`` between batches and prediction slices,
    the open checkpoint's parts removed. ``extra``: the file's pass-through columns
    (``Shard.extra``), so every checkpoint's part has one schema. ``name``: the file's
    uploaded name (``Claim.name``; default ``path.name``), which its rows say."""
    name = name or path.name
    control = control if control is not None else ShardControl()
    worker = Worker(job)
    done = set(checkpoints.done)
    seen_ids = {column: SeenValues() for column in worker.validator.unique_columns}
    found = ReadReport()
    results: list[ShardResult] = []
    current: _Open | None = None
    try:
        batches = iter_review_batches(path, job.columns, job.read_batch_rows,
                                      job.max_decompressed_bytes, report=found,
                                      passthrough=True, **job.read_options(sha256))
        for batch in batches:
            control.check()
            control.count_read(sha256, batch.num_rows, _text_bytes(batch))
            for index, piece in _pieces(batch, checkpoints.rows):
                if current is not None and current.result.index != index:
                    results.append(_close(current, found))
                    failpoint("score:checkpoint-written", path.name)
                    control.finished(results[-1])
                    current = None
                if index in done:  # kept by an earlier run: only its ids matter here
                    for column, seen in seen_ids.items():
                        seen.first_seen(piece.column(column).combine_chunks())
                    continue
                if current is None:
                    current = _Open(*staged_parts(job, sha256, index, extra),
                                    worker.result(index, sha256), time.perf_counter())
                piece, carried = split(piece, extra, job.columns)
                checked = worker.validator.validate(piece, seen_ids, source_name=name)
                score_checked(worker, job, path, piece, checked, found.ids_generated,
                              current.scored, current.rejected, current.result, NO_CLOCK,
                              control, carried, name)
        if current is not None:
            if not results and not done and current.result.index == 0:
                _as_whole_file(current, job, sha256)  # it never reached a second checkpoint
            results.append(_close(current, found))
    except UnreadableFileError as exc:
        _abort(current)
        results.append(_failed(worker, sha256, exc.reason))
    except BaseException as exc:
        _abort(current)
        if (reason := poison_reason(exc)) is None:
            raise
        results.append(_failed(worker, sha256, reason))
    for result in results:
        result.encoding = found.encoding
        result.model_loads = model_loads(job.model)
    return results


def _pieces(batch: pa.Table, rows: int) -> list[tuple[int, pa.Table]]:
    """The batch cut where its rows pass from one checkpoint to the next, with each
    piece's checkpoint. Rows come in file order, their ``source_row`` rising."""
    index = (batch.column("source_row").to_numpy() - 1) // rows
    cuts = [0, *(np.flatnonzero(np.diff(index)) + 1).tolist(), len(index)]
    return [(int(index[start]), batch.slice(start, stop - start))
            for start, stop in zip(cuts, cuts[1:]) if stop > start]


def _text_bytes(batch: pa.Table) -> int:
    """Bytes of a batch's ids and texts, and a separator and a line end per row: about
    what the rows take in a text file."""
    size = 2 * batch.num_rows
    for column in ("review_id", "text"):
        size += pc.sum(pc.binary_length(batch.column(column))).as_py() or 0
    return size


def _as_whole_file(current: _Open, job: ScoringJob, sha256: str) -> None:
    current.result.index = None
    current.scored.final = job.scored_dir / part_name(sha256, job.model.version, None)
    current.rejected.final = job.rejected_dir / part_name(sha256, None, None)


def _close(current: _Open, found: ReadReport) -> ShardResult:
    finish_parts(current.result, current.scored, current.rejected, NO_CLOCK)
    current.result.encoding = found.encoding
    current.result.seconds = time.perf_counter() - current.started
    return current.result


def _abort(current: _Open | None) -> None:
    if current is not None:
        current.scored.abort()
        current.rejected.abort()


def _failed(worker: Worker, sha256: str, reason: str) -> ShardResult:
    result = worker.result(None, sha256)
    result.unreadable = reason
    return result
