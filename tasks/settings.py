"""One typed settings object for every flow and command.

Values come, in increasing priority, from the defaults below, environment variables
prefixed ``REVIEWFLOW_`` (``REVIEWFLOW_DATA_DIR=/srv/reviews``) and explicit keyword
arguments (the CLI and flow parameters pass theirs that way). Flows build one
``Settings`` (``flows.configuration.settings_from``) and pass it, or values taken from
it, down to the plain functions in ``tasks``; nothing reads the environment anywhere
else (tests/test_imports.py holds to that).

The bottom of the import graph: this module imports nothing of reviewflow, so any module
may import it. What a setting's value means beyond its type is decided above it: the
data root's folders (``tasks.layout.DataLayout.of``), a state URL as libpq reads it and its
password (``tasks.state.url``, applied by ``flows.configuration``).
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "REVIEWFLOW_"
PACKAGED_SUITE = Path(__file__).parent / "expectations" / "review_suite.json"


def is_url(value: str | os.PathLike) -> bool:
    """Whether a data root (or any location) is a URL: ``scheme://...`` other than
    ``file://``. The one rule; ``tasks.storage.objects`` asks it too."""
    text = str(value)
    return "://" in text and not text.startswith("file://")


def local_path(value: str | os.PathLike) -> Path:
    """A location that is not a URL as a local ``Path``: ``file://`` taken off, ``~``
    expanded."""
    return Path(str(value).removeprefix("file://")).expanduser()


# ``ColumnMapping.passthrough`` naming every column of the input.
PASSTHROUGH_ALL = "*"
# The types ``ColumnMapping.types`` may declare (their Arrow types: tasks.reading.passthrough).
COLUMN_TYPE_NAMES = ("string", "int8", "int16", "int32", "int64", "float32", "float64", "bool",
                     "date", "timestamp")


class ColumnMapping(BaseModel):
    """Which input column names mean review id, text and label (``Settings.columns``).

    The first name found in a file wins; names are matched case-insensitively
    (``tasks.reading.columns``, where readers import it from).
    """

    review_id: list[str] = ["review_id", "id", "reviewid", "review id"]
    text: list[str] = ["text", "review", "document", "content", "body", "comment"]
    label: list[str] = ["label", "sentiment", "polarity", "target"]
    # What a review is about (a movie, a product). Labeled files that carry one are split
    # by it for training, so the held-out figures measure reviews of unseen items, as a
    # new batch will be. Empty: split by review id. Scoring ignores it.
    group: list[str] = ["movie_id", "product_id", "item_id"]
    # A column whose values cut the gate rows into slices for the promotion guard (a
    # product category, a market); retraining reads it, scoring ignores it. Empty: the
    # gate is sliced by script only (tasks.training.slices).
    slice: list[str] = []
    positive_labels: list[str] = ["1", "pos", "positive", "true", "yes"]
    negative_labels: list[str] = ["0", "neg", "negative", "false", "no"]
    # The input's other columns a scored row carries (docs/data-contract.md): ["*"] all
    # of them, [] none, or the names to keep (REVIEWFLOW_COLUMNS__PASSTHROUGH='["stars"]').
    passthrough: list[str] = [PASSTHROUGH_ALL]
    # The review text in scored/ too: off, since it is most of a part's size and the
    # part of a row most likely to hold personal data (names, e-mails, addresses).
    passthrough_text: bool = False
    # Types of pass-through columns of text formats (CSV, TSV, JSON), which read as
    # strings otherwise: {"created_at": "timestamp", "stars": "int64"}; the names in
    # COLUMN_TYPE_NAMES. A value that is not of its type quarantines its row.
    types: dict[str, str] = {}

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        for name, type_name in value.items():
            if type_name not in COLUMN_TYPE_NAMES:
                raise ValueError(f"unknown type {type_name!r} for column {name!r} in "
                                 f"columns.types; use one of {', '.join(COLUMN_TYPE_NAMES)}")
        return value


