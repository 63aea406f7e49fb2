"""Flow ``score-reviews``: score every new file in ``incoming/`` with the champion model.

For each ready file: hash it, skip it if the ledger says this content was already
scored by this model version, else read it in record batches, validate each batch
with the expectation suite, score the valid rows and stream them to a staged Parquet
part, stream rejected rows to a staged quarantine part, then publish both parts,
commit the file to the ledger and move it to ``archive/``. A file that cannot be read
is moved whole to ``quarantine/files/`` with a reason file. Every input row ends in
``scored/`` or ``quarantine/``.

Run it as ``reviewflow score`` or ``python -m flows.score_reviews``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import FileOutcome, build_validator, quarantine_file, settings_from
from tasks.failpoints import failpoint
from tasks.inbox import list_inbox, part_name
from tasks.ledger import Ledger, ScoredFile
from tasks.readers import UnreadableFileError, iter_review_batches
from tasks.registry import Registry
from tasks.settings import Settings
from tasks.storage import LockHeldError, StagedParquet, exclusive_lock, file_sha256, move_file
from tasks.validation import QUARANTINE_SCHEMA, ReviewValidator, with_source


class GPURequiredError(RuntimeError):
    """The run was told to require a GPU and TensorFlow sees none."""


@dataclass
class ScoreSummary:
    model_version: str
    device: str
    files: list[FileOutcome] = field(default_factory=list)
    files_settling: int = 0
    seconds: float = 0.0

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def reviews_per_second(self) -> float:
        busy = sum(f.seconds for f in self.files if f.status == "scored")
        return self.total("rows_scored") / busy if busy else 0.0

    def as_dict(self) -> dict:
        scored = self.total("rows_scored")
        labeled = self.total("labeled")
        return {
            "model_version": self.model_version, "device": self.device,
            "files_scored": self.count("scored"), "files_already_scored": self.count("already scored"),
            "files_quarantined": self.count("quarantined") + self.count("unsupported"),
            "files_busy": self.count("busy"), "files_settling": self.files_settling,
            "rows_read": self.total("rows_read"), "rows_scored": scored,
            "rows_quarantined": self.total("rows_quarantined"),
            "positive_share": round(self.total("positives") / scored, 4) if scored else None,
            "accuracy_on_labeled_rows": round(self.total("correct") / labeled, 4) if labeled else None,
            "reviews_per_second": round(self.reviews_per_second, 1),
            "seconds": round(self.seconds, 2),
        }


@task(name="load-champion", cache_policy=NO_CACHE)
def load_champion(registry: Registry):
    """The champion's version and its model, loaded once per run in Keras safe mode."""
    from tasks.model import load_model

    version = registry.champion_version()
    return version, load_model(registry.model_path(version))


def _replace_stale_parts(published: Path | None, folder: Path, name: str) -> None:
    """Remove what a killed run left of this part: temporaries, and the same part in
    another date partition. Called under the file's lock, so no live run owns them."""
    for stale in [*folder.glob(f"*/{name}"), *folder.glob(f"*/.{name}.*.tmp")]:
        if stale != published:
            stale.unlink(missing_ok=True)


@task(name="score-file", cache_policy=NO_CACHE)
def score_file(path: Path, model, model_version: str, validator: ReviewValidator,
               settings: Settings, ledger: Ledger, run_started: datetime) -> FileOutcome:
    """Validate and score one file; commit its output, or quarantine it whole.

    Runs under a lock on the file's content hash, so two runs over the same inbox
    (two workers) never score one file twice: the second finds the lock held, or the
    file already gone to the archive.
    """
    logger = get_run_logger()
    layout = settings.layout
    started = time.perf_counter()
    try:
        sha256 = file_sha256(path)
        with exclusive_lock(layout.state / "locks" / f"{sha256[:16]}.lock"):
            if not path.exists():
                raise FileNotFoundError(path)
            if ledger.scored(sha256, model_version):
                move_file(path, layout.archive / run_started.strftime("%Y-%m-%d"),
                          f"{sha256[:16]}-{path.name}")
                return FileOutcome(path.name, "already scored",
                                   detail=f"content {sha256[:16]} was scored by {model_version}")
            try:
                return _score_locked(path, sha256, model, model_version, validator, settings,
                                     ledger, run_started, started)
            except UnreadableFileError as exc:
                logger.warning("quarantined %s: %s", path.name, exc.reason)
                return quarantine_file(path, layout, exc.reason, sha256, ledger)
    except LockHeldError:
        logger.info("%s: another run is scoring this content; leaving it to that run", path.name)
        return FileOutcome(path.name, "busy")
    except FileNotFoundError:
        logger.info("%s: moved by another run while this one waited; nothing to do", path.name)
        return FileOutcome(path.name, "busy", detail="handled by another run")


