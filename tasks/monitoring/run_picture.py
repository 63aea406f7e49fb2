"""One scoring run as a picture: each scored file's drift signals beside the run's and
the thresholds, the flagged ones red, and the reviews of each file by main script.

Drawn from the ``monitoring/`` rows of the run's files and the run's own figures (its
summary's ``drift``), the same figures the artifacts' tables hold.
"""

from __future__ import annotations

from tasks.charts import FLAGGED_COLOR, THRESHOLD_STYLE, drawable, png_bytes, pyplot
from tasks.monitoring.drift_signals import Thresholds
from tasks.monitoring.text import SCRIPT_NAMES, SCRIPTS

MOST_FILES = 15  # the largest files; the run's bar stands for all of them
SIGNALS = (("oov_rate", "unknown-token rate", "max_oov_rate"),
           ("script_shift", "script shift", "max_script_shift"),
           ("score_psi", "score PSI", "max_psi"),
           ("length_psi", "length PSI", "max_psi"))
SCRIPT_COLORS = dict(zip(SCRIPTS, ("C0", "C1", "C2", "C4", "C5")))
SMALL_COLOR = "#aec7e8"  # a file too small to be flagged


def short(name: str, longest: int = 28) -> str:
    """A file name that fits beside a bar: its start and its end around an ellipsis."""
    return name if len(name) <= longest else f"{name[:longest - 11]}…{name[-10:]}"


def run_picture(files: list[dict], run: dict, thresholds: Thresholds) -> bytes:
    """The picture as PNG bytes. ``files``: the run's ``monitoring/`` rows (the largest
    ``MOST_FILES`` are drawn); ``run``: the run's figures (``signals`` keys, with
    ``review_shares``) drawn as the bar "(run)"."""
    plt = pyplot()
    shown = sorted(files, key=lambda row: -row["rows"])[:MOST_FILES]
    names = [drawable(short(row["source_file"])) for row in shown] + [f"(run: {len(files)} files)"]
    rows = [*shown, {**run, "flags": []}]
    height = 1.6 + 0.28 * len(rows)
    figure, axes = plt.subplots(1, len(SIGNALS) + 1, figsize=(13, height), sharey=True)
    positions = list(range(len(rows)))[::-1]  # the largest file on top, the run at the bottom
    for ax, (signal, title, limit_name) in zip(axes, SIGNALS):
        threshold = getattr(thresholds, limit_name)
        values = [row.get(signal) for row in rows]
        colors = [FLAGGED_COLOR if signal in row["flags"] else
                  "black" if index == len(rows) - 1 else
                  SMALL_COLOR if row["rows"] < thresholds.min_rows else "C0"
                  for index, row in enumerate(rows)]
        ax.barh(positions, [v or 0 for v in values], color=colors, height=0.6)
        for y, value in zip(positions, values):
            if value is None:
                ax.text(0, y, " -", va="center", fontsize=7, color="#7f7f7f")
        ax.axvline(threshold, **THRESHOLD_STYLE)
        top = max([threshold, *(v for v in values if v is not None)])
        ax.set_xlim(0, top * 1.1)
        ax.set_title(f"{title}\n(threshold {threshold:g}{'+' if limit_name == 'max_psi' else ''})",
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    _draw_scripts(axes[-1], rows, positions)
    axes[0].set_yticks(positions, names, fontsize=7)
    figure.suptitle("this scoring run's files against the drift thresholds (red: flagged; light: "
                    f"fewer than {thresholds.min_rows:,} rows, never flagged; black: the whole "
                    "run; PSI thresholds grow by each file's sampling noise)", fontsize=9)
    figure.tight_layout()
    return png_bytes(figure)


def _draw_scripts(ax, rows: list[dict], positions: list[int]) -> None:
    """Each file's reviews by main script, stacked to 1."""
    left = [0.0] * len(rows)
    for script in SCRIPTS:
        shares = [(row.get("review_shares") or {}).get(script) or
                  row.get(f"review_share_{script}") or 0.0 for row in rows]
        if any(shares):
            ax.barh(positions, shares, left=left, height=0.6, color=SCRIPT_COLORS[script],
                    label=SCRIPT_NAMES[script])
            left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 1)
    ax.set_title("reviews by main script", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12 * 8 / (len(rows) + 4)),
              ncols=3, frameon=False)
