"""What a scoring run tells its operator: the summary, the progress, the artifacts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from flows.common import terminal_progress
from tasks.monitoring import MonitorCounts, Thresholds, signals
from tasks.outcomes import FileOutcome, FileStatus
from tasks.scoring.shard import ShardResult


@dataclass
class ScoreSummary:
    model_version: str
    device: str
    files: list[FileOutcome] = field(default_factory=list)
    files_settling: int = 0
    inbox_note: str = ""  # what the inbox held (tasks.state.inbox.Inbox.note)
    seconds: float = 0.0
    state_seconds: float = 0.0  # in the ledger and taking/releasing locks (TimedState)
    task_runner: str = "threads"
    busy_seconds: float = 0.0  # wall time during which at least one file was being worked on
    workers: dict[str, dict] = field(default_factory=dict)  # where shards ran (see here())
    # Drift signals: the champion's reference profile (None if trained before profiles),
    # one monitoring/ row per scored file, and the counts of the whole run.
    profile: dict | None = None
    monitoring: list[dict] = field(default_factory=list)
    run_counts: MonitorCounts = field(default_factory=MonitorCounts)
    monitor_seconds: float = 0.0  # summed over shards: the cost of the signals
    intervals: list[tuple[float, float]] = field(default_factory=list)  # each file's work

    def record(self, outcome: FileOutcome, results: list[ShardResult], started: float) -> None:
        """One file done: its outcome, when it was worked on, and where its shards ran."""
        self.files.append(outcome)
        self.intervals.append((started, time.perf_counter()))
        for result in results:
            if result.resumed:  # scored by an earlier run, not by a worker of this one
                continue
            seen = self.workers.setdefault(result.worker, {
                "host": result.host, "pid": result.pid, "device": result.device,
                "shards": 0, "model_loads": 0})
            seen["shards"] += 1
            seen["model_loads"] = max(seen["model_loads"], result.model_loads)

    def drift(self) -> dict:
        """The run's signals over all its scored files, and how many files were flagged."""
        found = signals(self.run_counts, self.profile)
        return {key: found[key] for key in ("oov_rate", "length_psi", "score_psi",
                                            "script_shift", "script_mix", "review_shares")} | {
            "has_profile": self.profile is not None,
            "files_flagged": sum(bool(row["flags"]) for row in self.monitoring),
            "monitor_seconds": round(self.monitor_seconds, 3)}

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    def encodings(self) -> dict[str, int]:
        """Files read, by the text encoding they were read in."""
        found: dict[str, int] = {}
        for outcome in self.files:
            if outcome.encoding:
                found[outcome.encoding] = found.get(outcome.encoding, 0) + 1
        return found

    def finish_files(self) -> None:
        """Every file is done: the wall time during which any was being worked on."""
        self.busy_seconds = union_seconds(self.intervals)

    @property
    def reviews_per_second(self) -> float:
        # Files overlap in time when several workers score, so their seconds are not
        # summed: the busy wall time (for one file at a time, the same thing).
        busy = self.busy_seconds or sum(f.seconds for f in self.files if f.status == FileStatus.SCORED)
        scored = self.total("rows_scored") - self.total("scored_resumed")  # by this run
        return scored / busy if busy else 0.0

    def as_dict(self) -> dict:
        scored = self.total("rows_scored")
        labeled = self.total("labeled")
        return {
            "model_version": self.model_version, "device": self.device,
            "inbox": self.inbox_note,
            "files_scored": self.count(FileStatus.SCORED), "files_already_scored": self.count(FileStatus.ALREADY_SCORED),
            "files_quarantined": self.count(FileStatus.QUARANTINED) + self.count(FileStatus.UNSUPPORTED),
            "files_busy": self.count(FileStatus.BUSY), "files_changed": self.count(FileStatus.CHANGED),
            "files_settling": self.files_settling,
            "files_failed": self.count(FileStatus.FAILED),  # a backfill's: left where they are
            "rows_read": self.total("rows_read"), "rows_scored": scored,
            "rows_quarantined": self.total("rows_quarantined"),
            "rows_id_generated": self.total("rows_id_generated"),
            # Of the rows read: those in shards a stopped run had finished, reused.
            "rows_resumed": self.total("rows_resumed"),
            "shards_resumed": self.total("shards_resumed"),
            "encodings": self.encodings(),
            "positive_share": round(self.total("positives") / scored, 4) if scored else None,
            "accuracy_on_labeled_rows": round(self.total("correct") / labeled, 4) if labeled else None,
            "reviews_per_second": round(self.reviews_per_second, 1),
            "seconds": round(self.seconds, 2),
            "state_seconds": round(self.state_seconds, 3),
            "task_runner": self.task_runner,
            "shards": self.total("shards"),
            "workers": self.workers,
            "drift": self.drift(),
        }


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@dataclass
class Progress:
    """Progress of a long run: files done of all, rows, reviews/s, time left.

    On a terminal, a bar (rich); elsewhere (workers, cron, CI) log lines, at most one
    every ``every`` seconds and one for the last file, so an inbox of thousands of
    small files does not print thousands of lines. Inside a long file too
    (``working``, with the counts the file queue yields while shards run): its rows done,
    rows/s, the rows and files left.
    """

    total: int
    logger: object
    every: float = 5.0
    done: int = 0
    rows: int = 0
    fresh: int = 0  # rows of the files done that this run read (not resumed)
    started: float = field(default_factory=time.perf_counter)
    last: float = 0.0  # the last line of any kind
    last_file: float = 0.0  # the last line for a file done
    bar: object = None

    def __post_init__(self) -> None:
        self.bar = terminal_progress(self.total, "scoring",
                                     "files, {task.fields[rows]:,} rows, "
                                     "{task.fields[rate]:,.0f} reviews/s")
        if self.bar is not None:
            self.bar.add_task("files", total=self.total, rows=0, rate=0.0)
            self.bar.start()

    def file_done(self, outcome: FileOutcome) -> None:
        self.done += 1
        self.rows += outcome.rows_read
        self.fresh += outcome.rows_read - outcome.rows_resumed
        now = time.perf_counter()
        elapsed = now - self.started
        rate = self.fresh / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], advance=1, rows=self.rows, rate=rate)
            return
        if now - self.last_file < self.every and self.done < self.total:
            return
        self.last = self.last_file = now
        left = elapsed / self.done * (self.total - self.done)
        self.logger.info("%d/%d files, %d rows, %.0f reviews/s, about %.0f s left",
                         self.done, self.total, self.rows, rate, left)

    def working(self, files: list) -> None:
        """The files being scored (``tasks.scoring.watch.FileProgress``): a line naming the
        rows done, rows/s and what is left when no other line came for ``every``
        seconds, so a long file is never silent (the bar's rows, on a terminal)."""
        busy = [f for f in files if f.rows_done or f.rows_resumed]
        now = time.perf_counter()
        rate = (self.fresh + sum(f.rows_done for f in files)) / max(now - self.started, 1e-9)
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], rate=rate,
                            rows=self.rows + sum(f.rows_done + f.rows_resumed for f in busy))
            return
        if not busy or now - self.last < self.every:
            return
        self.last = now
        files_left = (f"{self.done}/{self.total} files done, "
                      f"{self.total - self.done - len(busy)} more waiting")
        if len(busy) > 1:
            self.logger.info("scoring %d files: %s rows of them done, %.0f rows/s; %s",
                             len(busy), f"{sum(f.rows_done + f.rows_resumed for f in busy):,}",
                             rate, files_left)
            return
        (file,) = busy
        done = file.rows_done + file.rows_resumed
        of = left = kept = ""
        if file.expected:
            of = f" of {'' if file.exact else 'about '}{file.expected:,}"
            rows_left = max(file.expected - done, 0)
            left = f", {rows_left:,} rows left" + (
                f" (about {rows_left / rate:.0f} s)" if rate else "")
        if file.rows_resumed:
            kept = f" ({file.rows_resumed:,} of them kept from a stopped run)"
        self.logger.info("scoring %s: %s%s rows done%s, %.0f rows/s%s; %s", file.name,
                         f"{done:,}", of, kept, rate, left, files_left)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def publish_summary(summary: ScoreSummary, thresholds: Thresholds) -> None:
    """The run's figures as Prefect artifacts (``flows.score_artifacts``: summary, files,
    drift) and one JSON line."""
    from flows.score_artifacts import publish_run_artifacts

    figures = summary.as_dict()
    publish_run_artifacts(summary, figures, thresholds)
    print(json.dumps(figures))