def _score_locked(path, sha256, model, model_version, validator, settings, ledger,
                  run_started, started) -> FileOutcome:
    from tasks.scoring import SCORED_SCHEMA, score_batch

    layout = settings.layout
    day = run_started.strftime("%Y-%m-%d")
    scored_name, rejected_name = part_name(sha256, model_version), part_name(sha256)
    scored = StagedParquet(layout.scored / f"scored_date={day}" / scored_name, SCORED_SCHEMA)
    rejected = StagedParquet(layout.quarantine / "rows" / f"quarantined_date={day}" / rejected_name,
                             QUARANTINE_SCHEMA)
    outcome = FileOutcome(path.name, "scored")
    seen_ids: dict[str, set[str]] = {}
    try:
        for batch in iter_review_batches(path, settings.columns, settings.read_batch_rows,
                                         settings.max_decompressed_bytes):
            checked = validator.validate(batch, seen_ids, source_name=path.name)
            output = score_batch(model, checked.valid, settings.predict_batch_size, model_version,
                                 path.name, sha256, run_started)
            scored.write(output)
            rejected.write(with_source(checked.rejected, path.name, sha256, run_started))
            outcome.rows_read += batch.num_rows
            outcome.rows_scored += output.num_rows
            outcome.rows_quarantined += checked.rejected.num_rows
            outcome.positives += pc.sum(output.column("predicted_label")).as_py() or 0
            given = pc.is_valid(output.column("label"))
            outcome.labeled += pc.sum(given).as_py() or 0
            agree = pc.equal(output.column("label"), output.column("predicted_label"))
            outcome.correct += pc.sum(pc.and_kleene(given, agree)).as_py() or 0
            failpoint("score:mid-file")
    except BaseException:
        scored.abort()
        rejected.abort()
        raise
    published = scored.commit()
    quarantined = rejected.commit()
    _replace_stale_parts(published, layout.scored, scored_name)
    _replace_stale_parts(quarantined, layout.quarantine / "rows", rejected_name)
    failpoint("score:parts-published")
    ledger.record_scored(ScoredFile(sha256, model_version, path.name, outcome.rows_read,
                                    outcome.rows_scored, outcome.rows_quarantined,
                                    str(published) if published else None,
                                    str(quarantined) if quarantined else None))
    failpoint("score:ledger-committed")
    move_file(path, layout.archive / day, f"{sha256[:16]}-{path.name}")
    outcome.seconds = time.perf_counter() - started
    return outcome


@flow(name="score-reviews", log_prints=True)
def score_reviews(data_dir: str | None = None, require_gpu: bool | None = None,
                  settle_seconds: float | None = None) -> dict:
    """Score every new review file in the inbox with the champion model.

    Returns the run summary; the same figures are published as a Prefect artifact.
    """
    from tasks.model import compute_device

    logger = get_run_logger()
    settings = settings_from(data_dir, require_gpu=require_gpu, settle_seconds=settle_seconds)
    layout = settings.layout.ensure()
    run_started = datetime.now(UTC)
    clock = time.perf_counter()
    device = compute_device()
    if settings.require_gpu and not device.startswith("GPU"):
        raise GPURequiredError("this run requires a GPU (require_gpu) but TensorFlow sees none;"
                               " run it on a GPU worker or install the 'gpu' extra")
    logger.info("scoring on %s", device)
    registry, ledger = Registry(layout.models), Ledger(layout.state / "ledger.sqlite")
    model_version, model = load_champion(registry)
    summary = ScoreSummary(model_version=model_version, device=device)
    inbox = list_inbox(layout.incoming, settings.settle_seconds)
    summary.files_settling = len(inbox.settling)
    for path in inbox.settling:
        logger.info("%s was modified in the last %.0f s; leaving it for the next run",
                    path.name, settings.settle_seconds)
    for path in inbox.unsupported:
        reason = ("a symbolic link; put the file itself in the inbox" if path.is_symlink()
                  else "not a supported review file (.csv, .tsv, .jsonl, .parquet, .gz)")
        summary.files.append(quarantine_file(path, layout, reason, None, ledger))
    if inbox.ready:
        validator = build_validator(settings)
        for path in inbox.ready:
            summary.files.append(score_file(path, model, model_version, validator, settings,
                                            ledger, run_started))
    summary.seconds = time.perf_counter() - clock
    publish_summary(summary)
    return summary.as_dict()


def publish_summary(summary: ScoreSummary) -> None:
    figures = summary.as_dict()
    lines = ["# Scoring run", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in figures.items()]
    create_markdown_artifact(key="score-summary", markdown="\n".join(lines),
                             description="Files, rows and speed of this scoring run")
    if summary.files:
        create_table_artifact(key="score-files", table=[asdict(f) for f in summary.files],
                              description="What happened to each file")
    print(json.dumps(figures))


if __name__ == "__main__":
    import sys

    from flows.cli import main

    main(["score", *sys.argv[1:]])
