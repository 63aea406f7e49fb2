"""The gate rows cut into slices, so that a candidate is judged on each part of its
readers and not only on all of them together.

- **by script**, always: the script each review is mainly written in (Latin, Hangul,
  Han, Kana, other), by the drift monitor's own rule (``tasks.monitoring.letters_per_row``
  and ``main_scripts``), so the "Hangul" slice holds exactly the reviews the monitor
  counts as mainly Hangul; a review without letters is in the ``NO_LETTERS`` slice;
- **by the slice column**, when labeled files carry one (``ColumnMapping.slice``, for
  example a product category): each value with at least ``min_rows`` gate rows is a
  slice; a value with fewer is too small to be judged alone, and several such values are
  gathered into one slice, reported as too small to judge (``SliceRows.values``).

``gate_slices`` says which gate rows each slice holds (``SliceRows``);
``tasks.training.evaluation.compare_slices`` measures the candidate and the champion on
them and ``tasks.training.promotion`` judges each. ``describe_slice`` writes a slice's
figures in the one sentence the decision's reason, the run's lines and ``reviewflow
models list --verbose`` all use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCRIPT_KIND = "script"
NO_LETTERS = "no letters"
# A row of a labeled file with the slice column whose value is empty.
NO_VALUE = "(no value)"


@dataclass(frozen=True)
class SliceRows:
    """The gate rows of one slice: ``rows`` is a mask over the gate rows, in their order.
    ``kind`` is ``SCRIPT_KIND`` or the slice column's name; ``values`` is how many of
    that column's values the slice gathers (more than one: each had too few rows)."""

    name: str
    kind: str
    rows: np.ndarray
    values: int = 1

    @property
    def gathered(self) -> bool:
        return self.values > 1


def script_slice_names(texts) -> np.ndarray:
    """The script slice of each text: ``SCRIPT_NAMES`` of its main script, or
    ``NO_LETTERS``."""
    import pyarrow as pa

    from tasks.monitoring import SCRIPT_NAMES, SCRIPTS, letters_per_row, main_scripts

    main = main_scripts(letters_per_row(pa.array(list(texts), pa.string())))
    names = np.array([SCRIPT_NAMES[script] for script in SCRIPTS] + [NO_LETTERS], dtype=object)
    return names[main]  # -1, a text without letters, is the last name


def gate_slices(gate: pd.DataFrame, min_rows: int, column: str | None = None
                ) -> list[SliceRows]:
    """The slices of the ``gate`` rows (a frame with ``text`` and, from labeled files,
    ``slice``): every script its reviews are mainly written in, in ``SCRIPTS`` order; then,
    when ``column`` names the slice column and some row has a value in it, each value of it
    with at least ``min_rows`` rows (most rows first), and the values with fewer."""
    from tasks.monitoring import SCRIPT_NAMES

    names = script_slice_names(gate["text"])
    found = [SliceRows(name, SCRIPT_KIND, names == name)
             for name in [*SCRIPT_NAMES.values(), NO_LETTERS] if (names == name).any()]
    if column is None or "slice" not in gate or gate["slice"].isna().all():
        return found
    values = gate["slice"].astype(object).where(gate["slice"].notna(), NO_VALUE).astype(str)
    values = values.where(values.str.strip() != "", NO_VALUE).to_numpy()
    counts = pd.Series(values).value_counts(sort=False)
    counts = counts.iloc[np.lexsort((counts.index.to_numpy(), -counts.to_numpy()))]
    large = [value for value, rows in counts.items() if rows >= min_rows]
    small = [value for value, rows in counts.items() if rows < min_rows]
    found += [SliceRows(f"{column}={value}", column, values == value) for value in large]
    if len(small) == 1:
        found.append(SliceRows(f"{column}={small[0]}", column, values == small[0]))
    elif small:
        found.append(SliceRows(f"{column}: {len(small)} values under {min_rows:,} gate rows "
                               "each", column, np.isin(values, small), values=len(small)))
    return found


def column_label(names: list[str]) -> str | None:
    """What slices of the slice column are called: the first of its names in the column
    mapping (``ColumnMapping.slice``); None without one."""
    return names[0] if names else None


def describe_slice(record: dict) -> str:
    """A slice's figures in one phrase, from its record (``JudgedSlice.record``):
    "Hangul 0.8420 vs champion 0.8710 on 1,812 gate rows, p=0.003"."""
    candidate, champion = record["candidate_accuracy"], record["champion_accuracy"]
    text = f"{record['slice']} {_accuracy(candidate)}"
    if champion is not None:
        text += f" vs champion {_accuracy(champion)}"
    text += f" on {record['rows']:,} gate rows"
    if record.get("p_value") is not None:
        text += f", p={record['p_value']:.2g}"
    return text


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
