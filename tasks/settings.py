"""One typed settings object for every flow and command.

Values come, in increasing priority, from the defaults below, environment variables
prefixed ``REVIEWFLOW_`` (``REVIEWFLOW_DATA_DIR=/srv/reviews``) and explicit keyword
arguments (the CLI and flow parameters pass theirs that way). Flows build one
``Settings`` and pass it, or values taken from it, down to the plain functions in
``tasks``; nothing reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGED_SUITE = Path(__file__).parent / "expectations" / "review_suite.json"


class ColumnMapping(BaseModel):
    """Which input column names mean review id, text and label.

    The first name found in a file wins; names are matched case-insensitively.
    """

    review_id: list[str] = ["review_id", "id", "reviewid", "review id"]
    text: list[str] = ["text", "review", "document", "content", "body", "comment"]
    label: list[str] = ["label", "sentiment", "polarity", "target"]
    positive_labels: list[str] = ["1", "pos", "positive", "true", "yes"]
    negative_labels: list[str] = ["0", "neg", "negative", "false", "no"]


class DataLayout(BaseModel):
    """The folders under the data root (see README, "Data folder contract")."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def labeled(self) -> Path:
        return self.root / "labeled"

    @property
    def scored(self) -> Path:
        return self.root / "scored"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def ensure(self) -> DataLayout:
        """Create every folder of the contract that does not exist yet."""
        for folder in (self.incoming, self.labeled, self.scored, self.quarantine,
                       self.models, self.state, self.archive):
            folder.mkdir(parents=True, exist_ok=True)
        return self


class Settings(BaseSettings):
    """Paths, thresholds and batch sizes for scoring and retraining."""

    model_config = SettingsConfigDict(env_prefix="REVIEWFLOW_", env_nested_delimiter="__",
                                      extra="forbid")

    # --- where things live
    data_dir: Path = Field(Path("data"), description="Root of the data folder contract.")
    suite_path: Path = Field(PACKAGED_SUITE, description="Great Expectations suite (JSON).")

    # --- reading and validating
    columns: ColumnMapping = ColumnMapping()
    read_batch_rows: int = Field(50_000, gt=0, description="Rows per record batch read.")
    max_text_chars: int = Field(100_000, gt=0, description="Longest review accepted, in characters.")
    max_decompressed_bytes: int = Field(
        4 * 1024**3, gt=0, description="A gzip file expanding past this is quarantined.")
    settle_seconds: float = Field(
        2.0, ge=0, description="Files modified more recently than this are left for the next run.")

    # --- scoring
    predict_batch_size: int = Field(1024, gt=0)
    require_gpu: bool = Field(False, description="Fail the scoring run if no GPU is visible.")

    # --- training
    architecture: str = Field("ngram", description="Named model configuration (see tasks.model).")
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    max_tokens: int = Field(10_000, gt=0)
    epochs: int = Field(20, gt=0)
    batch_size: int = Field(512, gt=0)
    patience: int = Field(2, ge=0)
    seed: int = 1337

    # --- promotion
    min_delta: float = Field(0.0, ge=0, description="Accuracy gain a candidate must exceed.")
    require_significance: bool = Field(False, description="Also require an exact McNemar test.")
    significance_alpha: float = Field(0.05, gt=0, lt=1)
    accuracy_floor: float = Field(0.6, ge=0, le=1,
                                  description="A first model is promoted only at this accuracy.")

    @field_validator("data_dir", "suite_path")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return Path(value).expanduser()

    @property
    def layout(self) -> DataLayout:
        return DataLayout(root=self.data_dir.resolve())