class Settings(BaseSettings):
    """Paths, thresholds and batch sizes for scoring and retraining."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid")

    # --- where things live
    data_dir: Path | str = Field(
        Path("data"), description="Root of the data folder contract: a local folder, or an "
                                  "fsspec URL such as s3://bucket/prefix (kept as a string).")
    state_dir: Path | None = Field(
        None, description="Local (or shared POSIX) folder for the ledger and the locks. "
                          "Default <data_dir>/state; required when data_dir is a URL.")
    state_url: str | None = Field(
        None, description="postgresql://user@host:port/db (or any connection string "
                          "libpq takes): the ledger and the locks in PostgreSQL "
                          "(tasks/state/postgres.py), shared by workers on any host; "
                          "unset: the SQLite ledger and lock files in state_dir. The "
                          "password comes from the URL, PGPASSWORD or ~/.pgpass.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for URL data roots, e.g. "
                                          '{"endpoint_url": "http://127.0.0.1:9000"}.')
    suite_path: Path = Field(PACKAGED_SUITE, description="Great Expectations suite (JSON).")

    # --- reading and validating
    columns: ColumnMapping = ColumnMapping()
    read_batch_rows: int = Field(50_000, gt=0, description="Rows per record batch read.")
    max_text_chars: int = Field(100_000, gt=0, description="Longest review accepted, in characters.")
    max_decompressed_bytes: int = Field(
        4 * 1024**3, gt=0, description="A gzip file expanding past this is quarantined.")
    encodings: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Encodings to try, in order, on text files that are not UTF-8 or UTF-16 "
                    "(REVIEWFLOW_ENCODINGS=cp949,cp1252). Put single-byte catch-alls such "
                    "as latin-1 last: they decode anything.")
    detect_encoding: bool = Field(
        True, description="Let charset-normalizer name the encoding of a file that none of "
                          "the above decodes; its guess is used only when unambiguous.")
    settle_seconds: float = Field(
        2.0, ge=0, description="Files modified more recently than this are left for the next run.")

    # --- scoring
    predict_batch_size: int = Field(
        512, gt=0, description="Reviews per prediction batch. A batch's tokens and n-grams "
                               "are held at once, so memory grows with it (docs/settings.md has "
                               "the peak at 512 and 1024).")
    require_gpu: bool = Field(False, description="Fail the scoring run if no GPU is visible.")

    # --- where the per-file work runs (docs/scaling-out.md)
    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="threads: Prefect's thread pool in the flow's process; "
                               "dask: prefect-dask's DaskTaskRunner.")
    thread_workers: int = Field(
        1, gt=0, description="Shards scored at once by the thread runner. 1 (one at a time) "
                             "because TensorFlow already spreads one batch over every core.")
    dask_address: str | None = Field(
        None, description="Scheduler of a running Dask cluster (tcp://host:8786); none: "
                          "start a LocalCluster for the run.")
    dask_workers: int = Field(2, gt=0, description="Worker processes of that LocalCluster.")
    dask_resources: dict[str, float] = Field(
        default_factory=dict, description='Resources each shard needs on a Dask worker, e.g. '
                                          '{"GPU": 1} for workers started with --resources GPU=1.')
    shard_rows: int | None = Field(
        None, gt=0, description="Files with more rows are split into shards of this many "
                                "rows, one task each. Default: 250,000 with dask, no "
                                "splitting with threads.")
    # 100,000: a stop loses at most one checkpoint of work, seconds of scoring (the
    # figures are in docs/settings.md), while each checkpoint costs one more part and one
    # state write; files up to that size, most uploads, pay nothing at all.
    checkpoint_rows: int = Field(
        100_000, gt=0, description="With the thread runner, a file with more rows is scored "
                                   "in checkpoints of this many rows, each kept once "
                                   "finished: a stopped run's next run scores only the rest. "
                                   "Under Dask (or with shard_rows) each shard is one.")

    # --- monitoring: drift signals of every scoring run (docs/monitoring.md)
    monitor_sample_rows: int = Field(
        1_000, gt=0, description="Rows per read batch whose text is tokenized for the "
                                 "unknown-token rate and the script mix (every k-th row); "
                                 "lengths, scores and labels count every row.")
    monitor_min_rows: int = Field(
        100, ge=1, description="Files with fewer scored rows are measured but never flagged.")
    monitor_max_oov_rate: float = Field(
        0.3, ge=0, le=1, description="Flag a file when more than this share of its tokens "
                                     "are unknown to the champion's vocabulary.")
    monitor_max_psi: float = Field(
        0.25, ge=0, description="Flag a file when the population stability index of its text "
                                "lengths or of its scores exceeds this (0.25: a significant "
                                "shift by the usual rule of thumb).")
    monitor_max_script_shift: float = Field(
        0.2, ge=0, le=1, description="Flag a file when more than this share of its reviews is "
                                     "mainly written in a script the champion did not learn "
                                     "from (for a profile without per-script parts: the total "
                                     "variation distance between the file's script mix and "
                                     "the training text's).")
    monitor_max_accuracy_drop: float = Field(
        0.1, ge=0, le=1, description="Flag a file whose labeled rows are scored less "
                                     "accurately than the champion's held-out accuracy by "
                                     "more than this.")
    monitor_emit_events: bool = Field(
        True, description="Emit a Prefect event reviewflow.drift.detected per flagged file.")
    # --- production accuracy: late labels in labeled/ against scored/ (docs/monitoring.md)
    accuracy_max_drop: float = Field(
        0.05, ge=0, le=1, description="Say a model version's production accuracy dropped "
                                      "(a WARNING and the event reviewflow.accuracy.dropped) "
                                      "when, overall, in a week or in a script's reviews, it "
                                      "is more than this below its gate accuracy.")
    accuracy_min_rows: int = Field(
        500, ge=1, description="Late-labeled reviews a version's figure (overall, a week, a "
                               "script) needs before it is judged: fewer are shown, never "
                               "judged (at 500 rows and 87% accuracy, one standard error is "
                               "1.5 points).")

    # --- training
    architecture: str = Field("ngram-marks", description="Named model configuration (see tasks.model).")
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the labeled groups (or reviews, where files "
                                     "name no group) held out of training (tasks.training.split).")
    selection_share: float = Field(
        0.5, gt=0, lt=1, description="Share of the held-out part on which early stopping "
                                     "selects the best epoch; the rest is the promotion gate.")
    max_tokens: int = Field(10_000, gt=0)
    epochs: int = Field(20, gt=0)
    batch_size: int = Field(512, gt=0)
    patience: int = Field(2, ge=0)
    seed: int = 1337
    refit_with_selection: bool = Field(
        True, description="Once early stopping has chosen the epoch count on the selection "
                          "rows, train again on the training and selection rows together "
                          "for that many epochs (more reviews to learn from; the gate "
                          "still judges a model that saw none of its rows).")
    self_training: bool = Field(
        True, description="When unlabeled/ holds reviews, learn from them too: the first "
                          "model pseudo-labels the ones it scores confidently, and the "
                          "final model trains on them with the labeled rows "
                          "(docs/retraining.md).")
    # 0.7 rather than 0.8 or 0.6: the figures are in docs/retraining.md.
    pseudo_label_confidence: float = Field(
        0.7, gt=0.5, lt=1, description="A review of unlabeled/ is pseudo-labeled positive at "
                                       "this score or above, negative at 1 minus it or below.")
    max_unlabeled_rows: int = Field(
        50_000, ge=0, description="Most unlabeled reviews scored for pseudo-labels per run "
                                  "(chosen by a hash of their text): bounds training time.")

    # --- promotion
    min_delta: float = Field(0.0, ge=0, description="Accuracy gain a candidate must exceed.")
    require_significance: bool = Field(False, description="Also require an exact McNemar test.")
    significance_alpha: float = Field(0.05, gt=0, lt=1)
    accuracy_floor: float = Field(0.6, ge=0, le=1,
                                  description="A first model is promoted only at this accuracy.")
    # 300 and 0.03 together: the reason is in docs/retraining.md ("The slice guard").
    min_slice_rows: int = Field(
        300, ge=1, description="A slice of the gate rows (a script, a value of the slice "
                               "column) is judged by the promotion guard only with at least "
                               "this many rows; a smaller one is reported as too small to judge.")
    max_slice_drop: float = Field(
        0.03, ge=0, le=1, description="A candidate better overall is not promoted when, on a "
                                      "slice it is judged on, its accuracy is below the "
                                      "champion's by more than this (significant or not).")

    # --- a file a run keeps dying on (docs/what-happens-when.md)
    max_claim_deaths: int = Field(
        3, ge=1, description="A claimed file left by this many runs that died while it was in "
                             "flight is quarantined (\"N runs died while reading it\") "
                             "instead of being retried again.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_root(cls, value: Path | str) -> Path | str:
        # A URL stays a string (Path would fold "s3://" into "s3:/"); anything else is a Path.
        return str(value).rstrip("/") if is_url(value) else local_path(value)

    @field_validator("encodings", mode="before")
    @classmethod
    def _encoding_list(cls, value: Any) -> Any:
        # From the environment: "cp949,cp1252" or a JSON list.
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("encodings")
    @classmethod
    def _known_encodings(cls, value: list[str]) -> list[str]:
        for name in value:
            try:
                codecs.lookup(name)
            except LookupError as exc:
                raise ValueError(f"unknown encoding {name!r} in encodings; use a Python codec "
                                 "name such as cp949, euc-kr, cp1252 or latin-1") from exc
        return value

    @field_validator("state_url")
    @classmethod
    def _no_empty_url(cls, url: str | None) -> str | None:
        # What the URL means (libpq's reading, its password) is checked where settings
        # are built: flows.configuration.settings_from.
        return url or None

    @field_validator("suite_path", "state_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser()

    @model_validator(mode="after")
    def _state_is_local(self) -> Settings:
        if self.remote and self.state_dir is None and not self.state_url:
            raise ValueError(
                f"data_dir {self.data_dir} is a URL, so the ledger (SQLite) and the locks "
                "cannot live under it: set REVIEWFLOW_STATE_URL to a PostgreSQL database "
                "(postgresql://user@host:port/db), or REVIEWFLOW_STATE_DIR to a local folder, "
                "or one on a POSIX file system every scoring run shares (for example "
                "REVIEWFLOW_STATE_DIR=/var/lib/reviewflow/state)")
        if self.state_dir is not None and is_url(self.state_dir):
            raise ValueError("state_dir must be a local folder, not a URL")
        return self

    @property
    def remote(self) -> bool:
        """Whether the data root is an fsspec URL (object storage)."""
        return isinstance(self.data_dir, str)

    @property
    def effective_shard_rows(self) -> int | None:
        if self.shard_rows is not None:
            return self.shard_rows
        return 250_000 if self.task_runner == "dask" else None


def state_url_in_environment() -> str | None:
    """``REVIEWFLOW_STATE_URL`` as this process's environment gives it, password and all:
    what a state URL given without its password (a flow parameter) takes it from
    (``flows.configuration``)."""
    return os.environ.get(f"{ENV_PREFIX}STATE_URL") or None
